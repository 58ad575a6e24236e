"""The findings: the plain-language "Reading" section of reports/README.md, generated from the
numbers in metrics.json (read through pipeline/results.py).

Written for a clinician-researcher: what each protocol allows one to conclude, in words such as
"under patient folds, 20 patients, 3 folds: STANet is not distinguishable from resnet18". Rules:

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

from pipeline import paper, roster, scenarios
from pipeline.protocols import words
from pipeline.results import Results

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


def _setting(r: Results, scenario: str, protocol: str) -> str:
    """'patient folds, 20 patients, 3 folds', for a protocol of a scenario."""
    meta = r.meta
    ref = meta.get("reference_model") or meta["models"][0]
    n_patients = (r.summary(scenario, ref, protocol).get("accuracy_patient_bootstrap") or {}).get("n_patients")
    repeats = meta.get("repeats", 1)
    return (f"{words(protocol)}, {n_patients} patients, {len(meta['folds'])} folds"
            + (f" x {repeats} repeats" if repeats > 1 else ""))


def _context(r: Results, scenario: str) -> list[str]:
    """What a constant guess scores, and what epochs were selected on."""
    block = r.scenario_meta(scenario)
    out = []
    majority = block.get("majority_rate") or {}
    if majority:
        parts = [f"{_pct(float(np.mean(v)))} under {words(p)}"
                 + (f" (per fold run from {_pct(min(v))} to {_pct(max(v))})" if len(set(v)) > 1 else "")
                 for p, v in majority.items() if v]
        out.append(f"{scenario} ({scenarios.DESCRIPTIONS[scenario]}): always guessing the most frequent class "
                   f"would score {' and '.join(parts)} (the majority-class rate, drawn as a dashed line in the "
                   f"accuracy figures); an accuracy near it means little.")
    validation = block.get("validation") or {}
    if validation:
        parts = "; ".join(f"{_range(v['patients'])} patients ({_range(v['images'])} images) per fold under "
                          f"{words(p)}" for p, v in validation.items())
        select_by = r.meta.get("select_by")
        if select_by == "last":
            out.append(f"{scenario}: the networks' last epoch was taken (train.select_by: last), since the "
                       f"validation parts, {parts}, are too small to choose an epoch on; they only chose the "
                       f"hand-crafted baseline's regularisation.")
        else:
            small = min((min(x for x in v["patients"] if x is not None) for v in validation.values()
                         if any(x is not None for x in v["patients"])), default=None)
            out.append(f"{scenario}: epochs were chosen by {select_by or 'validation'} on validation parts of "
                       f"{parts}" + ("; with parts this small the chosen epoch is noisy." if small is not None
                                     and small < 10 else "."))
    return out


def _did_not_learn(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    meta = r.meta
    found = []
    for model in meta["models"]:
        bad = [p for p in meta["protocols"] if not r.learned(scenario, model, p)]
        if bad:
            reason = r.summary(scenario, model, bad[0]).get("degenerate_reasons") or []
            found.append(f"{labels[model]} under {' and '.join(words(p) for p in bad)}"
                         + (f" ({reason[0]})" if reason else ""))
    failed = [f"{labels[m]} under {words(p)} failed on "
              + ", ".join(f["fold"] for f in r.summary(scenario, m, p).get("failed_folds") or [])
              for m in meta["models"] for p in meta["protocols"]
              if r.learned(scenario, m, p) and r.summary(scenario, m, p).get("failed_folds")]
    found_failed = ([f"{scenario}: learned on average but failed on some folds (one class for at least 95% of "
                     f"a fold's images, or balanced accuracy at chance + 0.02 or below): " + "; ".join(failed) + "."]
                    if failed else [])
    if not found:
        return [f"{scenario}: every model learned (none is degenerate under any protocol).", *found_failed]
    return [f"{scenario}: did not learn, marked degenerate, and no claim is made for or against them: "
            + "; ".join(found) + ".", *found_failed]


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


def _primary(r: Results, labels: dict[str, str]) -> list[str]:
    """The declared primary comparison: estimate, the test's interval and p, what the design detects."""
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
    out = [f"Primary comparison (declared before the run in evaluate.primary, not adjusted for multiplicity): "
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
        s = (f"Power: from the observed spread of the {t['n_differences']} fold differences (sd "
             f"{100 * t['sd']:.1f} points), this design detects a difference of {100 * d['mdd']:.1f} points with "
             f"80% power; its power for the paper's {100 * d['target']:.1f} points is {100 * d['power_at_target']:.0f}%. ")
        if d.get("repeats_needed"):
            s += f"Detecting {100 * d['target']:.1f} points with 80% power would take {d['repeats_needed']} repeats of these folds"
        else:
            s += (f"No number of repeats of these folds would detect {100 * d['target']:.1f} points with 80% power "
                  f"(the n_test/n_train part of the variance does not shrink with repeats)")
        s += (f". Roughly {d['patients_needed']} patients would, at these folds and repeats (assuming the variance "
              f"of the fold differences falls as 1/patients).")
        out.append(s)
    else:
        out.append("Power: not computable (the fold differences have no spread, or too few folds).")
    boot = b.get("bootstrap_accuracy") or {}
    if boot.get("ci_low") is not None:
        out.append(f"Separately, not a test of the method: over these trained models' pooled test images, "
                   f"resampling whole patients, the accuracy difference {ref} minus {other} is "
                   f"{_points(boot['mean_difference'])} points with a 95% bootstrap interval of "
                   f"{_points(boot['ci_low'])} to {_points(boot['ci_high'])}; this is the uncertainty of these "
                   f"trained models' test estimate, not of the method.")
    out.append("Every other comparison below is exploratory.")
    return out


def _best(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    """The highest mean balanced accuracy per protocol; "best" only when the reference's tested
    differences with every other model that learned are distinguishable and in its favour."""
    meta = r.meta
    ref = meta.get("reference_model")
    out = []
    for protocol in meta["protocols"]:
        bal = {m: r.stat(scenario, m, protocol, HEADLINE) for m in meta["models"]
               if r.learned(scenario, m, protocol) and r.stat(scenario, m, protocol, HEADLINE)
               is not None}
        if not bal:
            out.append(f"{scenario}, {words(protocol)}: no model learned.")
            continue
        top = max(bal, key=bal.get)
        sd = r.stat(scenario, top, protocol, HEADLINE, "sd")
        n = r.stat(scenario, top, protocol, HEADLINE, "n")
        figure = (f"{100 * bal[top]:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")
                  + f" balanced accuracy (%) over {n} fold runs{_failed(r, scenario, top, protocol)}")
        mine = r.comparisons(scenario, protocol)
        others = [m for m in bal if m != top]
        tested = top == ref and others and all(
            (mine.get(m) or {}).get("claim") and ((mine[m].get(HEADLINE) or {}).get("p_holm") or 1) < ALPHA
            and (mine[m][HEADLINE].get("mean_difference") or 0) > 0 for m in others)
        if tested:
            out.append(f"{scenario}, {protocol} protocol: {labels[top]} is the best model that learned, {figure}: "
                       f"its balanced accuracy is higher than every other model's by a distinguishable margin "
                       f"(corrected t-test, Holm-adjusted within each family).")
        else:
            out.append(f"{scenario}, {protocol} protocol: highest mean (not tested against every other model): "
                       f"{labels[top]}, {figure}.")
    return out


def _head_to_head(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    """The reference model against every model that learned, in balanced accuracy: one sentence per
    comparison, each showing its own test's interval and p-value; the bootstrap in its own sentence."""
    meta = r.meta
    ref = meta.get("reference_model")
    out = []
    for protocol in meta["protocols"]:
        mine = r.comparisons(scenario, protocol)
        claimable = {m: c for m, c in mine.items() if c.get("claim")}
        if not claimable:
            continue
        head = f"Exploratory, under {_setting(r, scenario, protocol)} ({scenario}), balanced accuracy"
        for model, c in claimable.items():
            t = c.get(HEADLINE) or {}
            if t.get("mean_difference") is None:
                continue
            if t.get("family") == "primary":
                continue   # stated above, as the primary comparison
            if t.get("p_holm") is not None and t["p_holm"] < ALPHA:
                verdict = "distinguishable"
            else:
                verdict = "not distinguishable"
            flags = _failed(r, scenario, ref, protocol) + _failed(r, scenario, model, protocol)
            power = "" if t.get("mdd") is None else f"; it detects {100 * t['mdd']:.1f} points with 80% power"
            out.append(f"{head}: {labels[ref]} minus {labels[model]}{flags} is {_points(t['mean_difference'])} "
                       f"points, {verdict} ({_test_words(t, adjusted=True)}{power}).")
        boots = [f"{labels[m]} {_points(c['bootstrap_accuracy']['ci_low'])} to "
                 f"{_points(c['bootstrap_accuracy']['ci_high'])}"
                 for m, c in claimable.items() if (c.get("bootstrap_accuracy") or {}).get("ci_low") is not None]
        if boots:
            out.append(f"Beside these, not tests of the method: 95% patient-bootstrap intervals of the accuracy "
                       f"difference {labels[ref]} minus each model over the pooled test images under "
                       f"{words(protocol)} ({scenario}), the uncertainty of these trained "
                       f"models' test estimate: " + "; ".join(boots) + ".")
    if out:
        k, r = len(meta["folds"]), meta.get("repeats", 1)
        out.append(f"{scenario}: the exploratory p-values are from the corrected repeated k-fold t-test over {k} folds x "
                   f"{r} repeat{'s' if r > 1 else ''}, Holm-adjusted within each named family (ablations of "
                   f"{labels[ref]}; baselines) over the comparisons with models that learned, within each protocol "
                   f"(unadjusted values are in metrics.json).")
    return out


def _budgets(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    """Each model's training budget, and whether budgets differ."""
    meta = r.meta
    protocol = meta["protocols"][0]
    budgets = {m: r.summary(scenario, m, protocol).get("budget") or {} for m in meta["models"]}
    epochs = {m: b.get("epochs") for m, b in budgets.items() if b.get("epochs") is not None}
    steps = {m: b.get("optimizer_steps_per_fold") for m, b in budgets.items()
             if b.get("optimizer_steps_per_fold") is not None}
    if not epochs:
        return []
    def budget(m: str) -> str:
        if steps.get(m) == 0:
            return f"{labels[m]} fitted in closed form (no optimizer steps)"
        return (f"{labels[m]} {epochs[m]} epoch{'' if epochs[m] == 1 else 's'}"
                + (f", {steps[m]:.0f} optimizer steps per fold" if m in steps else ""))
    spent = "; ".join(budget(m) for m in epochs)
    same = len({str(v) for v in epochs.values()}) == 1 and len({round(v) for v in steps.values()}) <= 1
    s = (f"{scenario}, budgets ({words(protocol)}): {spent}. "
         + ("The budgets are equal." if same else "The budgets differ between models, so a difference in results "
                                                  "is partly a difference in training budget."))
    overridden = meta.get("recipes_overridden") or []
    if overridden and meta.get("profile_name") == "cpu-demo":
        s += (f" The demo's per-model recipes ({', '.join(overridden)}) were chosen while looking at this demo "
              f"cohort's fold results (not nested), which favours them.")
    elif meta.get("profile_name") == "paper":
        s += (" The paper profile's recipes were fixed in advance: Uçar's recipe for dual_vgg, one shared recipe "
              "for the rest.")
    return [s]


def _leakage_gap(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    """How much higher image-level folds put accuracy than patient folds, over models that learned under both."""
    meta = r.meta
    leak = next((p for p in ("image", "ucar") if p in meta["protocols"]), None)
    if "patient" not in meta["protocols"] or not leak:
        return []
    gaps = {m: r.stat(scenario, m, leak, "accuracy") - r.stat(scenario, m, "patient", "accuracy")
            for m in meta["models"]
            if r.learned(scenario, m, leak) and r.learned(scenario, m, "patient")
            and r.stat(scenario, m, leak, "accuracy") is not None
            and r.stat(scenario, m, "patient", "accuracy") is not None}
    if not gaps:
        return [f"{scenario}: no model learned under both protocols, so the image-minus-patient gap is not stated."]
    g = np.array(list(gaps.values())) * 100
    s = (f"{scenario}: over the {len(g)} models that learned under both protocols, image-level ({leak}) folds gave "
         f"{g.mean():+.1f} points of accuracy on average over patient folds (from {g.min():+.1f} to {g.max():+.1f}; "
         f"image minus patient).")
    if g.mean() > 0:
        s += (" Image-level folds put images of the same patient (and muscle) in training and test, so they "
              "overstate accuracy on new patients.")
    return [s]


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


def findings(r: Results, complexity: dict[str, dict], labels: dict[str, str], patient_data: bool) -> list[str]:
    """The reading, per scenario and then overall; every statement follows from metrics.json
    (`patient_data`: whether the data source holds patients' images, pipeline/sources.py)."""
    out = _primary(r, labels)
    for scenario in r.meta["scenarios"]:
        out += [*_context(r, scenario), *_did_not_learn(r, scenario, labels),
                *_best(r, scenario, labels), *_head_to_head(r, scenario, labels),
                *_budgets(r, scenario, labels), *_leakage_gap(r, scenario, labels)]
    out += _compute(r, complexity, labels)
    if not patient_data:
        out.append("These results come from the synthetic cohort: they test the pipeline and rank the models on "
                   "synthetic images; they are not evidence about patients.")
    return out
