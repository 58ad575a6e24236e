"""Figure geometry, measured from matplotlib's rendered boxes (get_window_extent), not by eye, on the
report figures of two fixtures built without training (tests/fixture_runs.py): the tiny profile's
shape (S1-S4, two models, two folds) and the CPU demo's nine models (S1, three folds). Then the
report's failure analysis, reporting checklist and data-source framing, read as text."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import evaluate, report
from pipeline.core import layout
from pipeline.evaluation import stats
from pipeline.reporting import checklist, cohortfigure, figures, placement
from fixture_runs import DEMO_MODELS, write_fixture

PROFILES = {
    # the tiny profile (profiles/tiny.yaml): S1-S4, stanet and resnet18, patient and image, 2 folds, 2 repeats
    "tiny": {"models": ("stanet", "resnet18"), "scenarios": ("S1", "S2", "S3", "S4"), "folds": 2,
             "n_patients": 24, "images_per_patient": 14, "repeats": 2},
    # the CPU demo (params.yaml): its nine models, S1, patient and image, 3 folds
    "demo": {"models": DEMO_MODELS, "scenarios": ("S1",), "folds": 3, "n_patients": 20, "images_per_patient": 28},
}
LOCK = {"schema": "2.0", "stages": {"prepare": {"cmd": "python -m pipeline.prepare", "outs": [{"md5": "ab"}]},
                                    "evaluate": {"cmd": "python -m pipeline.evaluate"},
                                    "report": {"cmd": "python -m pipeline.report", "outs": [{"md5": "cd"}]}}}


def _git(root, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True).stdout


def drawing(root, steps) -> dict:
    """Run `steps` from `root`, keeping every figure they save: {suptitle: Figure}, in drawing order."""
    drawn = {}
    save = figures._save
    old = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        for module in (figures, cohortfigure):   # the report's figures and prepare's
            mp.setattr(module, "_save", lambda fig, path: (drawn.__setitem__(fig.get_suptitle(), fig), save(fig, path)))
        os.chdir(root)
        try:
            steps()
        finally:
            os.chdir(old)
    return drawn


@pytest.fixture(scope="module", params=list(PROFILES))
def project(request, tmp_path_factory):
    """A fixture project (a git checkout with a dvc.lock), evaluated and reported from its root; the
    report figures are kept as matplotlib Figures as well as written."""
    kw = PROFILES[request.param]
    root = write_fixture(tmp_path_factory.mktemp(request.param), protocols=("patient", "image"), **kw)
    (root / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "fixture")
    def steps():
        assert evaluate.main([]) == 0
        assert report.main([]) == 0
        manifest = pd.read_csv(root / "data/processed/manifest.csv")
        images = np.random.default_rng(0).integers(0, 255, (len(manifest), 1, 32, 32), dtype=np.uint8)
        cohortfigure.cohort_examples(images, manifest, "synthetic cohort", root / "cohort.png")

    drawn = drawing(root, steps)
    by_file = dict(zip([f.file for f in (*figures.figures_of("report"), *figures.figures_of("prepare"))],
                       drawn.values(), strict=True))
    return request.param, root, by_file


# ---- measuring -------------------------------------------------------------------------------

def _texts(fig):
    """Every visible, non-empty text artist of the figure that is not a tick label (tick labels
    outside the view keep stale positions; the tight box below covers the drawn ones)."""
    from matplotlib.axis import Tick
    from matplotlib.text import Text

    ticks = {id(t) for tick in fig.findobj(Tick) for t in (tick.label1, tick.label2)}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in ticks
            and t.figure is not None]


def _boxes_overlap(a, b, tol: float = 0.5) -> bool:
    return a.x0 + tol < b.x1 and b.x0 + tol < a.x1 and a.y0 + tol < b.y1 and b.y0 + tol < a.y1


def overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of text labels drawn inside the axes (annotations, line labels) whose letters overlap."""
    r = fig.canvas.get_renderer()
    labels = [(t.get_text(), placement.text_box(t, r)) for ax in fig.axes for t in ax.texts if t.get_visible()]
    return [(a, b) for i, (a, ba) in enumerate(labels) for b, bb in labels[i + 1:] if _boxes_overlap(ba, bb)]


def legends_over_data(fig) -> list[str]:
    """Legends whose rendered box overlaps any axes' data area (the axes patch)."""
    from matplotlib.legend import Legend

    r = fig.canvas.get_renderer()
    out = []
    for legend in fig.findobj(Legend):
        box = legend.get_window_extent(r)
        for ax in fig.axes:
            if ax.get_visible() and ax.axison and _boxes_overlap(box, ax.get_window_extent(r)):
                out.append(f"legend {[t.get_text() for t in legend.get_texts()][:2]} over axes {ax.get_title()!r}")
    return out


def texts_off_canvas(fig) -> list[str]:
    """Texts (and the tight box of everything drawn) reaching beyond the figure's canvas."""
    r = fig.canvas.get_renderer()
    canvas = fig.bbox
    out = [t.get_text()[:60] for t in _texts(fig)
           if (b := placement.text_box(t, r)).x0 < canvas.x0 - 1 or b.x1 > canvas.x1 + 1
           or b.y0 < canvas.y0 - 1 or b.y1 > canvas.y1 + 1]
    tight = fig.get_tightbbox(r)      # inches
    w, h = fig.get_size_inches()
    if tight.x0 < -0.01 or tight.y0 < -0.01 or tight.x1 > w + 0.01 or tight.y1 > h + 0.01:
        out.append(f"drawn content {tight} beyond the {w}x{h} in canvas")
    return out


# ---- the measures can fail ------------------------------------------------------------------

def test_the_measures_catch_what_they_look_for():
    fig = figures._figure(4, 3)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.text(0.5, 0.5, "one label")
    ax.text(0.5, 0.5, "another label")
    ax.legend(loc="center")
    fig.text(0.9, 0.5, "a text running far beyond the right edge of the canvas")
    fig.canvas.draw()
    assert overlapping_labels(fig) == [("one label", "another label")]
    assert legends_over_data(fig)
    assert any("beyond the right edge" in t for t in texts_off_canvas(fig))


# ---- geometry on both fixtures --------------------------------------------------------------

def test_every_figure_is_drawn(project):
    name, root, figs = project
    assert sorted(figs) == sorted(f.file for f in figures.FIGURES)
    for f in figures.figures_of("report"):
        assert (root / "reports/figures" / f.file).stat().st_size > 0


def test_headline_labels_do_not_overlap(project):
    name, _, figs = project
    fig = figs["accuracy_vs_macs.png"]
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    n_panels = len([ax for ax in fig.axes if ax.get_title()])
    assert sum("STANet (proposed)" in t for t in labels) == n_panels            # named in every panel
    assert sum(t.startswith("chance") for t in labels) == n_panels               # chance labelled in every panel
    if name == "demo":
        assert sum(t == "3 ablations" for t in labels) == n_panels               # one shared label for the ablations
    assert overlapping_labels(fig) == []


def test_headline_labels_stay_in_their_panels(project):
    _, _, figs = project
    fig = figs["accuracy_vs_macs.png"]
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        inside = ax.get_window_extent(r)
        for t in ax.texts:
            b = placement.text_box(t, r)
            assert inside.x0 - 1 <= b.x0 and b.x1 <= inside.x1 + 1 and inside.y0 - 1 <= b.y0 and b.y1 <= inside.y1 + 1, \
                t.get_text()


@pytest.mark.parametrize("file", [f.file for f in figures.FIGURES])
def test_no_legend_over_data_and_all_text_on_canvas(project, file):
    _, _, figs = project
    fig = figs[file]
    assert legends_over_data(fig) == []
    assert texts_off_canvas(fig) == []
    assert fig.get_size_inches()[0] <= figures.PAGE_WIDTH       # drawn for page width, not shrunk to it


def test_headline_plots_balanced_accuracy_with_corrected_intervals(project):
    """The star is the proposed model's mean balanced accuracy over folds, and its error bar is the
    corrected repeated k-fold t interval of per_fold.csv's balanced accuracies."""
    from scipy.stats import t

    name, root, figs = project
    fig = figs["accuracy_vs_macs.png"]
    per_fold = pd.read_csv(root / "reports/per_fold.csv")
    rows = per_fold[(per_fold.scenario == "S1") & (per_fold.model == "stanet") & (per_fold.protocol == "patient")]
    v = rows["balanced_accuracy"].to_numpy()
    half = t.ppf(0.975, len(v) - 1) * np.sqrt((1 / len(v) + rows.n_test.mean() / rows.n_train.mean()) * v.var(ddof=1))
    assert stats.corrected_half_width(v, rows.n_test.mean(), rows.n_train.mean()) == pytest.approx(half)
    ax = next(a for a in fig.axes if a.get_title() == "S1, patient protocol")
    from matplotlib.collections import PathCollection

    star = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_sizes()[0] == 260]
    assert len(star) == 1 and star[0].get_offsets()[0][1] == pytest.approx(100 * v.mean())
    macs = json.loads((root / "reports/complexity/stanet.json").read_text())["paper_setting"]["macs"]
    bars = [seg for c in ax.containers for seg in c.lines[2][0].get_segments() if seg[0][0] == pytest.approx(macs)]
    assert len(bars) == 1
    assert sorted(bars[0][:, 1]) == pytest.approx([100 * (v.mean() - half), 100 * (v.mean() + half)])
    caption = next(f.caption for f in figures.FIGURES if f.file == "accuracy_vs_macs.png")
    assert "corrected" in caption and "n_test/n_train" in caption


def test_pareto_front():
    assert figures.pareto_front([(1, 50), (2, 70), (3, 60), (4, 80), (5, 80)]) == [(1, 50), (2, 70), (4, 80)]


def test_failed_folds_are_ringed_as_per_fold_csv_says(project):
    """The per-fold figure rings exactly the fold runs per_fold.csv marks failed (stats.failed_folds'
    rule, applied by evaluate), once in the accuracy and once in the balanced-accuracy panel."""
    from matplotlib.collections import PathCollection

    _, root, figs = project
    per_fold = pd.read_csv(root / "reports/per_fold.csv")
    rings = [c for ax in figs["per_fold_accuracy.png"].axes for c in ax.collections
             if isinstance(c, PathCollection) and len(c.get_sizes()) and c.get_sizes()[0] == 110]
    assert len(rings) == 2 * int(per_fold["failed"].sum())


def test_corrected_interval_is_stats_test():
    """One implementation: the figure's bar is the half-width of stats.repeated_kfold_ttest's interval,
    with R repeats counted in its degrees of freedom (k*R - 1); zero spread gives a zero-width bar."""
    from pipeline.evaluation import stats

    v = [0.61, 0.72, 0.55, 0.68, 0.70, 0.59]
    t = stats.repeated_kfold_ttest(v, 100, 50, repeats=2)
    assert stats.corrected_half_width(v, 50, 100, repeats=2) == pytest.approx((t["ci_high"] - t["ci_low"]) / 2)
    assert stats.corrected_half_width([0.7, 0.7, 0.7], 50, 100) == 0.0
    assert stats.corrected_half_width([0.7], 50, 100) is None


# ---- the report as text ---------------------------------------------------------------------

def _readme(root) -> str:
    return (root / "reports/README.md").read_text()


def test_title_first_line_and_comparison_name_the_data_source(project):
    _, root, _ = project
    lines = [line for line in _readme(root).splitlines() if line.strip()]
    assert lines[0].startswith("# myobench results on synthetic cohort (not patient data)")
    assert lines[1] == "## At a glance"
    assert lines[2].startswith("- **Data:** synthetic cohort") and "say nothing about patients" in lines[2]
    rows = list(csv.DictReader((root / "reports/comparison.csv").open()))
    assert rows and {r["data_source"] for r in rows} == {"synthetic cohort"}
    assert "](figures/cohort_examples.png)" in _readme(root)


def test_checklist_is_filled_from_the_run(project):
    _, root, _ = project
    text = _readme(root)
    section = text.split("## Reporting checklist (CLAIM 2024, TRIPOD+AI 2024)", 1)[1]
    assert "CLAIM 2024" in section and "TRIPOD+AI 2024" in section
    head = _git(root, "rev-parse", "HEAD").strip()
    assert f"git commit {head}" in section
    stages = {k: v for k, v in LOCK["stages"].items() if k != "report"}
    digest = hashlib.sha256(yaml.safe_dump(stages, sort_keys=True).encode()).hexdigest()[:16]
    assert f"sha256 {digest} (dvc.lock, 2 stages before `report`)" in section
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["meta"]["cohort"] == "f1x7c0h0r7" and "cohort fingerprint f1x7c0h0r7" in section
    for s in metrics["meta"]["scenarios"]:
        assert f"{s} {metrics[s]['meta']['splits']}" in section
    assert f"torch {report.package_versions()['torch']}" in section
    assert "labels are the generator's" in section and "argmax" in section
    assert "[split_summary.md](split_summary.md)" in section
    # flow: each repeat's folds of S1 under patient folds, patients / images per class, from the runs
    repeats = metrics["meta"]["repeats"]
    # one repeat of one seed: robustness was not assessed, and the checklist says so
    assert (f"{repeats} repeats of" in section) if repeats > 1 else \
        ("Robustness: repeats and seeds | CLAIM 2024 robustness; TRIPOD+AI model evaluation | not assessed: one seed"
         in section and "one repeat of" in section)
    for r in range(1, repeats + 1):
        for k in metrics["meta"]["folds"]:
            pred = pd.read_csv(layout.run_dir("S1", "stanet", "patient", k, root / "runs", repeat=r) / layout.PREDICTIONS)
            normal = pred[pred.label == 0]
            flow = next(line for line in section.splitlines() if line.startswith(f"| S1 | patient | {r} | {k} |"))
            assert f"| {normal.patient_id.nunique()} / {len(normal)} |" in flow
    authors = section.split("For the authors", 1)[1]
    for words in ("Ethics approval", "intended use", "reference standard was established"):
        assert words in authors


def test_failure_analysis_by_subtype_site_and_patient(project):
    name, root, _ = project
    text = _readme(root)
    section = text.split("## Failure analysis", 1)[1].split("\n## ", 1)[0]
    manifest = pd.read_csv(root / "data/processed/manifest.csv")
    # every fold of every repeat (repeat-<r>/fold-<k> after the first), as the section pools them
    pred = pd.concat([pd.read_csv(layout.run_dir("S1", "stanet", "patient", k, root / "runs", repeat=r)
                                  / layout.PREDICTIONS)
                      for r in range(1, PROFILES[name].get("repeats", 1) + 1)
                      for k in range(1, PROFILES[name]["folds"] + 1)]).merge(manifest, on="image_id")
    pred["wrong"] = pred.predicted != pred.label
    block = section.split("### S1", 1)[1].split("### ", 1)[0]
    by_dx = block.split("By diagnosis:", 1)[1].split("By muscle", 1)[0]
    assert by_dx.splitlines()[2].startswith("| Model | N | IBM | PM | DM |")
    row = next(line for line in by_dx.splitlines() if line.startswith("| STANet"))
    for dx in ("N", "IBM", "PM", "DM"):
        d = pred[pred.diagnosis == dx]
        assert f"{100 * d.wrong.mean():.0f}% ({len(d)})" in row, (dx, row)
    assert "| R D |" in block and "| L D |" in block        # muscle and side
    worst = block.split("Most-missed patients:", 1)[1]
    first = worst.strip().splitlines()[2]
    pid = first.split("|")[1].strip()
    assert pid in set(manifest.patient_id)
    assert f"of {len(PROFILES[name]['models'])}" in first


# ---- the tiny profile, trained for real ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_repro(tiny_report):
    """The shared tiny run (tests/projects.py, a copy of it), its report drawn again from its real runs with
    every figure kept."""
    work, _ = tiny_report
    drawn = drawing(work, lambda: report.main([]))
    return dict(zip([f.file for f in figures.figures_of("report")], drawn.values(), strict=True))


@pytest.mark.slow
def test_tiny_profile_figures_geometry(tiny_repro):
    for file, fig in tiny_repro.items():
        assert legends_over_data(fig) == [], file
        assert texts_off_canvas(fig) == [], file
    assert overlapping_labels(tiny_repro["accuracy_vs_macs.png"]) == []
