"""Fingerprints: short digests that tie every output to the inputs it was made from.

A stage that reads another's output checks the fingerprint it carries against the input as it
is now, and stops with what to rerun when they differ: folds made for another cohort, a checkpoint
made with other settings or code, runs trained on other folds. A stale input is then an error,
never a silently wrong result.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

SHORT = 16   # hex digits kept where a fingerprint is stored in every row of a table


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest(obj: Any) -> str:
    """A stable sha256 of a JSON-serialisable object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def cohort(manifest: pd.DataFrame) -> str:
    """Fingerprint of a cohort as folds see it: each image's id, patient, diagnosis and file digest.

    The split stage stamps it on every row of the folds; the train stage recomputes it from
    data/processed/manifest.csv, so folds made before the cohort changed are refused.
    """
    columns = ["image_id", "patient_id", "diagnosis", "sha256"]
    rows = manifest[columns].astype(str).to_numpy().tolist()
    return digest(rows)[:SHORT]
