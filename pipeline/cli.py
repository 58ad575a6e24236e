"""Entry-point plumbing shared by the stages."""
from __future__ import annotations

import os
import sys
from typing import Callable

from pipeline.errors import PipelineError


def run_stage(main: Callable[[list[str] | None], int | None]) -> None:
    """Run a stage's `main`, turning user-facing errors into one line on stderr and exit code 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never fetch weights at run time
    try:
        code = main(None)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
