"""Folds side by side (train.parallel_folds, pipeline/training/foldpool.py): the same bits as one after another,
resume after SIGKILL, a failed fold's own error, workers stopped with the stage, params checked."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline import train
from pipeline.core.params import ParamsError, from_dict
from builders import ROOT, write_cohort

PARALLEL = {"threads": 2, "parallel_folds": 2}    # two workers of one thread each
SERIAL = {"threads": 1, "parallel_folds": 1}      # the same thread per fold, one fold after another
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def stage(*extra: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.train", "--scenario", "S1", "--model", "stanet", "--protocol", "image",
            *extra]


def fold_bytes(root: Path, folds=(1, 2, 3)) -> dict[int, bytes]:
    return {k: (root / f"runs/S1/stanet/image/fold-{k}/predictions.csv").read_bytes() for k in folds}


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def gone(pids: list[int], within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory) -> Path:
    """Three folds trained one after another on one thread, in one process."""
    root = tmp_path_factory.mktemp("serial")
    write_cohort(root, train_cfg={"folds": [1, 2, 3], **SERIAL}, split_folds=3)
    subprocess.run(stage(), cwd=root, env=ENV, check=True, capture_output=True)
    return root


@pytest.mark.fresh_process   # it forks trainers from this interpreter (tests/conftest.py)
def test_folds_side_by_side_give_each_fold_the_bits_it_has_alone(serial_reference, tmp_path, monkeypatch):
    """Two workers over three folds (one worker trains two of them, the other one), in another order, give
    the bytes of one process training them one after another with the same thread per fold."""
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path, train_cfg={"folds": [1, 2, 3], **PARALLEL}, split_folds=3)
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "image",
                       "--fold", "3", "--fold", "1", "--fold", "2"]) == 0
    assert fold_bytes(tmp_path) == fold_bytes(serial_reference)
    for k in (1, 2, 3):
        side = json.loads((tmp_path / f"runs/S1/stanet/image/fold-{k}/metrics.json").read_text())
        alone = json.loads((serial_reference / f"runs/S1/stanet/image/fold-{k}/metrics.json").read_text())
        assert (side["fold_workers"], side["threads"]) == (2, 1)
        assert (alone["fold_workers"], alone["threads"]) == (1, 1)


@pytest.mark.slow   # tens of seconds (issue 31: the fast tier stays under three minutes)
def test_sigkill_of_the_stage_kills_its_workers_and_a_rerun_resumes_to_the_same_bits(serial_reference, tmp_path):
    write_cohort(tmp_path, train_cfg={"folds": [1, 2, 3], **PARALLEL}, split_folds=3)
    proc = subprocess.Popen(stage(), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    for line in proc.stdout:   # mid-way: a fold has finished its second epoch, possibly mid-save
        if "epoch 2/3" in line:
            break
    workers = children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert gone(workers), "the workers outlived the stage killed with SIGKILL"
    resumed = subprocess.run(stage(), cwd=tmp_path, env=ENV, check=True, capture_output=True, text=True)
    assert "resuming after epoch" in resumed.stdout
    assert fold_bytes(tmp_path) == fold_bytes(serial_reference)
    for k in (1, 2, 3):
        a = pd.read_csv(serial_reference / f"runs/S1/stanet/image/fold-{k}/history.csv")
        b = pd.read_csv(tmp_path / f"runs/S1/stanet/image/fold-{k}/history.csv")
        pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


def test_sigterm_stops_the_workers_and_the_stage_dies_of_it(tmp_path):
    write_cohort(tmp_path, train_cfg={"folds": [1, 2], "epochs": 20, **PARALLEL})
    proc = subprocess.Popen(stage(), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    for line in proc.stdout:
        if "epoch 1/20" in line:
            break
    workers = children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM   # pipeline/core/lifecycle.py: one line, the shell's code for it
    assert gone(workers, within=5)
    assert not (tmp_path / "runs").exists()


def test_a_failed_fold_fails_the_stage_with_its_own_one_line_error(tmp_path):
    write_cohort(tmp_path, train_cfg={"folds": [1, 2], **PARALLEL})
    splits = pd.read_csv(tmp_path / "data/splits/S1.csv")
    bad = (splits["protocol"] == "image") & (splits["fold"] == 2) & (splits["part"] == "val")
    splits[~bad].to_csv(tmp_path / "data/splits/S1.csv", index=False)
    done = subprocess.run(stage(), cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: data/splits/S1.csv: protocol 'image' fold 2 has an empty val part"]
    assert not (tmp_path / "runs/S1/stanet/image/fold-2").exists()


@pytest.mark.fresh_process   # it forks trainers from this interpreter (tests/conftest.py)
def test_a_worker_that_dies_fails_the_stage_naming_its_fold(tmp_path, monkeypatch):
    """A worker killed from outside (here: SIGKILL in its own first epoch) is named with the signal."""
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path, train_cfg={"folds": [1, 2], **PARALLEL})
    real = train.train_epochs

    def dies_on_fold_2(run, *a, **k):
        if run.fold == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(run, *a, **k)

    monkeypatch.setattr(train, "train_epochs", dies_on_fold_2)   # inherited by the forked workers
    from pipeline.core.errors import TrainingError

    with pytest.raises(TrainingError, match=r"the worker training S1/stanet/image/fold-2 died \(signal SIGKILL\)"):
        train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "image"])


@pytest.mark.parametrize("train_cfg, message", [
    ({"parallel_folds": 0}, "train.parallel_folds: 0 is not accepted; expected an integer in 1..64"),
    ({"parallel_folds": 65, "threads": 80}, "train.parallel_folds: 65"),
    ({"parallel_folds": 3, "threads": 2}, "train.parallel_folds: 3 is not accepted; expected at most train.threads (2)"),
    ({"parallel_folds": 2, "threads": 0}, "at most train.threads (0)"),
])
def test_parallel_folds_is_validated(train_cfg, message):
    with pytest.raises(ParamsError) as e:
        from_dict({"train": train_cfg})
    assert message in str(e.value)


def test_each_fold_gets_the_stage_threads_shared_by_the_workers():
    assert from_dict({"train": {"threads": 2, "parallel_folds": 2}}).train.fold_threads == 1
    assert from_dict({"train": {"threads": 5, "parallel_folds": 2}}).train.fold_threads == 2   # 4 of 5 used
    assert from_dict({"train": {"threads": 0}}).train.fold_threads == 0    # torch's default


@pytest.mark.parametrize("method", ["fork", "spawn"])   # spawn: what a CUDA stage uses
def test_the_pool_returns_results_in_job_order_and_raises_a_jobs_own_error(method):
    import math

    from pipeline.training import foldpool

    assert foldpool.run([9.0, 1.0, 4.0, 16.0, 25.0], math.sqrt, 2, method) == [3.0, 1.0, 2.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="math domain error"):
        foldpool.run([4.0, -1.0, 9.0], math.sqrt, 2, method)
    assert foldpool.start_method("cpu") == "fork" and foldpool.start_method("cuda") == "spawn"
