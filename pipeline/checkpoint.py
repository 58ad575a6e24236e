"""Training checkpoints that survive `dvc repro` and any kill, and refuse to be misused.

A checkpoint lives in checkpoints/<model>/<protocol>/fold-<k>/last.pt, outside the stage's DVC
outputs (DVC deletes outputs before it reruns a stage). It is written atomically at the end of
every epoch, so a run killed at any moment, SIGKILL included, finds the last complete epoch.
It is read with `weights_only=True`: a corrupt or hostile file is refused, never unpickled.
It carries a fingerprint of everything that decides the training (params, data, split, code
version of the step), and is used only when the fingerprint matches.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from pipeline.atomic import atomic_torch_save
from pipeline.errors import TrainingError

ROOT = Path("checkpoints")
FORMAT = 1  # bump when the checkpoint layout or the training step changes meaning


def path_for(model: str, protocol: str, fold: int) -> Path:
    """Where the checkpoint of one training run lives."""
    return ROOT / model / protocol / f"fold-{fold}" / "last.pt"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(config: dict[str, Any]) -> str:
    """A stable digest of the training configuration (JSON-serialisable mapping)."""
    blob = json.dumps({"format": FORMAT, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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
