"""Evaluate stage: per-fold metrics from every run's predictions, summarised across folds.

Reads runs/<scenario>/<model>/<protocol>/fold-<k>/{predictions.csv,metrics.json} (repeat-<r>/fold-<k>/
for the repeats after the first) for every scenario in split.scenarios, model in train.models,
protocol in split.protocols, repeat in 1..split.repeats and fold in train.folds, and writes

- reports/metrics.json (a DVC metrics file), one block per scenario:
  {"<scenario>": {"meta": {...}, "<model>": {"<protocol>": {"accuracy": {"mean","sd","ci_low",
  "ci_high","n"}, ..., "failed_folds", "class_rates", "calibration", "budget"}}, "comparisons":
  {"<protocol>": {"<model>": ...}}, "primary": {...}}, "meta": {...}}; summaries and tests pool the
  k*R fold runs;
- reports/per_fold.csv: one row per scenario, model, protocol, repeat and fold.

Metrics are recomputed from predictions.csv (the arg-max of the probabilities), so the numbers
here never depend on what a run chose to write in its own metrics.json. Accuracies are fractions
(0..1). Floats are rounded to 6 decimals and keys sorted, so identical runs give identical bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core import fingerprints, grid, layout, roster, scenarios
from pipeline.core.atomic import atomic_outputs, csv_text, json_text
from pipeline.core.errors import DataError
from pipeline.core.params import Params, load
from pipeline.evaluation import metrics as M
from pipeline.evaluation import stats as ST

# the metrics' keys (metrics.SUMMARY_METRICS holds the Metric records), and those with a paired test
SUMMARY_KEYS = tuple(m.key for m in M.SUMMARY_METRICS)
COMPARED_KEYS = tuple(m.key for m in M.SUMMARY_METRICS if m.paired_test)
PER_FOLD_COLUMNS = ["scenario", "model", "protocol", "repeat", "fold", *SUMMARY_KEYS, "patient_accuracy",
                    "majority_rate", "top_predicted_share", "failed", "n_test", "n_train", "n_patients", "epochs",
                    "optimizer_steps"]   # no wall-clock seconds: two runs of the same params give the same bytes
DECIMALS = 6
UNIT = (0.0, 1.0)   # every summarised metric is a fraction; its interval is clipped to this range


def fold_row(scenario: str, model: str, protocol: str, fold: int, pred: pd.DataFrame, meta: dict,
             class_names: list[str], repeat: int = 1) -> tuple[dict, dict]:
    """Per-fold metrics (the per_fold.csv row) and the full fold_metrics dict of one run."""
    cols = layout.prob_columns(class_names)
    fm = M.fold_metrics(pred["label"].to_numpy(), pred[cols].to_numpy(), class_names)
    patient_accuracy = None
    if protocol == "patient":
        # a patient's images are all in this fold's test part only under the patient protocol
        y_p, prob_p = M.patient_level(pred, class_names)
        patient_accuracy = float((prob_p.argmax(axis=1) == y_p).mean())
    failed = ST.failed_folds([fm["balanced_accuracy"]], [fm["top_predicted_share"]], [str(fold)], len(class_names))
    row = {"scenario": scenario, "model": model, "protocol": protocol, "repeat": repeat, "fold": fold,
           **{k: fm[k] for k in SUMMARY_KEYS}, "patient_accuracy": patient_accuracy,
           "majority_rate": fm["majority_rate"], "top_predicted_share": fm["top_predicted_share"],
           "failed": bool(failed), "n_test": fm["n"], "n_train": int(meta["n_train"]),
           "n_patients": int(pred["patient_id"].nunique()),
           # the training budget this run spent (absent from runs written before it was recorded); its
           # seconds stay in the run's own metrics.json, since a time differs from run to run
           "epochs": meta.get("epochs"), "optimizer_steps": meta.get("optimizer_steps")}
    return row, fm


def summarize_runs(rows: list[dict], fms: list[dict], preds: list[pd.DataFrame], class_names: list[str],
                   protocol: str, n_resamples: int, seed: int, vals: list[pd.DataFrame] | None = None,
                   prevalence: float | None = None, target_sensitivity: float = 0.9, *, repeats: int) -> dict:
    """Across-fold summary of one model under one protocol (`rows`: its k*R fold runs, grid.folds_of's
    order, `repeats` of them), with whether it learned at all."""
    out: dict[str, Any] = {k: M.mean_sd_ci([r[k] for r in rows], bounds=UNIT) for k in SUMMARY_KEYS}
    reasons = M.degenerate([r["balanced_accuracy"] for r in rows], [r["top_predicted_share"] for r in rows],
                           len(class_names))
    out["degenerate"] = bool(reasons)
    out["degenerate_reasons"] = reasons
    out["top_predicted_share"] = [r["top_predicted_share"] for r in rows]
    # judged fold by fold: a model that fails on one fold is "failed on fold k" wherever it is shown
    out["failed_folds"] = ST.failed_folds([r["balanced_accuracy"] for r in rows], out["top_predicted_share"],
                                          [layout.fold_label(r["fold"], r["repeat"], repeats) for r in rows],
                                          len(class_names))
    correct = np.concatenate([_correct(p, class_names) for p in preds])
    patients = np.concatenate([p["patient_id"].to_numpy(dtype=str) for p in preds])
    out["accuracy_patient_bootstrap"] = M.cluster_bootstrap_ci(correct, patients, n_resamples, seed)
    y_all = np.concatenate([p["label"].to_numpy() for p in preds])
    prob_all = np.concatenate([p[layout.prob_columns(class_names)].to_numpy(dtype=np.float64) for p in preds])
    # pooled over every fold (and repeat) of the test images; one stratified patient bootstrap (patients
    # resampled within their class, so prevalence stays the cohort's) gives every interval below
    boot = ST.patient_bootstrap(y_all, prob_all, patients, n_resamples, seed,
                                prevalence=prevalence if len(class_names) == 2 else None)
    out["class_rates"] = {name: boot["classes"][c] for c, name in enumerate(class_names)}
    out["calibration"] = {**ST.calibration(y_all, prob_all),
                          **{f"{k}_interval": [boot[k]["ci_low"], boot[k]["ci_high"]] for k in ("brier", "ece")}}
    out["auc_pooled"] = {**boot["auc"], "over": "every fold's test images pooled; stratified patient bootstrap"}
    if len(class_names) == 2 and vals is not None:
        out["operating_point"] = operating_point(preds, vals, class_names, target_sensitivity, n_resamples, seed)
    # epochs and optimizer steps only: a wall-clock time here would make two runs of the same params
    # differ (the seconds each fold took stay in its run's metrics.json; the report sums them there)
    out["budget"] = {"epochs": _one([r["epochs"] for r in rows]),
                     "optimizer_steps_per_fold": _mean([r["optimizer_steps"] for r in rows])}
    if protocol == "patient":
        out["patient_accuracy"] = M.mean_sd_ci([r["patient_accuracy"] for r in rows], bounds=UNIT)
        levels = [M.patient_level(p, class_names) for r, p in zip(rows, preds, strict=True) if r["repeat"] == 1]
        y_p = np.concatenate([y for y, _ in levels])
        right = int(sum(int((prob.argmax(axis=1) == y).sum()) for y, prob in levels))
        # one pass over the patients (repeat 1): each patient once, so the exact interval's n is right
        out["patient_accuracy_exact"] = {**ST.clopper_pearson(right, len(y_p)),
                                         "majority_rate": float(np.bincount(y_p).max() / len(y_p)),
                                         "over": "the patients of repeat 1, each diagnosed once"}
        prob_p = np.concatenate([prob for _, prob in levels])
        ids = np.concatenate([np.sort(p["patient_id"].astype(str).unique())
                              for r, p in zip(rows, preds, strict=True) if r["repeat"] == 1])
        out["patient_auc"] = {**ST.patient_bootstrap(y_p, prob_p, ids, n_resamples, seed)["auc"],
                              "over": "the patients of repeat 1, each diagnosed once (the mean of its image "
                                      "probabilities); stratified bootstrap of patients"}
    out["per_class"] = {
        name: {q: M.mean_sd_ci([fm["per_class"][name][q] for fm in fms], bounds=UNIT)
               for q in ("sensitivity", "specificity")}
        for name in class_names}
    cm = np.sum([np.asarray(fm["confusion_matrix"]) for fm in fms], axis=0)
    # nested by name (true class -> predicted class) so every leaf is a number DVC can show
    out["confusion_matrix"] = {t: {p: int(cm[i, j]) for j, p in enumerate(class_names)}
                               for i, t in enumerate(class_names)}
    out["n_test"] = int(sum(r["n_test"] for r in rows))
    out["n_folds"] = len(rows)
    return out


def operating_point(preds: list[pd.DataFrame], vals: list[pd.DataFrame], class_names: list[str], target: float,
                    n_resamples: int, seed: int) -> dict:
    """Test sensitivity and specificity for the positive class at a threshold chosen, fold by fold, on that
    fold's validation part only (ST.sensitivity_threshold: the highest threshold on P(positive) whose
    validation sensitivity reaches `target`), pooled over the folds, with stratified patient bootstrap
    intervals. The argmax point (0.5) is the one every other figure uses."""
    col = layout.prob_columns(class_names)[1]
    thresholds, y, pred, patients, prob = [], [], [], [], []
    for test, val in zip(preds, vals, strict=True):
        t = ST.sensitivity_threshold(val["label"].to_numpy() == 1, val[col].to_numpy(dtype=np.float64), target)
        thresholds.append(t)
        y.append(test["label"].to_numpy())
        pred.append((test[col].to_numpy(dtype=np.float64) >= t).astype(np.int64))
        patients.append(test["patient_id"].to_numpy(dtype=str))
        prob.append(test[layout.prob_columns(class_names)].to_numpy(dtype=np.float64))
    boot = ST.patient_bootstrap(np.concatenate(y), np.concatenate(prob), np.concatenate(patients), n_resamples,
                                seed, y_pred=np.concatenate(pred))
    rates = boot["classes"][1]
    return {"target_sensitivity": target, "positive_class": class_names[1], "chosen_on": "each fold's validation part",
            "thresholds": thresholds, "sensitivity": rates["sensitivity"], "specificity": rates["specificity"]}


def _one(values: list) -> Any:
    """The value shared by every fold, or the sorted distinct values when they differ (None: unrecorded)."""
    seen = sorted({v for v in values if v is not None})
    return None if not seen else seen[0] if len(seen) == 1 else seen


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


TUNED_NUMBERS = ("lr", "weight_decay", "batch_size", "warmup_epochs", "label_smoothing")


def tuning_summary(metas: list[dict]) -> dict | None:
    """A tuned model's recipes chosen over its fold runs (median and range of each number, how often each
    optimizer) and the search compute they used (trials, pruned, epochs, optimizer steps; no seconds: two
    runs of the same params give the same bytes); None when its runs were not tuned."""
    tuned = [m["tuning"] for m in metas if m.get("tuning")]
    if not tuned:
        return None
    chosen = [t["chosen"] for t in tuned]
    numbers = {k: {"median": float(np.median([c[k] for c in chosen])), "min": float(min(c[k] for c in chosen)),
                   "max": float(max(c[k] for c in chosen))} for k in TUNED_NUMBERS if all(k in c for c in chosen)}
    optimizers = sorted({c.get("optimizer") for c in chosen if c.get("optimizer")})
    return {"folds_tuned": len(tuned), "trials_per_fold": _one([t["trials"] for t in tuned]),
            "epoch_cap": _one([t["epoch_cap"] for t in tuned]), "objective": _one([t["objective"] for t in tuned]),
            "sampler": _one([t["sampler"] for t in tuned]), "pruner": _one([t["pruner"] for t in tuned]),
            "chosen": {**numbers, "optimizer": {o: sum(c.get("optimizer") == o for c in chosen) for o in optimizers}},
            "compute": {"trials": int(sum(t["trials"] for t in tuned)), "pruned": int(sum(t["pruned"] for t in tuned)),
                        "epochs": int(sum(t["epochs"] for t in tuned)),
                        "optimizer_steps": int(sum(t["optimizer_steps"] for t in tuned))}}


def compare(ref_rows: list[dict], other_rows: list[dict], ref_preds: list[pd.DataFrame],
            other_preds: list[pd.DataFrame], class_names: list[str], n_resamples: int, seed: int,
            where: str, *, repeats: int) -> dict:
    """Reference minus other over the same folds of every repeat (`repeats` of them): the corrected repeated k-fold t-test
    per metric (its interval, p-value and minimum detectable difference), and a paired bootstrap of
    accuracy over the pooled test images (these trained models' test estimate, a different question)."""
    out: dict[str, Any] = {}
    n_train = float(np.mean([r["n_train"] for r in ref_rows]))
    n_test = float(np.mean([r["n_test"] for r in ref_rows]))
    for metric in COMPARED_KEYS:
        diffs = [a[metric] - b[metric] for a, b in zip(ref_rows, other_rows, strict=True)
                 if a[metric] is not None and b[metric] is not None]
        out[metric] = ST.repeated_kfold_ttest(diffs, n_train, n_test, repeats=repeats)
    out["n_train"], out["n_test"] = n_train, n_test
    correct_a, correct_b, patients = [], [], []
    for row, a, b in zip(ref_rows, ref_preds, other_preds, strict=True):
        if set(a["image_id"]) != set(b["image_id"]):
            raise DataError(f"{where}: {layout.fold_name(row['fold'], row['repeat'])}'s test images differ between the two models' "
                            f"predictions.csv (stale runs?); re-run both with the same data/splits/")
        b = b.set_index("image_id").loc[a["image_id"]].reset_index()
        correct_a.append(_correct(a, class_names))
        correct_b.append(_correct(b, class_names))
        patients.append(a["patient_id"].to_numpy(dtype=str))
    # whole patients are resampled: a patient's images are not independent observations
    out["bootstrap_accuracy"] = M.paired_bootstrap(np.concatenate(correct_a), np.concatenate(correct_b),
                                                   groups=np.concatenate(patients), n_resamples=n_resamples,
                                                   seed=seed)
    # the same resampling of the metric the headline test is on (balanced accuracy), patients within class
    labels = np.concatenate([a["label"].to_numpy() for a in ref_preds])
    out["bootstrap_balanced_accuracy"] = ST.paired_balanced_accuracy_bootstrap(
        labels, np.concatenate(correct_a), np.concatenate(correct_b), np.concatenate(patients), len(class_names),
        n_resamples, seed)
    return out


def _correct(pred: pd.DataFrame, class_names: list[str]) -> np.ndarray:
    """Whether each image of a predictions table is classified correctly (arg-max of the probabilities)."""
    return pred[layout.prob_columns(class_names)].to_numpy().argmax(axis=1) == pred["label"].to_numpy()


FAMILIES = ("ablations", "baselines")   # Holm adjusts within each, separately


def family(model: str) -> str:
    """The named family of an exploratory comparison: the proposed network's ablations, or the baselines."""
    return "ablations" if model in roster.ABLATIONS else "baselines"


def claims(comparisons: dict[str, dict], summaries: dict[str, dict], ref: str, protocol: str,
           primary: tuple[str, str] | None = None) -> None:
    """Decide, in place, which of the reference model's comparisons under one protocol may support a
    claim, and Holm-adjust their p-values within each named family (ablations, baselines), per metric.

    `primary` (comparator, metric), when this protocol and scenario hold the declared primary
    comparison: that one test is not adjusted (p_holm = p_value, family "primary") and is in no family.
    A comparison with a degenerate model (or a degenerate reference) supports no claim: beating a
    constant predictor says nothing. Its unadjusted p-value is kept, and `p_holm` is None.
    """
    for model, c in comparisons.items():
        bad = [m for m in (ref, model) if (summaries.get(m) or {}).get(protocol, {}).get("degenerate")]
        c["claim"] = not bad
        c["no_claim_reason"] = (f"{' and '.join(bad)} did not learn under the {protocol} protocol (degenerate)"
                                if bad else None)
        c["family"] = family(model)
    for metric in COMPARED_KEYS:
        is_primary = {m: primary == (m, metric) for m in comparisons}
        for name in FAMILIES:
            members = [m for m, c in comparisons.items() if c["claim"] and c["family"] == name and not is_primary[m]]
            adjusted = M.holm([comparisons[m][metric]["p_value"] for m in members])
            size = len([x for x in adjusted if x is not None])
            ranked = sorted((comparisons[m][metric]["p_value"], m) for m in members
                            if comparisons[m][metric]["p_value"] is not None)
            rank = {m: i for i, (_, m) in enumerate(ranked)}
            for m, p in zip(members, adjusted):
                comparisons[m][metric].update(p_holm=p, family=name, holm_family=size)
                if m in rank:   # the interval that agrees with its Holm step: Bonferroni-widened at that step's level
                    comparisons[m][metric].update(ST.holm_interval(comparisons[m][metric], rank[m], size))
        for m, c in comparisons.items():
            if is_primary[m]:
                c[metric].update(p_holm=c[metric]["p_value"] if c["claim"] else None, family="primary",
                                 holm_family=1)
            elif "p_holm" not in c[metric]:
                c[metric].update(p_holm=None, family=c["family"], holm_family=None)


def _tuning_meta(all_meta: list[tuple[str, dict]], seed: int) -> dict | None:
    """How the run's recipes were searched (the runs' own records), or None when none was tuned."""
    tuned = [(where, m["tuning"]) for where, m in all_meta if m.get("tuning")]
    if not tuned:
        return None
    return {"nested": True, "seed": seed, "tuned_runs": len(tuned), "of_runs": len(all_meta),
            **{k: _consistent(tuned, k) for k in ("trials", "epoch_cap", "objective", "sampler", "pruner",
                                                  "startup_trials")}}


def _consistent(runs_meta: list[tuple[str, dict]], key: str) -> Any:
    """The one value of `key` shared by the runs; DataError naming two runs that disagree."""
    seen: dict[str, str] = {}
    for where, meta in runs_meta:
        if key in meta:
            seen.setdefault(json.dumps(meta[key]), where)
    if len(seen) > 1:
        (v1, w1), (v2, w2) = list(seen.items())[:2]
        raise DataError(f"{w1} has {key}={v1} but {w2} has {key}={v2}; runs of one evaluation must share "
                        f"it (stale runs?); re-run them with `dvc repro`")
    return json.loads(next(iter(seen))) if seen else None


def build_scenario(params: Params, scenario: str, runs: Path, runs_meta: dict[str, list[tuple[str, dict]]],
                   splits_dir: Path = layout.SPLITS_DIR) -> tuple[dict, list[dict]]:
    """One scenario's block of metrics.json and its per-fold rows; each run's metrics.json is added
    to `runs_meta[model]`."""
    class_names = list(scenarios.class_names(scenario))
    models, protocols = params.train.models, params.split.protocols
    rows: dict[tuple[str, str], list[dict]] = {}
    fms: dict[tuple[str, str], list[dict]] = {}
    preds: dict[tuple[str, str], list[pd.DataFrame]] = {}
    vals: dict[tuple[str, str], list[pd.DataFrame]] = {}
    metas: dict[tuple[str, str], list[dict]] = {}
    validation: dict[str, dict[str, list]] = {}
    for model in models:
        for protocol in protocols:
            for repeat, fold in grid.folds_of(params):   # k*R runs, repeat by repeat
                run = grid.read(grid.Run(scenario, model, protocol, repeat, fold), runs,
                                ("meta", "predictions", "validation"))
                pred, meta, val = run["predictions"], run["meta"], run["validation"]
                if model == models[0]:      # the validation part is the fold's, the same for every model
                    validation.setdefault(protocol, {"images": [], "patients": []})
                    validation[protocol]["images"].append(meta.get("n_val"))
                    validation[protocol]["patients"].append(meta.get("n_val_patients"))
                row, fm = fold_row(scenario, model, protocol, fold, pred, meta, class_names, repeat)
                rows.setdefault((model, protocol), []).append(row)
                fms.setdefault((model, protocol), []).append(fm)
                preds.setdefault((model, protocol), []).append(pred)
                vals.setdefault((model, protocol), []).append(val)
                metas.setdefault((model, protocol), []).append(meta)
                runs_meta[model].append(
                    (str(layout.run_dir(scenario, model, protocol, fold, runs, repeat) / layout.RUN_METRICS), meta))

    mine = [x for m in models for x in runs_meta[m] if x[1].get("scenario", scenario) == scenario]
    trained_on = _consistent(mine, "splits")
    current = layout.splits_path(scenario, splits_dir)
    if trained_on is not None and current.is_file():
        now = fingerprints.file_sha256(current)[:fingerprints.SHORT]
        if now != trained_on:
            raise DataError(f"the runs of scenario {scenario} were trained on folds {trained_on}, but {current} now "
                            f"holds folds {now} (split ran again after training); run `dvc repro` to retrain them")
    result: dict[str, Any] = {"meta": {"scenario": scenario, "description": scenarios.DESCRIPTIONS[scenario],
                                       "class_names": class_names, "splits": trained_on,
                                       "cohort": _consistent(mine, "cohort")}}
    for (model, protocol), rs in rows.items():
        result.setdefault(model, {})[protocol] = summarize_runs(
            rs, fms[(model, protocol)], preds[(model, protocol)], class_names, protocol, params.evaluate.bootstrap,
            params.seed, vals[(model, protocol)], params.evaluate.prevalence, params.evaluate.target_sensitivity,
            repeats=params.split.repeats)
        tuned = tuning_summary(metas[(model, protocol)])
        if tuned is not None:   # only a tuned run's metrics.json holds the block (tune.trials > 0)
            result[model][protocol]["tuning"] = tuned
    # a property of each fold's test part, the same for every model: what a constant guess scores
    result["meta"]["majority_rate"] = {p: [r["majority_rate"] for r in rows[(models[0], p)]] for p in protocols}
    result["meta"]["validation"] = validation   # per fold: the images and patients epochs were selected on

    ref = params.evaluate.reference_model
    pp = params.evaluate.primary
    comparisons: dict[str, Any] = {}

    def pair(a: str, b: str, protocol: str) -> dict:
        where = f"{layout.stage_dir(scenario, a, protocol, runs)} vs {layout.stage_dir(scenario, b, protocol, runs)}"
        return compare(rows[(a, protocol)], rows[(b, protocol)], preds[(a, protocol)], preds[(b, protocol)],
                       class_names, params.evaluate.bootstrap, params.seed, where, repeats=params.split.repeats)

    for protocol in protocols:
        for model in models:
            if model != ref:
                comparisons.setdefault(protocol, {})[model] = pair(ref, model, protocol)
        here = pp is not None and pp.reference == ref and (pp.scenario, pp.protocol) == (scenario, protocol)
        claims(comparisons.get(protocol, {}), result, ref, protocol, (pp.comparator, pp.metric) if here else None)
    result["comparisons"] = comparisons
    if pp is not None and pp.scenario == scenario:
        result["primary"] = primary_block(params, pair(pp.reference, pp.comparator, pp.protocol),
                                          rows[(pp.reference, pp.protocol)], result,
                                          patient_pairs(rows[(pp.reference, pp.protocol)], preds[(pp.reference, pp.protocol)],
                                                        preds[(pp.comparator, pp.protocol)], class_names))
    return result, [r for rs in rows.values() for r in rs]


def patient_pairs(ref_rows: list[dict], ref_preds: list[pd.DataFrame], other_preds: list[pd.DataFrame],
                  class_names: list[str]) -> dict:
    """The two models' patient diagnoses (the mean of each patient's image probabilities, as patient-level
    accuracy takes them) over the folds of repeat 1, each patient once: exact McNemar on the discordant
    patients. Patients are the independent unit of patient folds, and what a clinician diagnoses."""
    ref_right, other_right = [], []
    for row, a, b in zip(ref_rows, ref_preds, other_preds, strict=True):
        if row["repeat"] != 1:
            continue
        ya, pa = M.patient_level(a, class_names)
        yb, pb = M.patient_level(b, class_names)
        ref_right.append(pa.argmax(axis=1) == ya)
        other_right.append(pb.argmax(axis=1) == yb)
    return {**ST.exact_mcnemar(np.concatenate(ref_right), np.concatenate(other_right)),
            "over": "the patients of repeat 1, each diagnosed once (the mean of its image probabilities)"}


def primary_block(params: Params, comparison: dict, ref_rows: list[dict], result: dict,
                  patients: dict | None = None) -> dict:
    """The declared primary comparison: its test (not adjusted), the patient bootstrap of the same metric,
    the patient-level McNemar test and both models' patient AUC, and what this design can say."""
    pp = params.evaluate.primary
    test = comparison[pp.metric]
    n_patients = (result[pp.reference][pp.protocol].get("accuracy_patient_bootstrap") or {}).get("n_patients")
    bad = [m for m in (pp.reference, pp.comparator) if result[m][pp.protocol].get("degenerate")]
    same_metric = {"balanced_accuracy": "bootstrap_balanced_accuracy", "accuracy": "bootstrap_accuracy"}.get(pp.metric)
    return {"reference": pp.reference, "comparator": pp.comparator, "metric": pp.metric, "protocol": pp.protocol,
            "scenario": pp.scenario, "sign": f"{pp.reference} minus {pp.comparator}",
            "folds": len(params.train.folds), "repeats": params.split.repeats, "n_patients": n_patients,
            "test": test, "bootstrap": comparison.get(same_metric) if same_metric else None,
            "patient_level": patients,
            "patient_auc": {m: result[m][pp.protocol].get("patient_auc") for m in (pp.reference, pp.comparator)},
            "design": ST.design_exact(test, pp.target, len(params.train.folds), comparison["n_train"],
                                      comparison["n_test"]),
            "degenerate": bad,
            "failed_folds": {m: result[m][pp.protocol]["failed_folds"] for m in (pp.reference, pp.comparator)}}


def build(params: Params, runs: Path = layout.RUNS, splits_dir: Path = layout.SPLITS_DIR) -> tuple[dict, pd.DataFrame]:
    """The metrics.json content (one block per scenario, and the run's meta) and the per-fold table."""
    models = params.train.models
    runs_meta: dict[str, list[tuple[str, dict]]] = {m: [] for m in models}
    result: dict[str, Any] = {}
    per_fold: list[dict] = []
    for scenario in params.split.scenarios:
        result[scenario], rows = build_scenario(params, scenario, runs, runs_meta, splits_dir)
        per_fold += rows
    all_meta = [x for m in models for x in runs_meta[m]]
    ref = params.evaluate.reference_model
    across = across_scenarios(params, result)
    result["meta"] = {
        "scenarios": list(params.split.scenarios),
        "data_source": params.data.source,
        "protocols": list(params.split.protocols),
        "folds": list(params.train.folds),
        "repeats": params.split.repeats,
        "profile_name": params.profile_name,
        "models": list(models),
        "reference_model": ref,
        "comparison": f"{ref} minus each other model, same folds",
        "input_size": _consistent(all_meta, "input_size"),
        "epochs": {m: _consistent(runs_meta[m], "epochs") for m in models},
        "recipes_overridden": sorted(params.train.overrides or {}),
        **({"tuning": tuned_meta} if (tuned_meta := _tuning_meta(all_meta, params.seed)) else {}),
        "pretrained": bool(any(meta.get("pretrained") for _, meta in all_meta)),
        "cohort": _consistent(all_meta, "cohort"),
        "cpu": _consistent(all_meta, "cpu"),
        # torch threads per fold change the rounding, so they are one value; folds side by side (train.
        # parallel_folds) do not change a fold's bits: the counts the runs were trained with, for the record
        "threads": _consistent(all_meta, "threads"),
        "fold_workers": sorted({meta["fold_workers"] for _, meta in all_meta if "fold_workers" in meta}),
        "select_by": _consistent(all_meta, "select_by"),
        "across_scenarios": across,
        "prevalence": params.evaluate.prevalence,
        "target_sensitivity": params.evaluate.target_sensitivity,
        "statistics": {
            "ci_low/ci_high": "t interval of the mean over folds; it treats the folds as independent, which they "
                              "are not (their training parts overlap), so it is too narrow: naive",
            "accuracy_patient_bootstrap": "percentile interval of the accuracy pooled over every fold's test "
                                          "images, resampling whole patients",
            "comparisons": "reference minus each other model over the same folds of every repeat: corrected "
                           "repeated k-fold t-test (Bouckaert & Frank 2004; variance x (1/(k*R) + n_test/n_train), "
                           "k*R - 1 df) per metric (p_value, ci_low/ci_high, mdd: the difference it detects with "
                           "80% power) and its Holm adjustment within each named family (ablations, baselines), "
                           "scenario, protocol and metric over the comparisons that may support a claim (p_holm); "
                           "the declared primary comparison (evaluate.primary) is not adjusted; a paired bootstrap "
                           "of accuracy resampling whole patients (bootstrap_accuracy): the uncertainty of these "
                           "trained models' test estimate, not of the method",
            "class_rates": "per class, one against the rest, pooled over every fold and repeat: sensitivity, "
                           "specificity, PPV, NPV with percentile intervals from a stratified patient bootstrap "
                           "(patients resampled within their class, so each resample keeps the cohort's "
                           "prevalence); PPV and NPV carry the cohort's prevalence (prevalence_cohort), and, where "
                           "evaluate.prevalence is set, are also given at that prevalence (Bayes' formula on each "
                           "resample's sensitivity and specificity)",
            "calibration": "Brier score and expected calibration error over 10 equal-width bins, of the positive "
                           "class's probability (binary) or classwise (S4: the mean over classes of each class's "
                           "ECE), with intervals from the same stratified patient bootstrap; the reliability curve "
                           "of the same probabilities",
            "auc_pooled": "AUC over every fold's test images pooled, stratified patient bootstrap interval",
            "patient_auc": "patient folds: AUC of the patient diagnoses (mean image probability) of repeat 1",
            "operating_point": "binary scenarios: the highest threshold on P(positive) whose validation sensitivity "
                               "reaches evaluate.target_sensitivity, chosen on each fold's validation part (never "
                               "its test part); pooled test sensitivity and specificity there, with intervals",
            "primary": "the declared comparison's corrected t-test, the stratified patient bootstrap of the same "
                       "metric, exact McNemar on the patients the two models diagnose differently (repeat 1), "
                       "and the design: the exact 80% MDD (noncentral t), the sd's 95% interval on k*R-1 df and "
                       "the MDDs it implies, and the MDD no number of repeats goes below",
            "ci_holm_low/ci_holm_high": "the interval consistent with a comparison's Holm step: the corrected t "
                                        "interval at level 0.05 / (m - rank), Bonferroni-widened at that step",
            "across_scenarios": "the primary pair, metric and protocol in every scenario: Holm over the scenarios "
                                "(a statement across S1-S4 uses these p-values)",
            "patient_accuracy_exact": "Clopper-Pearson interval of patient-level accuracy (repeat 1, each patient "
                                      "once) beside the patient-level majority rate",
            "failed_folds": f"folds on which a model predicts one class for at least "
                            f"{M.DEGENERATE_ONE_CLASS_SHARE:.0%} of the images or scores balanced accuracy at most "
                            f"chance + {M.DEGENERATE_MARGIN}",
            "degenerate": f"mean balanced accuracy at most chance + {M.DEGENERATE_MARGIN}, or a fold predicting "
                          f"one class for at least {M.DEGENERATE_ONE_CLASS_SHARE:.0%} of its test images; no "
                          f"claim is made against a degenerate model",
        },
    }
    return rounded(result), pd.DataFrame(per_fold, columns=PER_FOLD_COLUMNS)


def across_scenarios(params: Params, result: dict) -> dict | None:
    """The primary pair (reference minus comparator, its metric and protocol) in every scenario of the run,
    Holm-adjusted over the scenarios: the family of a statement about the proposed model across S1-S4.
    None without a primary comparison or with one scenario."""
    pp = params.evaluate.primary
    if pp is None or len(params.split.scenarios) < 2 or pp.reference != params.evaluate.reference_model:
        return None
    tests = {s: ((result[s].get("comparisons") or {}).get(pp.protocol) or {}).get(pp.comparator, {}).get(pp.metric)
             for s in params.split.scenarios}
    tests = {s: t for s, t in tests.items() if t is not None}
    if len(tests) < 2:
        return None
    adjusted = M.holm([t.get("p_value") for t in tests.values()])
    return {"reference": pp.reference, "comparator": pp.comparator, "metric": pp.metric, "protocol": pp.protocol,
            "family": f"Holm over {len(tests)} scenarios",
            "scenarios": {s: {"mean_difference": t.get("mean_difference"), "p_value": t.get("p_value"),
                              "p_holm": q} for (s, t), q in zip(tests.items(), adjusted)}}


def rounded(obj: Any, decimals: int = DECIMALS) -> Any:
    """`obj` with floats rounded, NaN/inf as None and -0.0 as 0.0 (stable JSON bytes)."""
    if isinstance(obj, dict):
        return {str(k): rounded(v, decimals) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, decimals) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = M._num(obj)
        return None if x is None else round(x, decimals) + 0.0
    return obj


def main(argv: list[str] | None = None) -> int:
    """Write reports/metrics.json and reports/per_fold.csv from the runs."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--runs", default=str(layout.RUNS), help=f"directory of training runs (default: {layout.RUNS})")
    ap.add_argument("--splits", default=str(layout.SPLITS_DIR), help="the folds the runs must have been trained on")
    ap.add_argument("--out-dir", default=str(layout.REPORTS), help="where metrics.json and per_fold.csv go")
    args = ap.parse_args(argv)
    params = load(args.params)
    result, per_fold = build(params, Path(args.runs), Path(args.splits))
    out = Path(args.out_dir)
    metrics_path, per_fold_path = out / layout.METRICS.name, out / layout.PER_FOLD.name
    per_fold_text = csv_text(per_fold, float_format=f"%.{DECIMALS}f", lineterminator="\n")
    # metrics.json names the per_fold.csv written with it: a reader can tell a mixed pair
    result["meta"]["per_fold_sha256"] = hashlib.sha256(per_fold_text.encode()).hexdigest()
    with atomic_outputs() as outputs:     # both files replaced together, or neither
        outputs.path(per_fold_path).write_text(per_fold_text, encoding="utf-8")
        outputs.path(metrics_path).write_text(json_text(result), encoding="utf-8")
    n_runs = len(per_fold)
    print(f"evaluate: {n_runs} runs ({len(params.split.scenarios)} scenarios x {len(params.train.models)} models x "
          f"{len(params.split.protocols)} protocols x {len(params.train.folds)} folds x {params.split.repeats} "
          f"repeats) -> {metrics_path}, "
          f"{per_fold_path}")
    return 0


if __name__ == "__main__":
    from pipeline.core.cli import run_stage

    run_stage(main)
