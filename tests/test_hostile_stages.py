"""Hardening beyond the input corpus: no silent wrong result, no traceback, nothing lost.

Each test is one failure a red-team pass found (issue 16), reproduced on a small folder-source
project that runs prepare, split and train in-process or as the stage commands:

- a repeated fold in train.folds (DVC dropped the duplicate; evaluate counted one fold twice);
- patient ids `NA`, `None`, `NULL`, `007` (pandas read them as missing or as numbers);
- prepare rerun on a changed cohort without split (train trained on mislabelled folds);
- splits remade after training (evaluate summarised runs of other folds);
- an unknown model, a ViT at 32 px, dual_vgg at 16 px (a ValueError, an AssertionError, a RuntimeError);
- a full disk and a read-only runs/ (a torch enforce-fail message; the error only after training);
- `train.optim.lr: 2e-5` as DVC writes it (refused as "not a number");
- a killed prepare's temporary directory (left behind for good);
- a killed evaluate (metrics.json and per_fold.csv from two different runs, read together).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline import evaluate, prepare, report, split, train
from pipeline.core import atomic, layout
from pipeline.core.errors import DataError, PipelineError
from pipeline.core.params import ParamsError, from_dict
from fixture_runs import write_fixture
from builders import IDS, write_project

ROOT = Path(__file__).resolve().parents[1]


def stage(module, *args: str) -> int:
    return module.main(list(args))


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path)
    assert stage(prepare) == 0 and stage(split) == 0
    return tmp_path


def run_module(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


# --- silent wrong results -------------------------------------------------------------------------

def test_a_repeated_fold_is_refused_at_load():
    with pytest.raises(ParamsError, match=r"train.folds: \[1, 1\] is not accepted; expected a list of distinct"):
        from_dict({"train": {"folds": [1, 1]}})
    with pytest.raises(ParamsError, match="distinct"):
        from_dict({"split": {"folds": 3}, "train": {"folds": [3, 1, 3]}})


def test_patient_ids_are_kept_exactly_as_written_through_every_stage(project):
    manifest = pd.read_csv(layout.MANIFEST, dtype=str, keep_default_na=False)
    assert sorted(manifest["patient_id"].unique()) == sorted(IDS)
    splits = pd.read_csv(layout.splits_path("S1"), dtype=str, keep_default_na=False)
    assert sorted(splits["patient_id"].unique()) == sorted(IDS)
    assert stage(train, "--scenario", "S1", "--model", "stanet", "--protocol", "patient") == 0
    assert stage(train, "--scenario", "S1", "--model", "stanet", "--protocol", "image") == 0
    tested = set()
    for fold in (1, 2):
        pred = pd.read_csv(layout.run_dir("S1", "stanet", "patient", fold) / layout.PREDICTIONS, dtype=str,
                           keep_default_na=False)
        assert set(pred["patient_id"]) <= set(IDS) and "" not in set(pred["patient_id"])
        tested |= set(pred["patient_id"])
    assert tested == set(IDS)      # every patient tested once, under its own id
    assert stage(evaluate) == 0
    per_fold = pd.read_csv(layout.PER_FOLD)
    # 8 patients in 2 patient folds: 4 each; ids read as missing would have merged several into one
    assert per_fold.loc[per_fold["protocol"] == "patient", "n_patients"].tolist() == [4, 4]


@pytest.mark.parametrize("change", ["diagnosis", "one image more", "one image fewer"])
def test_prepare_again_without_split_stops_train(project, change):
    manifest = (project / "data/raw/manifest.csv").read_text().splitlines()
    if change == "diagnosis":
        manifest = [line.replace(",N,", ",IBM,", 1) if line.startswith("p0_") else line for line in manifest]
    elif change == "one image more":
        shutil.copy(project / "data/raw/p1_0.png", project / "data/raw/extra.png")
        img = np.asarray(Image.open(project / "data/raw/extra.png"))
        Image.fromarray(np.flipud(img).copy()).save(project / "data/raw/extra.png")    # not a byte copy
        manifest.append("extra.png,P5,PM,T,L")
    else:
        manifest = manifest[:-1]
    (project / "data/raw/manifest.csv").write_text("\n".join(manifest) + "\n")
    assert stage(prepare) == 0                  # the cohort changed; split did not run again
    with pytest.raises(DataError) as e:
        stage(train, "--scenario", "S1", "--model", "stanet", "--protocol", "patient")
    assert "data/splits/S1.csv: these folds were made from cohort" in str(e.value)
    assert "dvc repro split" in str(e.value)
    assert not layout.stage_dir("S1", "stanet", "patient").exists()


def test_runs_of_other_folds_are_refused_by_evaluate(project):
    for protocol in ("patient", "image"):
        assert stage(train, "--scenario", "S1", "--model", "stanet", "--protocol", protocol) == 0
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["seed"] = 7                               # other folds, same cohort
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert stage(split) == 0
    with pytest.raises(DataError, match=r"were trained on folds \w+, but data/splits/S1.csv now holds folds"):
        stage(evaluate)


# --- a sentence, not a traceback ------------------------------------------------------------------

@pytest.mark.parametrize("model, size, message", [
    ("resnt18", 32, "unknown model 'resnt18' (close matches: ['resnet18'"),
    ("vit_base_patch16_224", 32, "model 'vit_base_patch16_224' cannot take 1x32x32 input"),
    ("dual_vgg", 16, "model 'dual_vgg' cannot take 1x16x16 input"),
])
@pytest.mark.slow   # tens of seconds (issue 31: the fast tier stays under three minutes)
def test_a_model_that_cannot_run_is_refused_before_any_work(tmp_path, model, size, message):
    write_project(tmp_path, size=size, models=(model,))   # no prepare or split: the refusal needs no data
    for cmd in (("pipeline.train", "--scenario", "S1", "--model", model, "--protocol", "patient"),
                ("pipeline.profile", "--model", model)):
        done = run_module(tmp_path, *cmd)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "train.models" in done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports/complexity").exists()
    if model == "dual_vgg":
        assert "it does take 32" in done.stderr        # says what would work


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False):
    """A small tmpfs at `path` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the disk-full and read-only cases need one")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_full_disk_names_the_path_the_space_and_keeps_the_earlier_output(tmp_path):
    with tmpfs(tmp_path / "small", "256k") as small:
        target = small / "weights.pt"
        atomic.atomic_write_bytes(target, b"earlier")
        with pytest.raises(atomic.WriteError) as e:
            atomic.atomic_write_bytes(target, b"x" * 400_000)
        msg = str(e.value)
        assert str(target) in msg and "no space left" in msg and "it needs 400,000 bytes" in msg
        assert "free there" in msg and "nothing earlier was lost" in msg
        assert target.read_bytes() == b"earlier"
        assert [p.name for p in small.iterdir()] == ["weights.pt"]     # no temporary file left
        import torch

        with pytest.raises(atomic.WriteError, match="weights.pt: cannot write: no space left"):
            atomic.atomic_torch_save(target, {"w": torch.zeros(200_000)})
        assert target.read_bytes() == b"earlier"


def test_a_full_disk_during_a_stage_exits_2_with_a_sentence(project, tmp_path):
    with tmpfs(tmp_path / "full", "64k") as full:
        shutil.rmtree(project / "runs", ignore_errors=True)
        (project / "runs").symlink_to(full)
        done = run_module(project, "pipeline.train", "--scenario", "S1", "--model", "stanet", "--protocol", "image")
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "cannot write: no space left" in done.stderr and "nothing earlier was lost" in done.stderr


def test_a_read_only_runs_directory_is_refused_before_training(project, tmp_path):
    with tmpfs(tmp_path / "ro", "64k", readonly=True) as ro:
        (project / "runs").symlink_to(ro)
        done = run_module(project, "pipeline.train", "--scenario", "S1", "--model", "stanet", "--protocol", "patient")
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "runs/S1/stanet/patient: outputs cannot be written there" in done.stderr
        assert "nothing was computed" in done.stderr and "epoch 1/1" not in done.stdout


# --- refusing good input --------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("2e-5", 2e-5), ("1E-3", 1e-3), (".5", 0.5), ("3", 3.0)])
def test_a_learning_rate_written_as_dvc_writes_it_is_accepted(text, value):
    raw = yaml.safe_load(f"train: {{optim: {{lr: {text}}}}}")
    assert from_dict(raw).train.optim.lr == pytest.approx(value)


@pytest.mark.parametrize("text", ["fast", "2e-5x", ".nan", "inf"])
def test_a_learning_rate_that_is_no_number_is_refused(text):
    with pytest.raises(ParamsError, match="train.optim.lr"):
        from_dict(yaml.safe_load(f"train: {{optim: {{lr: '{text}'}}}}"))


# --- nothing left behind, nothing mixed -----------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_killed_prepares_temporary_directory_is_removed_by_the_next_run(project):
    dead = project / "data" / f".processed.{_dead_pid()}.{uuid.uuid4().hex[:8]}.tmp"
    dead.mkdir()
    (dead / "images.npy").write_bytes(b"\0" * 10_000)
    old = project / "data" / f".processed.old.{_dead_pid()}"
    old.mkdir()
    alive = project / "data" / f".processed.{os.getppid()}.{uuid.uuid4().hex[:8]}.tmp"   # a running process's
    alive.mkdir()
    assert stage(prepare) == 0
    assert not dead.exists() and not old.exists() and alive.exists()


def test_outputs_written_together_are_replaced_together(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(RuntimeError):
        with atomic.atomic_outputs() as out:
            out.path(a).write_text("new a")
            raise RuntimeError("killed half way")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    with atomic.atomic_outputs() as out:
        out.path(a).write_text("new a")
        out.path(b).write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_metrics_and_per_fold_of_different_evaluate_runs_are_refused(tmp_path):
    root = write_fixture(tmp_path, models=("stanet", "resnet18"), protocols=("patient", "image"), folds=2)
    args = ["--params", str(root / "params.yaml"), "--runs", str(root / "runs")]
    assert evaluate.main([*args, "--out-dir", str(root / "reports")]) == 0
    assert report.main([*args, "--reports", str(root / "reports"),
                        "--manifest", str(root / "data/processed/manifest.csv")]) == 0
    # another evaluate run's per_fold.csv next to this metrics.json, as a kill between two renames would leave
    other = pd.read_csv(root / "reports/per_fold.csv")
    other.loc[0, "accuracy"] = 0.123
    other.to_csv(root / "reports/per_fold.csv", index=False)
    with pytest.raises(DataError, match="per_fold.csv was not written with .*metrics.json .* different evaluate runs"):
        report.main([*args, "--reports", str(root / "reports"),
                        "--manifest", str(root / "data/processed/manifest.csv")])
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert len(metrics["meta"]["per_fold_sha256"]) == 64


def test_every_stage_error_is_a_pipeline_error():
    assert issubclass(atomic.WriteError, PipelineError) and issubclass(ParamsError, PipelineError)
