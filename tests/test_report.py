"""The report stage on fixture runs: every output file, tables read from the metrics, figures,
the paper-beside-this-run table and the generated reading."""
from __future__ import annotations

import copy
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import evaluate, report
from pipeline.core.errors import DataError
from pipeline.data.sources import SOURCES
from pipeline.reporting import figures, paper
from pipeline.reporting.findings import exploratory_rows, findings
from pipeline.reporting.results import Results
from fixture_runs import write_fixture

MODELS = ("stanet", "dual_vgg", "resnet18")
PROTOCOLS = ("patient", "image")
OUTPUTS = ["comparison.csv", "comparison.md", "README.md", *(f"figures/{f}" for f in report.FIGURES)]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Fixture runs, evaluated and reported from inside the project directory with default paths."""
    root = write_fixture(tmp_path_factory.mktemp("project"), models=MODELS, protocols=PROTOCOLS, folds=3)
    old = os.getcwd()
    os.chdir(root)
    try:
        assert evaluate.main([]) == 0
        assert report.main([]) == 0
    finally:
        os.chdir(old)
    return root


@pytest.fixture(scope="module")
def metrics(project):
    return json.loads((project / "reports/metrics.json").read_text())


def test_every_output_is_written(project):
    for name in OUTPUTS:
        path = project / "reports" / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert not list((project / "reports").rglob(".*.tmp"))      # no temporary files left behind


def shown(root) -> list[str]:
    """The report figures reports/README.md shows for this run (an untuned run does not show tuning_progress)."""
    r = Results(json.loads((root / "reports/metrics.json").read_text()))
    return [f.file for f in figures.figures_of("report") if f.shown is None or f.shown(r)]


def test_figures_are_readable_pngs(project):
    assert "tuning_progress.png" not in shown(project) and len(shown(project)) == len(report.FIGURES) - 1
    for name in report.FIGURES:
        with Image.open(project / "reports/figures" / name) as im:
            assert im.format == "PNG"
            if name not in shown(project):   # drawn (dvc.yaml declares it), a line saying why it is empty
                continue
            assert im.width >= 600 and im.height >= 400, (name, im.size)
            pixels = np.asarray(im.convert("L"), dtype=float)
        assert pixels.std() > 10, f"{name} looks blank"


def test_comparison_csv_reads_metrics_and_complexity(project, metrics):
    rows = list(csv.DictReader((project / "reports/comparison.csv").open()))
    assert [(r["scenario"], r["model"], r["protocol"]) for r in rows] == [("S1", m, p) for m in MODELS
                                                                        for p in PROTOCOLS]
    assert list(rows[0]) == report.COMPARISON_COLUMNS
    complexity = {m: json.loads((project / f"reports/complexity/{m}.json").read_text()) for m in MODELS}
    for r in rows:
        c = complexity[r["model"]]
        assert int(r["params"]) == c["params"]
        assert int(float(r["macs_3x224x224"])) == c["paper_setting"]["macs"]
        want_pct = 100 * c["paper_setting"]["macs"] / complexity["dual_vgg"]["paper_setting"]["macs"]
        assert float(r["macs_pct_of_dual_vgg"]) == pytest.approx(want_pct, rel=1e-5)
        assert float(r["cpu_latency_batch1_ms"]) == pytest.approx(c["latency"]["batch_1"]["median_ms"])
        assert r["display_name"] == c["display_name"]
        s = metrics[r["scenario"]][r["model"]][r["protocol"]]
        assert float(r["accuracy_mean"]) == pytest.approx(s["accuracy"]["mean"], rel=1e-5)
        assert float(r["macro_f1_mean"]) == pytest.approx(s["macro_f1"]["mean"], rel=1e-5)
        assert (r["patient_accuracy_mean"] != "") == (r["protocol"] == "patient")
    # training seconds: the sum over the cell's runs' own metrics.json (reports/metrics.json holds no
    # wall-clock time)
    for r in rows:
        want = sum(json.loads(path.read_text())["seconds"]
                   for path in (project / "runs/S1" / r["model"] / r["protocol"]).rglob("metrics.json"))
        assert float(r["training_seconds"]) == pytest.approx(want) and want > 0


def test_comparison_md_has_a_column_per_summary_metric(project):
    """The performance table's metric columns come from metrics.SUMMARY_METRICS (balanced accuracy first);
    comparison.csv keeps a column for every one of them, macro-F1 too."""
    from pipeline.evaluation.metrics import SUMMARY_METRICS
    from pipeline.report import PERFORMANCE

    header = next(line for line in (project / "reports/comparison.md").read_text().splitlines()
                  if line.startswith("| Scenario |"))
    labels = {m.key: m.label for m in SUMMARY_METRICS}
    assert set(PERFORMANCE) <= set(labels) and PERFORMANCE[0] == "balanced_accuracy"
    for key in PERFORMANCE:
        assert f"| {labels[key]} (mean ± sd) |" in header, key
    csv_header = (project / "reports/comparison.csv").read_text().splitlines()[0].split(",")
    for m in SUMMARY_METRICS:
        assert f"{m.key}_mean" in csv_header and f"{m.key}_sd" in csv_header, m.key
    assert "| Balanced accuracy (mean ± sd) |" in header


def test_paper_table_sets_this_runs_figures_beside_the_published(project, metrics):
    md = (project / "reports/comparison.md").read_text()
    assert "## The paper beside this run" in md
    dual_image = 100 * metrics["S1"]["dual_vgg"]["image"]["accuracy"]["mean"]
    ucar_s1 = next(line for line in md.splitlines() if line.startswith("| [Uçar 2022]") and "| S1 |" in line)
    assert "93.00" in ucar_s1 and f"{dual_image:.1f}" in ucar_s1 and "image protocol" in ucar_s1
    assert "synthetic cohort: not comparable to the published figure" in ucar_s1
    for other in ("| S2 |", "| S3 |", "| S4 |"):
        line = next(line for line in md.splitlines() if line.startswith("| [Uçar 2022]") and other in line)
        assert "not run (this run: S1)" in line      # the fixture runs S1 only
    macs_line = next(line for line in md.splitlines() if "% of dual-branch" in line)
    c = {m: json.loads((project / f"reports/complexity/{m}.json").read_text())["paper_setting"]["macs"]
         for m in ("stanet", "dual_vgg")}
    assert "| 0.25 |" in macs_line and f"{100 * c['stanet'] / c['dual_vgg']:.2f}" in macs_line
    for doi in ("10.7507/1001-5515.202301023", "10.1016/j.bspc.2021.103277", "10.1371/journal.pone.0184059"):
        assert doi in md


def test_readme_header_tables_figures_and_reading(project, metrics):
    text = (project / "reports/README.md").read_text()
    for words in ("synthetic cohort", "S1: normal vs myositis", "| Scenarios |", "patient (folds grouped by patient",
                  "image (image-level", "1x32x32", "| Epochs | 4 |", "| Seed | 0 |", "trained from scratch",
                  "`pretrained: false`",
                  "torch ", "timm ", "dvc ", "numpy ", "scikit-learn ", "python ", "fixture CPU", "fixture;",
                  "## The paper beside this run"):
        assert words in text, words
    for name in report.FIGURES:
        assert (f"](figures/{name})" in text) == (name in shown(project)), name
    for protocol in PROTOCOLS:
        best = max(MODELS, key=lambda m: metrics["S1"][m][protocol]["balanced_accuracy"]["mean"])
        label = json.loads((project / f"reports/complexity/{best}.json").read_text())["display_name"]
        # no difference of these is distinguishable: "best" is not said
        assert "Highest mean balanced accuracy (%), not tested against every other model: " in text
        assert f"S1, {protocol} protocol: {label}, " in text
    assert "best model" not in text
    # the reading opens with the primary comparison and its minimum detectable difference
    reading = text.split("## Reading")[1]
    first = [line for line in reading.splitlines() if line.startswith("- ")][0]
    assert first.startswith("- Primary comparison (declared in params.yaml's evaluate.primary, ")
    assert "this design detects a difference of" in text and "with 80% power" in text
    gaps = [metrics["S1"][m]["image"]["accuracy"]["mean"] - metrics["S1"][m]["patient"]["accuracy"]["mean"]
            for m in MODELS]
    assert f"(image minus patient, points): S1 {100 * np.mean(gaps):+.1f} over {len(MODELS)} models" in text
    assert "Holm-adjusted" in text and "majority-class rate" in text


def _sentences(lines: list[str]) -> list[str]:
    import re

    return [s for line in lines for s in re.split(r"(?<=[.;])\s+(?=[A-Z])", line)]


def _check_exploratory(metrics: dict, models, at_least: int = 3, primary_verdict: bool = True) -> None:
    """The exploratory table has one row per tested comparison (the primary excluded, stated at the top), and
    each row's verdict comes from the corrected t-test whose own interval and p-values sit beside it; the
    patient bootstrap is a column of its own, headed as no test. The reading gives no exploratory verdict:
    its only verdict is the primary's, and its only bootstrap the primary's, named for what it is."""
    labels = {m: m for m in models}
    complexity = {m: {"params": 10, "paper_setting": {"macs": 100 * (i + 1)}} for i, m in enumerate(models)}
    r = Results(metrics)
    rows = exploratory_rows(r, labels)
    tested = [(s, p, m) for s, p in r.panels for m, c in r.comparisons(s, p).items()
              if c.get("claim") and (c.get("balanced_accuracy") or {}).get("family") != "primary"
              and (c.get("balanced_accuracy") or {}).get("mean_difference") is not None]
    assert len(rows) == len(tested) >= at_least
    assert [(x["scenario"], x["protocol"], x["model"]) for x in rows] == tested
    for row in rows:
        c = metrics[row["scenario"]]["comparisons"][row["protocol"]][row["model"]]
        t = c["balanced_accuracy"]
        assert (row["difference"], row["ci_low"], row["ci_high"], row["p_holm"], row["p_value"], row["mdd"]) == \
            (t["mean_difference"], t["ci_low"], t["ci_high"], t["p_holm"], t["p_value"], t["mdd"])
        assert row["verdict"] == ("distinguishable" if t["p_holm"] < 0.05 else "not distinguishable")
        # the bootstrap of the same metric as the test, and the interval that agrees with the Holm step
        assert (row["bootstrap_low"], row["bootstrap_high"]) == (c["bootstrap_balanced_accuracy"]["ci_low"],
                                                                  c["bootstrap_balanced_accuracy"]["ci_high"])
        assert (row["ci_holm_low"], row["ci_holm_high"]) == (t.get("ci_holm_low"), t.get("ci_holm_high"))
        if t.get("ci_holm_low") is not None:
            assert (t["ci_holm_low"] > 0 or t["ci_holm_high"] < 0) == (t["p_value"] < t["holm_level"])
    md = report.exploratory_markdown(rows, labels)
    header = md.splitlines()[0]
    assert "Corrected t 95% interval" in header and "| p (Holm) |" in header and "Holm-consistent interval" in header
    assert header.rstrip(" |").endswith("Not a test: patient-bootstrap 95% interval of these trained models' "
                                         "balanced-accuracy difference (points)")
    assert len(md.splitlines()) == 2 + len(rows)
    lines = findings(r, complexity, labels, patient_data=False)
    verdicts = [s for s in _sentences(lines) if "distinguishable" in s]
    assert (bool(verdicts) or not primary_verdict) and all("from zero at the 5% level" in s for s in verdicts), \
        verdicts   # the primary's, unless a model of it did not learn
    boot = [line for line in lines if "bootstrap interval" in line]
    assert all("distinguishable" not in line and "not a test of the method" in line for line in boot), boot
    assert sum("Sign convention" in line for line in lines) == 1


def test_no_verdict_is_paired_with_another_tests_interval(metrics):
    _check_exploratory(metrics, MODELS)


def _check_openings(root: Path, models, name: str) -> None:
    """With numbers, model, scenario and protocol names masked, no opening of a sentence of the Reading in
    root/reports/README.md appears more than three times."""
    import re

    text = (root / "reports/README.md").read_text(encoding="utf-8")
    reading = text.split("## Reading", 1)[1].split("\n## ", 1)[0]
    masked = reading
    for token in sorted({*models, *(json.loads((root / f"reports/complexity/{m}.json").read_text())
                                    .get("display_name", m) for m in models)}, key=len, reverse=True):
        masked = masked.replace(token, "M")
    masked = re.sub(r"\bS[1-4]\b", "S", re.sub(r"[-+]?\d[\d.,]*", "#", masked))
    masked = re.sub(r"\b(patient|image)\b", "P", masked)
    # sentences: split at a full stop before a capital or a bullet (lists inside one sentence, joined by
    # semicolons, are one statement)
    openings = [" ".join(s.split()[:6]) for s in re.split(r"(?<=\.)\s+(?=[A-Z*])|\n- ", masked) if len(s.split()) >= 6]
    counts = {o: openings.count(o) for o in set(openings)}
    assert max(counts.values()) <= 3, (name, sorted(counts.items(), key=lambda x: -x[1])[:3])


@pytest.mark.slow   # 20 s: the fast tier checks the committed demo report's openings; the slow tiny run the rest
def test_no_sentence_pattern_repeats_more_than_three_times_in_the_reading(tmp_path):
    """On the tiny profile's shape (S1-S4, two protocols, two repeats) and the demo's (nine models), the
    reading states each kind of thing once: with numbers, model, scenario and protocol names masked, no
    opening of a sentence appears more than three times."""
    from fixture_runs import DEMO_MODELS

    for name, kw in {"tiny": dict(models=("stanet", "resnet18"), scenarios=("S1", "S2", "S3", "S4"), folds=2,
                                  repeats=2),
                     "demo": dict(models=DEMO_MODELS, folds=3)}.items():
        (tmp_path / name).mkdir()
        root = write_fixture(tmp_path / name, protocols=PROTOCOLS, **kw)
        old = os.getcwd()
        os.chdir(root)
        try:
            assert evaluate.main([]) == 0
            assert report.main([]) == 0
        finally:
            os.chdir(old)
        _check_openings(root, kw["models"], name)


def test_reading_follows_the_numbers(metrics):
    """The reading is generated: flip the leakage gap and the sentence about overstatement goes away."""
    labels = {m: m for m in MODELS}
    complexity = {m: {"params": 10, "paper_setting": {"macs": 100 * (i + 1)}} for i, m in enumerate(MODELS)}
    flipped = copy.deepcopy(metrics)
    for m in MODELS:
        block = flipped["S1"][m]
        block["image"], block["patient"] = block["patient"], block["image"]
    original = " ".join(findings(Results(metrics), complexity, labels, patient_data=False))
    changed = " ".join(findings(Results(flipped), complexity, labels, patient_data=False))
    assert ("overstate" in original) != ("overstate" in changed)
    assert "synthetic cohort" in changed


def test_missing_complexity_names_the_profile_command(project, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(project, root)
    (root / "reports/complexity/resnet18.json").unlink()
    want = r"resnet18.json: missing; make it with `python -m pipeline.profile --model resnet18`"
    with pytest.raises(DataError, match=want):
        report.main(["--params", str(root / "params.yaml"), "--runs", str(root / "runs"),
                     "--reports", str(root / "reports")])


def test_beside_this_run_matches_scenario_and_protocol():
    """Real-data run of S2 with the published folds: Uçar's S2 figure sits beside the ucar protocol."""
    acc = lambda a: {"accuracy": {"mean": a, "sd": 0.01}}  # noqa: E731
    metrics = {"meta": {"scenarios": ["S2"], "protocols": ["patient", "ucar"], "data_source": "ucar",
                        "folds": [1, 2], "models": ["stanet", "dual_vgg"], "input_size": [3, 224, 224]},
               "S2": {"stanet": {"patient": acc(0.81), "ucar": acc(0.95)},
                      "dual_vgg": {"patient": acc(0.78), "ucar": acc(0.9432)}}}
    complexity = {"stanet": {"paper_setting": {"macs": 50}}, "dual_vgg": {"paper_setting": {"macs": 20000}}}
    rows = paper.beside_this_run(Results(metrics), complexity, SOURCES["ucar"].caveat)
    ucar = {r["published_scenario"]: r for r in rows if r["source"] == "Uçar 2022"}
    assert ucar["S2"]["this_run"] == "94.3 ± 1.0" and "ucar protocol" in ucar["S2"]["this_run_setting"]
    assert ucar["S2"]["note"].endswith("same public cohort (Uçar release of Burlina 2017)")
    assert ucar["S1"]["this_run"] == "not run (this run: S2)"
    # Burlina's AlexNet is not in this run: no number of another network is set beside it
    burlina_b = [r for r in rows if r["source"] == "Burlina et al. 2017" and r["published_scenario"] == "S2"]
    # one published figure, one row: both protocols named, the reason said once
    assert len(burlina_b) == 1 and all(r["this_run"] == "not set beside (see comparability)"
                                       and r["note"].count("this run has no fine-tuned AlexNet") == 1
                                       and "patient and ucar protocols" in r["this_run_setting"] for r in burlina_b)
    # Tan et al.'s abstract states no scenario or protocol: no number beside its gain either
    gain = [r for r in rows if r["quantity"].startswith("accuracy difference")]
    assert gain and all(r["this_run"] == "not set beside (see comparability)" and "not stated" in r["note"]
                        for r in gain)
    macs = next(r for r in rows if r["quantity"].startswith("MACs"))
    assert macs["this_run"] == "0.25"


def test_stand_in_caveat_only_on_its_rows():
    """The demo's dual_vgg_bn stands in for dual_vgg: the rows about the dual-branch network say so and
    set no number beside the published one; no other row carries that caveat."""
    acc = lambda a: {"accuracy": {"mean": a, "sd": 0.01}}  # noqa: E731
    metrics = {"meta": {"scenarios": ["S1"], "protocols": ["patient", "image"], "data_source": "synthetic",
                        "folds": [1, 2, 3], "models": ["stanet", "dual_vgg_bn", "handcrafted"],
                        "input_size": [1, 36, 36]},
               "S1": {m: {"patient": acc(0.7), "image": acc(0.76)} for m in ("stanet", "dual_vgg_bn", "handcrafted")}}
    complexity = {"stanet": {"paper_setting": {"macs": 50}}, "dual_vgg_bn": {"paper_setting": {"macs": 20000}}}
    rows = paper.beside_this_run(Results(metrics), complexity, SOURCES["synthetic"].caveat)
    for r in rows:
        about_dual = "dual-branch" in r["network"] or r["quantity"].startswith(("accuracy difference", "MACs"))
        if not about_dual:
            assert "dual_vgg_bn" not in r["note"], r
    ucar_s1 = next(r for r in rows if r["source"] == "Uçar 2022" and r["published_scenario"] == "S1")
    assert ucar_s1["this_run"] == "not set beside (see comparability)" and "dual_vgg_bn" in ucar_s1["note"]
    assert "76.0" not in str(ucar_s1)


def test_four_scenarios_fill_the_published_table(tmp_path):
    """One run of S1-S4: a scenario column with all four, every Uçar row filled, a reading per scenario."""
    (tmp_path / "four").mkdir()
    root = write_fixture(tmp_path / "four", models=MODELS, protocols=PROTOCOLS, folds=2,
                         scenarios=("S1", "S2", "S3", "S4"))
    args = ["--params", str(root / "params.yaml"), "--runs", str(root / "runs")]
    assert evaluate.main([*args, "--out-dir", str(root / "reports")]) == 0
    assert report.main([*args, "--reports", str(root / "reports"),
                        "--manifest", str(root / "data/processed/manifest.csv")]) == 0
    rows = list(csv.DictReader((root / "reports/comparison.csv").open()))
    assert sorted({r["scenario"] for r in rows}) == ["S1", "S2", "S3", "S4"]
    s4 = [r for r in rows if r["scenario"] == "S4"]
    assert all(int(r["params"]) == json.loads((root / f"reports/complexity/{r['model']}.json").read_text())
               ["params_by_scenario"]["S4"] for r in s4)
    text = (root / "reports/README.md").read_text()
    ucar_rows = [line for line in text.splitlines() if line.startswith("| [Uçar 2022]")]
    assert len(ucar_rows) == 4 and not any("not run" in line for line in ucar_rows)
    reading = text.split("## Reading", 1)[1].split("\n## ", 1)[0]
    assert reading.count("Highest mean balanced accuracy (%), not tested against every other model:") == 1
    assert reading.count("on average over the models that learned under both") == 1
    for scenario in ("S1", "S2", "S3", "S4"):
        assert f"{scenario}, patient protocol: " in reading        # one statement, every scenario in it
        assert f"{scenario} " in reading.split("on average over the models that learned under both")[1].split("\n")[0]
    for name in shown(root):
        with Image.open(root / "reports/figures" / name) as im:
            assert im.height >= 600, (name, im.size)      # one panel (row) per scenario at least


def test_a_model_that_learned_nothing_is_flagged_and_never_beaten_significantly(tmp_path):
    """dual_vgg predicts one class everywhere: it is marked degenerate in every table, the reading
    names it, and no comparison with it is called significant or enters the Holm family."""
    root = write_fixture(tmp_path, models=MODELS, protocols=PROTOCOLS, folds=3, constant_models=("dual_vgg",))
    args = ["--params", str(root / "params.yaml"), "--runs", str(root / "runs")]
    assert evaluate.main([*args, "--out-dir", str(root / "reports")]) == 0
    assert report.main([*args, "--reports", str(root / "reports"),
                        "--manifest", str(root / "data/processed/manifest.csv")]) == 0
    metrics = json.loads((root / "reports/metrics.json").read_text())
    for protocol in PROTOCOLS:
        summary = metrics["S1"]["dual_vgg"][protocol]
        assert summary["degenerate"] and summary["top_predicted_share"] == [1.0, 1.0, 1.0]
        assert not metrics["S1"]["stanet"][protocol]["degenerate"]
        c = metrics["S1"]["comparisons"][protocol]
        assert c["dual_vgg"]["claim"] is False and "dual_vgg did not learn" in c["dual_vgg"]["no_claim_reason"]
        assert c["dual_vgg"]["accuracy"]["p_holm"] is None and c["dual_vgg"]["accuracy"]["p_value"] is not None
        assert c["resnet18"]["claim"] is True and c["resnet18"]["accuracy"]["holm_family"] == 1
        majority = metrics["S1"]["meta"]["majority_rate"][protocol]
        assert len(majority) == 3 and all(0.5 <= m <= 1 for m in majority)
    rows = {(r["model"], r["protocol"]): r for r in csv.DictReader((root / "reports/comparison.csv").open())}
    assert rows[("dual_vgg", "image")]["degenerate"] == "True" and rows[("stanet", "image")]["degenerate"] == "False"
    text = (root / "reports/README.md").read_text()
    reading = text.split("## Reading", 1)[1].split("## Models", 1)[0]
    assert "Did not learn, marked degenerate" in reading and "Dual VGG16+19 (Uçar 2022) in S1 under" in reading
    exploratory = text.split("## Exploratory comparisons", 1)[1].split("\n## ", 1)[0]
    assert "minus resnet18" in exploratory
    assert "Dual VGG" not in exploratory      # no claim against a model that did not learn
    assert "Dual VGG" not in " ".join(l for l in reading.splitlines() if "image protocol: highest mean" in l)
    assert "**no (degenerate)**" in text
    assert "majority-class rate" in reading.lower() and "Holm-adjusted" in reading


def test_one_epoch_curves_are_drawn_with_markers(monkeypatch, tmp_path):
    """A one-epoch run is one point per model: without a marker, matplotlib draws nothing."""
    from pipeline.reporting import figures

    root = write_fixture(tmp_path, models=MODELS, protocols=("image",), folds=2, epochs=1)
    args = ["--params", str(root / "params.yaml"), "--runs", str(root / "runs")]
    assert evaluate.main([*args, "--out-dir", str(root / "reports")]) == 0
    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.setdefault(fig.get_suptitle().split(":")[0], fig))
    assert report.main([*args, "--reports", str(root / "reports"),
                        "--manifest", str(root / "data/processed/manifest.csv")]) == 0
    lines = [line for ax in drawn["Training curves"].axes for line in ax.get_lines()]
    assert len(lines) == 2 * len(MODELS)
    for line in lines:
        assert len(line.get_xdata()) >= 2 or line.get_marker() not in (None, "None", "", " "), line


def test_ablation_table_gives_one_test_per_row_on_the_headline_metric(tmp_path):
    """The ablations table is on balanced accuracy (the headline), and each row's interval is the corrected
    t-test's own, the test whose Holm-adjusted p stands beside it (issue 21: no verdict beside another test's
    interval)."""
    root = write_fixture(tmp_path, models=("stanet", "stanet_noatt", "stanet_dsc", "dual_vgg"), protocols=PROTOCOLS,
                         folds=3)
    assert evaluate.main(["--params", str(root / "params.yaml"), "--runs", str(root / "runs"),
                          "--out-dir", str(root / "reports")]) == 0
    metrics = json.loads((root / "reports/metrics.json").read_text())
    rows = report.ablation_rows(Results(metrics))
    assert [(r["protocol"], r["variant"]) for r in rows] == [(p, v) for p in PROTOCOLS
                                                             for v in ("stanet_noatt", "stanet_dsc")]
    table = report.ablation_markdown(rows, {})
    assert "Balanced accuracy % (mean ± sd)" in table and "over patients" not in table
    for r in rows:
        t = metrics["S1"]["comparisons"][r["protocol"]][r["variant"]]["balanced_accuracy"]
        assert (r["lead"], r["ci_low"], r["ci_high"], r["p_holm"]) == (t["mean_difference"], t["ci_low"],
                                                                       t["ci_high"], t["p_holm"])
        assert t["family"] == "ablations" and t["holm_family"] == 2
        assert r["mean"] == metrics["S1"][r["variant"]][r["protocol"]]["balanced_accuracy"]["mean"]
        line = next(line for line in table.splitlines() if f"| {r['protocol']} | {r['variant']} |" in line)
        assert f"{100 * t['ci_low']:+.1f} to {100 * t['ci_high']:+.1f}" in line and f"p = {t['p_holm']:.3f}" in line


def _check_at_a_glance(project: Path, metrics: dict, models) -> None:
    """The block at the top of reports/README.md: the primary comparison's estimate, interval, p, detectable
    difference and power, the lightest model within the primary interval's half-width of the highest, and
    the reference model's sensitivity and specificity for the positive class, each as metrics.json has it."""
    text = (project / "reports/README.md").read_text(encoding="utf-8")
    assert text.split("\n## ")[1].startswith("At a glance")
    block = [line for line in text.split("## At a glance", 1)[1].split("\n## ", 1)[0].splitlines() if line.startswith("- ")]
    assert 4 <= len(block) <= 8
    glance = "\n".join(block)
    b = metrics["S1"]["primary"]
    t, d = b["test"], b["design"]
    pts = lambda x: f"{100 * x:+.1f}"  # noqa: E731
    assert (f"is {pts(t['mean_difference'])} points (corrected t-test 95% interval {pts(t['ci_low'])} to "
            f"{pts(t['ci_high'])}, p = {t['p_value']:.3f})") in glance
    assert f"detects {100 * d['mdd']:.1f} points with 80% power, and has {100 * d['power_at_target']:.0f}% power" in glance
    margin = (t["ci_high"] - t["ci_low"]) / 2
    # among the models that learned (a model that did not is no candidate, however light)
    bal = {m: metrics["S1"][m]["patient"]["balanced_accuracy"]["mean"] for m in models
           if not metrics["S1"][m]["patient"].get("degenerate")}
    macs = {m: json.loads((project / f"reports/complexity/{m}.json").read_text())["paper_setting"]["macs"] for m in models}
    light = min((m for m in bal if bal[m] >= max(bal.values()) - margin), key=macs.get)
    name = json.loads((project / f"reports/complexity/{light}.json").read_text())["display_name"]
    assert f"**Accuracy per compute** (patient folds, S1): {name} ({macs[light] / 1e6:,.1f} MMACs" in glance
    assert f"({100 * bal[light]:.1f}%) is within the primary interval's half-width ({100 * margin:.1f} points)" in glance
    rates = metrics["S1"]["stanet"]["patient"]["class_rates"]["myositis"]
    for q in ("sensitivity", "specificity"):
        x = rates[q]
        assert f"{100 * x['estimate']:.1f}% ({100 * x['ci_low']:.1f}-{100 * x['ci_high']:.1f})" in glance, q
    assert "**Failures:**" in block[-1]


def test_at_a_glance_is_at_most_eight_lines_and_its_numbers_are_metrics_json(project, metrics):
    _check_at_a_glance(project, metrics, MODELS)


def test_the_committed_demo_reports_at_a_glance_is_its_metrics_json():
    """The same checks on the default run's committed report (reports/ of this checkout): regenerating the
    report from other numbers, or editing it by hand, fails here."""
    root = Path(__file__).resolve().parents[1]
    metrics = json.loads((root / "reports/metrics.json").read_text(encoding="utf-8"))
    _check_at_a_glance(root, metrics, metrics["meta"]["models"])


def test_the_committed_demo_reports_tables_and_reading_follow_their_tests():
    """The exploratory rows and the reading's verdicts (one test each) and the sentence patterns, on the
    default run's committed reports/metrics.json and reports/README.md."""
    root = Path(__file__).resolve().parents[1]
    metrics = json.loads((root / "reports/metrics.json").read_text(encoding="utf-8"))
    _check_exploratory(metrics, metrics["meta"]["models"])
    _check_openings(root, metrics["meta"]["models"], "demo")


@pytest.mark.slow
def test_the_tiny_runs_at_a_glance_tables_and_reading_follow_its_metrics_json(tiny_run):
    """The At a glance, exploratory-table and sentence-pattern checks on the shared tiny run (S1-S4, two
    repeats, stanet against resnet18), trained for real."""
    work, _, _ = tiny_run
    metrics = json.loads((work / "reports/metrics.json").read_text(encoding="utf-8"))
    _check_at_a_glance(work, metrics, metrics["meta"]["models"])
    # one comparison is tested there, and resnet18 learns nothing in two epochs: the primary supports no verdict
    _check_exploratory(metrics, metrics["meta"]["models"], at_least=1, primary_verdict=False)
    _check_openings(work, metrics["meta"]["models"], "tiny")
