"""Entry-point plumbing shared by the stages."""
from __future__ import annotations

import sys
import traceback
from typing import Callable

from pipeline.core import lifecycle, stagetime
from pipeline.core.errors import PipelineError


def run_stage(main: Callable[[list[str] | None], int | None], unexpected_exit: int | None = None) -> None:
    """Run a stage's `main`, turning user-facing errors into one line on stderr and exit code 2.

    Other exceptions are bugs: their traceback is printed, and the exit code is Python's 1, or
    `unexpected_exit` where 1 means something else (the regression check). However it ends, the stage's
    wall time is recorded under timing/ (pipeline/core/stagetime.py).
    """
    lifecycle.install()
    status = 1
    try:
        status = _run(main, unexpected_exit)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
        raise
    finally:
        stagetime.record(status)
    sys.exit(status)


def _run(main: Callable[[list[str] | None], int | None], unexpected_exit: int | None) -> int:
    stagetime.main_started()
    try:
        code = main(None)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, lifecycle.Stopped) as e:   # told to stop: no traceback
        line, status = lifecycle.stopped_message(e)
        print(f"{line}", file=sys.stderr)
        sys.exit(status)
    except Exception:
        if unexpected_exit is None:
            raise
        traceback.print_exc()
        sys.exit(unexpected_exit)
    return code or 0
