"""`python -m pipeline.check` against a baseline made from fixture runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import check, evaluate
from pipeline.errors import DataError
from tests.fixture_runs import write_fixture

MODELS = ("stanet", "dual_vgg", "resnet18")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Fixture runs evaluated, and a baseline written with `check --update`, from inside the project."""
    root = write_fixture(tmp_path_factory.mktemp("project"), models=MODELS, protocols=("patient", "image"), folds=3)
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
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert (baseline["metrics"]["S1"]["stanet"]["patient"]["accuracy"]
            == metrics["S1"]["stanet"]["patient"]["accuracy"]["mean"])
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
    assert "-5.00 pts" in line and "REGRESSION" in line


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
        m["S1"]["dual_vgg"]["patient"]["macro_f1"]["mean"] -= 0.05
    edit_metrics(work, lower)
    assert run_check(project, work) == 1


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
    ('{"version": 2, "settings": {}, "metrics": [], "complexity": {}}', "'metrics' is []"),
    ('{"version": 2, "settings": {}, "metrics": {"S1": {"stanet": {"image": {"accuracy": NaN}}}}, "complexity": {}}',
     "holds NaN"),
    ('{"version": 2, "settings": {}, "metrics": {"S1": {"stanet": {"image": {"accuracy": "0.9"}}}}, '
     '"complexity": {}}', "metrics.S1.stanet.image.accuracy is '0.9'"),
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
