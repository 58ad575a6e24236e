"""The evaluate stage on fixture runs (tests/fixture_runs.py): layout, numbers, determinism, errors."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import evaluate
from pipeline.core.errors import DataError
from pipeline.evaluation import metrics as M
from fixture_runs import write_fixture

MODELS = ("stanet", "dual_vgg", "resnet18")
PROTOCOLS = ("patient", "image")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fixture project (params.yaml, runs/, reports/complexity/) evaluated once, from inside it."""
    root = write_fixture(tmp_path_factory.mktemp("project"), models=MODELS, protocols=PROTOCOLS, folds=3)
    old = os.getcwd()
    os.chdir(root)
    try:
        assert evaluate.main([]) == 0          # default paths: params.yaml, runs/, reports/
    finally:
        os.chdir(old)
    return root


def test_writes_metrics_and_per_fold(project):
    metrics = json.loads((project / "reports/metrics.json").read_text())
    per_fold = pd.read_csv(project / "reports/per_fold.csv")
    assert set(metrics) == {"S1", "meta"} and set(metrics["S1"]) == {*MODELS, "comparisons", "meta", "primary"}
    assert metrics["meta"]["scenarios"] == ["S1"] and metrics["meta"]["folds"] == [1, 2, 3]
    assert metrics["S1"]["meta"]["class_names"] == ["normal", "myositis"]
    assert metrics["meta"]["protocols"] == list(PROTOCOLS) and metrics["meta"]["input_size"] == [1, 32, 32]
    assert (metrics["meta"]["threads"], metrics["meta"]["fold_workers"]) == (2, [2])   # as the runs say
    assert metrics["meta"]["pretrained"] is False
    for model in MODELS:
        for protocol in PROTOCOLS:
            s = metrics["S1"][model][protocol]
            for name in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
                assert set(s[name]) == {"mean", "sd", "ci_low", "ci_high", "n"}
                assert s[name]["ci_low"] <= s[name]["mean"] <= s[name]["ci_high"]
            assert set(s["per_class"]) == {"normal", "myositis"}
            assert ("patient_accuracy" in s) == (protocol == "patient")
    assert list(per_fold.columns[:14]) == ["scenario", "model", "protocol", "repeat", "fold", "balanced_accuracy",
                                           "accuracy", "macro_f1", "auc", "brier", "ece", "patient_accuracy",
                                           "majority_rate", "top_predicted_share"]
    assert len(per_fold) == len(MODELS) * len(PROTOCOLS) * 3
    assert per_fold.loc[per_fold.protocol == "image", "patient_accuracy"].isna().all()
    assert per_fold.loc[per_fold.protocol == "patient", "patient_accuracy"].notna().all()


def test_numbers_match_the_predictions(project):
    """Recompute accuracy straight from predictions.csv, independently of pipeline.evaluation.metrics."""
    metrics = json.loads((project / "reports/metrics.json").read_text())
    for model in MODELS:
        for protocol in PROTOCOLS:
            accs, n_test, patient_accs = [], 0, []
            for k in (1, 2, 3):
                p = pd.read_csv(project / f"runs/S1/{model}/{protocol}/fold-{k}/predictions.csv")
                predicted = (p["prob_myositis"] > p["prob_normal"]).astype(int)
                accs.append((predicted == p["label"]).mean())
                n_test += len(p)
                per_patient = p.groupby("patient_id")[["prob_normal", "prob_myositis", "label"]].mean()
                patient_accs.append(((per_patient.prob_myositis > per_patient.prob_normal).astype(int)
                                     == per_patient.label).mean())
            s = metrics["S1"][model][protocol]
            assert s["accuracy"]["mean"] == pytest.approx(np.mean(accs), abs=1e-6)
            assert s["accuracy"]["sd"] == pytest.approx(np.std(accs, ddof=1), abs=1e-6)
            cm = s["confusion_matrix"]
            assert sum(v for row in cm.values() for v in row.values()) == n_test == s["n_test"]
            correct = cm["normal"]["normal"] + cm["myositis"]["myositis"]
            assert correct == round(sum(a * 48 for a in accs))   # 48 test images per fold in the fixture
            if protocol == "patient":
                assert s["patient_accuracy"]["mean"] == pytest.approx(np.mean(patient_accs), abs=1e-6)


def test_comparisons_reference_minus_other(project):
    metrics = json.loads((project / "reports/metrics.json").read_text())
    comps = metrics["S1"]["comparisons"]
    assert set(comps) == set(PROTOCOLS)
    for protocol in PROTOCOLS:
        assert set(comps[protocol]) == {"dual_vgg", "resnet18"}
        for other, c in comps[protocol].items():
            want = (metrics["S1"]["stanet"][protocol]["accuracy"]["mean"]
                    - metrics["S1"][other][protocol]["accuracy"]["mean"])
            assert c["accuracy"]["mean_difference"] == pytest.approx(want, abs=2e-6)
            assert 0 <= c["accuracy"]["p_value"] <= 1 and c["accuracy"]["df"] == 2
            assert c["bootstrap_accuracy"]["n_images"] == 144
            assert c["bootstrap_accuracy"]["mean_difference"] == pytest.approx(want, abs=2e-6)


def test_byte_identical_across_runs(project, tmp_path):
    args = ["--params", str(project / "params.yaml"), "--runs", str(project / "runs")]
    evaluate.main([*args, "--out-dir", str(tmp_path / "a")])
    evaluate.main([*args, "--out-dir", str(tmp_path / "b")])
    for name in ("metrics.json", "per_fold.csv"):
        a, b = (tmp_path / "a" / name).read_bytes(), (tmp_path / "b" / name).read_bytes()
        assert a == b
        assert a == (project / "reports" / name).read_bytes()
    text = (tmp_path / "a/metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text


def test_metrics_json_holds_no_wall_clock_time(project, tmp_path):
    """Two trainings with the same params take different seconds; metrics.json must not differ for it
    (issue 27: two runs byte-identical), nor per_fold.csv. The seconds stay in each run's own metrics.json,
    where the report reads them for its budget column."""
    runs = tmp_path / "runs"
    shutil.copytree(project / "runs", runs)
    for path in runs.rglob("metrics.json"):
        meta = json.loads(path.read_text())
        meta["seconds"] = meta["seconds"] * 3.7 + 1.0            # another machine's load
        path.write_text(json.dumps(meta))
    assert evaluate.main(["--params", str(project / "params.yaml"), "--runs", str(runs),
                          "--out-dir", str(tmp_path / "slow")]) == 0
    for name in ("metrics.json", "per_fold.csv"):
        assert (tmp_path / "slow" / name).read_bytes() == (project / "reports" / name).read_bytes(), name


def _copy(project: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(project, dst)
    return dst


def test_missing_run_names_path_and_command(project, tmp_path):
    root = _copy(project, tmp_path)
    (root / "runs/S1/resnet18/image/fold-2/predictions.csv").unlink()
    before = (root / "reports/metrics.json").read_bytes()
    with pytest.raises(DataError) as e:
        evaluate.main(["--params", str(root / "params.yaml"), "--runs", str(root / "runs"),
                       "--out-dir", str(root / "reports")])
    msg = str(e.value)
    assert "S1/resnet18/image/fold-2/predictions.csv" in msg
    assert "python -m pipeline.train --scenario S1 --model resnet18 --protocol image" in msg
    assert (root / "reports/metrics.json").read_bytes() == before      # earlier output intact


def test_stale_run_is_refused(project, tmp_path):
    root = _copy(project, tmp_path)
    meta_path = root / "runs/S1/stanet/patient/fold-1/metrics.json"
    meta = json.loads(meta_path.read_text())
    meta["scenario"] = "S2"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"scenario is 'S2'.*'S1'"):
        evaluate.build(evaluate.load(root / "params.yaml"), root / "runs")


def test_bad_predictions_are_refused(project, tmp_path):
    root = _copy(project, tmp_path)
    path = root / "runs/S1/dual_vgg/patient/fold-3/predictions.csv"
    p = pd.read_csv(path)
    p.drop(columns=["prob_myositis"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"fold-3/predictions.csv: missing columns \['prob_myositis'\]"):
        evaluate.build(evaluate.load(root / "params.yaml"), root / "runs")
    p.loc[4, "label"] = 7
    p.to_csv(path, index=False)
    with pytest.raises(DataError, match="data row 5"):
        evaluate.build(evaluate.load(root / "params.yaml"), root / "runs")


def test_a_validation_part_that_holds_a_test_image_or_is_missing_is_refused(project, tmp_path):
    """The operating point is chosen on validation.csv: a test image among its rows would leak test data into the
    choice, so evaluate refuses it, naming both files; a run without validation.csv is refused with the command."""
    root = _copy(project, tmp_path)
    run = root / "runs/S1/stanet/patient/fold-2"
    val, pred = pd.read_csv(run / "validation.csv"), pd.read_csv(run / "predictions.csv")
    pd.concat([val, pred.iloc[[0]]]).to_csv(run / "validation.csv", index=False)
    with pytest.raises(DataError, match=rf"fold-2/validation.csv: image_id {pred['image_id'].iloc[0]} is also in "
                                        rf".*fold-2/predictions.csv"):
        evaluate.build(evaluate.load(root / "params.yaml"), root / "runs")
    (run / "validation.csv").unlink()
    with pytest.raises(DataError, match=r"fold-2/validation.csv.*python -m pipeline.train --scenario S1"):
        evaluate.build(evaluate.load(root / "params.yaml"), root / "runs")


def test_the_operating_point_is_reported_for_binary_scenarios_from_validation_thresholds(project):
    metrics = json.loads((project / "reports/metrics.json").read_text())
    op = metrics["S1"]["stanet"]["patient"]["operating_point"]
    assert op["chosen_on"] == "each fold's validation part" and op["target_sensitivity"] == 0.9
    assert len(op["thresholds"]) == metrics["S1"]["stanet"]["patient"]["n_folds"]
    for q in ("sensitivity", "specificity"):
        assert op[q]["ci_low"] <= op[q]["estimate"] <= op[q]["ci_high"]


def test_every_scenario_has_its_block_and_s4_reads_as_four_classes(tmp_path):
    root = write_fixture(tmp_path, models=("stanet", "resnet18"), protocols=PROTOCOLS, folds=2,
                         scenarios=("S1", "S2", "S3", "S4"))
    metrics, per_fold = evaluate.build(evaluate.load(root / "params.yaml"), root / "runs")
    assert metrics["meta"]["scenarios"] == ["S1", "S2", "S3", "S4"]
    assert sorted(per_fold["scenario"].unique()) == ["S1", "S2", "S3", "S4"]
    s4 = metrics["S4"]
    assert s4["meta"]["class_names"] == ["normal", "IBM", "PM", "DM"]
    summary = s4["stanet"]["patient"]
    assert set(summary["per_class"]) == {"normal", "IBM", "PM", "DM"}
    assert set(summary["confusion_matrix"]) == {"normal", "IBM", "PM", "DM"}
    assert all(set(row) == {"normal", "IBM", "PM", "DM"} for row in summary["confusion_matrix"].values())
    for name in ("accuracy", "macro_f1", "auc"):          # macro-F1 and one-vs-rest AUC over four classes
        assert summary[name]["mean"] is not None
    assert metrics["S3"]["meta"]["class_names"] == ["IBM", "PM_DM"]
    assert set(metrics["S2"]["stanet"]["image"]["per_class"]) == {"normal", "IBM"}


def test_two_repeats_pool_k_times_r_differences_and_declare_the_primary(tmp_path):
    """split.repeats 2: every fold of every repeat is read; the corrected test has k*R - 1 df; the primary
    comparison is not adjusted; ablations and baselines are Holm-adjusted as separate families."""
    models = ("stanet", "stanet_noatt", "stanet_dsc", "dual_vgg", "resnet18", "mobilenetv3_small_100")
    (tmp_path / "rep").mkdir()
    root = write_fixture(tmp_path / "rep", models=models, protocols=("patient", "image"), folds=3, repeats=2)
    args = ["--params", str(root / "params.yaml"), "--runs", str(root / "runs"), "--out-dir", str(root / "reports")]
    assert evaluate.main(args) == 0
    metrics = json.loads((root / "reports/metrics.json").read_text())
    per_fold = pd.read_csv(root / "reports/per_fold.csv")
    assert len(per_fold) == len(models) * 2 * 3 * 2 and sorted(per_fold["repeat"].unique()) == [1, 2]
    assert metrics["S1"]["stanet"]["patient"]["n_folds"] == 6
    comps = metrics["S1"]["comparisons"]["patient"]
    t = comps["resnet18"]["balanced_accuracy"]
    assert (t["n_differences"], t["df"], t["n_repeats"]) == (6, 5, 2)
    # the primary (stanet vs dual_vgg, balanced accuracy, patient): unadjusted, outside the families
    assert comps["dual_vgg"]["balanced_accuracy"]["family"] == "primary"
    assert comps["dual_vgg"]["balanced_accuracy"]["p_holm"] == comps["dual_vgg"]["balanced_accuracy"]["p_value"]
    # the same pair on another metric or protocol is exploratory, in the baselines family
    assert comps["dual_vgg"]["accuracy"]["family"] == "baselines"
    assert metrics["S1"]["comparisons"]["image"]["dual_vgg"]["balanced_accuracy"]["family"] == "baselines"
    assert comps["stanet_noatt"]["balanced_accuracy"]["family"] == "ablations"
    assert comps["stanet_noatt"]["balanced_accuracy"]["holm_family"] == 2          # the two ablations
    assert comps["resnet18"]["balanced_accuracy"]["holm_family"] == 2             # resnet18, mobilenet
    p = [comps[m]["balanced_accuracy"]["p_value"] for m in ("stanet_noatt", "stanet_dsc")]
    assert comps["stanet_noatt"]["balanced_accuracy"]["p_holm"] == pytest.approx(
        M.holm(p)[0], abs=1e-6)
    primary = metrics["S1"]["primary"]
    assert primary["repeats"] == 2 and primary["test"]["df"] == 5 and primary["sign"] == "stanet minus dual_vgg"
    assert primary["design"]["mdd"] == pytest.approx(primary["test"]["mdd"], abs=1e-6)
    # the same metric's bootstrap beside the test; per patient, McNemar over repeat 1's patients, each once
    assert primary["bootstrap"]["metric"] == primary["metric"] == "balanced_accuracy"
    pl = primary["patient_level"]
    assert pl["n"] == primary["n_patients"] and pl["discordant"] == pl["reference_only_right"] + pl["comparator_only_right"]
    assert pl["both_right"] + pl["both_wrong"] + pl["discordant"] == pl["n"]
    assert set(primary["patient_auc"]) == {"stanet", "dual_vgg"}
    s = metrics["S1"]["stanet"]["patient"]
    for q in ("sensitivity", "specificity", "ppv", "npv"):
        r = s["class_rates"]["myositis"][q]
        assert r["ci_low"] <= r["estimate"] <= r["ci_high"]
    assert 0 <= s["calibration"]["brier"] <= 1 and 0 <= s["calibration"]["ece"] <= 1
    exact = s["patient_accuracy_exact"]
    assert exact["ci_low"] <= exact["proportion"] <= exact["ci_high"] and exact["n"] == 24
    assert s["budget"] == {"epochs": 4, "optimizer_steps_per_fold": 40.0}
    assert "seconds" not in per_fold.columns
