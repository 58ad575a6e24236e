"""Folds trained side by side: a stage's jobs (one fold each; with repeats, a (repeat, fold) pair)
run in up to `workers` worker processes at once.

    results = foldpool.run(jobs, work, workers)      # work(job) -> a picklable result; in job order

- One worker (or one job): `work` runs in this process, one job after another.
- Otherwise each worker takes the next job as soon as it is free, and runs its jobs one after
  another, as the stage itself does with one worker: so what a job imports on first use (torch's
  optimiser machinery, scikit-learn) is imported once per worker, not once per job. A job's bits
  depend on the job and the params only: every fold is seeded afresh, and the caller fixes each
  job's threads from params (train.parallel_folds), never from what else is running.
- Start-up: on the CPU the workers are forked from the stage, which has already imported torch and
  read the images, so a worker starts in milliseconds and shares the images' pages; `spawn` (a
  fresh interpreter, about as slow as starting the stage) is used where fork is unsafe: once CUDA
  may be initialised. The stage must not have run a multi-threaded torch operation before it forks
  (OpenMP's thread pool does not survive fork): train.py keeps the stage itself at one thread.
- A failed job fails the run with its own exception (a PipelineError keeps its one-line message; a
  bug's traceback is printed by the worker); the other workers are stopped (SIGTERM, then SIGKILL
  after STOP_GRACE_S) and no new job starts. Their checkpoints keep every finished epoch.
- A worker that dies without an answer (killed, out of memory) fails the run naming its job and how.
- Stopping the stage stops its workers: on SIGTERM or SIGINT the stage terminates them, then dies
  of the same signal (or runs the handler it had before). On SIGKILL, which no process can catch,
  Linux kills every worker with it (prctl PR_SET_PDEATHSIG). Workers keep the stage's own SIGTERM
  and SIGINT handlers (fork).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import traceback
from collections import deque
from typing import Any, Callable, Sequence, TypeVar

from pipeline.core import lifecycle
from pipeline.core.errors import TrainingError

J = TypeVar("J")
R = TypeVar("R")

STOP_GRACE_S = 10.0          # a stopped worker has this long to end after SIGTERM before SIGKILL
_PR_SET_PDEATHSIG = 1        # linux/prctl.h
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stopped(BaseException):
    """The stage received `signum` while its workers ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def start_method(device_type: str) -> str:
    """fork on the CPU (no re-import, images shared); spawn where CUDA may be initialised or fork is missing."""
    return "fork" if device_type == "cpu" and "fork" in multiprocessing.get_all_start_methods() else "spawn"


def run(jobs: Sequence[J], work: Callable[[J], R], workers: int, method: str = "fork",
        describe: Callable[[J], str] = str) -> list[R]:
    """`work(job)` for every job, at most `workers` at once in worker processes; the results in job
    order. `describe(job)` names a job in messages. See the module docstring."""
    if workers <= 1 or len(jobs) <= 1:
        return [work(job) for job in jobs]
    ctx = multiprocessing.get_context(method)
    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    main_thread = threading.current_thread() is threading.main_thread()
    results: dict[int, R] = {}
    todo = deque(range(len(jobs)))
    busy: dict[Any, tuple[Any, int]] = {}     # a worker's connection -> (its process, the job it runs)
    processes: list[Any] = []

    def stop_request(signum: int, frame: Any) -> None:
        raise _Stopped(signum)

    try:
        if main_thread:
            for s in _STOP_SIGNALS:
                signal.signal(s, stop_request)
        for _ in range(min(workers, len(jobs))):
            mine, theirs = ctx.Pipe(duplex=True)
            process = ctx.Process(target=_worker, args=(work, theirs, os.getpid(), previous if method == "fork" else {}),
                                  name="fold-worker", daemon=False)
            process.start()
            theirs.close()      # the worker holds the only other end: its death reads as EOF here
            processes.append(process)
            i = todo.popleft()
            mine.send(jobs[i])
            busy[mine] = (process, i)
        while busy:
            for conn in multiprocessing.connection.wait(list(busy)):
                process, i = busy.pop(conn)
                try:
                    status, value = conn.recv()
                except EOFError:
                    process.join()
                    code = process.exitcode
                    how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                    raise TrainingError(f"the worker training {describe(jobs[i])} died ({how}) before it finished; "
                                        f"run the stage again: it resumes from the last complete epoch") from None
                if status == "error":
                    raise value
                results[i] = value
                if todo:
                    i = todo.popleft()
                    conn.send(jobs[i])
                    busy[conn] = (process, i)
                else:
                    conn.send(None)   # no more work: the worker ends
                    conn.close()
                    process.join()
    except _Stopped as stopped:
        _stop(processes)
        _restore(previous, main_thread)
        signal.raise_signal(stopped.signum)   # die of it, or run the handler the stage had
        raise SystemExit(128 + stopped.signum) from None   # a handler that returned
    finally:
        _stop(processes)
        for conn in busy:
            conn.close()
        _restore(previous, main_thread)
    return [results[i] for i in range(len(jobs))]


def _restore(previous: dict[int, Any], main_thread: bool) -> None:
    if main_thread:
        for s, handler in previous.items():
            if handler is not None:   # None: a handler set outside Python, which signal() cannot put back
                signal.signal(s, handler)


def _stop(processes: list[Any]) -> None:
    """SIGTERM every live worker, then SIGKILL whichever has not ended within STOP_GRACE_S."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(STOP_GRACE_S)
        if p.is_alive():
            p.kill()
            p.join()


def _die_with(parent: int) -> None:
    """Have Linux SIGKILL this worker when the stage dies (even of SIGKILL); gone already: exit now."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


def _worker(work: Callable[[J], R], conn: Any, parent: int, handlers: dict[int, Any]) -> None:
    """A worker process: jobs come through `conn` until None; each one's result, or the exception it
    raised, goes back the same way. A failed job ends the worker. A worker told to stop (the stage
    stopping its workers, Ctrl-C) leaves quietly: `finally` blocks run (a fold's lock is released),
    and the stage, not the worker, says why it stopped."""
    try:
        _serve(work, conn, parent, handlers)
    except (KeyboardInterrupt, lifecycle.Stopped) as e:
        sys.stdout.flush()
        os._exit(128 + getattr(e, "signum", signal.SIGINT))


def _serve(work: Callable[[J], R], conn: Any, parent: int, handlers: dict[int, Any]) -> None:
    _die_with(parent)
    for s, handler in handlers.items():   # the stage's own handlers, not the pool's stop request
        if callable(handler) or handler in (signal.SIG_DFL, signal.SIG_IGN):
            signal.signal(s, handler)
    from pipeline.core.errors import PipelineError

    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            answer = ("ok", work(job))
        except (KeyboardInterrupt, lifecycle.Stopped):
            raise   # told to stop: not a failure of the job
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the stage, which re-raises it
            if not isinstance(e, PipelineError):
                traceback.print_exc()   # a bug: its traceback, from where it happened
            answer = ("error", _picklable(e))
        sys.stdout.flush()
        conn.send(answer)
        if answer[0] == "error":
            return


def _picklable(e: BaseException) -> BaseException:
    """`e` itself when it survives pickling, else a TrainingError carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any exception that cannot cross a process boundary
        return TrainingError(f"{type(e).__name__}: {e}")
