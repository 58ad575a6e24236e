"""Report stage: comparison tables, figures and reports/README.md from the evaluated runs.

Reads reports/metrics.json and reports/per_fold.csv (evaluate), reports/complexity/<model>.json
(profile), reports/deploy/<scenario>/<model>.json (deploy), the runs' history.csv, predictions.csv
and metrics.json (train) and the cohort's data/processed/manifest.csv (prepare: diagnosis, muscle and
side for the failure analysis). Writes
reports/comparison.{csv,md}, reports/figures/*.png and reports/README.md. Every number in the
text is read from those files; the only constants are the published figures in pipeline/reporting/paper.py.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import itertools
import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import grid, layout, roster, scenarios
from pipeline.core.atomic import atomic_outputs, csv_text
from pipeline.core.errors import DataError
from pipeline.core.params import Params, load
from pipeline.core.readers import read_json, read_table
from pipeline.core.sysinfo import cpu_name
from pipeline.data.protocols import described
from pipeline.data.sources import SOURCES
from pipeline.evaluation.metrics import SUMMARY_METRICS
from pipeline.reporting import checklist, deployreport, failures, figures, paper, results
from pipeline.reporting.findings import at_a_glance, exploratory_rows, findings
from pipeline.reporting.results import Results

REFERENCE_COMPUTE = roster.COMPUTE_REFERENCE   # the paper states computation as a share of this network's
FIGURES = tuple(f.file for f in figures.figures_of("report"))
CLASS_NAMES = tuple(dict.fromkeys(c for s in scenarios.SCENARIOS for c in scenarios.class_names(s)))
CLASS_RATES = ("sensitivity", "specificity", "ppv", "npv")
COMPARISON_COLUMNS = [
    "data_source", "scenario", "model", "protocol", "display_name", "params", "macs_3x224x224", "flops_3x224x224",
    f"macs_pct_of_{REFERENCE_COMPUTE}", "cpu_latency_batch1_ms",
    *(f"{m.key}_{s}" for m in SUMMARY_METRICS for s in ("mean", "sd")),
    "patient_accuracy_mean", "patient_accuracy_sd", "accuracy_patient_ci_low", "accuracy_patient_ci_high",
    "patient_accuracy_exact", "patient_accuracy_exact_ci_low", "patient_accuracy_exact_ci_high",
    "patient_majority_rate", "majority_rate_mean", "majority_rate_min", "majority_rate_max", "degenerate",
    "failed_folds", "n_folds", "epochs", "optimizer_steps_per_fold", "training_seconds",
    # per class (every class of S1-S4; empty where a scenario lacks it): pooled estimate, patient-bootstrap interval
    *(f"{q}_{c}{s}" for c in CLASS_NAMES for q in CLASS_RATES for s in ("", "_ci_low", "_ci_high")),
    *deployreport.COLUMNS]


# ---- inputs ---------------------------------------------------------------------------------

def _read_json(path: Path, make: str) -> dict:
    return read_json(path, f"make it with `{make}` (or `dvc repro`)")


def load_complexity(models: list[str], directory: Path) -> dict[str, dict]:
    """reports/complexity/<model>.json of every model; DataError names a missing or incomplete file."""
    out = {}
    for model in models:
        path = layout.complexity_path(model, directory)
        c = _read_json(path, layout.profile_command(model))
        for key in ("params", "paper_setting", "latency"):
            if key not in c:
                raise DataError(f"{path}: no {key!r} key; re-make it with `{layout.profile_command(model)}`")
        out[model] = c
    return out


def display_name(model: str, complexity: dict[str, dict]) -> str:
    """The model's display name, as the profile stage recorded it from the model registry."""
    return complexity.get(model, {}).get("display_name") or model


def load_runs(params: Params, runs: Path) -> dict[grid.Run, dict]:
    """Each run's metrics.json, history.csv and predictions.csv (grid.read, checked), keyed by its
    grid.Run (scenario, model, protocol, repeat, fold): every fold of every repeat (split.repeats)."""
    return {run: grid.read(run, runs, ("meta", "history", "predictions", "trials")) for run in grid.runs(params)}


# ---- tables ---------------------------------------------------------------------------------

def comparison_rows(r: Results, complexity: dict[str, dict], deploy: dict[tuple[str, str], dict] | None = None,
                    runs: dict[tuple, dict] | None = None) -> list[dict]:
    """One row per scenario, model and protocol: complexity at 3x224x224, CPU latency and accuracy metrics;
    training seconds summed over the cell's fold runs (`load_runs`: each run's own metrics.json; wall-clock
    times stay out of reports/metrics.json and per_fold.csv, which two runs of the same params must give
    byte for byte)."""
    reference = roster.in_run(REFERENCE_COMPUTE, r.models) or REFERENCE_COMPUTE
    ref_macs = (complexity.get(reference) or {}).get("paper_setting", {}).get("macs")
    rows = []
    for scenario, model, protocol in itertools.product(r.scenarios, r.models, r.protocols):
        c = complexity[model]
        macs = c["paper_setting"].get("macs")
        stat = functools.partial(r.stat, scenario, model, protocol)
        summary = r.summary(scenario, model, protocol)
        boot = summary.get("accuracy_patient_bootstrap") or {}
        exact, budget = summary.get("patient_accuracy_exact") or {}, summary.get("budget") or {}
        rates = summary.get("class_rates") or {}
        majority = [x for x in r.majority_rates(scenario, protocol) if x is not None]
        rows.append({
            "data_source": SOURCES[r.meta["data_source"]].label if r.meta.get("data_source") in SOURCES
            else r.meta.get("data_source"),
            "scenario": scenario, "model": model, "protocol": protocol,
            "display_name": display_name(model, complexity),
            "params": (c.get("params_by_scenario") or {}).get(scenario, c["params"]),
            "macs_3x224x224": macs, "flops_3x224x224": c["paper_setting"].get("flops"),
            f"macs_pct_of_{REFERENCE_COMPUTE}": 100 * macs / ref_macs if macs is not None and ref_macs else None,
            "cpu_latency_batch1_ms": c["latency"].get("batch_1", {}).get("median_ms"),
            **{f"{m.key}_{s}": stat(m.key, s) for m in SUMMARY_METRICS for s in ("mean", "sd")},
            "patient_accuracy_mean": stat("patient_accuracy"),
            "patient_accuracy_sd": stat("patient_accuracy", "sd"),
            "accuracy_patient_ci_low": boot.get("ci_low"), "accuracy_patient_ci_high": boot.get("ci_high"),
            "patient_accuracy_exact": exact.get("proportion"), "patient_accuracy_exact_ci_low": exact.get("ci_low"),
            "patient_accuracy_exact_ci_high": exact.get("ci_high"), "patient_majority_rate": exact.get("majority_rate"),
            "majority_rate_mean": float(np.mean(majority)) if majority else None,
            "majority_rate_min": min(majority) if majority else None,
            "majority_rate_max": max(majority) if majority else None,
            "degenerate": bool(summary.get("degenerate")),
            "failed_folds": "; ".join(f["fold"] for f in summary.get("failed_folds") or []),
            "n_folds": summary.get("n_folds"),
            "epochs": budget.get("epochs"), "optimizer_steps_per_fold": budget.get("optimizer_steps_per_fold"),
            "training_seconds": _seconds(runs, scenario, model, protocol),
            **{f"{q}_{c}{s}": (rates.get(c) or {}).get(q, {}).get(field)
               for c in CLASS_NAMES for q in CLASS_RATES
               for s, field in (("", "estimate"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))},
            **deployreport.columns((deploy or {}).get((scenario, model)), protocol),
        })
    return rows


def _seconds(runs: dict[tuple, dict] | None, scenario: str, model: str, protocol: str) -> float | None:
    """Training seconds of a cell's fold runs, every repeat's, from the runs' metrics.json (None where
    none is recorded)."""
    seconds = [run["meta"].get("seconds") for (s, m, p, *_), run in (runs or {}).items()
               if (s, m, p) == (scenario, model, protocol)]
    seconds = [x for x in seconds if x is not None]
    return float(sum(seconds)) if seconds else None


def _si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}".rstrip()
    return f"{x:.0f} {unit}".rstrip()


def _pm(mean: float | None, sd: float | None, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None:
        return "n/a"
    return f"{scale * mean:.{digits}f}" + (f" ± {scale * sd:.{digits}f}" if sd is not None else "")


def tuning_section(r: Results, labels: dict[str, str]) -> list[str]:
    """## Tuning (a run with tune.trials > 0): each model's chosen recipe, median and range over its tuned
    fold runs, and the search compute it used; nothing for a run whose recipes were given."""
    t = r.meta.get("tuning")
    if not t:
        return []
    fmt = lambda v: f"{v:.3g}"  # noqa: E731
    rows = []
    for s, p in r.panels:
        for m in r.models:
            tu = r.summary(s, m, p).get("tuning")
            if not tu:
                continue
            ch, c = tu["chosen"], tu["compute"]
            cells = [f"{fmt(ch[k]['median'])} ({fmt(ch[k]['min'])}-{fmt(ch[k]['max'])})" if k in ch else "n/a"
                     for k in ("lr", "weight_decay", "batch_size", "warmup_epochs", "label_smoothing")]
            rows.append([s, p, labels.get(m, m), *cells, ", ".join(f"{o} {n}" for o, n in ch["optimizer"].items()),
                         f"{c['trials']} ({c['pruned']} pruned)", str(c["epochs"]), str(c["optimizer_steps"])])
    return ["## Tuning", "",
            f"Recipes chosen by each fold's own study: {t['trials']} {t['sampler']} trials per model per fold (seed "
            f"{t['seed']}, {t['startup_trials']} random start-up trials, {t['pruner']} pruning), each trained on the "
            f"fold's training part for at most {t['epoch_cap']} epochs and scored on its validation part by "
            f"{t['objective']}; the test part is read once, by the chosen weights. Median (range) over the folds; "
            "optimizer: how many folds chose it; compute: summed over the folds.", "",
            _md_table(["Scenario", "Protocol", "Model", "lr", "weight decay", "batch", "warm-up epochs",
                       "label smoothing", "optimizer", "trials", "epochs", "optimizer steps"], rows), ""]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _ci(est: float | None, low: float | None, high: float | None) -> str:
    return "n/a" if est is None else f"{100 * est:.1f}" + ("" if low is None else f" ({100 * low:.1f}-{100 * high:.1f})")


# the performance table's summary metrics (the rest, macro-F1, are in comparison.csv and metrics.json)
PERFORMANCE = ("balanced_accuracy", "accuracy", "auc", "brier", "ece")


def _positive(scenario: str) -> str | None:
    names = scenarios.class_names(scenario)
    return names[1] if len(names) == 2 else None


def comparison_markdown(rows: list[dict]) -> str:
    """The models as Markdown, in two tables: performance (learned or failed, balanced accuracy first, the
    headline, as mean ± sd over fold runs; accuracy, AUC, the positive class's sensitivity and specificity
    pooled with patient-bootstrap intervals, patient-level accuracy, Brier, ECE) and cost (one row per
    model: params, MACs, FLOPs, latency in PyTorch and ONNX Runtime, and the training budget per protocol).
    Then the clinical table: for a binary scenario one row per model and protocol for its positive class
    (the other class's rates are these, swapped), for S4 every class; and patient-level accuracy with its
    exact interval. comparison.csv and metrics.json keep every column."""
    num = lambda x, f: "n/a" if x is None else format(x, f)  # noqa: E731
    by_key = {m.key: m for m in SUMMARY_METRICS}

    def metric(r: dict, key: str) -> str:
        m = by_key[key]
        return _pm(r[f"{key}_mean"], r[f"{key}_sd"], *((100, 1) if m.percent else (1, 3)))

    def rate(r: dict, q: str) -> str:
        c = _positive(r["scenario"])
        return "—" if c is None else _ci(r[f"{q}_{c}"], r[f"{q}_{c}_ci_low"], r[f"{q}_{c}_ci_high"])

    label = lambda key: f"{by_key[key].label} (mean ± sd)"  # noqa: E731
    perf_header = ["Scenario", "Model", "Protocol", "Learned?", "Failed on", *map(label, PERFORMANCE[:3]),
                   "Sensitivity % (positive class)", "Specificity % (positive class)", "Patient-level accuracy %",
                   *map(label, PERFORMANCE[3:])]
    perf = [[r["scenario"], r["display_name"], r["protocol"], "**no (degenerate)**" if r["degenerate"] else "yes",
             f"**{r['failed_folds']}**" if r["failed_folds"] else "—",
             *(metric(r, k) for k in PERFORMANCE[:3]), rate(r, "sensitivity"), rate(r, "specificity"),
             _pm(r["patient_accuracy_mean"], r["patient_accuracy_sd"]) if r["protocol"] == "patient" else "—",
             *(metric(r, k) for k in PERFORMANCE[3:])] for r in rows]
    pct = f"macs_pct_of_{REFERENCE_COMPUTE}"
    cost_header = ["Scenario", "Model", "Key", "Params", "MACs @3x224x224", "FLOPs @3x224x224",
                   f"MACs % of {REFERENCE_COMPUTE}", "PyTorch CPU batch 1 @3x224x224 (ms)",
                   "ORT fp32 / int8 batch 1 @3x224x224, 1 thread (ms)", "ORT fp32 / int8, 2 threads (ms)", "Epochs", "Optimizer steps per fold",
                   "Training s (all folds)"]
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["scenario"], r["model"]), []).append(r)
    multi = len({r["protocol"] for r in rows}) > 1

    def per_protocol(group: list[dict], key: str, fmt: str) -> str:
        values = [(r["protocol"], r[key]) for r in group]
        if len({v for _, v in values}) == 1:
            return num(values[0][1], fmt)
        return ", ".join(f"{num(v, fmt)} ({p})" for p, v in values) if multi else num(values[0][1], fmt)

    cost = []
    for (scenario, model), group in cells.items():
        r = group[0]
        ort = [(f"{r[f'ort_fp32_latency_3x224x224_{t}t_ms']:.2f} / {r[f'ort_int8_latency_3x224x224_{t}t_ms']:.2f}"
                if r.get(f"ort_fp32_latency_3x224x224_{t}t_ms") is not None
                else "not exported" if r.get("ort_fp32_latency_batch1_ms") is None else "not timed") for t in (1, 2)]
        cost.append([scenario, r["display_name"], f"`{model}`", _si(r["params"]), _si(r["macs_3x224x224"]),
                     _si(r["flops_3x224x224"]), "n/a" if r[pct] is None else f"{r[pct]:.2f}",
                     "n/a" if r["cpu_latency_batch1_ms"] is None else f"{r['cpu_latency_batch1_ms']:.1f}", *ort,
                     per_protocol(group, "epochs", ""), per_protocol(group, "optimizer_steps_per_fold", ".0f"),
                     per_protocol(group, "training_seconds", ".1f")])
    clinical_header = ["Scenario", "Model", "Protocol", "Class", "Sensitivity %", "Specificity %", "PPV %", "NPV %"]
    clinical = []
    for r in rows:
        pos = _positive(r["scenario"])
        for c in ([pos] if pos else scenarios.class_names(r["scenario"])):
            clinical.append([r["scenario"], r["display_name"], r["protocol"], c,
                             *(_ci(r[f"{q}_{c}"], r[f"{q}_{c}_ci_low"], r[f"{q}_{c}_ci_high"]) for q in CLASS_RATES)])
    exact = [[r["scenario"], r["display_name"], _ci(r["patient_accuracy_exact"], r["patient_accuracy_exact_ci_low"],
                                                    r["patient_accuracy_exact_ci_high"]),
              num(None if r["patient_majority_rate"] is None else 100 * r["patient_majority_rate"], ".1f")]
             for r in rows if r["patient_accuracy_exact"] is not None]
    positives = "; ".join(f"{s}: {_positive(s)}" for s in dict.fromkeys(r["scenario"] for r in rows) if _positive(s))
    out = ("### Performance\n\n" + _md_table(perf_header, perf)
           + "\n\n### Cost\n\n" + _md_table(cost_header, cost)
           + "\n\n### Per class\n\nOne class against the rest, pooled over every fold run; in brackets the 95% interval "
             "resampling whole patients. "
           + (f"A binary scenario's row is its positive class ({positives}); the other class's sensitivity is this "
              f"specificity, its PPV this NPV. " if positives else "")
           + "\n\n" + _md_table(clinical_header, clinical))
    if exact:
        out += ("\n\nPatient-level accuracy (patient folds, repeat 1: each patient diagnosed once), with its exact "
                "(Clopper-Pearson) 95% interval, beside the patient-level majority-class rate.\n\n"
                + _md_table(["Scenario", "Model", "Patient-level accuracy % (exact 95% interval)",
                             "Patient-level majority rate %"], exact))
    return out


def exploratory_markdown(rows: list[dict], labels: dict[str, str]) -> str:
    """The exploratory comparisons as one table: a row per tested comparison, its own test's interval and
    p-values beside its verdict, the interval its Holm step implies; the patient bootstrap of the same metric's
    difference in a column of its own."""
    header = ["Scenario", "Protocol", "Family", "Comparison (first minus second)", "Difference (points)",
              "Corrected t 95% interval (points, unadjusted)",
              "Holm-consistent interval (points; Bonferroni-widened at its Holm step)", "p (Holm)", "p (unadjusted)",
              "Detects at 80% power (points)", "Verdict (Holm p < 0.05)",
              "Not a test: patient-bootstrap 95% interval of these trained models' balanced-accuracy difference "
              "(points)"]
    p = lambda x: "n/a" if x is None else ("< 0.001" if x < 0.001 else f"{x:.3f}")  # noqa: E731
    pts = lambda x: "n/a" if x is None else f"{100 * x:+.1f}"  # noqa: E731
    body = [[r["scenario"], r["protocol"], r["family"] or "—",
             f"{labels.get(r['reference'], r['reference'])} minus {r['label']}"
             + (f" ({r['failed']})" if r["failed"] else ""),
             pts(r["difference"]),
             r["p_undefined"] or "n/a" if r["ci_low"] is None else f"{pts(r['ci_low'])} to {pts(r['ci_high'])}",
             "n/a" if r.get("ci_holm_low") is None else f"{pts(r['ci_holm_low'])} to {pts(r['ci_holm_high'])}",
             p(r["p_holm"]), p(r["p_value"]), "n/a" if r["mdd"] is None else f"{100 * r['mdd']:.1f}", r["verdict"],
             "n/a" if r["bootstrap_low"] is None else f"{pts(r['bootstrap_low'])} to {pts(r['bootstrap_high'])}"]
            for r in rows]
    return _md_table(header, body)


def ablation_rows(r: Results, metric: str = "balanced_accuracy") -> list[dict]:
    """The proposed network's ablations (roster.ABLATIONS) against it: per scenario and protocol, each
    variant's `metric` (the headline), the proposed network's lead over it and the corrected repeated
    k-fold t-test on it: its interval beside its verdict, one test per claim."""
    ref = r.meta.get("reference_model")
    variants = [m for m in roster.ABLATIONS if m in r.models]
    if ref != roster.PROPOSED_MODEL or not variants:
        return []
    rows = []
    for scenario, protocol, variant in itertools.product(r.scenarios, r.protocols, variants):
        c = r.comparisons(scenario, protocol).get(variant) or {}
        t = c.get(metric) or {}
        rows.append({"scenario": scenario, "protocol": protocol, "variant": variant,
                     "removes": roster.ABLATIONS[variant], "metric": metric,
                     "mean": r.stat(scenario, variant, protocol, metric),
                     "sd": r.stat(scenario, variant, protocol, metric, "sd"),
                     "lead": t.get("mean_difference"), "ci_low": t.get("ci_low"), "ci_high": t.get("ci_high"),
                     "p_value": t.get("p_value"), "p_holm": t.get("p_holm"), "holm_family": t.get("holm_family"),
                     "p_undefined": t.get("p_undefined"), "claim": c.get("claim"),
                     "no_claim_reason": c.get("no_claim_reason")})
    return rows


def ablation_markdown(rows: list[dict], labels: dict[str, str]) -> str:
    """The ablation table as Markdown: balanced accuracy, the lead, and the one test behind it (the
    corrected t interval and its Holm-adjusted p, within the ablations family)."""
    def test(r: dict) -> str:
        if not r["claim"]:
            return f"no claim: {r['no_claim_reason']}"
        if r["p_holm"] is None:
            return r["p_undefined"] or "n/a"
        return f"Holm-adjusted p = {r['p_holm']:.3f} (unadjusted {r['p_value']:.3f})"
    header = ["Scenario", "Protocol", "Variant", "What it removes", "Balanced accuracy % (mean ± sd)",
              f"{labels.get(roster.PROPOSED_MODEL, roster.PROPOSED_MODEL)} minus variant (points)",
              "Corrected t 95% interval (points, unadjusted)", "Paired test"]
    body = [[r["scenario"], r["protocol"], labels.get(r["variant"], r["variant"]), r["removes"],
             _pm(r["mean"], r["sd"]), "n/a" if r["lead"] is None else f"{100 * r['lead']:+.1f}",
             "n/a" if r["ci_low"] is None else f"{100 * r['ci_low']:+.1f} to {100 * r['ci_high']:+.1f}", test(r)]
            for r in rows]
    return _md_table(header, body)


def paper_markdown(rows: list[dict]) -> str:
    """The paper-beside-this-run table as Markdown, with the full references below it."""
    header = ["Source", "Network", "Quantity", "Scenario", "Protocol", "Published", "This run",
              "This run: model and setting", "Comparability"]
    body = [[f"[{r['source']}](https://doi.org/{r['doi']})", r["network"], r["quantity"], r["published_scenario"],
             r["published_protocol"], r["published"], r["this_run"],
             ", ".join(x for x in (r["this_run_model"], r["this_run_setting"]) if x) or "—", r["note"] or "—"]
            for r in rows]
    refs = [f"- {short}: {citation}. doi:[{doi}](https://doi.org/{doi})" for short, citation, doi in paper.REFERENCES]
    return _md_table(header, body) + "\n\n" + "\n".join(refs)


# ---- context for the README ------------------------------------------------------------------

def package_versions() -> dict[str, str]:
    """Versions of the packages the results depend on (without importing them)."""
    out = {"python": platform.python_version()}
    for name in ("torch", "timm", "dvc", "numpy", "scikit-learn", "thop"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def report_date() -> str:
    """Today (UTC), or SOURCE_DATE_EPOCH's date for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch and epoch.isdigit()
            else dt.datetime.now(dt.timezone.utc))
    return when.date().isoformat()


# ---- README ---------------------------------------------------------------------------------

def header_rows(params: Params, r: Results, runs: dict, complexity: dict[str, dict]) -> list[list[str]]:
    """What made these results: data, scenario, protocols, input size, epochs, weights, software, hardware."""
    meta = r.meta
    metas = [r["meta"] for r in runs.values()]
    pretrained = sorted({f"{m.get('model')}" for m in metas if m.get("pretrained")})
    weights = ("all models trained from scratch (`pretrained: false` in every one of the "
               f"{len(metas)} runs' metrics.json)" if not pretrained
               else f"pretrained weights used by: {', '.join(pretrained)} (from the runs' metrics.json)")
    devices = sorted({f"{m.get('device_name') or m.get('device') or 'unknown'}" for m in metas})
    threads = sorted({(c.get("latency") or {}).get("threads") for c in complexity.values()} - {None})
    # the profile stage may record its CPU; otherwise latency was measured here, where reports are made
    latency_cpus = sorted({(c.get("latency") or {}).get("cpu") for c in complexity.values()} - {None}) or [cpu_name()]
    epochs = meta.get("epochs") or {}
    epoch_words = ", ".join(f"{m} {e}" for m, e in epochs.items()) if len(set(epochs.values())) > 1 \
        else str(next(iter(epochs.values()), "n/a"))
    if params.train.max_steps_per_epoch:
        n = params.train.max_steps_per_epoch
        epoch_words += (f"; at most {n} optimizer step{'' if n == 1 else 's'} per epoch (train.max_steps_per_epoch: "
                        f"a smoke run that exercises the code, not a benchmark)")
    input_size = "x".join(str(v) for v in meta.get("input_size") or []) or "n/a"
    return [
        ["Data source", SOURCES[params.data.source].describe(params.data)],
        ["Scenarios", "; ".join(f"{s}: {scenarios.DESCRIPTIONS[s]} (classes: "
                                f"{', '.join(r.class_names(s))})" for s in r.scenarios)],
        ["Protocols", "; ".join(described(p) for p in r.protocols)],
        ["Input size", f"{input_size} for training and testing; complexity also counted at 3x224x224 (the paper's)"],
        ["Epochs", epoch_words],
        ["Tuning", (f"nested: {meta['tuning']['trials']} {meta['tuning']['sampler']} trials per model per fold on the "
                    f"fold's training and validation parts, seed {meta['tuning']['seed']} (the Tuning table)")
         if meta.get("tuning") else "none: the recipes as given (train.optim and train.overrides; tune.trials: 0)"],
        ["Folds", f"{', '.join(str(f) for f in meta['folds'])} of {params.split.folds}"],
        ["Seed", str(params.seed)],
        ["Weights", weights],
        ["Packages", ", ".join(f"{k} {v}" for k, v in package_versions().items())],
        ["CPU code paths", _cpu_words(meta.get("cpu"))],
        ["Hardware", f"training: {', '.join(devices)} (runs' metrics.json); CPU latency: {', '.join(latency_cpus)}"
                     + (f", {', '.join(str(t) for t in threads)} thread(s)" if threads else "")],
        ["Params profile", f"{params.profile_name}; report generated {report_date()}"],
    ]


def _cpu_words(settings: dict | None) -> str:
    """The pinned CPU settings the runs recorded (pipeline/core/cpu.py), in words."""
    if not settings:
        return "not recorded"
    pinned = {k: v for k, v in settings.items() if v is not None and k != "torch_cpu_capability"}
    words = ", ".join(f"{k}={v}" for k, v in pinned.items()) or "none pinned (each library's native path)"
    return f"{words}; PyTorch dispatched to {settings.get('torch_cpu_capability', 'n/a')} (runtime.cpu_isa)"


def source_words(params: Params) -> str:
    """The data source in the words of the report's title: the real source's name, or the synthetic
    cohort marked as not patient data."""
    source = SOURCES[params.data.source]
    return source.label if source.patient_data else f"{source.label} (not patient data)"


def readme(params: Params, r: Results, comparison_md: str, paper_md: str, runs: dict,
           reading_lines: list[str], complexity: dict[str, dict], ablation_md: str = "",
           checklist_md: str = "", failures_md: str = "", deploy_lines: list[str] = (),
           glance_lines: list[str] = (), exploratory_md: str = "") -> str:
    """reports/README.md: at a glance, what was run and on what, a reading, the tables, the figures, the
    failure analysis and the reporting checklist."""
    source = SOURCES[params.data.source]
    lines = [f"# myobench results on {source_words(params)}: {params.profile_name}", ""]
    if glance_lines:
        lines += ["## At a glance", "", *(f"- {g}" for g in glance_lines), ""]
    if not glance_lines:
        lines += [f"Data: {source.describe(params.data)}."
                  + ("" if source.patient_data else " Every number below is about synthetic images and says nothing "
                                                    "about patients."), ""]
    lines += ["Generated by `python -m pipeline.report` from reports/metrics.json, reports/per_fold.csv, "
              "reports/complexity/ and runs/; do not edit by hand.", "",
              _md_table(["", ""], header_rows(params, r, runs, complexity)), "", "## Reading", ""]
    lines += [f"- {s}" for s in reading_lines]
    if exploratory_md:
        lines += ["", "## Exploratory comparisons", "", exploratory_md]
    lines += ["", "## Models", "",
              "Performance: means ± sd over fold runs (every fold of every repeat) of image-level test figures; "
              "balanced accuracy (mean recall over the classes, which are imbalanced) is the headline. A model "
              "marked degenerate did not learn (balanced accuracy within 0.02 of chance, or a fold predicting one "
              "class for at least 95% of its images): no claim is made for or against it; \"Failed on\" names such "
              "folds of a model that learned on average. Sensitivity and specificity are pooled over fold runs, "
              "at the argmax operating point (0.5), with 95% intervals resampling whole patients. The sd treats "
              "the folds as independent, which they are not (their training parts overlap): read it as naive. "
              "Patient-level accuracy (patient protocol only) averages each patient's image probabilities into "
              "one diagnosis. Cost: MACs and FLOPs at 3x224x224, PyTorch latency the median CPU time of one "
              "3x224x224 image; " + (f"the budget is each model's recipe as its fold's nested study chose it "
                                     f"({r.meta['tuning']['trials']} trials per model per fold: the Tuning table)"
                                     if r.meta.get("tuning") else "the budget is each model's own recipe, the demo's "
                                     "chosen on its own folds (not nested), the paper profile's fixed in advance")
              + ". Every column, and macro-F1, the majority-class "
              "rates and the accuracy intervals over patients: [comparison.csv](comparison.csv), "
              "[metrics.json](metrics.json), [per_fold.csv](per_fold.csv).", "", comparison_md, "",
              *tuning_section(r, {m: display_name(m, complexity) for m in r.models}),
              *(["## Ablations", "", "Each variant removes one design choice of the proposed network at the same "
                 "MACs; a positive lead means the design choice helped. Balanced accuracy, as in the reading; "
                 "one test per row: the corrected repeated k-fold t-test over the paired fold differences, its "
                 "95% interval beside its verdict, the p-value Holm-adjusted within the ablations family (the "
                 "variants, per scenario and protocol). Exploratory: the primary comparison is in the reading.",
                 "", ablation_md, ""] if ablation_md else []),
              *deploy_lines,
              "## The paper beside this run", "",
              "Published figures (pipeline/reporting/paper.py) next to this run's figure for the same quantity.", "",
              paper_md, "", "## Figures", ""]
    for spec in (*figures.figures_of("report"), *figures.figures_of("prepare")):
        if spec.shown is None or spec.shown(r):    # a figure with nothing to show in this run is not shown
            lines += [f"![{spec.caption}](figures/{spec.file})", "", spec.caption, ""]
    if failures_md:
        lines += ["## Failure analysis", "", failures_md, ""]
    if checklist_md:
        lines += ["## Reporting checklist (CLAIM 2024, TRIPOD+AI 2024)", "", checklist_md, ""]
    lines += ["## Reproduce", "", "`dvc repro` rebuilds every stage that is out of date; "
              "`python -m pipeline.check` compares reports/metrics.json and reports/complexity/ with the committed "
              "baseline and exits 1 on a regression."]
    return "\n".join(lines).rstrip() + "\n"


def context_line(params: Params, r: Results) -> str:
    """Figure subtitle: data source, scenarios, protocols and input size."""
    meta = r.meta
    source = SOURCES[params.data.source].label
    size = "x".join(str(v) for v in meta.get("input_size") or [])
    return (f"{source} · scenarios {', '.join(meta['scenarios'])} · "
            f"protocols: {', '.join(meta['protocols'])} · trained at {size or 'n/a'}")


def main(argv: list[str] | None = None) -> int:
    """Write the comparison tables, figures and README under reports/."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--runs", default=str(layout.RUNS), help=f"directory of training runs (default: {layout.RUNS})")
    ap.add_argument("--reports", default=str(layout.REPORTS), help=f"reports directory (default: {layout.REPORTS})")
    ap.add_argument("--manifest", default=str(layout.MANIFEST),
                    help=f"the prepared cohort's manifest, for the failure analysis (default: {layout.MANIFEST})")
    args = ap.parse_args(argv)
    params = load(args.params)
    reports = Path(args.reports)
    metrics_path = reports / layout.METRICS.name
    r, per_fold = results.read(metrics_path, reports / layout.PER_FOLD.name,
                               "make them with `python -m pipeline.evaluate` (or `dvc repro`)")
    meta = r.meta
    for key, want in (("scenarios", list(params.split.scenarios)), ("models", list(params.train.models)),
                      ("protocols", list(params.split.protocols)), ("folds", list(params.train.folds))):
        if meta.get(key) != want:
            raise DataError(f"{metrics_path}: meta.{key} is {meta.get(key)!r} but params.yaml says "
                            f"{want!r}; re-make it with `python -m pipeline.evaluate`")
    complexity = load_complexity(meta["models"], reports / layout.COMPLEXITY_DIR.name)
    runs = load_runs(params, Path(args.runs))
    labels = {m: display_name(m, complexity) for m in meta["models"]}
    manifest = read_table(Path(args.manifest), "make it with `python -m pipeline.prepare` (or `dvc repro`)",
                          required=["image_id", "patient_id", "diagnosis"])
    errors = failures.image_errors({k: run["predictions"] for k, run in runs.items()}, manifest, args.manifest)
    learned = {(s, m, p) for s, p in r.panels for m in r.models} - r.degenerate
    failures_md = failures.markdown(errors, r.panels, r.models, labels, learned,
                                    {s: r.class_names(s) for s in r.scenarios}, r.repeats)
    provenance = checklist.Provenance(
        checklist.git_commit(), checklist.dvc_lock_digest(), meta.get("cohort") or "not recorded",
        {s: r.scenario_meta(s).get("splits") or "not recorded" for s in r.scenarios}, package_versions())

    source = SOURCES[params.data.source]
    deploy = deployreport.load(meta["scenarios"], meta["models"], reports / layout.DEPLOY_DIR.name)
    rows = comparison_rows(r, complexity, deploy, runs)
    comparison_md = comparison_markdown(rows)
    exploratory = exploratory_rows(r, labels)
    exploratory_md = exploratory_markdown(exploratory, labels) if exploratory else ""
    ablations = ablation_rows(r)
    ablation_md = ablation_markdown(ablations, labels) if ablations else ""
    # the profile's name says what the data were (a stand-in's says so: tests/test_paper_profile.py's ucar fixture)
    paper_md = f"This run: {params.profile_name}.\n\n" + paper_markdown(paper.beside_this_run(r, complexity, source.caveat))
    context = context_line(params, r)
    with atomic_outputs() as out:      # every output replaced together, or none
        out.path(reports / "comparison.csv").write_text(
            csv_text(pd.DataFrame(rows, columns=COMPARISON_COLUMNS), float_format="%.6g", lineterminator="\n"),
            encoding="utf-8")
        out.path(reports / "comparison.md").write_text(
            f"# Model comparison\n\n{context}; folds {meta['folds']}.\n\n{comparison_md}\n\n"
            + (f"## Exploratory comparisons\n\n{exploratory_md}\n\n" if exploratory_md else "")
            + (f"## Ablations\n\n{ablation_md}\n\n" if ablation_md else "")
            + f"## The paper beside this run\n\n{paper_md}\n", encoding="utf-8")
        figures.draw("report", figures.ReportInputs(
            r, per_fold, complexity, runs, labels, context,
            figures.Roles(tuple(r.models), roster.PROPOSED_MODEL, tuple(roster.ABLATIONS)),
            failures.rates_by_panel(errors), deploy), reports / layout.FIGURES_DIR.name, out)
        out.path(reports / "README.md").write_text(
            readme(params, r, comparison_md, paper_md, runs,
                   findings(r, complexity, labels, source.patient_data, checklist.declared_in()),
                   complexity, ablation_md,
                   checklist.section(params, r, runs, source_words(params), source.patient_data, provenance,
                                     manifest), failures_md, deployreport.section(deploy, complexity, labels),
                   at_a_glance(r, complexity, labels, source.describe(params.data), source.patient_data),
                   exploratory_md), encoding="utf-8")
    print(f"report: {reports / 'comparison.csv'}, {reports / 'comparison.md'}, {reports / 'README.md'}, "
          f"{len(FIGURES)} figures in {reports / 'figures'}")
    return 0


if __name__ == "__main__":
    from pipeline.core.cli import run_stage

    run_stage(main)
