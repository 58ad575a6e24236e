"""Where the pipeline's files live and what their columns are called: the one home of the layout.

Every stage takes its paths from here, and dvc.yaml names the same paths (tests/test_layout.py
keeps the two in step). A run of the train stage owns one directory, `run_dir(...)`, holding
`RUN_FILES`; its checkpoint lives outside DVC's outputs, at `checkpoint_path(...)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

# prepare
PROCESSED_DIR = Path("data/processed")
IMAGES = PROCESSED_DIR / "images.npy"
MANIFEST = PROCESSED_DIR / "manifest.csv"
# split
SPLITS = Path("data/splits.csv")
SPLIT_SUMMARY = Path("reports/split_summary.md")
# train
RUNS = Path("runs")
CHECKPOINTS = Path("checkpoints")     # outside DVC's outputs: DVC deletes outputs before a stage reruns
WEIGHTS, HISTORY, PREDICTIONS, RUN_METRICS = "weights.pt", "history.csv", "predictions.csv", "metrics.json"
RUN_FILES = (WEIGHTS, HISTORY, PREDICTIONS, RUN_METRICS)
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"]
PREDICTION_COLUMNS = ["image_id", "patient_id", "label", "predicted"]   # then prob_columns(classes)
# profile, evaluate, report
REPORTS = Path("reports")
COMPLEXITY_DIR = REPORTS / "complexity"
FIGURES_DIR = REPORTS / "figures"
METRICS = REPORTS / "metrics.json"
PER_FOLD = REPORTS / "per_fold.csv"


def run_dir(model: str, protocol: str, fold: int, runs: str | Path = RUNS) -> Path:
    """The directory one training run writes: runs/<model>/<protocol>/fold-<k>."""
    return Path(runs) / model / protocol / f"fold-{fold}"


def checkpoint_path(model: str, protocol: str, fold: int, root: str | Path = CHECKPOINTS) -> Path:
    """Where the checkpoint of one training run lives (see pipeline/checkpoint.py)."""
    return Path(root) / model / protocol / f"fold-{fold}" / "last.pt"


def train_command(model: str, protocol: str, fold: int) -> str:
    """The command that (re)makes one run; dvc.yaml's train stage runs the same."""
    return f"python -m pipeline.train --model {model} --protocol {protocol} --fold {fold}"


def complexity_path(model: str, directory: str | Path = COMPLEXITY_DIR) -> Path:
    """reports/complexity/<model>.json, written by the profile stage."""
    return Path(directory) / f"{model}.json"


def profile_command(model: str) -> str:
    """The command that (re)makes one model's complexity record."""
    return f"python -m pipeline.profile --model {model}"


def prob_columns(class_names: Sequence[str]) -> list[str]:
    """Names of the per-class probability columns of predictions.csv, in label order."""
    return [f"prob_{c}" for c in class_names]
