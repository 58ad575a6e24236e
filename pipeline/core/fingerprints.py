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

from pipeline.core.errors import PipelineError

SHORT = 16   # hex digits kept where a fingerprint is stored in every row of a table
ROOT = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("pipeline", "models")


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


def declared_code(stage: str, root: Path = ROOT) -> list[str]:
    """The code files (repo-relative, sorted) that dvc.yaml declares as `stage`'s deps, a package
    directory standing for its modules. tests/test_layout.py keeps them equal to what the stage
    imports (pipeline/codedeps.py), so hashing them covers the code the stage runs."""
    import yaml

    dvc_yaml = root / "dvc.yaml"
    try:
        deps = yaml.safe_load(dvc_yaml.read_text())["stages"][stage]["deps"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise PipelineError(f"{dvc_yaml}: cannot read stage {stage!r}'s deps ({type(e).__name__}: {e}); the stage "
                            f"runs from a checkout of the project, dvc.yaml beside pipeline/") from None
    files = set()
    for dep in deps:
        dep = next(iter(dep)) if isinstance(dep, dict) else str(dep)
        if dep.split("/")[0] not in CODE_PACKAGES:
            continue
        path = root / dep
        if path.is_dir():
            files.update(p.relative_to(root).as_posix() for p in path.glob("*.py"))
        else:
            files.add(dep)
    return sorted(files)
