"""The nested recipe search (params.yaml `tune`, pipeline/training/tuning.py): trials trained on the fold's training
part and scored on its validation part, never its test part; the same params give the same study; a study
continues where it stopped; bad settings and files are refused with the key or file at fault."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import train
from pipeline.core import layout
from pipeline.core.errors import DataError, TrainingError
from pipeline.core.params import Params, ParamsError, from_dict, to_dict
from builders import write_cohort

RUN = Path("runs/S1/stanet/patient/fold-1")
ARGS = ["--scenario", "S1", "--model", "stanet", "--protocol", "patient", "--fold", "1"]


def tuned_project(root: Path, trials: int = 3, **tune) -> None:
    write_cohort(root, train_cfg={"epochs": 2, "select_by": "val_balanced_accuracy"})
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["tune"] = {"trials": trials, "epochs": 2, "startup_trials": 2, **tune}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


def study(root: Path) -> pd.DataFrame:
    """The trials without their wall-clock seconds."""
    return pd.read_csv(root / RUN / layout.TRIALS).drop(columns="seconds")


def test_tuning_never_reads_the_test_part_and_the_same_params_give_the_same_study(tmp_path, monkeypatch):
    """Two projects that differ only in the test part's pixels (noise in the second) run the same study and
    choose the same recipe: nothing of the test part reaches a trial."""
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        monkeypatch.chdir(root)
        tuned_project(root)
        if name == "b":
            splits = pd.read_csv(root / "data/splits/S1.csv")
            test = splits.query("protocol == 'patient' and repeat == 1 and fold == 1 and part == 'test'")["image_id"]
            images = np.load(root / layout.IMAGES)
            images[test.to_numpy()] = np.random.default_rng(7).integers(0, 255, images[test.to_numpy()].shape,
                                                                        dtype=np.uint8)
            np.save(root / layout.IMAGES, images)
        assert train.main(ARGS) == 0
    a, b = study(tmp_path / "a"), study(tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)
    ma, mb = (json.loads((tmp_path / n / RUN / layout.RUN_METRICS).read_text())["tuning"] for n in "ab")
    assert ma["chosen"] == mb["chosen"] and ma["trials"] == 3 == len(a)
    assert ma["epoch_cap"] == 2 and (a["epochs_run"] <= 2).all() and ma["sampler"] == "TPE"
    # the fold's model is the best complete trial's
    best = a[a["state"] == "complete"]["value"].max()
    assert ma["best_value"] == pytest.approx(best) and a.loc[ma["chosen_trial"] - 1, "value"] == pytest.approx(best)


def test_raising_the_trials_continues_the_study_as_if_it_had_not_stopped(tmp_path, monkeypatch):
    """A study of 2 trials raised to 4 (or one killed after 2: its journal is kept under checkpoints/) gives
    the 4 trials a study of 4 gives from the start: each trial's sampler is seeded by the trials finished."""
    for name, steps in (("once", (4,)), ("twice", (2, 4))):
        root = tmp_path / name
        root.mkdir()
        monkeypatch.chdir(root)
        for trials in steps:
            tuned_project(root, trials=trials)
            assert train.main(ARGS) == 0
    pd.testing.assert_frame_equal(study(tmp_path / "once"), study(tmp_path / "twice"))


def test_a_study_file_of_another_run_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tuned_project(tmp_path, trials=1)
    assert train.main(ARGS) == 0
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["tune"]["lr"] = [1e-3, 2e-3]      # other tune settings: another study in the same file
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    journal = layout.checkpoint_path("S1", "stanet", "patient", 1).parent / "tune.journal"
    with pytest.raises(DataError, match=rf"{journal}: holds the study .* delete {journal}"):
        train.main(ARGS)


def test_a_study_that_cannot_be_written_is_refused_naming_it(tmp_path, monkeypatch):
    """The journal cannot be opened (a read-only checkpoints/ mount, as root sees it here by a stand-in)."""
    import optuna.storages.journal as journal

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.chdir(tmp_path)
    tuned_project(tmp_path, trials=1)
    monkeypatch.setattr(journal, "JournalFileBackend", refuse)
    with pytest.raises(DataError, match=r"tune.journal: the tuning study cannot be written there \(Permission denied\)"):
        train.main(ARGS)


def test_a_study_path_that_is_a_file_is_refused_naming_it(tmp_path, monkeypatch):
    """tune's storage lives beside the fold's checkpoint; a file where its folder should be is refused."""
    monkeypatch.chdir(tmp_path)
    tuned_project(tmp_path, trials=1)
    folder = layout.checkpoint_path("S1", "stanet", "patient", 1).parent
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder")
    with pytest.raises(TrainingError, match=rf"{folder}: a file where the fold.s checkpoint folder should be"):
        train.main(ARGS)


@pytest.mark.parametrize("tune, message", [
    ({"trials": -1}, r"tune.trials: -1 is not accepted; expected an integer in 0..1000"),
    ({"lr": [1e-2, 1e-4]}, r"tune.lr: \[0.01, 0.0001\] is not accepted; expected \[low, high\] with 0.0 < low"),
    ({"lr": [1e-3]}, r"tune.lr: \[0.001\] is not accepted"),
    ({"label_smoothing": [0.0, 1.0]}, r"tune.label_smoothing: .* high < 1.0"),
    ({"batch_size": [1, 16]}, r"tune.batch_size: \[1, 16\] is not accepted; expected a non-empty list"),
    ({"optimizer": ["lion"]}, r"tune.optimizer\[0\]: 'lion' is not accepted; expected one of"),
    ({"epochs": -2}, r"tune.epochs: -2 is not accepted"),
    ({"pruner": "hyperband"}, r"tune.pruner: 'hyperband' is not accepted; expected one of \['median', 'none'\]"),
    ({"trial": 3}, r"unknown key tune.trial; accepted keys here"),
])
def test_bad_tune_settings_are_refused_at_load_naming_the_key(tune, message):
    raw = to_dict(Params())
    raw["tune"].update(tune)
    with pytest.raises(ParamsError, match=message):
        from_dict(raw)


def test_tuning_refuses_a_selection_by_the_last_epoch():
    raw = to_dict(Params())
    raw["tune"]["trials"] = 2
    raw["train"]["select_by"] = "last"
    with pytest.raises(ParamsError, match=r"train.select_by: 'last' is not accepted; .* tune.trials > 0"):
        from_dict(raw)


def test_a_tuned_run_is_summarised_by_evaluate_and_reported_with_its_budget(tmp_path, monkeypatch):
    """evaluate: each model's chosen recipes (median and range over folds) and search compute, no seconds;
    the report's header, budget sentence and Tuning table say how the recipes were chosen."""
    from pipeline import evaluate, report
    from pipeline.reporting import findings
    from pipeline.reporting.results import Results

    monkeypatch.chdir(tmp_path)
    tuned_project(tmp_path, trials=2)
    for protocol in ("patient", "image"):
        assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", protocol]) == 0
    assert evaluate.main([]) == 0
    metrics = json.loads((tmp_path / layout.METRICS).read_text())
    assert metrics["meta"]["tuning"] == {"nested": True, "seed": 0, "tuned_runs": 4, "of_runs": 4, "trials": 2,
                                         "epoch_cap": 2, "objective": "val_balanced_accuracy", "sampler": "TPE",
                                         "pruner": "median", "startup_trials": 2}
    t = metrics["S1"]["stanet"]["patient"]["tuning"]
    assert t["folds_tuned"] == 2 and t["trials_per_fold"] == 2 and t["compute"]["trials"] == 4
    assert t["chosen"]["lr"]["min"] <= t["chosen"]["lr"]["median"] <= t["chosen"]["lr"]["max"]
    assert sum(t["chosen"]["optimizer"].values()) == 2 and "seconds" not in json.dumps(t)
    r = Results(metrics)
    section = "\n".join(report.tuning_section(r, {"stanet": "STANet"}))
    assert "## Tuning" in section and "2 TPE trials per model per fold" in section and "| S1 | patient | STANet |" in section
    budget = " ".join(findings._budgets(r, "S1", {"stanet": "STANet"}))
    assert budget.startswith("Equal search budget: 2 trials per model per fold, nested") and "test part is never read" in budget
    # the figure: best validation score so far against the trial, one line per model and panel
    from pipeline.reporting import figures
    from pipeline.core.params import load

    runs = report.load_runs(load(), Path("runs"))
    x = figures.ReportInputs(r, pd.read_csv(tmp_path / layout.PER_FOLD), {}, runs, {"stanet": "STANet"}, "context",
                             figures.Roles(("stanet",), "stanet"))
    fig = figures.tuning_progress(x, tmp_path / "tuning.png")
    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    assert len(fig.axes) == 2 and len(lines) == 2 and all(len(ln.get_xdata()) == 2 for ln in lines)
    assert all(np.all(np.diff(ln.get_ydata()) >= 0) for ln in lines)     # best so far never falls


def test_an_untuned_run_writes_no_tuning_block(tmp_path, monkeypatch):
    """tune.trials 0 (the demo): no trials.csv, no tuning key in the run's or the evaluation's metrics.json,
    so a run of the recipes as given is byte for byte what it was before tuning existed."""
    from pipeline import evaluate

    monkeypatch.chdir(tmp_path)
    write_cohort(tmp_path, train_cfg={"epochs": 1})
    for protocol in ("patient", "image"):
        assert train.main(["--scenario", "S1", "--model", "stanet", "--protocol", protocol]) == 0
    assert not (tmp_path / RUN / layout.TRIALS).exists()
    assert "tuning" not in json.loads((tmp_path / RUN / layout.RUN_METRICS).read_text())
    assert evaluate.main([]) == 0
    assert '"tuning"' not in (tmp_path / layout.METRICS).read_text()


def test_a_trial_left_running_by_a_killed_process_is_failed_and_drawn_again(tmp_path, monkeypatch):
    """A process killed during trial 2 leaves it RUNNING in the journal; the next run marks it failed and
    asks again with the sampler seeded by the trials finished, so the study equals an uninterrupted one."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    for name in ("killed", "whole"):
        root = tmp_path / name
        root.mkdir()
        monkeypatch.chdir(root)
        tuned_project(root, trials=1 if name == "killed" else 2)
        assert train.main(ARGS) == 0
        if name == "killed":
            journal = layout.checkpoint_path("S1", "stanet", "patient", 1).parent / "tune.journal"
            storage = JournalStorage(JournalFileBackend(str(journal)))
            loaded = optuna.load_study(study_name=optuna.get_all_study_summaries(storage)[0].study_name,
                                       storage=storage)
            loaded.ask()                                  # trial 2 begun, its process gone
            tuned_project(root, trials=2)
            assert train.main(ARGS) == 0
            states = [t.state for t in loaded.get_trials(deepcopy=False)]
            assert states.count(TrialState.FAIL) == 1 and len(states) == 3
    killed = study(tmp_path / "killed")
    pd.testing.assert_frame_equal(killed, study(tmp_path / "whole"))
    assert len(killed) == 2
