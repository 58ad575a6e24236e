"""What the machine is, for reports: timings and latencies mean nothing without it."""
from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """This machine's CPU model, e.g. 'AMD EPYC'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
