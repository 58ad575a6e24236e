"""Deployment: ONNX export parity, int8 calibrated on training images only, the deploy record, and
`python -m pipeline.predict` (reproduces training's test probabilities; refuses bad input clearly)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

import models
from pipeline import deploy, predict, train
from pipeline.core import layout, scenarios
from pipeline.core.errors import DataError, ExportError
from pipeline.core.params import load
from pipeline.deployment import exports
from pipeline.evaluation.metrics import fold_metrics
from builders import write_cohort

ROOT = Path(__file__).resolve().parents[1]
RUN = Path("runs/S1/stanet/patient")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained project: stanet and handcrafted, patient protocol, folds 1 and 2, one epoch, 32x32."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        write_cohort(root, patients=8, size=32, train_cfg={"models": ["stanet", "handcrafted"], "epochs": 1})
        raw = yaml.safe_load((root / "params.yaml").read_text())
        raw["split"]["protocols"] = ["patient"]
        raw["data"]["source"] = "synthetic"
        raw["profile"] = {"threads": 1, "latency_runs": 30, "warmup_runs": 1}
        raw["deploy"] = {"calibration_images": 20}
        (root / "params.yaml").write_text(yaml.safe_dump(raw))
        for model in ("stanet", "handcrafted"):
            assert train.main(["--scenario", "S1", "--model", model, "--protocol", "patient"]) == 0
        images = np.load(root / layout.IMAGES)
        test = pd.read_csv(root / RUN / "fold-1" / layout.PREDICTIONS)
        scans = root / "scans"
        scans.mkdir()
        for i in test["image_id"]:    # the processed images as files: prepare leaves a 32x32 image as it is
            Image.fromarray(images[i, 0]).save(scans / f"img{i:04d}.png")
        (scans / "manifest.csv").write_text("path,patient_id,diagnosis\n" + "".join(
            f"img{r.image_id:04d}.png,{r.patient_id},{'N' if r.label == 0 else 'DM'}\n" for r in test.itertuples()))
    return root


@pytest.fixture
def project(trained, monkeypatch) -> Path:
    monkeypatch.chdir(trained)
    return trained


# ---- export parity ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["stanet", "mobilenetv3_small_100"])
def test_onnx_runtime_reproduces_pytorch(name, tmp_path):
    torch.manual_seed(0)
    net = models.create_model(name, num_classes=2, in_chans=1).eval()
    x = torch.randn(5, 1, 36, 36)
    path = exports.export_onnx(net, (1, 36, 36), tmp_path / "m.onnx")
    ort = exports.ort_probabilities(exports.session(path, 1), x)
    expected = exports.torch_probabilities(net, x)
    assert ort.shape == (5, 2)
    assert np.abs(ort - expected).max() <= deploy.PARITY_TOLERANCE


def _standard_ops(path: Path) -> set[str]:
    import onnx

    graph = onnx.load(str(path)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}   # standard operators only, no custom domain
    return {n.op_type for n in graph.node}


def test_soft_threshold_exports_as_standard_operators(tmp_path):
    from models.attention import SoftThreshold

    unit = SoftThreshold(8).eval()
    x = torch.randn(3, 8, 5, 5)
    with torch.no_grad():
        unit.bn.running_mean.uniform_(-1, 1)
        unit.bn.running_var.uniform_(0.5, 2)
    path = tmp_path / "st.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # the TorchScript exporter's notice (see exports.py)
        torch.onnx.export(unit, (x,), str(path), input_names=["image"], dynamo=False, opset_version=exports.OPSET)
    ops = _standard_ops(path)
    assert {"Abs", "ReduceMean", "Sigmoid"} <= ops
    out = exports.session(path, 1).run(None, {"image": x.numpy()})[0]
    assert np.abs(out - unit(x).detach().numpy()).max() < 1e-5


@pytest.mark.slow
def test_stanet_exports_under_the_torch_export_based_exporter_too(tmp_path):
    torch.manual_seed(0)
    net = models.create_model("stanet", num_classes=2, in_chans=1).eval()
    x = torch.randn(3, 1, 36, 36)
    path = exports.export_onnx(net, (1, 36, 36), tmp_path / "m.onnx", dynamo=True)
    assert {"Abs", "ReduceMean", "Sigmoid"} <= _standard_ops(path)
    ort = exports.ort_probabilities(exports.session(path, 1), x)
    assert np.abs(ort - exports.torch_probabilities(net, x)).max() <= deploy.PARITY_TOLERANCE


# ---- the deploy stage ------------------------------------------------------------------------------

def test_int8_is_calibrated_on_training_images_only(project, monkeypatch):
    splits = pd.read_csv(layout.splits_path("S1"))
    images = np.load(layout.IMAGES)
    seen_ids, seen_inputs = [], []
    real_ids, real_quantize = deploy.calibration_ids, exports.quantize_int8
    monkeypatch.setattr(deploy, "calibration_ids", lambda *a, **k: seen_ids.append(real_ids(*a, **k)) or seen_ids[-1])
    monkeypatch.setattr(exports, "quantize_int8",
                        lambda fp32, out, calibration, **k: seen_inputs.append(calibration) or real_quantize(
                            fp32, out, calibration, **k))
    record = deploy.deploy_model(load(), "S1", "stanet")
    # one calibration per fold, of deploy.calibration_images, and one for the network timed at 3x224x224 (the
    # first fold's): the first of that fold's calibration images, resized and spread over three channels
    assert len(seen_ids) == 2 and len(seen_inputs) == 3
    paper = seen_inputs.pop(1)    # fold 1 (timed), then its 224-px network, then fold 2
    first = exports.load_run(RUN, [1])[0]
    want = torch.nn.functional.interpolate(
        exports.normalise(images[np.asarray(seen_ids[0][:deploy.PAPER_INPUT_CALIBRATION])], first),
        size=(224, 224), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    assert paper.shape == (deploy.PAPER_INPUT_CALIBRATION, 3, 224, 224) and torch.equal(paper, want)
    assert all(len(ids) == 20 for ids in seen_ids)
    for fold, ids, x in zip((1, 2), seen_ids, seen_inputs, strict=True):
        rows = splits[(splits["protocol"] == "patient") & (splits["fold"] == fold)]
        ids_of = lambda part: set(rows.loc[rows["part"] == part, "image_id"])  # noqa: E731
        assert set(ids) and set(ids) <= ids_of("train")
        assert not set(ids) & ids_of("test") and not set(ids) & ids_of("val")
        f = exports.load_run(RUN, [fold])[0]
        assert torch.equal(x, exports.normalise(images[np.asarray(ids)], f))   # exactly those images
    assert record["exported"] and [f["fold"] for f in record["folds"]] == [1, 2]
    for f in record["folds"]:
        assert f["calibration"]["part"] == "train" and f["calibration"]["images"] == 20 < f["calibration"]["of"]
        assert 0 <= f["parity_max_abs_diff"] <= deploy.PARITY_TOLERANCE
        assert 0 < f["int8_bytes"] < f["fp32_bytes"]
        assert f["lossy"] == (f["int8_drop_points"] > deploy.LOSSY_POINTS)
        pred = pd.read_csv(RUN / f"fold-{f['fold']}" / layout.PREDICTIONS)   # what evaluate scores
        names = list(scenarios.class_names("S1"))
        fm = fold_metrics(pred["label"], pred[layout.prob_columns(names)].to_numpy(), names)
        assert f["fp32_balanced_accuracy"] == pytest.approx(fm["balanced_accuracy"])
    lat = record["latency"]
    assert lat["threads"] == 1 and lat["batch"] == 1 and lat["input"] == [1, 32, 32]
    for key in ("torch_eager", "ort_fp32", "ort_int8"):
        assert 0 < lat[key]["median_ms"] <= lat[key]["p90_ms"]
    wide = lat["paper_input"]
    assert wide["input"] == [3, 224, 224] and set(wide["by_threads"]) == {"1", "2"}
    for timed in wide["by_threads"].values():
        for key in ("ort_fp32", "ort_int8"):
            assert 0 < timed[key]["median_ms"] <= timed[key]["p90_ms"] and timed[key]["runs"] == 10
    # the cost of 224 px: far above the 32-px network's
    assert wide["by_threads"]["1"]["ort_fp32"]["median_ms"] > lat["ort_fp32"]["median_ms"]


def test_the_network_timed_at_the_paper_input_keeps_the_trained_weights(project):
    """exports.at_input: 3 channels, every weight but the first convolution's as trained, that one the
    trained kernels spread over the channels (so a grey image in 3 copies gives the trained network's output)."""
    fold = exports.load_run(RUN, [1])[0]
    net = fold.build()
    wide = exports.at_input(fold, net, 3)
    narrow_state, wide_state = net.state_dict(), wide.state_dict()
    changed = [k for k in narrow_state if narrow_state[k].shape != wide_state[k].shape]
    assert len(changed) == 1 and wide_state[changed[0]].shape[1] == 3
    assert all(torch.equal(narrow_state[k], wide_state[k]) for k in narrow_state if k not in changed)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), wide(x.expand(-1, 3, -1, -1)), atol=1e-5)


def test_calibration_draws_at_most_the_limit_from_the_training_part():
    train_ids = np.arange(100, 1100)
    ids = deploy.calibration_ids(train_ids, seed=3, limit=50)
    assert len(ids) == 50 == len(set(ids)) and set(ids) <= set(train_ids)
    assert np.array_equal(ids, deploy.calibration_ids(train_ids, seed=3, limit=50))


def test_an_export_beyond_the_parity_tolerance_fails(project, monkeypatch):
    monkeypatch.setattr(deploy, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differ from PyTorch's"):
        deploy.deploy_model(load(), "S1", "stanet")


def test_handcrafted_is_not_exported_and_says_why(project):
    record = deploy.deploy_model(load(), "S1", "handcrafted")
    assert record["exported"] is False and "not a network" in record["reason"]


# ---- predict ---------------------------------------------------------------------------------------

def _probabilities(csv: Path) -> np.ndarray:
    table = pd.read_csv(csv)
    table["image_id"] = table["path"].str.extract(r"img(\d+)\.png")[0].astype(int)
    return table.sort_values("image_id")[["prob_normal", "prob_myositis"]].to_numpy()


@pytest.mark.parametrize("runtime, tolerance", [("torch", 1e-5), ("onnxruntime", 1e-4)])
def test_predict_reproduces_the_folds_test_probabilities(project, runtime, tolerance, capsys):
    assert predict.main([str(RUN), "scans", "--folds", "1", "--runtime", runtime, "--out", "p.csv"]) == 0
    expected = pd.read_csv(RUN / "fold-1" / layout.PREDICTIONS).sort_values("image_id")
    got = _probabilities(project / "p.csv")
    assert len(got) == len(expected)
    assert np.abs(got - expected[["prob_normal", "prob_myositis"]].to_numpy()).max() <= tolerance
    assert exports.SYNTHETIC_CAVEAT in capsys.readouterr().out


def test_predict_ensembles_the_folds_and_aggregates_patients(project):
    assert predict.main([str(RUN), "--manifest", "scans/manifest.csv", "--out", "both.csv"]) == 0
    for k in (1, 2):
        assert predict.main([str(RUN), "--manifest", "scans/manifest.csv", "--folds", str(k), "--out", f"f{k}.csv"]) == 0
    both, f1, f2 = (pd.read_csv(f"{name}.csv") for name in ("both", "f1", "f2"))
    cols = ["prob_normal", "prob_myositis"]
    assert np.abs(both[cols].to_numpy() - (f1[cols].to_numpy() + f2[cols].to_numpy()) / 2).max() <= 2e-6
    assert (both["folds"] == 2).all() and set(both["predicted"]) <= {"normal", "myositis"}
    patients = pd.read_csv("both_patients.csv", dtype={"patient_id": str})
    assert sorted(patients["patient_id"]) == sorted(both["patient_id"].astype(str).unique())
    first = patients.iloc[0]
    mine = both[both["patient_id"].astype(str) == first["patient_id"]]
    assert first["images"] == len(mine)
    assert first["prob_myositis"] == pytest.approx(mine["prob_myositis"].mean(), abs=2e-6)


def test_predict_refuses_an_unreadable_image(project):
    Path("scans/broken.png").write_bytes(b"not an image")
    try:
        with pytest.raises(DataError, match=r"broken\.png.*not a readable PNG"):
            predict.main([str(RUN), "scans", "--out", "x.csv"])
    finally:
        Path("scans/broken.png").unlink()
    assert not Path("x.csv").exists()


def test_predict_refuses_a_missing_run_and_a_channel_count_it_was_not_trained_on(project):
    with pytest.raises(DataError, match=r"runs/S1/nonet/patient: no such run"):
        predict.main(["runs/S1/nonet/patient", "scans"])
    with pytest.raises(DataError, match=r"trained on 1-channel 32x32 input, but --channels 3"):
        predict.main([str(RUN), "scans", "--channels", "3"])


def test_predict_refuses_a_run_without_its_normalisation_statistics(project, tmp_path):
    old = tmp_path / "old" / "fold-1"
    old.mkdir(parents=True)
    (old / "weights.pt").write_bytes((RUN / "fold-1" / "weights.pt").read_bytes())
    metrics = json.loads((RUN / "fold-1" / "metrics.json").read_text())
    del metrics["input_mean"], metrics["input_std"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(DataError, match=r"has no \['input_mean', 'input_std'\].*retrain"):
        predict.main([str(old.parent), "scans"])


def test_predict_refusal_is_one_line_and_exit_code_2(project):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pipeline.predict", str(RUN), "missing.png"], capture_output=True,
                          text=True, env=env, cwd=project)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "missing.png" in done.stderr
    assert "Traceback" not in done.stderr


# ---- the report's deployment table ------------------------------------------------------------------

def test_report_table_names_a_lossy_model_and_why_handcrafted_is_absent(tmp_path):
    from pipeline.reporting import deployreport
    from fixture_runs import write_fixture

    write_fixture(tmp_path, models=("stanet", "resnet18"))
    records = deployreport.load(["S1"], ["stanet", "resnet18"], tmp_path / "reports" / "deploy")
    records[("S1", "handcrafted")] = {"exported": False, "reason": deploy.NOT_A_NETWORK}
    text = "\n".join(deployreport.section(records, {}, {"resnet18": "ResNet-18"}))
    assert "**int8 costs ResNet-18 accuracy** (S1, patient): up to 10.0 points" in text
    assert "int8 costs STANet" not in text and "stanet" in text
    assert deploy.NOT_A_NETWORK in text
    row = deployreport.columns(records[("S1", "stanet")], "patient")
    assert row["ort_int8_latency_batch1_ms"] == records[("S1", "stanet")]["latency"]["ort_int8"]["median_ms"]
    assert row["int8_lossy"] is False and deployreport.columns(records[("S1", "resnet18")], "image")["int8_lossy"]
    assert set(deployreport.columns(records[("S1", "handcrafted")], "patient").values()) == {None}
    with pytest.raises(DataError, match=r"python -m pipeline.deploy --scenario S1 --model mobilenet"):
        deployreport.load(["S1"], ["mobilenet"], tmp_path / "reports" / "deploy")


def test_a_fold_already_at_the_paper_input_is_timed_as_exported_not_exported_again(project, tmp_path, monkeypatch):
    """A 224-px fold's own fp32 and int8 files are what paper_input_latency times: no second export or
    quantization (for a 224-px dual VGG, a second 1.1 GB file)."""
    fold = exports.load_run(RUN, [1])[0]
    net = fold.build().eval()
    calibration = torch.rand(4, 1, 32, 32)
    params = load()
    first = deploy.paper_input_latency(fold, net, calibration, params, tmp_path)
    exported = (tmp_path / "patient-1.224.onnx", tmp_path / "patient-1.224.int8.onnx")
    assert all(p.is_file() for p in exported)

    def refuse(*_a, **_k):
        raise AssertionError("exported a second time")
    monkeypatch.setattr(exports, "export_onnx", refuse)
    monkeypatch.setattr(exports, "quantize_int8", refuse)
    again = deploy.paper_input_latency(fold, net, calibration, params, tmp_path, exported=exported)
    assert again["input"] == first["input"] == [3, 224, 224] and set(again["by_threads"]) == {"1", "2"}
