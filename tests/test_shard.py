"""The train matrix over several workers: shards that cover it, balanced by cost, and a real round trip
through a DVC remote's run cache (two workers train, a third checkout assembles without training)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline import shard
from pipeline.core import layout
from pipeline.core.params import from_dict
from projects import assemble, run

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["stanet", "dual_vgg", "resnet18", "mobilenetv3_small_100", "efficientnet_b0"]


def matrix_params(scenarios=("S1", "S2", "S3", "S4"), models=MODELS, overrides=None):
    return from_dict({"data": {"image_size": 32},     # the size write_complexity records by default
                      "split": {"scenarios": list(scenarios), "protocols": ["patient", "image"], "folds": 3},
                      "train": {"models": list(models), "folds": [1, 2, 3], "epochs": 4,
                                "overrides": overrides or {}},
                      "evaluate": {"reference_model": models[0]}})


def write_complexity(root: Path, macs: dict[str, int], side: int = 32) -> None:
    for model, m in macs.items():
        path = root / layout.complexity_path(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"training_setting": {"input": [1, side, side], "macs": m},
                                    "paper_setting": {"input": [3, 224, 224], "macs": m * 49}}))


@pytest.fixture
def profiled(tmp_path, monkeypatch):
    """A working directory with complexity records in the proportions of the committed ones."""
    monkeypatch.chdir(tmp_path)
    write_complexity(tmp_path, {"stanet": 1_812_736, "dual_vgg": 710_674_944, "resnet18": 35_407_872,
                                "mobilenetv3_small_100": 2_089_024, "efficientnet_b0": 8_319_712})
    return tmp_path


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 16, 40])
def test_the_shards_cover_every_train_stage_exactly_once(profiled, count):
    params = matrix_params()
    every = [layout.train_stage(s, m, p) for s in params.split.scenarios for m in params.train.models
             for p in params.split.protocols]
    assert len(every) == 40
    got = [target for i in range(count) for target in shard.shard(params, i, count)]
    assert Counter(got) == Counter(every)
    assert all(shard.shard(params, i, count) for i in range(count))   # no worker is left without a target


def test_the_expensive_stages_land_on_different_workers(profiled):
    params = matrix_params(scenarios=["S1"], overrides={"dual_vgg": {"epochs": 1}})
    for count in (2, 3, 4):
        shards = [shard.shard(params, i, count) for i in range(count)]
        holding = [i for i, targets in enumerate(shards) if any("-dual_vgg-" in t for t in targets)]
        assert len(holding) == 2, shards      # the two dual_vgg stages are never on one worker
    costs = {s.name: s.cost for s in shard.train_stages(params)}
    loads = [sum(costs[t] for t in shard.shard(params, i, 2)) for i in range(2)]
    assert max(loads) / min(loads) < 1.01   # S1: the two protocols cost the same, so the halves are even


def test_cost_is_macs_times_epochs_times_folds(profiled):
    params = matrix_params(scenarios=["S1"], overrides={"dual_vgg": {"epochs": 1}})
    costs = {s.name: s.cost for s in shard.train_stages(params)}
    assert costs["train@S1-stanet-patient"] == 1_812_736 * 4 * 3
    assert costs["train@S1-dual_vgg-image"] == 710_674_944 * 1 * 3


def test_a_record_for_another_input_size_is_scaled_by_pixels(profiled):
    params = from_dict({"data": {"image_size": 64}, "train": {"models": ["stanet"], "folds": [1], "epochs": 1},
                        "evaluate": {"reference_model": "stanet"}})
    assert shard.macs_per_image("stanet", params) == pytest.approx(1_812_736 * 49 * 64 * 64 / (224 * 224))


def test_a_model_without_a_record_counts_as_the_costliest(profiled, capsys):
    (profiled / layout.complexity_path("resnet18")).unlink()
    params = matrix_params(scenarios=["S1"])
    costs = {s.name: s.cost for s in shard.train_stages(params)}
    assert costs["train@S1-resnet18-patient"] == costs["train@S1-dual_vgg-patient"]
    assert "reports/complexity/resnet18.json is missing" in capsys.readouterr().err


def test_the_partition_depends_only_on_params_and_count(profiled):
    params = matrix_params()
    assert [shard.shard(params, i, 6) for i in range(6)] == [shard.shard(params, i, 6) for i in range(6)]


@pytest.mark.parametrize("index, count, message", [
    (0, 41, r"--count 41 exceeds the 40 train stages .* use at most 40 workers"),
    (4, 4, r"--index 4 is not accepted with --count 4; expected 0..3"),
    (-1, 4, r"--index -1 is not accepted"),
    (0, 0, r"--count 0 is not accepted; expected a number of workers >= 1"),
])
def test_an_impossible_shard_is_refused(profiled, index, count, message):
    with pytest.raises(shard.ShardError, match=message):
        shard.shard(matrix_params(), index, count)


def test_the_command_prints_one_target_per_line(profiled):
    (profiled / "params.yaml").write_text(yaml.safe_dump({
        "split": {"scenarios": ["S1"], "protocols": ["patient", "image"]},
        "train": {"models": ["stanet", "resnet18"], "folds": [1, 2, 3]}, "evaluate": {"reference_model": "stanet"}}))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = [subprocess.run([sys.executable, "-m", "pipeline.shard", "--index", str(i), "--count", "2"], cwd=profiled,
                          env=env, capture_output=True, text=True, check=True).stdout.splitlines() for i in (0, 1)]
    assert out == [["train@S1-stanet-patient", "train@S1-resnet18-patient"],
                   ["train@S1-stanet-image", "train@S1-resnet18-image"]]
    bad = subprocess.run([sys.executable, "-m", "pipeline.shard", "--index", "0", "--count", "5"], cwd=profiled,
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and "use at most 4 workers" in bad.stderr


def _upstream_hashes(workspace: Path) -> dict:
    """The hashes of the data every train stage depends on, as the workspace's dvc.lock records them."""
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    return {d["path"]: d["md5"] for name, stage in lock.items() if name.startswith("train@")
            for d in stage["deps"] if d["path"].startswith("data/")}


@pytest.mark.slow
def test_two_workers_push_their_shards_and_a_third_checkout_assembles_them_without_training(shard_base, tmp_path):
    """The README's commands, as they are: the Slurm array task script (its environment given by hand)
    on two workers, each in a clone of its own, then `dvc repro --pull` in a third clone."""
    base, remote, env, commit = shard_base
    workdir = tmp_path / "workers"
    trained = []
    for task in (0, 1):
        slurm = {"SLURM_SUBMIT_DIR": str(base), "SLURM_ARRAY_JOB_ID": "42", "SLURM_ARRAY_TASK_ID": str(task),
                 "MYOBENCH_WORKDIR": str(workdir)}
        proc = run(["bash", "scripts/slurm_train.sbatch", "2", commit], base, {**env, **slurm})
        trained.append(re.findall(r"Running stage '(train@[^']+)'", proc.stdout))
    assert sorted(trained[0] + trained[1]) == sorted(f"train@S1-{m}-{p}" for m in ("stanet", "resnet18")
                                                      for p in ("patient", "image"))
    assert trained[0] and trained[1]
    # prepare and split are not run-cached (they write uncached reports): every checkout makes them
    # again, and must make the same bytes, or the train stages' run-cache keys would not match
    assert _upstream_hashes(workdir / "myobench-42-0") == _upstream_hashes(workdir / "myobench-42-1")

    aggregate = tmp_path / "aggregate"
    run(["git", "clone", "-q", str(base), str(aggregate)], tmp_path, env)
    proc = assemble(aggregate, env)
    assert re.findall(r"Running stage '(train@[^']+)'", proc.stdout) == []
    assert len(re.findall(r"Stage 'train@[^']+' is cached - skipping run", proc.stdout)) == 4
    assert "Running stage 'evaluate'" in proc.stdout and "Running stage 'report'" in proc.stdout
    assert (aggregate / "reports/comparison.csv").is_file()
    metrics = json.loads((aggregate / "reports/metrics.json").read_text())
    # n_folds counts the fold runs a summary pools: every trained fold of every repeat
    params = yaml.safe_load((aggregate / "params.yaml").read_text())
    runs = params["split"]["repeats"] * len(params["train"]["folds"])
    assert runs == 4   # the tiny profile's 2 folds x 2 repeats: the repeat axis goes through the shards too
    assert {metrics["S1"][m][p]["n_folds"] for m in ("stanet", "resnet18") for p in ("patient", "image")} == {runs}
