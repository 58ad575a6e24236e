"""What the machine is, for reports: timings and latencies mean nothing without it."""
from __future__ import annotations

import json
import platform
from pathlib import Path

from pipeline.errors import DataError


def cpu_name() -> str:
    """This machine's CPU model, e.g. 'AMD EPYC'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def read_json(path: Path, remedy: str) -> dict:
    """A JSON file another stage wrote; a missing or corrupt one is a DataError saying `remedy`."""
    if not path.is_file():
        raise DataError(f"{path}: missing; {remedy}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); {remedy}") from None
