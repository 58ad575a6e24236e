"""The findings: the plain-language "Reading" section of reports/README.md, generated from the
numbers in metrics.json (read through pipeline/results.py).

Written for a clinician-researcher: what each protocol allows one to conclude, in words such as
"under patient folds, 20 patients, 3 folds: STANet is not distinguishable from resnet18". Rules:

- a model that did not learn (metrics.json `degenerate`) is named so, and left out of "best model"
  statements, head-to-head claims and the leakage-gap mean;
- head-to-head statements use Holm-adjusted p-values (`p_holm`, within each scenario and
  protocol) and say so; intervals come from the bootstrap over patients;
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
    return f"{words(protocol)}, {n_patients} patients, {len(meta['folds'])} folds"


def _context(r: Results, scenario: str) -> list[str]:
    """What a constant guess scores, and what epochs were selected on."""
    block = r.scenario_meta(scenario)
    out = []
    majority = block.get("majority_rate") or {}
    if majority:
        parts = [f"{_pct(float(np.mean(v)))} under {words(p)}" for p, v in majority.items() if v]
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
    if not found:
        return [f"{scenario}: every model learned (none is degenerate under any protocol)."]
    return [f"{scenario}: did not learn, marked degenerate, and no claim is made for or against them: "
            + "; ".join(found) + "."]


def _best(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    meta = r.meta
    out = []
    for protocol in meta["protocols"]:
        acc = {m: r.stat(scenario, m, protocol, "accuracy") for m in meta["models"]
               if r.learned(scenario, m, protocol) and r.stat(scenario, m, protocol, "accuracy")
               is not None}
        if not acc:
            out.append(f"{scenario}, {words(protocol)}: no model learned.")
            continue
        best = max(acc, key=acc.get)
        ci = r.summary(scenario, best, protocol).get("accuracy_patient_bootstrap") or {}
        interval = (f"; 95% interval over patients {_pct(ci.get('ci_low'))} to {_pct(ci.get('ci_high'))}"
                    if ci.get("ci_low") is not None else "")
        sd = r.stat(scenario, best, protocol, "accuracy", "sd")
        out.append(f"{scenario}, {protocol} protocol: the best model that learned was {labels[best]}, "
                   f"{100 * acc[best]:.1f}%" + (f" ± {100 * sd:.1f}" if sd is not None else "")
                   + f" accuracy over {len(meta['folds'])} folds{interval}.")
    return out


def _head_to_head(r: Results, scenario: str, labels: dict[str, str]) -> list[str]:
    """The reference model against every model that learned, one sentence per protocol."""
    meta = r.meta
    ref = meta.get("reference_model")
    out = []
    for protocol in meta["protocols"]:
        mine = r.comparisons(scenario, protocol)
        claimable = {m: c for m, c in mine.items() if c.get("claim")}
        if not claimable:
            continue
        better, worse, same = [], [], []
        for model, c in claimable.items():
            t = c.get("accuracy") or {}
            if t.get("mean_difference") is None:
                same.append(f"{labels[model]} (no difference computed)")
                continue
            boot = c.get("bootstrap_accuracy") or {}
            test = f"Holm-adjusted {_p(t['p_holm'])}" if t.get("p_holm") is not None else \
                (t.get("p_undefined") or "p undefined")
            interval = (f"; 95% interval over patients {100 * boot['ci_low']:+.1f} to {100 * boot['ci_high']:+.1f}"
                        if boot.get("ci_low") is not None else "")
            words = f"{labels[model]} ({100 * t['mean_difference']:+.1f} points, {test}{interval})"
            if t.get("p_holm") is not None and t["p_holm"] < ALPHA:
                (better if t["mean_difference"] > 0 else worse).append(words)
            else:
                same.append(words)
        head = f"Under {_setting(r, scenario, protocol)} ({scenario}): {labels[ref]} "
        parts = []
        if better:
            parts.append("is more accurate than " + "; ".join(better))
        if worse:
            parts.append("is less accurate than " + "; ".join(worse))
        if same:
            parts.append("is not distinguishable from " + "; ".join(same))
        out.append(head + ", and ".join(parts) + ".")
    if out:
        k = len(meta["folds"])
        out.append(f"{scenario}: p-values are from the corrected resampled t-test over the {k} folds, Holm-adjusted "
                   f"over {labels[ref]}'s comparisons with the models that learned, within each protocol "
                   f"(unadjusted values are in metrics.json)."
                   + (f" With {k} folds these tests have little power: a real difference can go undetected."
                      if k < 5 else ""))
    return out


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
    out = []
    for scenario in r.meta["scenarios"]:
        out += [*_context(r, scenario), *_did_not_learn(r, scenario, labels),
                *_best(r, scenario, labels), *_head_to_head(r, scenario, labels),
                *_leakage_gap(r, scenario, labels)]
    out += _compute(r, complexity, labels)
    if not patient_data:
        out.append("These results come from the synthetic cohort: they test the pipeline and rank the models on "
                   "synthetic images; they are not evidence about patients.")
    return out
