"""The whole pipeline, end to end: the smoke profile in the fast tier, the tiny profile and the regression
check in the slow one.

Both read the shared runs of tests/projects.py (`dvc repro` in a scratch copy of the project: dvc.yaml,
params.yaml with the profile applied, the code). The tiny run is then checked with `python -m
pipeline.check` against the committed tiny baseline tests/data/baseline_tiny.json. Regenerate that
baseline after an intended change with:

    python -m pytest tests/test_e2e.py --update-tiny-baseline
"""
from __future__ import annotations

import csv
import json
import sys

import pytest

from projects import ROOT, run

BASELINE = ROOT / "tests/data/baseline_tiny.json"
STAGES = ("prepare", "split", "train", "profile", "deploy", "evaluate", "report")


# ---- the fast tier: profiles/smoke.yaml, every stage through `dvc repro` --------------------------------

def test_smoke_repro_runs_every_stage_and_is_then_up_to_date(smoke_run):
    """One real `dvc repro` in the fast tier: every stage of dvc.yaml runs, writes what the next reads, and
    a second look finds nothing to do; the report says the run was a smoke run."""
    work, env, proc = smoke_run
    ran = {line.split("'")[1].split("@")[0] for line in proc.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == set(STAGES), ran
    metrics = json.loads((work / "reports/metrics.json").read_text())
    for model in ("stanet", "handcrafted"):
        summary = metrics["S1"][model]["patient"]
        assert summary["n_folds"] == 2 and 0 <= summary["balanced_accuracy"]["mean"] <= 1, (model, summary)
        run_metrics = json.loads((work / f"runs/S1/{model}/patient/fold-1/metrics.json").read_text())
        assert run_metrics["scenario"] == "S1"
    # train.max_steps_per_epoch: 2 capped stanet's epoch, and the budget counts what was taken
    stanet = json.loads((work / "runs/S1/stanet/patient/fold-1/metrics.json").read_text())
    assert stanet["optimizer_steps"] == 2
    assert (work / "reports/deploy/S1/stanet.json").is_file() and (work / "reports/complexity/stanet.json").is_file()
    readme = (work / "reports/README.md").read_text()
    assert "at most 2 optimizer steps per epoch" in readme and "not a benchmark" in readme
    # where the time went (pipeline/core/stagetime.py): one record per stage DVC ran, train's with its folds
    stages = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    records = {r["stage"]: r for r in (json.loads(p.read_text()) for p in (work / "timing").glob("*.json"))}
    assert set(records) == set(stages), sorted(set(stages) ^ set(records))
    assert all(r["exit"] == 0 and r["wall_s"] >= r["startup_s"] > 0 for r in records.values())
    train = records["train@S1-stanet-patient"]
    assert train["fold_runs"] == 2 and train["side_by_side"] >= 1 and 0 < train["fold_train_s"]
    summary = run([sys.executable, "-m", "pipeline.stagetime"], work, env)
    assert "train@S1-stanet-patient" in summary.stdout and (work / "timing/summary.csv").is_file()
    status = run([sys.executable, "-m", "dvc", "status"], work, env)
    assert "changed" not in status.stdout, status.stdout


# ---- the slow tier: profiles/tiny.yaml -------------------------------------------------------------

@pytest.mark.slow
def test_repro_writes_every_report(tiny_run):
    work, env, _ = tiny_run
    for rel in ("data/processed/images.npy", "data/processed/manifest.csv", "data/splits/S1.csv",
                "data/splits/S4.csv", "reports/split_summary.md", "reports/figures/cohort_examples.png",
                "reports/complexity/stanet.json", "reports/complexity/resnet18.json",
                "reports/metrics.json", "reports/per_fold.csv", "reports/comparison.csv", "reports/comparison.md",
                "reports/README.md", "runs/S1/stanet/patient/fold-1/predictions.csv",
                "runs/S4/resnet18/image/fold-2/metrics.json", "runs/S1/stanet/patient/repeat-2/fold-1/predictions.csv",
                "runs/S4/resnet18/image/repeat-2/fold-2/metrics.json"):
        assert (work / rel).is_file(), rel
    figures = sorted(p.name for p in (work / "reports/figures").glob("*.png"))
    assert len(figures) >= 5, figures
    readme = (work / "reports/README.md").read_text()
    assert "synthetic" in readme.lower() and "S1" in readme
    # the deployment figures: STANet's ONNX Runtime int8 batch-1 latency measured, table and figure in the report
    record = json.loads((work / "reports/deploy/S1/stanet.json").read_text())
    assert record["exported"] and record["latency"]["ort_int8"]["median_ms"] > 0
    assert "## Deployment: ONNX Runtime" in readme and "latency_vs_balanced_accuracy.png" in figures
    with open(work / "reports/comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["ort_int8_latency_batch1_ms"]) > 0 for r in rows if r["protocol"] == "patient")


@pytest.mark.slow
def test_one_repro_runs_every_scenario_and_fills_the_published_table(tiny_run):
    """The tiny profile runs S1-S4 in one `dvc repro`: every scenario trained and reported."""
    work, env, _ = tiny_run
    scenarios = ["S1", "S2", "S3", "S4"]
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert metrics["meta"]["scenarios"] == scenarios
    for scenario in scenarios:
        for model in ("stanet", "resnet18"):
            for protocol in ("patient", "image"):
                # 2 folds x 2 repeats (profiles/tiny.yaml: split.repeats 2)
                assert metrics[scenario][model][protocol]["n_folds"] == 4, (scenario, model, protocol)
                run = json.loads((work / f"runs/{scenario}/{model}/{protocol}/fold-1/metrics.json").read_text())
                assert run["scenario"] == scenario
    assert metrics["S4"]["meta"]["class_names"] == ["normal", "IBM", "PM", "DM"]
    with open(work / "reports/comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["scenario"] for r in rows}) == scenarios
    ucar = [line for line in (work / "reports/README.md").read_text().splitlines() if line.startswith("| [Uçar 2022]")]
    # a published figure is set beside this run's only for the same network (the tiny run has no dual_vgg):
    # each Uçar row says what is missing instead of setting another network's number beside it
    assert len(ucar) == 4 and all("dual_vgg not in this run" in line for line in ucar), ucar


@pytest.mark.slow
def test_two_repeats_each_test_every_image_once_and_keep_patients_apart(tiny_run):
    """split.repeats 2: each repeat draws its own folds (with its own seed); in each, every image is tested
    exactly once, and no patient is in two parts of a patient fold; each repeat's runs train with the
    repeat's seed; evaluate pools the k*R differences (k*R - 1 degrees of freedom)."""
    import pandas as pd

    work, env, _ = tiny_run
    for scenario in ("S1", "S2", "S3", "S4"):
        splits = pd.read_csv(work / f"data/splits/{scenario}.csv")
        assert sorted(splits["repeat"].unique()) == [1, 2]
        for (protocol, repeat), sub in splits.groupby(["protocol", "repeat"]):
            tested = sub[sub["part"] == "test"]["image_id"]
            assert tested.is_unique and set(tested) == set(sub["image_id"]), (scenario, protocol, repeat)
            if protocol == "patient":
                parts = sub.groupby(["fold", "patient_id"])["part"].nunique()
                assert (parts == 1).all(), (scenario, repeat)
        test_of = {r: s[(s["part"] == "test") & (s["protocol"] == "patient")].set_index("image_id")["fold"]
                   for r, s in splits.groupby("repeat")}
        assert not test_of[1].sort_index().equals(test_of[2].sort_index())    # folds drawn again
    one = json.loads((work / "runs/S1/stanet/patient/fold-1/metrics.json").read_text())
    two = json.loads((work / "runs/S1/stanet/patient/repeat-2/fold-1/metrics.json").read_text())
    assert (one["repeat"], two["repeat"]) == (1, 2)
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert metrics["meta"]["repeats"] == 2
    t = metrics["S1"]["comparisons"]["patient"]["resnet18"]["balanced_accuracy"]
    assert t["n_differences"] == 4 and t["df"] == 3 and t["n_repeats"] == 2
    primary = metrics["S1"]["primary"]
    assert primary["repeats"] == 2 and primary["design"]["target"] == 0.059
    readme = (work / "reports/README.md").read_text()
    reading = readme.split("## Reading", 1)[1]
    first = next(line for line in reading.splitlines() if line.startswith("- "))
    assert first.startswith("- Primary comparison") and "resnet18" in first
    assert "this design detects a difference of" in reading
    assert "balanced accuracy" in reading


@pytest.mark.slow
def test_the_tiny_run_holds_each_output_once_and_no_checkpoint(tiny_run):
    """What the shared run keeps on disk (tests/projects.py): each weights file once, linked from DVC's
    cache rather than copied into it, and no checkpoints (dropped once it was built)."""
    work, _, _ = tiny_run
    weights = sorted((work / "runs").rglob("weights.pt"))
    assert len(weights) == 4 * 2 * 2 * 2 * 2                     # scenarios x models x protocols x folds x repeats
    assert all(w.stat().st_nlink == 2 for w in weights), [w for w in weights if w.stat().st_nlink != 2][:3]
    assert not (work / "checkpoints").exists()


@pytest.mark.slow
def test_second_repro_is_up_to_date(tiny_run):
    work, env, _ = tiny_run
    proc = run([sys.executable, "-m", "dvc", "status"], work, env)
    assert "changed" not in proc.stdout, proc.stdout


@pytest.mark.slow
def test_metrics_show_and_plots_show(tiny_run):
    work, env, _ = tiny_run
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], work, env)
    assert "accuracy" in shown.stdout
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(work / "dvc_plots")], work, env)
    assert (work / "dvc_plots/index.html").is_file()


@pytest.mark.slow
def test_check_against_the_committed_tiny_baseline(tiny_run, request):
    """The tiny run (train.threads: 1) passes tests/data/baseline_tiny.json, made on another machine."""
    work, env, _ = tiny_run
    if request.config.getoption("--update-tiny-baseline"):
        other, _, _, _ = request.getfixturevalue("tiny_threads2")
        run([sys.executable, "-m", "pipeline.check", "--update", "--baseline", str(BASELINE),
             "--calibration", str(other / "reports/metrics.json")], work, env)
    proc = run([sys.executable, "-m", "pipeline.check", "--baseline", str(BASELINE)], work, env)   # raises unless exit 0
    assert "OK: no regressions" in proc.stdout


@pytest.mark.slow
def test_two_thread_counts_each_pass_the_check_against_the_other(tiny_threads2, tmp_path):
    """Runs that differ only in the thread count are the same result within the measured noise: a
    baseline of either (its noise as the committed baseline measured it) passes the other. The twin
    (tests/projects.py) is the tiny run's S1, evaluated as the tiny run trained it (one thread) and
    trained again at two: 16 fold runs of both models and protocols, their summaries and comparisons."""
    other, env, proc, threads1 = tiny_threads2
    assert "Running stage 'train@S1-stanet-patient'" in proc.stdout      # retrained, not reused
    metrics = {"1": threads1, "2": other / "reports/metrics.json"}
    assert metrics["1"].read_bytes() != metrics["2"].read_bytes()     # the thread count does change the numbers
    assert {json.loads(metrics[t].read_text())["meta"]["threads"] for t in "12"} == {1, 2}
    for mine, theirs in (("1", "2"), ("2", "1")):
        baseline = tmp_path / f"baseline_threads{mine}.json"
        run([sys.executable, "-m", "pipeline.check", "--update", "--baseline", str(baseline), "--metrics",
             str(metrics[mine]), "--noise-from", str(BASELINE)], other, env)
        proc = run([sys.executable, "-m", "pipeline.check", "--baseline", str(baseline), "--metrics",
                    str(metrics[theirs])], other, env)
        assert "OK: no regressions" in proc.stdout, proc.stdout
