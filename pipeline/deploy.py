"""Stage `deploy`: one model of one scenario as it would be deployed, under ONNX Runtime, fp32 and int8.

    python -m pipeline.deploy --scenario S1 --model stanet   -> reports/deploy/S1/stanet.json

For every trained fold of every protocol (runs/<scenario>/<model>/<protocol>/fold-<k>, at the input
size it was trained at; nothing is trained here), or those of deploy.protocols and deploy.folds:
- export to ONNX (pipeline/deployment/exports.py, which says which exporter and why) and compare ONNX
  Runtime's probabilities with PyTorch's on the fold's test images: the largest absolute difference
  is recorded, and the stage fails (ExportError) above PARITY_TOLERANCE;
- quantize to int8 (static, QDQ), calibrated on the fold's training part only (at most
  deploy.calibration_images of its images, drawn with the seed), and record the test balanced accuracy of
  fp32 and int8 under ONNX Runtime, their difference in points and both file sizes; a fold losing
  more than LOSSY_POINTS is flagged (`lossy`), and the report says so.
Latency is measured once per model, on the first of those folds (the same network at every fold):
batch 1 at the training input, PyTorch eager, ONNX Runtime fp32 and int8 side by side in one process,
with profile.threads threads, profile.latency_runs runs after profile.warmup_runs; median and p90.

The ONNX files are written to a temporary directory and not kept (dual_vgg_bn is ~146 MB in fp32):
`python -m pipeline.predict --runtime onnxruntime` exports again from the run's weights.

`handcrafted` is not exported: it is a feature extractor and a logistic regression fitted in closed
form, not a network; its cost is counted in its own terms by the profile stage (its features' arithmetic
and the regression as torch operations). Its record says so.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.core import grid, layout
from pipeline.core.atomic import atomic_write_json
from pipeline.core.cli import run_stage
from pipeline.core.errors import DataError, ExportError
from pipeline.core.params import Params, load
from pipeline.core.readers import read_table
from pipeline.core.scores import balanced_accuracy
from pipeline.core.sysinfo import cpu_name
from pipeline.deployment import exports

PARITY_TOLERANCE = 1e-4      # largest |ONNX Runtime - PyTorch| probability accepted
LOSSY_POINTS = 2.0           # int8 losing more balanced accuracy than this (points) is flagged
NOT_A_NETWORK = ("not exported: a feature extractor and a logistic regression fitted in closed form, not a "
                 "network; its cost is counted in its own terms by the profile stage")


def fold_ids(splits, scenario: str, protocol: str, fold: int, repeat: int = 1) -> dict[str, np.ndarray]:
    """Image ids of the fold's train and test parts (sorted), in `repeat` (the deployed folds are the first
    repeat's: runs/<...>/fold-<k>/; split.repeats draws the folds again after it): grid.fold_rows, train's
    selection."""
    rows = grid.fold_rows(splits, scenario, protocol, fold, repeat)
    return {part: np.sort(rows.loc[rows["part"] == part, "image_id"].to_numpy(dtype=np.int64))
            for part in ("train", "test")}


def calibration_ids(train_ids: np.ndarray, seed: int, limit: int) -> np.ndarray:
    """The training images that calibrate int8: all of them, or `limit` drawn with the seed."""
    if len(train_ids) <= limit:
        return np.asarray(train_ids)
    return np.sort(np.random.default_rng(seed).choice(train_ids, size=limit, replace=False))


def deploy_fold(fold: exports.Fold, images: np.ndarray, splits, params: Params, workdir: Path,
                measure_latency: bool) -> dict:
    """Export, parity, int8 and (when asked) latency for one trained fold."""
    ids = fold_ids(splits, fold.scenario, fold.protocol, fold.fold)
    predicted = read_table(fold.directory / layout.PREDICTIONS, "retrain the run", required=["image_id"])
    if sorted(predicted["image_id"]) != ids["test"].tolist():
        raise DataError(f"{fold.directory / layout.PREDICTIONS}: its test images are not fold {fold.fold}'s test part "
                        f"in {layout.splits_path(fold.scenario)} (the folds changed after training); retrain")
    labels = splits.drop_duplicates("image_id").set_index("image_id").loc[ids["test"], "label"].to_numpy()
    net = fold.build()
    x_test = exports.normalise(images[ids["test"]], fold)
    p_torch = exports.torch_probabilities(net, x_test)
    fp32 = exports.export_onnx(net, fold.input_size, workdir / f"{fold.protocol}-{fold.fold}.onnx")
    threads = params.profile.threads
    s32 = exports.session(fp32, threads)
    p32 = exports.ort_probabilities(s32, x_test)
    parity = float(np.abs(p32 - p_torch).max())
    if not parity <= PARITY_TOLERANCE:
        raise ExportError(f"{fold.directory}: ONNX Runtime's probabilities differ from PyTorch's by up to {parity:.2e} "
                          f"on the fold's {len(x_test)} test images, more than the {PARITY_TOLERANCE:g} accepted; "
                          f"the export ({exports.EXPORTER}) does not reproduce the network")
    calib = calibration_ids(ids["train"], params.seed + fold.fold, params.deploy.calibration_images)
    int8 = exports.quantize_int8(fp32, workdir / f"{fold.protocol}-{fold.fold}.int8.onnx",
                                    exports.normalise(images[calib], fold))
    s8 = exports.session(int8, threads)
    p8 = exports.ort_probabilities(s8, x_test)
    ba32, ba8 = (balanced_accuracy(labels, p.argmax(1), p.shape[1]) for p in (p32, p8))
    drop = round(100 * (ba32 - ba8), 3)
    record = {"protocol": fold.protocol, "fold": fold.fold, "n_test": int(len(x_test)),
              "parity_max_abs_diff": parity, "fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size,
              "fp32_balanced_accuracy": ba32, "int8_balanced_accuracy": ba8, "int8_drop_points": drop,
              "lossy": bool(drop > LOSSY_POINTS), "int8_max_abs_diff": float(np.abs(p8 - p32).max()),
              "calibration": {"part": "train", "images": int(len(calib)), "of": int(len(ids["train"]))}}
    if measure_latency:
        one = x_test[:1]
        feed = {"image": one.numpy()}
        runs, warmup = params.profile.latency_runs, params.profile.warmup_runs
        torch.set_num_threads(threads)
        with torch.inference_mode():
            eager = exports.latency(lambda: net(one), runs, warmup)
        record["latency"] = {
            "batch": 1, "input": list(fold.input_size), "threads": threads, "cpu": cpu_name(),
            "protocol": fold.protocol, "fold": fold.fold,
            "torch_eager": eager,
            "ort_fp32": exports.latency(lambda: s32.run(None, feed), runs, warmup),
            "ort_int8": exports.latency(lambda: s8.run(None, feed), runs, warmup)}
        if params.deploy.paper_input_latency_runs:
            record["latency"]["paper_input"] = paper_input_latency(
                fold, net, exports.normalise(images[calib[:PAPER_INPUT_CALIBRATION]], fold), params, workdir,
                exported=(fp32, int8) if tuple(fold.input_size) == PAPER_INPUT else None)
    return record


PAPER_INPUT = (3, 224, 224)       # the paper's input: what a reader of the paper compares deployment at
PAPER_INPUT_CALIBRATION = 4       # calibration images for the int8 network timed there (its accuracy is not)
PAPER_INPUT_THREADS = (1, 2)


def paper_input_latency(fold: exports.Fold, net: torch.nn.Module, calibration: torch.Tensor, params: Params,
                        workdir: Path, exported: tuple[Path, Path] | None = None) -> dict:
    """ONNX Runtime batch-1 latency of the fold's network at 3x224x224, fp32 and int8, at 1 and 2 threads:
    the trained weights rebuilt for three channels (`exports.at_input`), exported at that input and
    int8-quantized on the fold's calibration images resized to it (only latency is measured there: the
    network was trained at its own input, so its outputs at 224 px mean nothing). A fold trained at
    3x224x224 already has both networks (`exported`: its fp32 and int8 files): they are timed as they are,
    not exported and quantized a second time (for a 224-px dual VGG, a second 1.1 GB export)."""
    c, h, w = PAPER_INPUT
    x = torch.nn.functional.interpolate(calibration, size=(h, w), mode="bilinear", align_corners=False)
    x = x.expand(-1, c, -1, -1) if x.shape[1] == 1 else x
    if exported is not None:
        fp32, int8 = exported
    else:
        wide = exports.at_input(fold, net, c)
        fp32 = exports.export_onnx(wide, PAPER_INPUT, workdir / f"{fold.protocol}-{fold.fold}.224.onnx")
        int8 = exports.quantize_int8(fp32, workdir / f"{fold.protocol}-{fold.fold}.224.int8.onnx", x.contiguous())
    feed = {"image": x[:1].contiguous().numpy()}
    runs, warmup = params.deploy.paper_input_latency_runs, params.profile.warmup_runs
    out = {"input": list(PAPER_INPUT), "batch": 1, "cpu": cpu_name(), "by_threads": {}}
    for threads in PAPER_INPUT_THREADS:
        s32, s8 = exports.session(fp32, threads), exports.session(int8, threads)
        out["by_threads"][str(threads)] = {"ort_fp32": exports.latency(lambda: s32.run(None, feed), runs, warmup),
                                           "ort_int8": exports.latency(lambda: s8.run(None, feed), runs, warmup)}
    return out


def summarise(folds: list[dict]) -> dict:
    """Per protocol: the worst parity, file sizes, mean balanced accuracies, the largest int8 loss."""
    out = {}
    for protocol in dict.fromkeys(f["protocol"] for f in folds):
        rows = [f for f in folds if f["protocol"] == protocol]
        out[protocol] = {
            "folds": len(rows),
            "parity_max_abs_diff": max(f["parity_max_abs_diff"] for f in rows),
            "fp32_bytes": rows[0]["fp32_bytes"], "int8_bytes": rows[0]["int8_bytes"],
            "fp32_balanced_accuracy_mean": float(np.mean([f["fp32_balanced_accuracy"] for f in rows])),
            "int8_balanced_accuracy_mean": float(np.mean([f["int8_balanced_accuracy"] for f in rows])),
            "int8_drop_points_max": max(f["int8_drop_points"] for f in rows),
            "lossy_folds": [f["fold"] for f in rows if f["lossy"]]}
    return out


def deploy_model(params: Params, scenario: str, model: str, runs: Path = layout.RUNS) -> dict:
    """The deploy record of `model` on `scenario`: every trained fold of every protocol."""
    import onnxruntime

    record = {"model": model, "scenario": scenario, "exporter": exports.EXPORTER,
              "parity_tolerance": PARITY_TOLERANCE, "lossy_points": LOSSY_POINTS,
              "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}}
    stages = [layout.stage_dir(scenario, model, p, runs) for p in params.deploy_protocols()]
    folds = [f for d in stages for f in exports.load_run(d, params.deploy_folds())]
    if not folds[0].is_network:
        return {**record, "exported": False, "reason": NOT_A_NETWORK}
    if not layout.IMAGES.is_file():
        raise DataError(f"{layout.IMAGES}: not found; run `dvc repro prepare` first")
    images = np.load(layout.IMAGES, allow_pickle=False)
    splits = read_table(layout.splits_path(scenario), "run `dvc repro split` first",
                        required=["image_id", "label", "scenario", "protocol", "repeat", "fold", "part"])
    torch.set_num_threads(params.profile.threads)
    with tempfile.TemporaryDirectory(prefix="deploy-") as tmp:
        results = [deploy_fold(f, images, splits, params, Path(tmp), measure_latency=i == 0)
                   for i, f in enumerate(folds)]
    return {**record, "exported": True, "input": list(folds[0].input_size), "latency": results[0].pop("latency"),
            "folds": results, "by_protocol": summarise(results)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.deploy", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args(argv)
    params = load()
    for flag, value, allowed, key in (("--scenario", args.scenario, params.split.scenarios, "split.scenarios"),
                                      ("--model", args.model, params.train.models, "train.models")):
        if value not in allowed:
            raise DataError(f"{flag} {value!r} is not in {key} {list(allowed)}")
    start = time.perf_counter()
    record = deploy_model(params, args.scenario, args.model)
    target = layout.deploy_path(args.scenario, args.model)
    atomic_write_json(target, record)
    if not record["exported"]:
        print(f"{target}: {args.model} {record['reason']}")
        return 0
    lat = record["latency"]
    worst = max(s["parity_max_abs_diff"] for s in record["by_protocol"].values())
    lossy = {p: s["lossy_folds"] for p, s in record["by_protocol"].items() if s["lossy_folds"]}
    print(f"{target}: {len(record['folds'])} folds exported, parity <= {worst:.1e}; batch-1 latency at "
          f"{'x'.join(map(str, record['input']))}: PyTorch {lat['torch_eager']['median_ms']:.2f} ms, ONNX Runtime "
          f"fp32 {lat['ort_fp32']['median_ms']:.2f} ms, int8 {lat['ort_int8']['median_ms']:.2f} ms "
          f"({lat['threads']} threads)" + (f"; int8 loses > {LOSSY_POINTS:g} points on folds {lossy}" if lossy else "")
          + f" ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    run_stage(main)
