"""Pretrained weights the way timm users get them: through timm and the Hugging Face cache.

Tests never touch the network: HF_HUB_OFFLINE=1 (conftest.py), and stand-in weights (random
tensors of the right names and shapes) are written into a temporary cache in the hub's layout
(models--timm--<name>/snapshots/<commit>/model.safetensors, refs/main).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import models
from models import WeightsNotFoundError
from builders import vgg_stand_ins, write_hub_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, used by timm and huggingface_hub for this test."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_dual_vgg_refuses_within_seconds_offline_with_an_empty_cache(hub_cache):
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as e:
        models.create_model("dual_vgg", num_classes=2, in_chans=1, pretrained=True)
    assert time.perf_counter() - start < 10
    msg = str(e.value)
    assert "timm/vgg16.tv_in1k" in msg and str(hub_cache) in msg and "HF_HUB_OFFLINE" in msg
    assert "huggingface-cli download timm/vgg16.tv_in1k" in msg and "pretrained: false" in msg


def test_dual_vgg_starts_from_the_cached_weights_of_both_branches(hub_cache):
    stand_in = vgg_stand_ins(hub_cache)
    model = models.create_model("dual_vgg", num_classes=2, in_chans=3, pretrained=True)
    for branch, arch in ((model.vgg16, "vgg16"), (model.vgg19, "vgg19")):
        for name, tensor in branch.state_dict().items():
            torch.testing.assert_close(tensor, stand_in[arch][f"features.{name}"].float())
    # one-channel input: timm's adaptation sums the RGB kernels of the first convolution
    gray = models.create_model("dual_vgg", num_classes=2, in_chans=1, pretrained=True)
    torch.testing.assert_close(gray.vgg16[0].weight, stand_in["vgg16"]["features.0.weight"].float().sum(1, keepdim=True),
                               atol=1e-3, rtol=1e-3)      # timm sums the half-precision stand-in
    # the branches read the file's features.* alone (no pre-logits built): the very tensors timm's own load gives
    import timm
    for branch, arch in ((gray.vgg16, "vgg16"), (gray.vgg19, "vgg19")):
        theirs = timm.create_model(arch, pretrained=True, num_classes=0, in_chans=1, pretrained_strict=False).features
        for (name, mine), (_, ref) in zip(branch.state_dict().items(), theirs.state_dict().items(), strict=True):
            assert mine.dtype == ref.dtype and torch.equal(mine, ref), (arch, name)
    # the build is the seed's: the same seed, the same model; a draw before it changes the fusion head
    torch.manual_seed(7)
    first = models.create_model("dual_vgg", num_classes=2, in_chans=1, pretrained=True)
    torch.manual_seed(7)
    torch.rand(3)
    moved = models.create_model("dual_vgg", num_classes=2, in_chans=1, pretrained=True)
    assert not torch.equal(first.fc.weight, moved.fc.weight)
    torch.manual_seed(7)
    again = models.create_model("dual_vgg", num_classes=2, in_chans=1, pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    (mean,), (std,) = models.input_normalization(gray, 1)      # ImageNet's, averaged over RGB
    assert mean == pytest.approx(0.449, abs=1e-3) and std == pytest.approx(0.226, abs=1e-3)


def test_a_checkpoint_without_the_feature_tensors_is_refused(hub_cache):
    write_hub_weights(hub_cache, "timm/vgg16.tv_in1k", {"features.0.weight": torch.zeros(64, 3, 3, 3),
                                                        "features.0.bias": torch.zeros(64)})
    vgg_stand_ins(hub_cache / "other")     # vgg19 fine elsewhere; vgg16 here lacks most tensors
    with pytest.raises(Exception, match="vgg16"):
        models.create_model("dual_vgg", num_classes=2, in_chans=3, pretrained=True)


def test_any_timm_model_loads_through_timm_and_gets_a_fresh_head(hub_cache):
    import timm

    torch.manual_seed(0)
    source = timm.create_model("mobilenetv3_small_100", pretrained=False, num_classes=1000)
    write_hub_weights(hub_cache, "timm/mobilenetv3_small_100.lamb_in1k", source.state_dict())
    model = models.create_model("mobilenetv3_small_100", num_classes=2, in_chans=3, pretrained=True)
    torch.testing.assert_close(model.conv_stem.weight, source.conv_stem.weight)
    head = model.get_classifier()
    assert head.out_features == 2 and head.weight.abs().max() < 0.1 and (head.bias == 0).all()


def test_a_fresh_timm_head_starts_near_zero():
    """timm's U(+-1/sqrt(fan_out)) head gave a first-batch loss of 4-6 with two classes."""
    torch.manual_seed(0)
    for name in ("mobilenetv3_small_100", "efficientnet_b0", "resnet18"):
        head = models.create_model(name, num_classes=2, in_chans=1).get_classifier()
        assert head.weight.std() < 0.02 and (head.bias == 0).all(), name


def _project(root: Path, cache: Path) -> dict:
    from builders import write_project

    write_project(root, models=("dual_vgg",))
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["train"]["overrides"] = {"dual_vgg": {"pretrained": True, "optimizer": "adam", "lr": 2e-5}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "OMP_NUM_THREADS": "1"}
    for module in ("pipeline.prepare", "pipeline.split"):
        subprocess.run([sys.executable, "-m", module], cwd=root, env=env, check=True, capture_output=True)
    return env


@pytest.mark.slow   # tens of seconds (issue 31: the fast tier stays under three minutes)
def test_train_stage_uses_cached_weights_and_says_so(tmp_path):
    cache = tmp_path / "hub"
    vgg_stand_ins(cache)
    env = _project(tmp_path / "project", cache)
    cmd = [sys.executable, "-m", "pipeline.train", "--scenario", "S1", "--model", "dual_vgg", "--protocol", "image",
           "--fold", "1"]
    done = subprocess.run(cmd, cwd=tmp_path / "project", env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "project/runs/S1/dual_vgg/image/fold-1/metrics.json").read_text())
    assert meta["pretrained"] is True and "pretrained weights'" in meta["normalization"]
    assert meta["optimizer"] == "adam" and meta["lr"] == pytest.approx(2e-5)


def test_train_stage_refuses_within_seconds_when_the_weights_are_not_there(tmp_path):
    env = _project(tmp_path / "project", tmp_path / "empty-hub")
    cmd = [sys.executable, "-m", "pipeline.train", "--scenario", "S1", "--model", "dual_vgg", "--protocol", "image"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=tmp_path / "project", env=env, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - start < 60      # process start-up included; no waiting on a network
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "train.overrides.dual_vgg.pretrained" in done.stderr and "timm/vgg16.tv_in1k" in done.stderr
    assert not (tmp_path / "project/runs").exists()
