"""Where a run's time goes: every stage process records its own wall time (issue 39).

`cli.run_stage` calls `record` when a stage that `dvc repro` runs ends, however it ends: the stage's
name (DVC's, e.g. `train@S1-stanet-patient`, from DVC_STAGE), its wall time from the start of the
process (the interpreter, the imports and the stage's work, as `dvc repro` waits for it), the part
spent before the stage's `main` began (start-up and imports), its exit status, and what the stage
noted (`note`): a train stage notes its fold runs, how many ran side by side, and the seconds the
folds themselves report. One JSON file per stage under timing/ (outside DVC's outputs and git, like
checkpoints/: a time differs from run to run, so it is no output of the stage).

    python -m pipeline.stagetime          # the table of the last run of every stage, slowest first

prints that table and writes it to timing/summary.csv.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TIMING_DIR = Path("timing")
_noted: dict[str, Any] = {}
_main_started: list[float] = []


def process_age() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere, since this module was imported)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


_IMPORTED = time.monotonic()


def stage_name(argv: list[str] | None = None) -> str:
    """DVC's name of the running stage, else the module and its arguments."""
    if os.environ.get("DVC_STAGE"):
        return os.environ["DVC_STAGE"]
    argv = sys.argv if argv is None else argv
    module = Path(argv[0]).stem if argv else "stage"
    return " ".join([f"pipeline.{module}", *argv[1:]])


def main_started() -> None:
    """The stage's `main` begins: what came before it was start-up and imports."""
    _main_started.append(process_age())


def note(**values: Any) -> None:
    """Add facts to this stage's record (JSON-safe values)."""
    _noted.update(values)


def record(exit_status: int, directory: Path = TIMING_DIR) -> Path | None:
    """Write timing/<stage>.json for this process when DVC runs it (DVC_STAGE set: a command typed by hand,
    `python -m pipeline.check` in CI say, leaves no file behind); None when not written (a timing record
    never fails a stage)."""
    if not os.environ.get("DVC_STAGE"):
        return None
    if directory == TIMING_DIR and os.environ.get("DVC_ROOT"):
        directory = Path(os.environ["DVC_ROOT"]) / TIMING_DIR   # the repository's, wherever the stage runs
    name = stage_name()
    wall = process_age()
    entry = {"stage": name, "wall_s": round(wall, 3),
             "startup_s": round(_main_started[0], 3) if _main_started else None, "exit": exit_status,
             "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **_noted}
    safe = "".join(c if c.isalnum() or c in "@-_." else "_" for c in name)[:200]
    path = directory / f"{safe}.json"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError:
        return None
    return path


def table(directory: Path = TIMING_DIR) -> list[dict[str, Any]]:
    """The records under `directory`, slowest first."""
    rows = []
    for path in sorted(directory.glob("*.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(rows, key=lambda r: -(r.get("wall_s") or 0))


COLUMNS = ["stage", "wall_s", "startup_s", "exit", "fold_runs", "side_by_side", "fold_train_s", "ended"]
