"""Fake but well-formed pipeline outputs for testing evaluate, report and check without training.

`write_fixture(root)` writes, under `root`: params.yaml, runs/<scenario>/<model>/<protocol>/fold-<k>/
{predictions.csv,history.csv,metrics.json}, reports/complexity/<model>.json and
data/processed/manifest.csv, following the
file contract of the train and profile stages. Predictions are drawn from a seeded generator with
a per-model skill, and the image protocol scores higher (as leakage would), so metrics differ
between models and protocols but are reproducible.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.core.layout import fold_name
from pipeline.core.scenarios import class_names as scenario_classes
from pipeline.core.scenarios import MUSCLES, label_map

# params, MACs and FLOPs at 3x224x224: orders of magnitude of the real networks, not measurements
FAKE_COMPLEXITY = {
    "stanet": (310_000, 88_000_000),
    "dual_vgg": (36_500_000, 34_900_000_000),
    "resnet18": (11_200_000, 1_820_000_000),
    "mobilenetv3_small_100": (1_500_000, 57_000_000),
    "stanet_noatt": (578_000, 88_200_000),
    "stanet_dsc": (652_000, 87_800_000),
    "stanet_conv": (740_000, 88_070_000),
    "dual_vgg_bn": (36_460_000, 34_860_000_000),
    "efficientnet_b0": (4_010_000, 384_600_000),
    "handcrafted": (44, 2_760_000),
}
SKILL = {"stanet": 0.80, "dual_vgg": 0.72, "resnet18": 0.76, "mobilenetv3_small_100": 0.70, "stanet_noatt": 0.79,
         "stanet_dsc": 0.77, "stanet_conv": 0.78, "dual_vgg_bn": 0.76, "efficientnet_b0": 0.72, "handcrafted": 0.74}
# the CPU demo's nine models (params.yaml), for tests that need the demo's crowding of labels and curves
DEMO_MODELS = ("stanet", "stanet_noatt", "stanet_dsc", "stanet_conv", "dual_vgg_bn", "resnet18",
               "mobilenetv3_small_100", "efficientnet_b0", "handcrafted")
LEAKAGE_BONUS = {"patient": 0.0, "image": 0.12, "ucar": 0.12}
DIAGNOSIS_CYCLE = ("N", "IBM", "PM", "N", "DM", "IBM")   # S1: one third normal, unbalanced on purpose


def fixture_params(models=("stanet", "dual_vgg", "resnet18"), protocols=("patient", "image"), folds=3,
                   scenarios=("S1",), epochs=4, seed=0, data_source="synthetic", repeats=1) -> dict:
    """A small, valid params mapping for the fixture runs."""
    return {
        "seed": seed,
        "profile_name": "fixture",
        "data": {"source": data_source, "image_size": 32, "channels": 1,
                 "synthetic": {"patients": 12, "images_per_side": 2, "render_size": 64}},
        "split": {"scenarios": list(scenarios), "protocols": list(protocols), "folds": folds, "repeats": repeats},
        "train": {"models": list(models), "folds": list(range(1, folds + 1)), "epochs": epochs},
        "evaluate": {"reference_model": "stanet", "bootstrap": 200,
                     **({"primary": {"reference": "stanet", "comparator": "dual_vgg", "protocol": protocols[0],
                                     "scenario": scenarios[0]}} if {"stanet", "dual_vgg"} <= set(models) else {})},
        "check": {"baseline": "reports/baseline.json", "max_accuracy_drop": 2.0, "max_metric_drop": 0.03,
                  "exact": ["params", "macs", "flops"]},
    }


def manifest(n_patients: int, images_per_patient: int) -> pd.DataFrame:
    """The fixture cohort's data/processed/manifest.csv: image ids shared by every scenario, each image
    with its patient's diagnosis and a muscle and side (cycling through MUSCLES, right then left)."""
    rows = []
    for i in range(n_patients):
        for j in range(images_per_patient):
            rows.append({"image_id": i * images_per_patient + j, "patient_id": f"P{i:03d}",
                         "diagnosis": DIAGNOSIS_CYCLE[i % len(DIAGNOSIS_CYCLE)],
                         "muscle": MUSCLES[(j // 2) % len(MUSCLES)], "side": "RL"[j % 2], "source": "synthetic"})
    return pd.DataFrame(rows)


def _cohort(n_patients: int, images_per_patient: int, scenario: str) -> pd.DataFrame:
    labels = label_map(scenario)
    m = manifest(n_patients, images_per_patient)
    m = m[m["diagnosis"].isin(list(labels))]
    return pd.DataFrame({"image_id": m["image_id"], "patient_id": m["patient_id"],
                         "label": m["diagnosis"].map(labels)}).reset_index(drop=True)


def _test_parts(cohort: pd.DataFrame, protocol: str, folds: int) -> list[pd.DataFrame]:
    if protocol == "patient":
        # deal patients to folds class by class, so every fold's test part holds every class
        patients = cohort.groupby("patient_id")["label"].first().reset_index().sort_values(["label", "patient_id"])
        fold_of = {p: i % folds for i, p in enumerate(patients["patient_id"])}
        key = cohort["patient_id"].map(fold_of)
    else:
        key = cohort["image_id"] % folds
    return [cohort[key == k].reset_index(drop=True) for k in range(folds)]


def _probabilities(labels: np.ndarray, n_classes: int, skill: float, rng: np.random.Generator) -> np.ndarray:
    correct = rng.random(len(labels)) < skill
    prob = rng.dirichlet(np.ones(n_classes), size=len(labels))
    for i, y in enumerate(labels):
        # put the largest probability on the true class when correct, on another class otherwise
        target = y if correct[i] else (y + 1 + rng.integers(n_classes - 1)) % n_classes
        j = int(prob[i].argmax())
        prob[i, [j, target]] = prob[i, [target, j]]
    return prob / prob.sum(axis=1, keepdims=True)


def write_fixture(root: str | Path, models=("stanet", "dual_vgg", "resnet18"), protocols=("patient", "image"),
                  folds=3, scenarios=("S1",), epochs=4, seed=0, data_source="synthetic", n_patients=24,
                  images_per_patient=6, constant_models=(), repeats=1) -> Path:
    """Write params.yaml, runs/ and reports/complexity/ under `root`; return `root`. Models in
    `constant_models` predict the last class for every image (they learned nothing)."""
    root = Path(root)
    params = fixture_params(models, protocols, folds, scenarios, epochs, seed, data_source, repeats)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rng = np.random.default_rng(seed)
    for scenario in scenarios:
        names = list(scenario_classes(scenario))
        cohort = _cohort(n_patients, images_per_patient, scenario)
        for model in models:
            for protocol, repeat in [(p, r) for p in protocols for r in range(1, repeats + 1)]:
                parts = _test_parts(cohort, protocol, folds)
                for k, test in enumerate(parts, start=1):
                    _write_run(root / "runs" / scenario / model / protocol / fold_name(k, repeat), scenario, model,
                               protocol, k, test, names, len(cohort), epochs, rng, constant=model in constant_models,
                               repeat=repeat, val=parts[k % len(parts)])
    _write_complexity(root, models, scenarios)
    (root / "data" / "processed").mkdir(parents=True, exist_ok=True)
    manifest(n_patients, images_per_patient).to_csv(root / "data" / "processed" / "manifest.csv", index=False)
    _write_deploy(root, models, scenarios, protocols)
    return root


def _write_run(d: Path, scenario: str, model: str, protocol: str, k: int, test: pd.DataFrame, names: list[str],
               n_cohort: int, epochs: int, rng: np.random.Generator, constant: bool = False, repeat: int = 1,
               val: pd.DataFrame | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    skill = min(0.98, SKILL.get(model, 0.7) + LEAKAGE_BONUS[protocol])
    prob = _probabilities(test["label"].to_numpy(), len(names), skill, rng)
    if constant:
        prob = np.tile(np.linspace(1.0, 2.0, len(names)) / np.linspace(1.0, 2.0, len(names)).sum(), (len(test), 1))
    pred = test.copy()
    pred["predicted"] = prob.argmax(axis=1)
    for c, name in enumerate(names):
        pred[f"prob_{name}"] = prob[:, c].round(6)
    pred.to_csv(d / "predictions.csv", index=False)
    # the validation part (another fold's test images), from a stream of its own: the test draws stay as they were
    val = test.iloc[:0] if val is None else val
    vrng = np.random.default_rng([k, repeat, len(val)])
    vprob = _probabilities(val["label"].to_numpy(), len(names), skill, vrng)
    validation = val.copy()
    validation["predicted"] = vprob.argmax(axis=1)
    for c, name in enumerate(names):
        validation[f"prob_{name}"] = vprob[:, c].round(6)
    validation.to_csv(d / "validation.csv", index=False)
    epoch = np.arange(1, epochs + 1)
    history = pd.DataFrame({
        "epoch": epoch, "train_loss": (0.7 * np.exp(-epoch / epochs) + rng.random(epochs) * 0.02).round(6),
        "val_loss": (0.75 * np.exp(-epoch / (2 * epochs))).round(6),
        "val_accuracy": (0.5 + (skill - 0.5) * (1 - np.exp(-epoch / 2))).round(6),
        "val_balanced_accuracy": (0.5 + (skill - 0.5) * (1 - np.exp(-epoch / 2))).round(6),
        "lr": 0.002, "seconds": 0.5})
    history.to_csv(d / "history.csv", index=False)
    n_test = len(test)
    acc = float((pred["predicted"] == pred["label"]).mean())
    meta = {"model": model, "protocol": protocol, "fold": k, "repeat": repeat, "scenario": scenario,
            "optimizer_steps": epochs * 10,
            "class_names": names, "accuracy": acc, "balanced_accuracy": acc, "macro_f1": acc,
            "auc": acc, "n_train": int((n_cohort - n_test) * 0.8),
            "n_val": int((n_cohort - n_test) * 0.2), "n_test": n_test, "epochs": epochs,
            "best_epoch": epochs, "seconds": 2.0, "device": "cpu", "device_name": "fixture CPU",
            "threads": 2, "fold_workers": 2, "input_size": [1, 32, 32], "batch_size": 32, "optimizer": "adamw",
            "lr": 0.002, "pretrained": False, "cohort": "f1x7c0h0r7", "splits": f"{scenario.lower()}5p1175"}
    (d / "metrics.json").write_text(json.dumps(meta, indent=2))


def _write_complexity(root: Path, models, scenarios) -> None:
    for model in models:
        n_params, macs = FAKE_COMPLEXITY.get(model, (1_000_000, 100_000_000))
        lat = {"median_ms": macs / 1e8 + 1.0, "p25_ms": macs / 1e8 + 0.9, "p75_ms": macs / 1e8 + 1.1,
               "min_ms": macs / 1e8 + 0.8, "max_ms": macs / 1e8 + 1.5}
        c = {"model": model, "display_name": {"stanet": "STANet (Tan 2024)", "dual_vgg": "Dual VGG16+19 (Uçar 2022)"}
             .get(model, model), "num_classes": 2, "params": n_params,
             "params_by_scenario": {s: n_params + (2 if s == "S4" else 0) for s in scenarios},
             "paper_setting": {"input": [3, 224, 224], "macs": macs, "flops": 2 * macs},
             "training_setting": {"input": [1, 32, 32], "macs": macs // 49, "flops": 2 * (macs // 49)},
             "latency": {"device": "cpu", "threads": 2, "runs": 30, "warmup": 3,
                         "batch_1": {"input": [3, 224, 224], **lat},
                         "batch_32": {"input": [1, 32, 32], **lat}},
             "peak_memory_bytes": 4 * n_params, "weights_bytes": 4 * n_params,
             "versions": {"torch": "x", "timm": "x", "thop": "x"}}
        out = root / "reports" / "complexity" / f"{model}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(c, indent=2))


def _write_deploy(root: Path, models, scenarios, protocols) -> None:
    """reports/deploy/<scenario>/<model>.json as the deploy stage writes it (made-up figures)."""
    for scenario in scenarios:
        for model in models:
            n_params, macs = FAKE_COMPLEXITY.get(model, (1_000_000, 100_000_000))
            lat = lambda ms: {"median_ms": ms, "p90_ms": 1.2 * ms, "runs": 30, "warmup": 3}  # noqa: E731
            by = {p: {"folds": 3, "parity_max_abs_diff": 2e-7, "fp32_bytes": 4 * n_params, "int8_bytes": n_params,
                      "fp32_balanced_accuracy_mean": 0.8, "int8_balanced_accuracy_mean": 0.79 if model != "resnet18"
                      else 0.7, "int8_drop_points_max": 1.0 if model != "resnet18" else 10.0,
                      "lossy_folds": [] if model != "resnet18" else [2]} for p in protocols}
            record = {"model": model, "scenario": scenario, "exported": True, "exporter": "fixture exporter",
                      "parity_tolerance": 1e-4, "lossy_points": 2.0, "versions": {"torch": "x", "onnxruntime": "x"},
                      "input": [1, 32, 32], "folds": [], "by_protocol": by,
                      "latency": {"batch": 1, "input": [1, 32, 32], "threads": 2, "cpu": "fixture CPU",
                                  "torch_eager": lat(macs / 1e9 + 0.5), "ort_fp32": lat(macs / 2e9 + 0.2),
                                  "ort_int8": lat(macs / 4e9 + 0.1)}}
            out = root / "reports" / "deploy" / scenario / f"{model}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=2))
