"""pipeline/profile.py: MACs, FLOPs and params against published figures; the stage's JSON."""
from __future__ import annotations

import json

import pytest
import timm
import torch
import yaml
from torch import nn

import models
from pipeline import profile
from pipeline.core.errors import PipelineError

# torchvision's published figures at 3x224x224, 1000 classes (GMACs as torchvision's "GFLOPS")
TORCHVISION = {
    "resnet18": (1.814, 11_689_512),
    "vgg16": (15.47, 138_357_544),
    "mobilenetv2_100": (0.301, 3_504_872),
    "mobilenetv3_small_100": (0.057, 2_542_856),   # timm's classifier is a Linear subclass thop misses
    "efficientnet_b0": (0.386, 5_288_548),
}


@pytest.mark.parametrize("name", TORCHVISION)
def test_measure_matches_torchvision(name):
    gmacs, params = TORCHVISION[name]
    result = profile.measure(timm.create_model(name, pretrained=False), (3, 224, 224))
    assert result["macs"] / 1e9 == pytest.approx(gmacs, rel=0.02)
    assert result["params"] == pytest.approx(params, rel=0.001)
    # FlopCounterMode counts conv and matmul only: 2 FLOPs per MAC, to within pooling's few ops
    assert result["flops"] == pytest.approx(2 * result["macs"], rel=0.005)


def test_depthwise_conv_counts_one_mac_per_tap():
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    result = profile.measure(dw, (8, 16, 16))
    assert result["macs"] == 16 * 16 * 8 * 9
    assert result["flops"] == 2 * result["macs"]


def test_rules_cover_subclasses_and_batch_norm_counts_zero():
    from timm.layers import BatchNormAct2d, Linear

    assert profile.measure(Linear(10, 5), (3, 2, 10))["macs"] == 3 * 2 * 10 * 5   # (3, 2, 10) -> 6 rows of 10
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    with_bn = nn.Sequential(conv, nn.BatchNorm2d(6), BatchNormAct2d(6))
    assert profile.measure(with_bn, (4, 8, 8))["macs"] == 8 * 8 * 6 * 4 * 9


def test_soft_threshold_is_counted_by_its_own_rule():
    st = models.SoftThreshold(32)
    assert profile.measure(st, (32, 7, 7))["macs"] == st.macs((1, 32, 7, 7)) > 0
    stanet, plain = models.create_model("stanet", 2, 3), models.create_model("stanet_noatt", 2, 3)
    shapes = []
    for m in stanet.modules():
        if isinstance(m, models.SoftThreshold):
            m.register_forward_hook(lambda m, inputs, output: shapes.append((m, inputs[0].shape)))
    with torch.no_grad():
        stanet.eval()(torch.randn(1, 3, 224, 224))
    assert len(shapes) == 4
    own = sum(m.macs(shape) for m, shape in shapes)
    assert profile.measure(stanet)["macs"] - profile.measure(plain)["macs"] == own


def test_measure_leaves_no_thop_state_behind():
    model = models.create_model("stanet", 2, 3)
    keys = set(model.state_dict())
    profile.measure(model)
    assert set(model.state_dict()) == keys
    assert not any(hasattr(m, "total_ops") or hasattr(m, "total_params") for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_stanet_costs_a_quarter_percent_of_dual_vgg():
    stanet = profile.measure(models.create_model("stanet", 2, 3))
    dual_vgg = profile.measure(models.create_model("dual_vgg", 2, 3))
    assert 0.0022 <= stanet["macs"] / dual_vgg["macs"] <= 0.0028
    assert stanet["params"] < 1_000_000
    assert dual_vgg["macs"] / 1e9 == pytest.approx(34.9, rel=0.01)   # Uçar's network, as DESIGN.md computes it
    assert dual_vgg["params"] / 1e6 == pytest.approx(36.4, rel=0.01)
    for ablation in ("stanet_noatt", "stanet_dsc", "stanet_conv"):   # matched cost
        macs = profile.measure(models.create_model(ablation, 2, 3))["macs"]
        assert macs == pytest.approx(stanet["macs"], rel=0.02), ablation


def test_latency_statistics_are_ordered():
    result = profile.measure_latency(nn.Conv2d(1, 4, 3), (1, 16, 16), batch_size=4, runs=30, warmup=1)
    assert result["input"] == [1, 16, 16]
    assert 0 < result["min_ms"] <= result["p25_ms"] <= result["median_ms"] <= result["p75_ms"] <= result["max_ms"]


def test_peak_memory_sees_the_activations():
    conv = nn.Conv2d(3, 64, 3, padding=1)
    out_bytes = 64 * 64 * 64 * 4
    peak = profile.peak_forward_memory(conv, (3, 64, 64))
    assert out_bytes <= peak < 4 * out_bytes
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))   # ReLU's output and the second conv's
    assert profile.peak_forward_memory(model, (3, 64, 64)) >= 2 * out_bytes


def test_weights_bytes_holds_every_parameter():
    model = models.create_model("stanet", 2, 1)
    assert profile.weights_bytes(model) >= 4 * profile.count_params(model)


def _write_params(tmp_path, latency_runs=30):
    raw = {
        "data": {"image_size": 32, "channels": 1},
        "split": {"scenarios": ["S4", "S1"]},
        "train": {"models": ["stanet"], "folds": [1]},
        "profile": {"latency_runs": latency_runs, "warmup_runs": 1, "threads": 1},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))


def test_profile_stage_writes_the_contract(tmp_path, monkeypatch):
    _write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        assert profile.main(["--model", "stanet"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "reports/complexity/stanet.json").read_text())
    assert set(report) == {"model", "display_name", "num_classes", "params", "params_by_scenario", "paper_setting",
                           "training_setting", "latency", "peak_memory_bytes", "weights_bytes", "versions"}
    assert report["model"] == "stanet" and report["display_name"] == "STANet (proposed)"
    assert report["num_classes"] == 4   # S4, the first scenario
    trained = models.create_model("stanet", num_classes=4, in_chans=1)
    assert report["params"] == profile.count_params(trained) == report["params_by_scenario"]["S4"]
    binary = models.create_model("stanet", num_classes=2, in_chans=1)
    assert report["params_by_scenario"]["S1"] == profile.count_params(binary) == report["params"] - 2 * 257
    assert report["paper_setting"]["input"] == [3, 224, 224]
    assert report["training_setting"]["input"] == [1, 32, 32]
    for setting in ("paper_setting", "training_setting"):
        assert {"input", "macs", "flops"} <= set(report[setting])
        assert isinstance(report[setting]["macs"], int) and report[setting]["macs"] > 0
        assert isinstance(report[setting]["flops"], int) and report[setting]["flops"] > 0
    assert report["training_setting"]["macs"] < report["paper_setting"]["macs"] / 40   # 32^2 vs 224^2 pixels
    latency = report["latency"]
    assert (latency["device"], latency["threads"], latency["runs"], latency["warmup"]) == ("cpu", 1, 30, 1)
    assert latency["cpu"]
    assert latency["batch_1"]["input"] == [3, 224, 224] and latency["batch_32"]["input"] == [1, 32, 32]
    for batch in ("batch_1", "batch_32"):
        assert set(latency[batch]) == {"input", "median_ms", "p25_ms", "p75_ms", "min_ms", "max_ms"}
    assert report["peak_memory_bytes"] > 0 and report["weights_bytes"] > 4 * report["params"]
    assert set(report["versions"]) == {"torch", "timm", "thop"}
    assert not list((tmp_path / "reports/complexity").glob(".*"))   # no temporary files left


def test_profile_stage_refuses_unknown_model(tmp_path, monkeypatch):
    _write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="stanet_noatt"):
        profile.main(["--model", "stanet_noat"])
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_profile_stage_dual_vgg(tmp_path, monkeypatch):
    _write_params(tmp_path, latency_runs=2)   # the MACs at 224 px are what it checks
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        assert profile.main(["--model", "dual_vgg"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "reports/complexity/dual_vgg.json").read_text())
    assert report["paper_setting"]["macs"] / 1e9 == pytest.approx(34.9, rel=0.01)
