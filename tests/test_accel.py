"""The CUDA code path's switch (pipeline/training/accel.py) and its CPU-runnable equivalents.

On a CPU, MYOBENCH_CUDA_PATH_ON_CPU=1 gives training the settings CUDA gets: bfloat16 autocast,
channels_last, the fused optimizer kernels and (when train.compile asks) torch.compile. What stays
untested without a GPU: the CUDA kernels themselves, cuDNN, CUDA RNG state in checkpoints, NCCL,
memory limits.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline import train
from pipeline.core.params import OptimParams
from pipeline.training import accel, recipe
from pipeline.training.batches import ImageBank
from builders import write_cohort

CPU, CUDA = torch.device("cpu"), torch.device("cuda")   # a device object needs no GPU


def test_the_switch_gives_cuda_its_path_and_a_cpu_float32(monkeypatch):
    monkeypatch.delenv(accel.CUDA_PATH_ON_CPU, raising=False)
    plain = accel.for_device(CPU, compile_requested=True)
    assert plain.autocast_dtype is None and not plain.channels_last and not plain.fused_optimizer
    assert not plain.compile    # torch.compile is the CUDA path's only
    gpu = accel.for_device(CUDA, compile_requested=True)
    assert gpu.autocast_dtype == torch.bfloat16 and gpu.channels_last and gpu.fused_optimizer and gpu.compile
    assert not gpu.forced and accel.for_device(CUDA).compile is False
    monkeypatch.setenv(accel.CUDA_PATH_ON_CPU, "1")
    forced = accel.for_device(CPU, compile_requested=False)
    assert forced == accel.Accel(torch.bfloat16, True, True, False, forced=True)
    assert forced.describe() == {"autocast": "bfloat16", "channels_last": True, "fused_optimizer": True,
                                 "compile": False, "cuda_path_on_cpu": True}


def _tiny_step(device_settings_forced: bool, monkeypatch):
    if device_settings_forced:
        monkeypatch.setenv(accel.CUDA_PATH_ON_CPU, "1")
    else:
        monkeypatch.delenv(accel.CUDA_PATH_ON_CPU, raising=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    acc = accel.for_device(CPU)
    if acc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, sched = recipe.make_optimizer(model, OptimParams(optimizer="adamw", lr=0.01), 10, 1, CPU)
    step = recipe.make_step(model, opt, sched, torch.nn.CrossEntropyLoss(), CPU)
    x = torch.randn(8, 1, 16, 16).contiguous(memory_format=acc.memory_format())
    y = torch.tensor([0, 1] * 4)
    return model, opt, step, x, y


@pytest.mark.parametrize("forced", [False, True])
def test_a_training_step_runs_on_either_path_on_a_cpu(forced, monkeypatch):
    model, opt, step, x, y = _tiny_step(forced, monkeypatch)
    before = [p.detach().clone() for p in model.parameters()]
    losses = [float(step(x, y)) for _ in range(3)]
    assert all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    fused = opt.param_groups[0].get("fused")
    assert bool(fused) == forced and bool(opt.param_groups[0].get("foreach")) != forced
    with accel.for_device(CPU).autocast(CPU):
        out = model(x)
    assert out.dtype == (torch.bfloat16 if forced else torch.float32)


def test_predict_under_bfloat16_autocast_gives_float32_probabilities_close_to_float32(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2))
    bank = ImageBank(np.random.default_rng(0).integers(0, 256, (10, 1, 16, 16), dtype=np.uint8), CPU)
    ids = np.arange(10)
    monkeypatch.delenv(accel.CUDA_PATH_ON_CPU, raising=False)
    plain = recipe.predict(model, bank, ids, 4, 0.5, 0.25, channels_last=False)
    monkeypatch.setenv(accel.CUDA_PATH_ON_CPU, "1")
    fast = recipe.predict(model.to(memory_format=torch.channels_last), bank, ids, 4, 0.5, 0.25, channels_last=True)
    assert fast.dtype == torch.float32 and torch.allclose(fast.sum(dim=1), torch.ones(10))
    assert torch.allclose(fast, plain, atol=0.02)   # bfloat16 keeps ~3 significant digits
    assert not torch.equal(fast, plain)             # and autocast really ran in bfloat16


def test_the_train_stage_on_the_cuda_path_on_a_cpu_records_it(tmp_path, monkeypatch):
    """The whole stage (channels_last model and batches, bf16 autocast, fused AdamW, precise BN) on a CPU."""
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path, train_cfg={"epochs": 2, "overrides": {"stanet": {"precise_bn": True}}})
    monkeypatch.setenv(accel.CUDA_PATH_ON_CPU, "1")
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    metrics = json.loads((tmp_path / "runs/S1/stanet/patient/fold-1/metrics.json").read_text())
    assert metrics["accel"] == {"autocast": "bfloat16", "channels_last": True, "fused_optimizer": True,
                                "compile": False, "cuda_path_on_cpu": True}
    assert 0 <= metrics["val_balanced_accuracy"] <= 1 and metrics["device"] == "cpu"


@pytest.mark.slow
def test_the_train_stage_compiles_on_the_cuda_path_on_a_cpu(tmp_path, monkeypatch):
    """train.compile on the CUDA path: torch.compile through inductor's CPU backend (needs a C++ compiler)."""
    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path, train_cfg={"epochs": 1, "compile": True})
    monkeypatch.setenv(accel.CUDA_PATH_ON_CPU, "1")
    assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]) == 0
    metrics = json.loads((tmp_path / "runs/S1/stanet/patient/fold-1/metrics.json").read_text())
    assert metrics["accel"]["compile"] is True and 0 <= metrics["val_balanced_accuracy"] <= 1
