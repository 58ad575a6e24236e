"""`python -m pipeline.check` against a baseline made from fixture runs: noise-aware tolerances,
degenerate models checked for learning only, exit codes 0 / 1 (regression) / 2 (cannot run)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import check, evaluate
from pipeline.core.errors import DataError
from fixture_runs import write_fixture

MODELS = ("stanet", "dual_vgg", "resnet18")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Fixture runs evaluated, and a baseline written with `check --update`, from inside the project."""
    root = write_fixture(tmp_path_factory.mktemp("project"), models=MODELS, protocols=("patient", "image"), folds=3,
                         constant_models=("dual_vgg",))
    old = os.getcwd()
    os.chdir(root)
    try:
        assert evaluate.main([]) == 0
        assert check.main(["--update"]) == 0
    finally:
        os.chdir(old)
    return root


@pytest.fixture
def work(project, tmp_path):
    """A copy of the current metrics and complexity that a test may alter."""
    shutil.copy(project / "reports/metrics.json", tmp_path / "metrics.json")
    shutil.copytree(project / "reports/complexity", tmp_path / "complexity")
    return tmp_path


def run_check(project: Path, work: Path, *extra: str) -> int:
    return check.main(["--params", str(project / "params.yaml"), "--baseline", str(project / "reports/baseline.json"),
                       "--metrics", str(work / "metrics.json"), "--complexity", str(work / "complexity"), *extra])


def edit_metrics(work: Path, change) -> None:
    path = work / "metrics.json"
    metrics = json.loads(path.read_text())
    change(metrics)
    path.write_text(json.dumps(metrics))


def test_baseline_records_settings(project):
    baseline = json.loads((project / "reports/baseline.json").read_text())
    assert baseline["settings"] == {"data_source": "synthetic", "scenarios": ["S1"], "protocols": ["patient", "image"],
                                    "folds": [1, 2, 3], "input_size": [1, 32, 32],
                                    "epochs": {"dual_vgg": 4, "resnet18": 4, "stanet": 4}}
    assert baseline["cpu"] is None                       # the fixture runs recorded none
    metrics = json.loads((project / "reports/metrics.json").read_text())
    entry = baseline["metrics"]["S1"]["stanet"]["patient"]
    assert entry["values"]["accuracy"] == metrics["S1"]["stanet"]["patient"]["accuracy"]["mean"]
    assert entry["degenerate"] is False and baseline["metrics"]["S1"]["dual_vgg"]["image"]["degenerate"] is True
    assert entry["noise"] == {"accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0, "auc": 0.0, "brier": 0.0,
                              "ece": 0.0}
    assert set(baseline["complexity"]["stanet"]) == {"params", "macs", "macs_training", "flops", "flops_training"}


def test_identical_results_pass(project, work, capsys):
    assert run_check(project, work) == 0
    assert "OK: no regressions" in capsys.readouterr().out


def test_accuracy_lowered_by_five_points_fails(project, work, capsys):
    def lower(m):
        m["S1"]["resnet18"]["image"]["accuracy"]["mean"] -= 0.05
    edit_metrics(work, lower)
    assert run_check(project, work) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("S1        resnet18") and " accuracy " in x)
    assert "-5.00 pts" in line and "REGRESSION" in line and "2.00 pts" in line   # noise 0: the floor decides


def test_small_drop_within_tolerance_passes(project, work, capsys):
    def lower(m):
        m["S1"]["stanet"]["patient"]["accuracy"]["mean"] -= 0.015     # 1.5 points < max_accuracy_drop 2.0
        m["S1"]["stanet"]["patient"]["auc"]["mean"] -= 0.02           # < max_metric_drop 0.03
    edit_metrics(work, lower)
    assert run_check(project, work) == 0
    out = capsys.readouterr().out
    assert "-1.50 pts" in out and "REGRESSION" not in out


def test_macro_f1_drop_fails(project, work):
    def lower(m):
        m["S1"]["resnet18"]["patient"]["macro_f1"]["mean"] -= 0.05
    edit_metrics(work, lower)
    assert run_check(project, work) == 1


@pytest.mark.parametrize("metric, change, fails", [("balanced_accuracy", -0.05, True), ("balanced_accuracy", +0.05, False),
                                                   ("brier", +0.05, True), ("ece", +0.05, True), ("brier", -0.05, False)])
def test_headline_and_calibration_metrics_are_guarded(project, work, capsys, metric, change, fails):
    """Balanced accuracy (the headline) falling fails; Brier score and ECE are lower-is-better: a rise fails."""
    def alter(m):
        m["S1"]["resnet18"]["patient"][metric]["mean"] += change
    edit_metrics(work, alter)
    assert run_check(project, work) == (1 if fails else 0)
    line = next(line for line in capsys.readouterr().out.splitlines() if f"resnet18 | patient | {metric} " in line
                or ("resnet18" in line and "patient" in line and f" {metric} " in line))
    assert ("REGRESSION" in line) == fails


def test_noise_in_a_degenerate_model_is_not_a_regression(project, work, capsys):
    """dual_vgg learned nothing in the baseline: its AUC moving by 0.09 is noise of a constant predictor."""
    def jiggle(m):
        m["S1"]["dual_vgg"]["image"]["auc"]["mean"] -= 0.089
        m["S1"]["dual_vgg"]["image"]["accuracy"]["mean"] -= 0.027
    edit_metrics(work, jiggle)
    assert run_check(project, work) == 0
    assert "still degenerate" in capsys.readouterr().out


def test_a_model_that_stops_learning_fails_and_one_that_starts_passes(project, work, capsys):
    def flip(m):
        m["S1"]["resnet18"]["image"]["degenerate"] = True
        m["S1"]["dual_vgg"]["image"]["degenerate"] = False
    edit_metrics(work, flip)
    assert run_check(project, work) == 1
    out = capsys.readouterr().out
    assert "STOPPED LEARNING" in out and "learns now" in out
    assert "FAILED: 1 regression(s): S1 resnet18 image (learning) STOPPED LEARNING" in out


def test_measured_noise_widens_the_tolerance_but_a_5_point_drop_fails(project, work, tmp_path, capsys):
    """A calibration run (the same settings, perturbed) that moved accuracy by 1.5 points: 3 x 1.5 = 4.5,
    capped at 4 points; a 3.5-point drop is then noise, a 5-point drop is not."""
    calibration = tmp_path / "calibration.json"
    shutil.copy(project / "reports/metrics.json", calibration)

    def perturb(m):
        m["S1"]["stanet"]["image"]["accuracy"]["mean"] += 0.015
    edit_metrics(tmp_path, lambda m: None)
    metrics = json.loads(calibration.read_text())
    perturb(metrics)
    calibration.write_text(json.dumps(metrics))
    calibrated = tmp_path / "calibrated.json"
    assert check.main(["--update", "--calibration", str(calibration), "--baseline", str(calibrated),
                       "--metrics", str(project / "reports/metrics.json"), "--complexity",
                       str(project / "reports/complexity"), "--params", str(project / "params.yaml")]) == 0
    noise = json.loads(calibrated.read_text())["metrics"]["S1"]["stanet"]["image"]["noise"]["accuracy"]
    assert noise == pytest.approx(0.015)
    args = ["--params", str(project / "params.yaml"), "--baseline", str(calibrated), "--metrics",
            str(work / "metrics.json"), "--complexity", str(work / "complexity")]
    edit_metrics(work, lambda m: m["S1"]["stanet"]["image"]["accuracy"].update(
        mean=m["S1"]["stanet"]["image"]["accuracy"]["mean"] - 0.035))
    assert check.main(args) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if " stanet " in x and " accuracy " in x
                and " image " in x)
    assert "-3.50 pts" in line and "1.50 pts" in line and "4.00 pts" in line
    edit_metrics(work, lambda m: m["S1"]["stanet"]["image"]["accuracy"].update(
        mean=m["S1"]["stanet"]["image"]["accuracy"]["mean"] - 0.015))           # now 5 points below
    assert check.main(args) == 1


def test_changed_macs_fails(project, work, capsys):
    path = work / "complexity/stanet.json"
    c = json.loads(path.read_text())
    c["paper_setting"]["macs"] += 1
    path.write_text(json.dumps(c))
    assert run_check(project, work) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if " stanet " in x and " macs " in x)
    assert "CHANGED" in line and "+1" in line


def test_missing_model_fails_and_new_model_does_not(project, work, capsys):
    def drop(m):
        del m["S1"]["resnet18"]
        m["meta"]["models"].remove("resnet18")
    edit_metrics(work, drop)
    assert run_check(project, work) == 1
    assert "resnet18  patient   (all metrics)" in capsys.readouterr().out

    def add(m):
        m["S1"]["resnet18"] = m["S1"]["mobilenet_new"] = json.loads(
            (project / "reports/metrics.json").read_text())["S1"]["resnet18"]
        m["meta"]["models"] += ["resnet18", "mobilenet_new"]
    edit_metrics(work, add)
    assert run_check(project, work) == 0
    out = capsys.readouterr().out
    assert "mobilenet_new" in out and "new" in out


def test_baseline_with_other_settings_is_refused(project, work):
    def other(m):
        m["meta"]["folds"] = [1, 2]
        m["meta"]["input_size"] = [3, 224, 224]
    edit_metrics(work, other)
    with pytest.raises(DataError) as e:          # cannot compare: exit 2, not a regression's 1
        run_check(project, work)
    assert "made with different settings" in str(e.value) and "folds: baseline [1, 2, 3], current [1, 2]" in str(e.value)
    assert "input_size" in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("[]", "a baseline is a JSON object"),
    ("{", "not valid JSON"),
    ('{"version": 1}', "baseline version 1"),
    ('{"version": 3, "settings": {}, "metrics": [], "complexity": {}}', "'metrics' is []"),
    ('{"version": 3, "settings": {}, "metrics": {"S1": {"stanet": {"image": {"values": {"accuracy": NaN}}}}}, '
     '"complexity": {}}', "holds NaN"),
    ('{"version": 3, "settings": {}, "metrics": {"S1": {"stanet": {"image": {"values": {"accuracy": "0.9"}}}}}, '
     '"complexity": {}}', "metrics.S1.stanet.image.values.accuracy is '0.9'"),
    ('{"version": 3, "settings": {}, "metrics": {"S1": {"stanet": {"image": 0.9}}}, "complexity": {}}',
     "expected an object with degenerate, values and noise"),
])
def test_a_malformed_baseline_exits_2_naming_what_is_wrong(project, work, tmp_path, text, message):
    bad = tmp_path / "bad_baseline.json"
    bad.write_text(text)
    cmd = [sys.executable, "-m", "pipeline.check", "--baseline", str(bad), "--metrics", str(work / "metrics.json"),
           "--complexity", str(work / "complexity"), "--params", str(project / "params.yaml")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and str(bad) in done.stderr


def test_missing_baseline_is_an_error(project, work, tmp_path):
    with pytest.raises(DataError, match="python -m pipeline.check --update"):
        check.main(["--baseline", str(tmp_path / "none.json"), "--metrics", str(work / "metrics.json"),
                    "--complexity", str(work / "complexity"), "--params", str(project / "params.yaml")])


def test_command_line_exit_codes(project, work):
    """The module as CI runs it: exit 0 on the baseline's own results, 1 after a 5-point drop."""
    cmd = [sys.executable, "-m", "pipeline.check", "--baseline", str(project / "reports/baseline.json"),
           "--metrics", str(work / "metrics.json"), "--complexity", str(work / "complexity"),
           "--params", str(project / "params.yaml")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run(cmd, capture_output=True, text=True, env=env).returncode == 0

    def lower(m):
        m["S1"]["stanet"]["image"]["accuracy"]["mean"] -= 0.05
    edit_metrics(work, lower)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: 1 regression(s): S1 stanet image accuracy REGRESSION" in done.stdout


def test_other_cpu_settings_are_noted_not_refused(project, work, capsys):
    """A runner with other code paths (no AVX2, say) computes other bits: noted, then judged on the noise."""
    edit_metrics(work, lambda m: m["meta"].update(cpu={"ATEN_CPU_CAPABILITY": "default"}))
    assert run_check(project, work) == 0
    assert "note: the baseline ran with CPU settings" in capsys.readouterr().out


def test_a_figure_noisier_than_the_cap_gets_its_noise_plus_the_floor_and_is_named(project, work, tmp_path, capsys):
    """A calibration run that moved a figure by 6.5 points (measured: dual_vgg_bn under patient folds, AVX2
    against AVX code paths): a run like that one must not fail, so the tolerance is the noise plus the
    2-point floor (8.5), above the 4-point cap; the check says that figure cannot be guarded at the cap.
    A drop beyond noise plus floor still fails."""
    calibration = tmp_path / "calibration.json"
    metrics = json.loads((project / "reports/metrics.json").read_text())
    metrics["S1"]["resnet18"]["patient"]["accuracy"]["mean"] += 0.065
    calibration.write_text(json.dumps(metrics))
    calibrated = tmp_path / "calibrated.json"
    common = ["--complexity", str(project / "reports/complexity"), "--params", str(project / "params.yaml")]
    assert check.main(["--update", "--calibration", str(calibration), "--baseline", str(calibrated),
                       "--metrics", str(project / "reports/metrics.json"), *common]) == 0
    capsys.readouterr()
    base = json.loads((project / "reports/metrics.json").read_text())["S1"]["resnet18"]["patient"]["accuracy"]["mean"]
    args = ["--params", str(project / "params.yaml"), "--baseline", str(calibrated), "--metrics",
            str(work / "metrics.json"), "--complexity", str(work / "complexity")]
    edit_metrics(work, lambda m: m["S1"]["resnet18"]["patient"]["accuracy"].update(mean=base - 0.065))
    assert check.main(args) == 0
    out = capsys.readouterr().out
    assert "S1 resnet18 patient accuracy 8.50 pts" in out and "cannot be told from noise" in out
    edit_metrics(work, lambda m: m["S1"]["resnet18"]["patient"]["accuracy"].update(mean=base - 0.09))
    assert check.main(args) == 1
    assert check.tolerance("accuracy", 0.065, check.load(project / "params.yaml").check) == pytest.approx(0.085)
    assert check.tolerance("accuracy", 0.015, check.load(project / "params.yaml").check) == pytest.approx(0.04)
