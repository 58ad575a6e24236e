"""Where the pipeline's files live and what their columns are called: the one home of the layout.

Every stage takes its paths from here, and dvc.yaml names the same paths (tests/test_layout.py
keeps the two in step). One train stage trains one model under one protocol of one scenario on
every fold, in one process (start-up costs more than a small fold's training): its DVC output is
`stage_dir(...)`, and each fold's run owns `run_dir(...)` inside it, holding `RUN_FILES`. A fold's
checkpoint lives outside DVC's outputs, at `checkpoint_path(...)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

# prepare
PROCESSED_DIR = Path("data/processed")
IMAGES = PROCESSED_DIR / "images.npy"
MANIFEST = PROCESSED_DIR / "manifest.csv"
# split: one file of folds per scenario, so a train stage depends only on its own scenario's folds
SPLITS_DIR = Path("data/splits")
SPLIT_SUMMARY = Path("reports/split_summary.md")
# train
RUNS = Path("runs")
CHECKPOINTS = Path("checkpoints")     # outside DVC's outputs: DVC deletes outputs before a stage reruns
WEIGHTS, HISTORY, PREDICTIONS, RUN_METRICS = "weights.pt", "history.csv", "predictions.csv", "metrics.json"
# the validation part's predictions with the selected weights: what evaluate chooses an operating point on
VALIDATION = "validation.csv"
RUN_FILES = (WEIGHTS, HISTORY, PREDICTIONS, VALIDATION, RUN_METRICS)
# a tuned run's study (tune.trials > 0), beside them: one row per trial (pipeline/training/tuning.py TRIAL_COLUMNS)
TRIALS = "trials.csv"
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "lr", "seconds"]
PREDICTION_COLUMNS = ["image_id", "patient_id", "label", "predicted"]   # then prob_columns(classes)
# profile, evaluate, report
REPORTS = Path("reports")
COMPLEXITY_DIR = REPORTS / "complexity"
FIGURES_DIR = REPORTS / "figures"
METRICS = REPORTS / "metrics.json"
PER_FOLD = REPORTS / "per_fold.csv"
# deploy: one record per scenario and model (ONNX parity, int8 accuracy, ONNX Runtime latency)
DEPLOY_DIR = REPORTS / "deploy"


def splits_path(scenario: str, directory: str | Path = SPLITS_DIR) -> Path:
    """data/splits/<scenario>.csv: every fold of every protocol of one scenario."""
    return Path(directory) / f"{scenario}.csv"


def stage_dir(scenario: str, model: str, protocol: str, runs: str | Path = RUNS) -> Path:
    """The output of one train stage: runs/<scenario>/<model>/<protocol>, one fold-<k> per fold."""
    return Path(runs) / scenario / model / protocol


def fold_name(fold: int, repeat: int = 1) -> str:
    """A fold run's name under its stage directory: fold-<k> in repeat 1 (the only one when
    split.repeats is 1), repeat-<r>/fold-<k> in the repeats after it."""
    return f"fold-{fold}" if repeat == 1 else f"repeat-{repeat}/fold-{fold}"


def fold_label(fold: int, repeat: int = 1, repeats: int = 1) -> str:
    """Words for one fold run: 'fold 2', or 'repeat 1 fold 2' when there are several repeats."""
    return f"fold {fold}" if repeats == 1 else f"repeat {repeat} fold {fold}"


def run_dir(scenario: str, model: str, protocol: str, fold: int, runs: str | Path = RUNS, repeat: int = 1) -> Path:
    """The directory one fold's training run writes: runs/<scenario>/<model>/<protocol>/<fold_name>."""
    return stage_dir(scenario, model, protocol, runs) / fold_name(fold, repeat)


def checkpoint_path(scenario: str, model: str, protocol: str, fold: int, root: str | Path = CHECKPOINTS,
                    repeat: int = 1) -> Path:
    """Where the checkpoint of one fold's training run lives (see pipeline/training/checkpoint.py)."""
    return Path(root) / scenario / model / protocol / fold_name(fold, repeat) / "last.pt"


def train_command(scenario: str, model: str, protocol: str) -> str:
    """The command that (re)makes one train stage's runs; dvc.yaml's train stage runs the same."""
    return f"python -m pipeline.train --scenario {scenario} --model {model} --protocol {protocol}"


def train_stage(scenario: str, model: str, protocol: str) -> str:
    """The DVC name of that train stage (a matrix item of dvc.yaml's `train`)."""
    return f"train@{scenario}-{model}-{protocol}"


def complexity_path(model: str, directory: str | Path = COMPLEXITY_DIR) -> Path:
    """reports/complexity/<model>.json, written by the profile stage."""
    return Path(directory) / f"{model}.json"


def profile_command(model: str) -> str:
    """The command that (re)makes one model's complexity record."""
    return f"python -m pipeline.profile --model {model}"


def deploy_path(scenario: str, model: str, directory: str | Path = DEPLOY_DIR) -> Path:
    """reports/deploy/<scenario>/<model>.json, written by the deploy stage."""
    return Path(directory) / scenario / f"{model}.json"


def deploy_command(scenario: str, model: str) -> str:
    """The command that (re)makes one deploy record; dvc.yaml's deploy stage runs the same."""
    return f"python -m pipeline.deploy --scenario {scenario} --model {model}"


def prob_columns(class_names: Sequence[str]) -> list[str]:
    """Names of the per-class probability columns of predictions.csv, in label order."""
    return [f"prob_{c}" for c in class_names]
