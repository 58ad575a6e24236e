"""The findings: the plain-language "Reading" section of reports/README.md, generated from the
numbers in metrics.json (read through pipeline/reporting/results.py).

Written for a clinician-researcher. Three parts: "At a glance" (`at_a_glance`, at most 8 lines read in
two minutes: the data, the primary comparison, what the design cannot tell, the accuracy-per-compute
answer, the proposed model's sensitivity and specificity, and any model that failed), the exploratory
comparisons as one table (`exploratory_rows`: a row per tested comparison, its family, estimate, corrected
t interval, Holm-adjusted and unadjusted p, detectable difference and verdict, and, in a column of its
own, the patient bootstrap of these trained models' accuracy difference), and the Reading: prose only
for what a table cannot say, each statement once (per-scenario facts gathered into one sentence). Rules:

- a model that did not learn (metrics.json `degenerate`) is named so, and left out of "best model"
  statements, head-to-head claims and the leakage-gap mean;
- it opens with the primary comparison declared in evaluate.primary: the estimate, the corrected
  repeated k-fold t-test's own interval and p-value, the difference the design detects with 80%
  power, and the repeats or patients that would detect the paper's 5.9 points;
- every other comparison is exploratory; a verdict ("distinguishable") is given with its own test's
  interval and Holm-adjusted p-value (within the ablations or baselines family); the patient-bootstrap
  interval is given in a sentence of its own, for what it is (these trained models' test estimate);
- "best" only of a tested difference; otherwise "highest mean (not tested)";
- balanced accuracy is the headline; a model that failed on a fold is said to, wherever it is named;
- the majority-class rate (what a constant guess scores) is stated beside every accuracy;
- a figure that matches the paper by construction (the MACs ratio) is said to;
- the size of the validation parts, and whether epochs were chosen on them, is stated.
"""
from __future__ import annotations

import numpy as np

from pipeline.core import roster, scenarios
from pipeline.data.protocols import words
from pipeline.reporting import paper
from pipeline.reporting.results import Results

ALPHA = 0.05


def _p(p: float | None) -> str:
    if p is None:
        return "p undefined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _range(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _context(r: Results) -> list[str]:
    """What a constant guess scores, and what epochs were selected on: one sentence each, over the scenarios."""
    out, majority_parts, validation_parts = [], [], []
    for scenario in r.meta["scenarios"]:
        block = r.scenario_meta(scenario)
        majority = block.get("majority_rate") or {}
        parts = [f"{_pct(float(np.mean(v)))} ({words(p)}"
                 + (f", per fold run {_pct(min(v))}-{_pct(max(v))})" if len(set(v)) > 1 else ")")
                 for p, v in majority.items() if v]
        if parts:
            majority_parts.append(f"{scenario} {', '.join(parts)}")
        validation = block.get("validation") or {}
        if validation:
            validation_parts.append(f"{scenario} " + ", ".join(
                f"{_range(v['patients'])} patients ({_range(v['images'])} images) under {words(p)}"
                for p, v in validation.items()))
    if majority_parts:
        out.append("Always guessing the most frequent class would score " + "; ".join(majority_parts)
                   + " (the majority-class rate, drawn as a dashed line in the accuracy figures); an accuracy near "
                     "it means little.")
    if validation_parts:
        parts = "; ".join(validation_parts)
        select_by = r.meta.get("select_by")
        if select_by == "last":
            out.append(f"The networks' last epoch was taken (train.select_by: last): the validation parts per fold "
                       f"({parts}) are too small to choose an epoch on; they only chose the hand-crafted "
                       f"baseline's regularisation.")
        else:
            small = min((x for s in r.meta["scenarios"] for v in (r.scenario_meta(s).get("validation") or {}).values()
                         for x in v["patients"] if x is not None), default=None)
            out.append(f"Epochs were chosen by {select_by or 'validation'} on validation parts per fold of {parts}"
                       + ("; with parts this small the chosen epoch is noisy." if small is not None and small < 10
                          else "."))
    return out


def _did_not_learn(r: Results, labels: dict[str, str]) -> list[str]:
    """Which models did not learn, or failed on some folds: one sentence each, over the scenarios."""
    meta = r.meta
    found, failed = [], []
    for scenario in meta["scenarios"]:
        for model in meta["models"]:
            bad = [p for p in meta["protocols"] if not r.learned(scenario, model, p)]
            if bad:
                reason = r.summary(scenario, model, bad[0]).get("degenerate_reasons") or []
                found.append(f"{labels[model]} in {scenario} under {' and '.join(words(p) for p in bad)}"
                             + (f" ({reason[0]})" if reason else ""))
        failed += [f"{labels[m]} in {scenario} under {words(p)} failed on "
                   + ", ".join(f["fold"] for f in r.summary(scenario, m, p).get("failed_folds") or [])
                   for m in meta["models"] for p in meta["protocols"]
                   if r.learned(scenario, m, p) and r.summary(scenario, m, p).get("failed_folds")]
    out = ([f"Did not learn, marked degenerate, and no claim is made for or against them: {'; '.join(found)}."]
           if found else [f"Every model learned in {', '.join(meta['scenarios'])} (none is degenerate under any "
                          f"protocol)."])
    if failed:
        out.append("Learned on average but failed on some folds (one class for at least 95% of a fold's images, or "
                   "balanced accuracy at chance + 0.02 or below): " + "; ".join(failed) + ".")
    return out


METRIC_WORDS = {"balanced_accuracy": "balanced accuracy", "accuracy": "accuracy", "macro_f1": "macro-F1"}
HEADLINE = "balanced_accuracy"   # the headline metric of the reading (the classes are imbalanced)
SIGN = ("Sign convention: every difference below is the first-named model minus the other, in percentage "
        "points; a positive difference favours the first-named model.")


def _points(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _failed(r: Results, scenario: str, model: str, protocol: str) -> str:
    """' (failed on fold 3)' for a model that failed on some folds, '' otherwise."""
    failed = r.summary(scenario, model, protocol).get("failed_folds") or []
    return f" (failed on {', '.join(f['fold'] for f in failed)})" if failed else ""


def _test_words(t: dict, adjusted: bool) -> str:
    """The corrected t-test's own interval and p-value, in one clause."""
    p = t.get("p_holm") if adjusted else t.get("p_value")
    if t.get("ci_low") is None:
        return t.get("p_undefined") or "p undefined"
    which = f"Holm-adjusted within the {t.get('family')} family, {_p(p)}" if adjusted else _p(p)
    return (f"corrected t-test 95% interval {_points(t['ci_low'])} to {_points(t['ci_high'])}"
            f"{' (unadjusted)' if adjusted else ''}, {which}")


def _primary(r: Results, labels: dict[str, str], declared: str = "") -> list[str]:
    """The declared primary comparison: estimate, the test's interval and p, the same metric's patient
    bootstrap, the patient-level test, what the design can say, and the comparison across scenarios."""
    pr = next(((s, r.raw[s]["primary"]) for s in r.meta["scenarios"]
               if (r.raw.get(s) or {}).get("primary")), None)
    if pr is None:
        return ["No primary comparison in this run (evaluate.primary is empty, or names a model, protocol or scenario "
                "this run does not have): every comparison below is exploratory."]
    scenario, b = pr
    t, d = b["test"], b["design"]
    ref, other = labels.get(b["reference"], b["reference"]), labels.get(b["comparator"], b["comparator"])
    metric = METRIC_WORDS.get(b["metric"], b["metric"])
    setting = (f"{words(b['protocol'])}, {scenario}, {b['n_patients']} patients, "
               f"{b['folds']} folds x {b['repeats']} repeat{'s' if b['repeats'] > 1 else ''}")
    where = f"declared in params.yaml's evaluate.primary{f', {declared}' if declared else ''}"
    out = [f"Primary comparison ({where}; not adjusted for multiplicity): "
           f"{ref} minus {other} in {metric}, {setting}. " + SIGN]
    if b.get("degenerate"):
        out.append(f"{' and '.join(b['degenerate'])} did not learn here (degenerate): the primary comparison "
                   f"supports no claim.")
    failed = {m: f for m, f in (b.get("failed_folds") or {}).items() if f}
    verdict = ""
    if t.get("p_value") is not None and not b.get("degenerate"):
        verdict = (" The difference is distinguishable from zero at the 5% level" if t["p_value"] < ALPHA
                   else " The difference is not distinguishable from zero at the 5% level")
        verdict += (" (" + "; ".join(f"{labels.get(m, m)} failed on {', '.join(x['fold'] for x in f)}"
                                     for m, f in failed.items()) + ")") if failed else ""
        verdict += "."
    out.append(f"Estimate {_points(t.get('mean_difference'))} points; {_test_words(t, adjusted=False)} "
               f"(Bouckaert-Frank corrected repeated k-fold t-test, {t.get('df')} degrees of freedom).{verdict}")
    if d.get("mdd") is not None:
        target = f"{100 * d['target']:.1f}"
        s = (f"Power: from the observed spread of the {t['n_differences']} fold differences (sd "
             f"{100 * t['sd']:.1f} points; its 95% interval on {d['sd_df']} degrees of freedom is "
             f"{100 * d['sd_ci_low']:.1f} to {100 * d['sd_ci_high']:.1f}), this design detects a difference of "
             f"{100 * d['mdd']:.1f} points with 80% power ({100 * d['mdd_range'][0]:.1f} to "
             f"{100 * d['mdd_range'][1]:.1f} over that interval; noncentral t); its power for the paper's {target} "
             f"points is {100 * d['power_at_target']:.0f}%. More repeats of these folds lower the detectable "
             f"difference towards {100 * d['mdd_limit']:.1f} points ({100 * d['mdd_limit_range'][0]:.1f} to "
             f"{100 * d['mdd_limit_range'][1]:.1f}) and no further (the n_test/n_train part of the variance does not "
             f"shrink with repeats)")
        low, high = d["repeats_needed_range"]
        need = lambda n: (f"{n} repeat{'s' if n > 1 else ''}" if n  # noqa: E731
                          else f"no number of repeats up to {d['max_repeats']}")
        s += f": at the observed sd, {need(d['repeats_needed'])} would detect {target} points"
        if low == high:
            s += ", nor would any within the sd's interval" if low is None else ", and as many across the sd's interval"
        else:
            s += f"; within the sd's interval, from {need(low)} to {need(high)}"
        s += (f". With a standard deviation on {d['sd_df']} degrees of freedom this design cannot say more, nor how "
              f"many patients would be enough (training noise between folds does not shrink with patients).")
        out.append(s)
    else:
        out.append("Power: not computable (the fold differences have no spread, or too few folds).")
    boot = b.get("bootstrap") or {}
    if boot.get("ci_low") is not None:
        out.append(f"Separately, not a test of the method: over these trained models' pooled test images, "
                   f"resampling patients within their class, the {metric} difference {ref} minus {other} is "
                   f"{_points(boot['mean_difference'])} points with a 95% bootstrap interval of "
                   f"{_points(boot['ci_low'])} to {_points(boot['ci_high'])}: the uncertainty of these trained "
                   f"models' test estimate, not of the method.")
    pl, auc = b.get("patient_level") or {}, b.get("patient_auc") or {}
    if pl.get("n"):
        p_words = (_p(pl["p_value"]) if pl.get("p_value") is not None else pl.get("p_undefined"))
        line = (f"Per patient ({pl['n']} patients of repeat 1, each diagnosed by the mean of its image "
                f"probabilities): the two diagnose {pl['discordant']} patients differently, "
                f"{pl['reference_only_right']} rightly by {ref} and {pl['comparator_only_right']} rightly by "
                f"{other}; exact McNemar test, {p_words}.")
        aucs = [(labels.get(m, m), a) for m, a in auc.items() if a and a.get("estimate") is not None]
        if aucs:
            line += (" Patient-level AUC: " + "; ".join(
                f"{name} {a['estimate']:.3f} (95% interval {a['ci_low']:.3f} to {a['ci_high']:.3f})"
                for name, a in aucs) + ", stratified patient bootstrap.")
        out.append(line)
    across = r.meta.get("across_scenarios") or {}
    if across.get("scenarios"):
        cells = across["scenarios"]
        shown = [f"{s} {_points(c['mean_difference'])} points, Holm {_p(c['p_holm'])}" for s, c in cells.items()]
        yes = [s for s, c in cells.items() if c.get("p_holm") is not None and c["p_holm"] < ALPHA]
        out.append(f"Across {', '.join(cells)} ({across['family']}: {ref} minus {other} in {metric}, "
                   f"{words(across['protocol'])}): {'; '.join(shown)}; Holm-adjusted p below 0.05 in "
                   f"{', '.join(yes) if yes else 'none of them'}. A statement about the proposed model across scenarios "
                   f"rests on these adjusted p-values; the primary test above is the one unadjusted test.")
    return out


def _best(r: Results, labels: dict[str, str]) -> list[str]:
    """The highest mean balanced accuracy per scenario and protocol, in one sentence; "best" only when the
    reference's tested differences with every other model that learned are distinguishable and in its
    favour (then a sentence of its own)."""
    meta = r.meta
    ref = meta.get("reference_model")
    untested, best, none = [], [], []
    for scenario, protocol in r.panels:
        bal = {m: r.stat(scenario, m, protocol, HEADLINE) for m in meta["models"]
               if r.learned(scenario, m, protocol) and r.stat(scenario, m, protocol, HEADLINE) is not None}
        if not bal:
            none.append(f"{scenario} {words(protocol)}")
            continue
        top = max(bal, key=bal.get)
        sd = r.stat(scenario, top, protocol, HEADLINE, "sd")
        n = r.stat(scenario, top, protocol, HEADLINE, "n")
        figure = (f"{100 * bal[top]:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")
                  + f" over {n} fold runs{_failed(r, scenario, top, protocol)}")
        mine = r.comparisons(scenario, protocol)
        others = [m for m in bal if m != top]
        tested = top == ref and others and all(
            (mine.get(m) or {}).get("claim") and ((mine[m].get(HEADLINE) or {}).get("p_holm") or 1) < ALPHA
            and (mine[m][HEADLINE].get("mean_difference") or 0) > 0 for m in others)
        place = f"{scenario}, {protocol} protocol: {labels[top]}, {figure}"
        (best if tested else untested).append(place)
    out = []
    if best:
        out.append("The best model that learned, its balanced accuracy higher than every other model's by a "
                   "distinguishable margin (corrected t-test, Holm-adjusted within each family): " + "; ".join(best) + ".")
    if untested:
        out.append("Highest mean balanced accuracy (%), not tested against every other model: " + "; ".join(untested) + ".")
    if none:
        out.append(f"No model learned in: {', '.join(none)}.")
    return out


def _budgets(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    """Whether the models' training budgets differ (the budgets themselves are in the Cost table), and how
    the recipes were chosen."""
    meta = r.meta
    protocol = meta["protocols"][0]
    budgets = {m: r.summary(scenario, m, protocol).get("budget") or {} for m in meta["models"]}
    epochs = {m: b.get("epochs") for m, b in budgets.items() if b.get("epochs") is not None}
    steps = {m: b.get("optimizer_steps_per_fold") for m, b in budgets.items()
             if b.get("optimizer_steps_per_fold") is not None}
    if not epochs:
        return []
    steps = {m: v for m, v in steps.items() if v != 0}   # a model fitted in closed form takes no steps
    same = len({str(v) for v in epochs.values()}) == 1 and len({round(v) for v in steps.values()}) <= 1
    s = ("The training budgets are equal (epochs and optimizer steps per fold: the Cost table)." if same else
         "The training budgets differ between models (epochs and optimizer steps per fold: the Cost table), so a "
         "difference in results is partly a difference in training budget.")
    overridden = meta.get("recipes_overridden") or []
    tuning = meta.get("tuning")
    if tuning:
        compute = {m: (r.summary(scenario, m, protocol).get("tuning") or {}).get("compute") for m in meta["models"]}
        used = "; ".join(f"{labels.get(m, m)} {c['trials']} trials ({c['pruned']} pruned), {c['epochs']} epochs, "
                         f"{c['optimizer_steps']} optimizer steps" for m, c in compute.items() if c)
        untuned = [labels.get(m, m) for m, c in compute.items() if not c]
        s = (f"Equal search budget: {tuning['trials']} trials per model per fold, nested (each fold's study trains "
             f"on its training part and scores {tuning['objective']} on its validation part; the test part is never "
             f"read), {tuning['sampler']} seeded from seed {tuning['seed']}, {tuning['pruner']} pruning, at most "
             f"{tuning['epoch_cap']} epochs a trial; compute used per model under {protocol} folds: {used}."
             + (f" Not tuned: {', '.join(untuned)} (fitted in closed form, its regularisation chosen on the "
                f"validation part)." if untuned else "") + " Chosen recipes: the Tuning table.")
    elif overridden and meta.get("profile_name") == "cpu-demo":
        s += (f" The demo's per-model recipes ({', '.join(overridden)}) were chosen while looking at this demo "
              f"cohort's fold results (not nested), which favours them.")
    elif meta.get("profile_name") == "paper":
        s += (" The paper profile's recipes were fixed in advance: Uçar's recipe for dual_vgg, one shared recipe "
              "for the rest.")
    return [s]


def _leakage_gap(r: Results, labels: dict[str, str]) -> list[str]:
    """How much higher image-level folds put accuracy than patient folds, over models that learned under
    both, per scenario, in one sentence."""
    meta = r.meta
    leak = next((p for p in ("image", "ucar") if p in meta["protocols"]), None)
    if "patient" not in meta["protocols"] or not leak:
        return []
    parts, means, missing = [], [], []
    for scenario in meta["scenarios"]:
        gaps = [r.stat(scenario, m, leak, "accuracy") - r.stat(scenario, m, "patient", "accuracy")
                for m in meta["models"]
                if r.learned(scenario, m, leak) and r.learned(scenario, m, "patient")
                and r.stat(scenario, m, leak, "accuracy") is not None
                and r.stat(scenario, m, "patient", "accuracy") is not None]
        if not gaps:
            missing.append(scenario)
            continue
        g = np.array(gaps) * 100
        means.append(g.mean())
        parts.append(f"{scenario} {g.mean():+.1f} over {len(g)} models (from {g.min():+.1f} to {g.max():+.1f})")
    out = []
    if parts:
        s = (f"Image-level ({leak}) folds gave more accuracy than patient folds, on average over the models that "
             f"learned under both (image minus patient, points): " + "; ".join(parts) + ".")
        if np.mean(means) > 0:
            s += (" Image-level folds put images of the same patient (and muscle) in training and test, so they "
                  "overstate accuracy on new patients.")
        out.append(s)
    if missing:
        out.append(f"No model learned under both protocols in {', '.join(missing)}, so the image-minus-patient gap "
                   f"is not stated there.")
    return out


def _compute(r: Results, complexity: dict[str, dict], labels: dict[str, str]) -> list[str]:
    meta = r.meta
    ref, theirs = meta.get("reference_model"), roster.in_run(roster.COMPUTE_REFERENCE, meta["models"])
    if ref not in meta["models"] or theirs is None or ref == theirs:
        return []
    c_ref, c_dual = complexity.get(ref, {}), complexity.get(theirs, {})
    macs_r, macs_d = c_ref.get("paper_setting", {}).get("macs"), c_dual.get("paper_setting", {}).get("macs")
    if not (macs_r and macs_d):
        return []
    s = (f"{labels[ref]} needs {100 * macs_r / macs_d:.2f}% of the MACs of {labels[theirs]} at 3x224x224 "
         f"({macs_d / macs_r:.0f}x fewer) and {100 * c_ref['params'] / c_dual['params']:.1f}% of its parameters.")
    if ref == roster.PROPOSED_MODEL:
        s += (f" That the share matches the paper's {paper.PROPOSED_MACS_PCT}% is by construction: the layer table "
              f"of this reconstruction was sized to it, so it confirms nothing about the paper's network.")
    return [s]


def findings(r: Results, complexity: dict[str, dict], labels: dict[str, str], patient_data: bool,
             declared: str = "") -> list[str]:
    """The reading, per kind of statement, each gathered over the scenarios; every statement follows from
    metrics.json (`patient_data`: whether the data source holds patients' images, pipeline/data/sources.py).
    The exploratory comparisons are a table (`exploratory_rows`), not sentences."""
    out = _primary(r, labels, declared)
    out += _context(r)
    out += _did_not_learn(r, labels)
    out += _best(r, labels)
    out += _exploratory_note(r, labels)
    out += _budgets(r, r.meta["scenarios"][0], labels)
    out += _leakage_gap(r, labels)
    out += _compute(r, complexity, labels)
    if not patient_data:
        out.append("These results come from the synthetic cohort: they test the pipeline and rank the models on "
                   "synthetic images; they are not evidence about patients.")
    return out


def _exploratory_note(r: Results, labels: dict[str, str]) -> list[str]:
    """What the exploratory table's p-values are, once."""
    ref = r.meta.get("reference_model")
    if not any(c.get("claim") for s, p in r.panels for c in r.comparisons(s, p).values()):
        return []
    k, reps = len(r.folds), r.repeats
    return [f"Every other comparison is exploratory and is in the table below: the corrected repeated k-fold t-test "
            f"over {k} folds x {reps} repeat{'s' if reps > 1 else ''}, its own 95% interval beside its verdict, the "
            f"p-value Holm-adjusted within each named family (ablations of {labels.get(ref, ref)}; baselines) over "
            f"the comparisons with models that learned, per scenario and protocol."]


def exploratory_rows(r: Results, labels: dict[str, str], metric: str = HEADLINE) -> list[dict]:
    """One row per tested comparison of the reference model with a model that learned (the primary
    comparison excluded: it is stated at the top), per scenario and protocol: the family, the difference,
    the corrected t-test's own interval and p-values, the detectable difference and the verdict; and,
    labelled as no test, the patient bootstrap of these trained models' accuracy difference."""
    ref = r.meta.get("reference_model")
    rows = []
    for scenario, protocol in r.panels:
        for model, c in r.comparisons(scenario, protocol).items():
            t = c.get(metric) or {}
            if not c.get("claim") or t.get("mean_difference") is None or t.get("family") == "primary":
                continue
            boot = c.get("bootstrap_balanced_accuracy") or {}
            rows.append({"scenario": scenario, "protocol": protocol, "reference": ref, "model": model,
                         "label": labels.get(model, model), "family": t.get("family"), "metric": metric,
                         "difference": t["mean_difference"], "ci_low": t.get("ci_low"), "ci_high": t.get("ci_high"),
                         "p_holm": t.get("p_holm"), "p_value": t.get("p_value"), "mdd": t.get("mdd"),
                         "p_undefined": t.get("p_undefined"), "ci_holm_low": t.get("ci_holm_low"),
                         "ci_holm_high": t.get("ci_holm_high"),
                         "verdict": ("distinguishable" if t.get("p_holm") is not None and t["p_holm"] < ALPHA
                                     else "not distinguishable"),
                         "failed": (_failed(r, scenario, ref, protocol) + _failed(r, scenario, model, protocol)).strip(),
                         "bootstrap_low": boot.get("ci_low"), "bootstrap_high": boot.get("ci_high")})
    return rows


def _pos(scenario: str) -> str | None:
    """The positive class of a binary scenario (label 1: myositis, IBM, PM_DM); None for S4."""
    names = scenarios.class_names(scenario)
    return names[1] if len(names) == 2 else None


def _primary_of(r: Results) -> tuple[str, dict] | None:
    return next(((s, r.raw[s]["primary"]) for s in r.meta["scenarios"] if (r.raw.get(s) or {}).get("primary")), None)


def at_a_glance(r: Results, complexity: dict[str, dict], labels: dict[str, str], data_words: str,
                patient_data: bool) -> list[str]:
    """At most 8 lines for a reader with two minutes: each carries its test or interval, every number
    from metrics.json (tests/test_report.py compares them)."""
    meta = r.meta
    ref = meta.get("reference_model")
    out = [f"**Data:** {data_words}" + ("." if patient_data else "; figures about synthetic images say nothing about "
                                                                 "patients.")]
    found = _primary_of(r)
    if found is None:
        out.append("**Primary comparison:** none declared for this run (evaluate.primary); every comparison is "
                   "exploratory.")
        scenario, protocol, margin = meta["scenarios"][0], ("patient" if "patient" in meta["protocols"]
                                                           else meta["protocols"][0]), None
    else:
        scenario, b = found
        t, d = b["test"], b["design"]
        protocol = b["protocol"]
        other = labels.get(b["comparator"], b["comparator"])
        metric = METRIC_WORDS.get(b["metric"], b["metric"])
        if t.get("ci_low") is None:
            out.append(f"**Primary comparison** ({metric}, {words(protocol)}, {scenario}): {labels.get(ref, ref)} "
                       f"minus {other}: {t.get('p_undefined') or 'not testable'}.")
            margin = None
        else:
            verdict = "distinguishable from zero" if (t.get("p_value") or 1) < ALPHA else "not distinguishable from zero"
            out.append(f"**Primary comparison** ({metric}, {words(protocol)}, {scenario}, {b['n_patients']} patients, "
                       f"{b['folds']} folds x {b['repeats']} repeat{'s' if b['repeats'] > 1 else ''}): "
                       f"{labels.get(ref, ref)} minus {other} is {_points(t['mean_difference'])} points (corrected "
                       f"t-test 95% interval {_points(t['ci_low'])} to {_points(t['ci_high'])}, {_p(t.get('p_value'))}): "
                       f"{verdict}" + (f"; the design detects {100 * d['mdd']:.1f} points with 80% power, and has "
                                       f"{100 * d['power_at_target']:.0f}% power for the paper's "
                                       f"{100 * d['target']:.1f}." if d.get("mdd") is not None else "."))
            margin = (t["ci_high"] - t["ci_low"]) / 2
            if d.get("mdd") is not None:
                out.append(f"**What it cannot tell:** whether the two differ by less than {100 * d['mdd']:.1f} points "
                           f"of {metric}, the paper's {100 * d['target']:.1f} included"
                           + ("" if patient_data else ", nor anything about patients") + ".")
    # accuracy per compute: the lightest model within the primary interval's half-width of the highest mean
    bal = {m: r.stat(scenario, m, protocol, HEADLINE) for m in meta["models"]
           if r.learned(scenario, m, protocol) and r.stat(scenario, m, protocol, HEADLINE) is not None}
    macs = {m: ((complexity.get(m) or {}).get("paper_setting") or {}).get("macs") for m in bal}
    if bal and margin is not None and all(v is not None for v in macs.values()):
        top = max(bal, key=bal.get)
        near = [m for m in bal if bal[m] >= bal[top] - margin]
        light = min(near, key=lambda m: macs[m])
        out.append(f"**Accuracy per compute** ({words(protocol)}, {scenario}): {labels.get(light, light)} "
                   f"({macs[light] / 1e6:,.1f} MMACs at 3x224x224) is the lightest model whose mean balanced accuracy "
                   f"({100 * bal[light]:.1f}%) is within the primary interval's half-width ({100 * margin:.1f} "
                   f"points) of the highest ({labels.get(top, top)}, {100 * bal[top]:.1f}%, "
                   f"{macs[top] / 1e6:,.1f} MMACs); a screen, not a test.")
    # the clinical figure: the proposed (reference) model's sensitivity and specificity for the positive class
    pos = _pos(scenario)
    clinical = "patient" if "patient" in meta["protocols"] else protocol
    rates = (r.summary(scenario, ref, clinical).get("class_rates") or {}).get(pos) if pos else None
    if rates and rates.get("sensitivity", {}).get("estimate") is not None:
        sens, spec = rates["sensitivity"], rates["specificity"]
        op = r.summary(scenario, ref, clinical).get("operating_point") or {}
        at_target = ""
        if (op.get("sensitivity") or {}).get("estimate") is not None:
            at_target = (f"; at the threshold chosen on validation parts for sensitivity "
                         f"{op['target_sensitivity']:g}, sensitivity {_ci_words(op['sensitivity'])} and "
                         f"specificity {_ci_words(op['specificity'])}")
        out.append(f"**For the clinic:** {labels.get(ref, ref)} under {words(clinical)} ({scenario}) calls "
                   f"{_ci_words(sens)} of {pos} images {pos} (sensitivity) and {_ci_words(spec)} of the others not "
                   f"(specificity) at the argmax operating point (0.5){at_target}; 95% intervals resampling "
                   f"patients within their class.")
    bad = [f"{labels.get(m, m)} ({words(p)}, {s}" + (": did not learn" if not r.learned(s, m, p) else
                                                      ": failed on " + ", ".join(f["fold"] for f in
                                                                                  r.summary(s, m, p).get("failed_folds")))
           + ")" for s, p in r.panels for m in meta["models"]
           if not r.learned(s, m, p) or r.summary(s, m, p).get("failed_folds")]
    out.append("**Failures:** " + ("; ".join(bad) + "." if bad else "every model learned, on every fold."))
    return out[:8]


def _ci_words(rate: dict) -> str:
    low, high = rate.get("ci_low"), rate.get("ci_high")
    return f"{100 * rate['estimate']:.1f}%" + ("" if low is None else f" ({100 * low:.1f}-{100 * high:.1f})")
