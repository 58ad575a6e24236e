"""How a stage process ends when it is told to: Ctrl-C, SIGTERM, or the death of what started it.

- Ctrl-C (SIGINT) and SIGTERM end the stage with one line on stderr, no traceback, and the shell's
  exit code for the signal (130, 143). `finally` blocks run on the way out: a fold's lock
  (pipeline/training/checkpoint.py) is released, a checkpoint being written completes or is discarded whole.
- A stage started by `dvc repro` (DVC sets DVC_STAGE in its environment) is told to stop when its
  parent dies (Linux: PR_SET_PDEATHSIG, SIGTERM): a `dvc repro` killed from above does not leave its
  train stage running beside the next one. A stage started by hand (under nohup, say) is left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1   # linux/prctl.h


class Stopped(BaseException):
    """The process was told to stop by a signal (not an error of its input: no traceback)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


def install() -> None:
    """SIGTERM raises Stopped in the main thread, SIGINT KeyboardInterrupt (even where the parent started this
    process with SIGINT ignored, as a non-interactive shell does for `&` jobs and some test runners' workers
    do: Python then keeps the ignore, and a stage told to stop would run on); under DVC on Linux, the parent's
    death sends SIGTERM here."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.platform.startswith("linux") and "DVC_STAGE" in os.environ:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        parent = os.getppid()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:   # the parent died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)


def stopped_message(e: BaseException) -> tuple[str, int]:
    """The line to print and the exit code for a KeyboardInterrupt or Stopped."""
    signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
    name = signal.Signals(signum).name
    return (f"stopped by {name} ({'Ctrl-C' if signum == signal.SIGINT else 'a request to stop'}); finished epochs "
            f"are kept in checkpoints/ and a rerun resumes from them", 128 + signum)
