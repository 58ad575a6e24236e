"""The train stage on tiny cohorts: outputs, learning, determinism, resume after SIGKILL, failures."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline import train
from pipeline.core import layout
from pipeline.core.errors import TrainingError
from pipeline.core.params import from_dict
from pipeline.training import checkpoint
from builders import write_cohort

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cohort(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path)
    return tmp_path


def read_outputs(root: Path) -> dict:
    out = root / "runs/S1/stanet/patient/fold-1"
    return {"predictions": (out / "predictions.csv").read_bytes(), "history": pd.read_csv(out / "history.csv"),
            "metrics": json.loads((out / "metrics.json").read_text())}


def test_tiny_cohort_writes_every_output(cohort):
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    out = cohort / "runs/S1/stanet/patient/fold-1"
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "metrics.json", "predictions.csv", "validation.csv",
                                                     "weights.pt"]
    state = torch.load(out / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == layout.HISTORY_COLUMNS and list(history["epoch"]) == [1, 2, 3]
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["image_id", "patient_id", "label", "predicted", "prob_normal", "prob_myositis"]
    assert np.allclose(pred[["prob_normal", "prob_myositis"]].sum(axis=1), 1, atol=1e-5)
    splits = pd.read_csv(cohort / "data/splits/S1.csv")
    test_ids = splits.query("protocol == 'patient' and fold == 1 and part == 'test'")["image_id"]
    assert sorted(pred["image_id"]) == sorted(test_ids)
    # the validation part's predictions under the same weights, for the operating point: its images, no test image
    val = pd.read_csv(out / "validation.csv")
    assert list(val.columns) == list(pred.columns)
    val_ids = splits.query("protocol == 'patient' and fold == 1 and part == 'val'")["image_id"]
    assert sorted(val["image_id"]) == sorted(val_ids) and not set(val["image_id"]) & set(test_ids)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == len(pred) and metrics["pretrained"] is False
    # no test metric: those are evaluate's, from predictions.csv, so adding one retrains nothing
    from pipeline.evaluation.metrics import SUMMARY_METRICS
    assert not {m.key for m in SUMMARY_METRICS} & set(metrics) and "per_class" not in metrics
    assert metrics["val_balanced_accuracy"] == pytest.approx(history["val_balanced_accuracy"].max())
    assert 1 <= metrics["best_epoch"] <= 3


def test_the_loop_really_learns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path, patients=16, per_side=2, separation=80, train_cfg={"epochs": 6})
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    pred = pd.read_csv(tmp_path / "runs/S1/stanet/patient/fold-1/predictions.csv")   # what evaluate scores
    assert (pred["label"] == pred["predicted"]).mean() >= 0.95


def test_same_seed_same_predictions(cohort, tmp_path_factory):
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    first = read_outputs(cohort)
    other = tmp_path_factory.mktemp("again")
    os.chdir(other)
    write_cohort(other)
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    assert read_outputs(other)["predictions"] == first["predictions"]


def test_finished_fold_is_not_retrained_and_resume_matches(cohort, capsys):
    args = ["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]
    assert train.main(args) == 0
    first = read_outputs(cohort)
    ckpt = layout.checkpoint_path("S1", "stanet", "patient", 1)
    state = torch.load(ckpt, weights_only=True)
    assert state["finished"] and state["optimizer"] is None
    # one copy of the weights, the selected epoch's (the outputs are written from it), not the last epoch's too
    assert state["model"] is None and all(
        torch.equal(v, state["best"]["state"][k]) for k, v in
        torch.load(cohort / "runs/S1/stanet/patient/fold-1/weights.pt", weights_only=True).items())
    capsys.readouterr()
    assert train.main(args) == 0
    assert "finished earlier" in capsys.readouterr().out
    assert read_outputs(cohort)["predictions"] == first["predictions"]


def test_changed_params_do_not_reuse_a_checkpoint(cohort, capsys):
    args = ["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]
    assert train.main(args) == 0
    raw = yaml.safe_load((cohort / "params.yaml").read_text())
    raw["train"]["optim"]["lr"] = 0.001
    (cohort / "params.yaml").write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "other settings" in out and "epoch 1/3" in out


def test_corrupt_checkpoint_is_refused(cohort):
    ckpt = layout.checkpoint_path("S1", "stanet", "patient", 1)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(TrainingError, match="corrupt or truncated checkpoint, refused"):
        train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"])
    assert not (cohort / "runs").exists()


def test_truncated_checkpoint_is_refused(cohort):
    args = ["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]
    assert train.main(args) == 0
    ckpt = layout.checkpoint_path("S1", "stanet", "patient", 1)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrainingError, match=str(ckpt)):
        train.main(args)


def test_non_finite_loss_names_model_protocol_fold_epoch_and_step(cohort, monkeypatch):
    real = train.make_step

    def poisoned(*a, **k):
        step, calls = real(*a, **k), [0]

        def wrapper(x, y):
            calls[0] += 1
            loss = step(x, y)
            return loss * float("nan") if calls[0] == 2 else loss
        return wrapper

    monkeypatch.setattr(train, "make_step", poisoned)
    with pytest.raises(TrainingError, match=r"model stanet, protocol patient, fold 1, epoch 1, step 2"):
        train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"])


def test_unknown_fold_or_model_is_refused(cohort):
    from pipeline.core.errors import DataError

    with pytest.raises(DataError, match=r"--fold 7 is not in train.folds \[1, 2\]"):
        train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "7"])
    with pytest.raises(DataError, match="--model 'resnet18' is not in train.models"):
        train.main(["--scenario", "S1", "--model", "resnet18", "--protocol", "patient", "--fold", "1"])


def _train_cmd() -> list[str]:
    return [sys.executable, "-m", "pipeline.train", "--scenario", "S1", "--model", "stanet", "--protocol", "image",
            "--fold", "2"]


@pytest.mark.slow   # tens of seconds (issue 31: the fast tier stays under three minutes)
def test_sigkill_mid_run_then_resume_gives_identical_predictions(tmp_path):
    cfg = {"epochs": 4}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for root in (ref, killed):
        root.mkdir()
        write_cohort(root, patients=12, per_side=1, train_cfg=cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(_train_cmd(), cwd=ref, env=env, check=True, capture_output=True)

    proc = subprocess.Popen(_train_cmd(), cwd=killed, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # kill as soon as the second epoch's line is printed: mid-way through the run, possibly mid-save
    for line in proc.stdout:
        if "epoch 2/4" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "runs").exists()
    resumed = subprocess.run(_train_cmd(), cwd=killed, env=env, check=True, capture_output=True, text=True)
    assert "resuming after epoch" in resumed.stdout
    a = ref / "runs/S1/stanet/image/fold-2"
    b = killed / "runs/S1/stanet/image/fold-2"
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"))


def test_out_of_memory_names_model_and_batch_size_and_what_to_lower(cohort, monkeypatch):
    def exhausted(*a, **k):
        def step(x, y):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return step

    monkeypatch.setattr(train, "make_step", exhausted)
    with pytest.raises(TrainingError, match=r"out of memory training stanet \(patient, fold 1\) at batch size 16.*"
                                            r"train.overrides.stanet.batch_size"):
        train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"])


def test_changed_training_code_does_not_reuse_a_checkpoint(cohort, capsys, monkeypatch):
    args = ["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]
    assert train.main(args) == 0
    monkeypatch.setattr(train, "code_digest", lambda: "another version of the training code")
    capsys.readouterr()
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "other settings" in out and "finished earlier" not in out


def test_a_stage_trains_every_fold_and_each_matches_its_fold_trained_alone(cohort, tmp_path_factory):
    """The DVC stage trains train.folds in one process; each fold is seeded afresh, so its predictions
    equal those of the fold trained alone."""
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "image"]) == 0
    both = {k: (cohort / f"runs/S1/stanet/image/fold-{k}/predictions.csv").read_bytes() for k in (1, 2)}
    alone = tmp_path_factory.mktemp("alone")
    os.chdir(alone)
    write_cohort(alone)
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "image", "--fold", "2"]) == 0
    assert (alone / "runs/S1/stanet/image/fold-2/predictions.csv").read_bytes() == both[2]
    assert not (alone / "runs/S1/stanet/image/fold-1").exists()


def test_unknown_scenario_is_refused(cohort):
    from pipeline.core.errors import DataError

    with pytest.raises(DataError, match=r"--scenario 'S4' is not in split.scenarios \['S1'\]"):
        train.main(["--scenario", "S4", "--model", "stanet", "--protocol", "patient"])


def test_max_steps_per_epoch_caps_the_steps_and_the_schedule_and_is_part_of_the_fingerprint(cohort, capsys):
    """train.max_steps_per_epoch: 1 takes one optimizer step per epoch (the budget says so, the cosine
    schedule spans the steps taken), and a checkpoint made without the cap is not reused with it."""
    args = ["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]
    assert train.main(args) == 0
    full = read_outputs(cohort)["metrics"]["optimizer_steps"]
    raw = yaml.safe_load((cohort / "params.yaml").read_text())
    raw["train"]["max_steps_per_epoch"] = 1
    (cohort / "params.yaml").write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert train.main(args) == 0
    assert "other settings" in capsys.readouterr().out     # retrained, not the uncapped checkpoint
    outputs = read_outputs(cohort)
    assert full > 3 and outputs["metrics"]["optimizer_steps"] == 3       # 3 epochs of one step
    assert outputs["history"]["lr"].iloc[-1] < outputs["history"]["lr"].iloc[0]   # the schedule ran its course


def test_max_steps_per_epoch_is_validated_at_load():
    from pipeline.core.params import ParamsError

    with pytest.raises(ParamsError, match=r"train.max_steps_per_epoch: -1 is not accepted; expected an integer in 0"):
        from_dict({"train": {"max_steps_per_epoch": -1}})
