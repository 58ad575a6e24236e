"""Training checkpoints that survive `dvc repro` and any kill, and refuse to be misused.

A checkpoint lives at pipeline.core.layout.checkpoint_path(...), outside the stage's DVC outputs (DVC deletes outputs before it reruns a stage). It is written atomically at the end of
every epoch, so a run killed at any moment, SIGKILL included, finds the last complete epoch.
It is read with `weights_only=True`: a corrupt or hostile file is refused, never unpickled.
It carries a fingerprint of everything that decides the training (params, data, split, code
version of the step), and is used only when the fingerprint matches. What it holds is written by
`contents` and read back by `restore`, here and nowhere else.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from pipeline.core import fingerprints
from pipeline.core.atomic import atomic_torch_save
from pipeline.core.errors import TrainingError

FORMAT = 1  # bump when the checkpoint layout or the training step changes meaning


def fingerprint(config: dict[str, Any]) -> str:
    """A stable digest of the training configuration (JSON-serialisable mapping)."""
    return fingerprints.digest({"format": FORMAT, **config})


def contents(*, fingerprint: str, epoch: int, finished: bool, history: list[dict[str, float]], best: dict[str, Any],
             model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, scheduler: Any,
             generator: torch.Generator, device: torch.device, selection: list[dict[str, float]] | None = None
             ) -> dict[str, Any]:
    """A checkpoint after `epoch`: the history and the best epoch so far (its weights included), and,
    unless `finished`, the last epoch's weights, the optimiser, the schedule and every RNG state that
    resuming needs. A finished run keeps only what writing its outputs needs: its outputs come from the
    best epoch's weights, so the last epoch's are not stored a second time (a finished fold's checkpoint
    is one copy of the weights, not two). Everything is copied to the CPU, so training can go on while
    it is written."""
    return {"fingerprint": fingerprint, "epoch": epoch, "finished": finished,
            "history": [dict(h) for h in history], "best": dict(best),
            "model": None if finished else cpu_copy(model.state_dict()),
            "optimizer": None if finished or optimizer is None else cpu_copy(optimizer.state_dict()),
            "scheduler": None if finished or scheduler is None else scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "rng_gen": generator.get_state().cpu(),
            **({"selection": selection} if selection is not None else {})}


@dataclass
class Resumed:
    """What a checkpoint gives back to the run it was made for."""
    epoch: int                                  # the last complete epoch
    finished: bool
    history: list[dict[str, float]]
    best: dict[str, Any]
    selection: list[dict[str, float]] | None


def restore(state: dict[str, Any], *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            generator: torch.Generator, device: torch.device) -> Resumed:
    """Load a checkpoint made by `contents` into the run's objects (unless it is finished: the weights,
    the optimiser, the schedule and every RNG state) and return the rest (a finished run's outputs are
    written from `best`, which holds the selected epoch's weights)."""
    finished = bool(state.get("finished"))
    if not finished:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"])
        generator.set_state(state["rng_gen"])
    return Resumed(epoch=state["epoch"], finished=finished, history=state["history"], best=state["best"],
                   selection=state.get("selection"))


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically."""
    atomic_torch_save(path, state)


def load(path: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it exists and matches; None if absent or made for other settings.

    A file that cannot be read safely raises TrainingError naming it and what to do.
    """
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise TrainingError(
            f"{path}: corrupt or truncated checkpoint, refused ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"delete it to train this fold from the start") from None
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise TrainingError(f"{path}: not a myobench checkpoint (no fingerprint); delete it to train this fold "
                            f"from the start")
    if state["fingerprint"] != expected_fingerprint:
        print(f"note: {path} was made with other settings or data; training this fold from the start")
        return None
    return state


@contextlib.contextmanager
def fold_lock(path: Path) -> Iterator[None]:
    """Hold `<checkpoint>.lock` beside the checkpoint `path` for the body: one process trains a fold at a time.

    Two `dvc repro` (or a stage left running by a killed one, and its rerun) would otherwise train
    the same fold side by side and write one checkpoint in turns. The lock is an flock, so the
    kernel releases it when its holder exits, however it ends (SIGKILL included); the file stays.
    A fold already locked is a TrainingError naming the holder's process id.
    """
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:   # a file where the fold's folder should be, a folder that cannot be written
        blocker = next((p for p in (lock.parent, *lock.parent.parents) if p.exists() and not p.is_dir()), None)
        raise TrainingError(f"{blocker or lock.parent}: " + ("a file where the fold's checkpoint folder should be; "
                            "move or delete it" if blocker else f"the fold's checkpoints cannot be written there "
                            f"({e.strerror or e}); make it writable") + ", then run again") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise TrainingError(f"{path.parent}: this fold is being trained by another process (pid {holder}, holding "
                                f"{lock}); wait for it to finish, or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the lock


def cpu_copy(obj: Any) -> Any:
    """Deep copy of a state dict (or nested structure) with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


class BackgroundSaver:
    """Writes checkpoints in a thread so the next epoch trains while the file is written.

    The caller hands over a CPU copy of the state (`cpu_copy`); a second save waits for the first.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: Path, state: dict[str, Any]) -> None:
        """Start writing `state` to `path` atomically."""
        self.wait()

        def work() -> None:
            try:
                save(path, state)
            except BaseException as e:  # surfaced by wait(), in the training thread
                self._error = e

        self._thread = threading.Thread(target=work, daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the last save is on disk; re-raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err
