"""One fold data-parallel: ranks slice the same batches in lockstep, the gradient is the global batch's,
and two gloo processes under torchrun learn what one process learns and write one set of outputs."""
from __future__ import annotations

import json
import os
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
from pipeline.core.errors import DataError
from pipeline.training import recipe
from pipeline.training.batches import Augment, BatchStream, ImageBank
from pipeline.training.distributed import World
from builders import write_cohort

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def stream(world: World, n: int = 45, batch_size: int = 16) -> BatchStream:
    rng = np.random.default_rng(0)
    bank = ImageBank(rng.integers(0, 256, (n, 1, 16, 16), dtype=np.uint8), CPU)
    gen = torch.Generator(device=CPU)
    gen.manual_seed(7)
    return BatchStream(bank, np.arange(n), rng.integers(0, 2, n), batch_size, gen, 0.5, 0.25, Augment(), world=world)


def test_ranks_slice_the_same_batches_disjointly_and_their_generators_stay_in_step():
    single, ranks = stream(World()), [stream(World(rank=r, size=2)) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 3    # 16, 16 and 13 (split 6 + 7)
    for _epoch in range(3):
        for whole, *parts in zip(single.epoch_batches(), *(s.epoch_batches() for s in ranks)):
            x, y = whole
            assert [len(p[1]) for p in parts] in ([8, 8], [6, 7])
            assert torch.equal(torch.cat([p[0] for p in parts]), x)
            assert torch.equal(torch.cat([p[1] for p in parts]), y)
            assert all(torch.equal(p[2], y) for p in parts)   # every rank knows the global batch's labels
        state = single.generator.get_state()
        assert all(torch.equal(s.generator.get_state(), state) for s in ranks)


def test_a_batch_that_would_leave_a_rank_one_image_is_dropped_but_not_for_one_process():
    assert len(stream(World(), n=35)) == 3               # 16, 16, 3
    assert len(stream(World(rank=0, size=2), n=35)) == 2   # the 3 would split 1 + 2
    assert len(stream(World(rank=1, size=2), n=36)) == 3   # 4 splits 2 + 2


@pytest.mark.parametrize("weighted", [False, True])
def test_the_ranks_average_gradient_is_that_of_the_global_batch_mean_when_the_split_is_uneven(weighted):
    torch.manual_seed(0)
    x, y = torch.randn(7, 5), torch.tensor([0, 1, 1, 0, 2, 1, 1])
    weight = torch.tensor([0.5, 1.0, 2.0]) if weighted else None
    model = torch.nn.Linear(5, 3)

    def grad(loss):
        model.zero_grad()
        loss.backward()
        return model.weight.grad.clone()

    mean = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    summed = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1, reduction="sum")
    world_size, parts = 3, [slice(0, 2), slice(2, 4), slice(4, 7)]
    shares = [grad(summed(model(x[p]), y[p]) * (world_size / recipe.global_batch_weight(summed, y))) for p in parts]
    assert torch.allclose(torch.stack(shares).mean(0), grad(mean(model(x), y)), atol=1e-6)


def test_scenario_may_be_left_out_only_when_params_name_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path, train_cfg={"epochs": 1})
    assert train.main(["--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    metrics = json.loads((tmp_path / "runs/S1/stanet/patient/fold-1/metrics.json").read_text())
    assert metrics["scenario"] == "S1" and metrics["world_size"] == 1
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["split"]["scenarios"] = ["S1", "S3"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match=r"--scenario is required: split.scenarios lists \['S1', 'S3'\]; name one"):
        train.main(["--model", "stanet", "--protocol", "patient", "--fold", "1"])


def test_a_batch_too_small_for_the_ranks_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path)
    images, splits, _ = train.load_inputs("S1")
    with pytest.raises(DataError, match=r"batch size 16 .* leaves some of the 9 processes fewer than 2 images"):
        # refused before the process group is needed: no rank would train
        train.set_up(train.load(), "S1", "stanet", "patient", 1, images=images, splits=splits, data_digest="x",
                     world=World(rank=0, size=9))


@pytest.mark.slow   # tens of seconds (issue 31: the fast tier stays under three minutes)
def test_two_gloo_processes_learn_what_one_learns_and_write_one_set_of_outputs(tmp_path, monkeypatch):
    single, double = tmp_path / "single", tmp_path / "double"
    for root in (single, double):
        root.mkdir()
        write_cohort(root, patients=16, per_side=2, separation=80, train_cfg={"epochs": 6})
    monkeypatch.chdir(single)
    assert train.main(["--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "pipeline.train", "--model", "stanet", "--protocol", "patient", "--fold", "1"],
                          cwd=double, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, two = (json.loads((root / "runs/S1/stanet/patient/fold-1/metrics.json").read_text())
                for root in (single, double))
    assert one["world_size"] == 1 and two["world_size"] == 2
    # the test accuracy is evaluate's, from predictions.csv (a run's metrics.json holds what train knows)
    acc1, acc2 = (pd.read_csv(root / "runs/S1/stanet/patient/fold-1/predictions.csv").eval("label == predicted").mean()
                  for root in (single, double))
    assert acc1 >= 0.9 and abs(acc2 - acc1) <= 0.05, (acc1, acc2)
    written = sorted(p.relative_to(double).as_posix() for p in (double / "runs").rglob("*") if p.is_file())
    assert written == sorted(f"runs/S1/stanet/patient/fold-1/{f}" for f in layout.RUN_FILES)   # once each
    assert proc.stdout.count("validation balanced accuracy") == 1 and proc.stdout.count("epoch 6/6:") == 1   # rank 0 alone speaks
    assert len(list((double / "checkpoints").rglob("*.pt"))) == 1
