"""Failure analysis: where the models go wrong, from the runs' per-image test predictions joined to
the cohort manifest (diagnosis, muscle, side of every image).

Every test image is counted once per model and repeat (within a repeat the folds' test parts
partition the scenario's images; each repeat of the cross-validation tests every image again). A
patient counts as missed by a model when more than half of the patient's test images are
misclassified. Models that did not learn (degenerate) are left out of the patient
ranking, since a constant predictor "misses" every patient of one class.
"""
from __future__ import annotations

from typing import Iterable

import pandas as pd

from pipeline.core.errors import DataError
from pipeline.core.scenarios import DIAGNOSES, MUSCLES

GROUPS = ("diagnosis", "muscle", "side")


def image_errors(predictions: dict[tuple[str, str, str, int, int], pd.DataFrame], manifest: pd.DataFrame,
                 manifest_path: str = "manifest.csv") -> pd.DataFrame:
    """One row per (scenario, model, protocol, repeat, fold, test image): patient, diagnosis, muscle,
    side and `wrong` (predicted != label). predictions[(scenario, model, protocol, repeat, fold)] is a
    predictions.csv."""
    if not predictions:
        return pd.DataFrame(columns=["scenario", "model", "protocol", "repeat", "fold", "image_id", "patient_id",
                                     *GROUPS, "wrong"])
    cols = ["image_id", *(c for c in GROUPS if c in manifest.columns)]
    info = manifest[cols].assign(image_id=manifest["image_id"].astype(int))
    frames = []
    for (scenario, model, protocol, repeat, fold), p in predictions.items():
        frames.append(pd.DataFrame({"scenario": scenario, "model": model, "protocol": protocol, "repeat": repeat,
                                    "fold": fold,
                                    "image_id": p["image_id"].astype(int).to_numpy(),
                                    "patient_id": p["patient_id"].astype(str).to_numpy(),
                                    "wrong": (p["predicted"] != p["label"]).to_numpy()}))
    out = pd.concat(frames, ignore_index=True).merge(info, on="image_id", how="left", validate="many_to_one")
    unknown = out[out["diagnosis"].isna()] if "diagnosis" in out else out
    if len(unknown):
        raise DataError(f"{manifest_path}: image_id {int(unknown['image_id'].iloc[0])} of runs/{unknown['scenario'].iloc[0]}"
                        f"/{unknown['model'].iloc[0]}/... predictions.csv is not in the manifest; re-make the runs "
                        f"from this manifest (`dvc repro`)")
    for c in GROUPS:
        if c not in out:
            out[c] = "n/a"
    return out


def _order(values: Iterable[str], known: Iterable[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in known if v in present] + sorted(v for v in present if v not in known)


def error_rates(errors: pd.DataFrame, by: str) -> pd.DataFrame:
    """Share of misclassified test images (%) per scenario, protocol, model and value of `by`
    (diagnosis, muscle or side), with the number of images behind it (columns: scenario, protocol,
    model, <by>, error_pct, n)."""
    g = errors.groupby(["scenario", "protocol", "model", by], sort=False)["wrong"]
    out = pd.DataFrame({"error_pct": 100 * g.mean(), "n": g.size()}).reset_index()
    known = {"diagnosis": DIAGNOSES, "muscle": MUSCLES, "side": ("R", "L"),
             "where": [f"{side} {m}" for side in ("R", "L") for m in MUSCLES]}.get(by, ())
    order = {v: i for i, v in enumerate(_order(out[by].astype(str), known))}
    return out.sort_values([by], key=lambda s: s.astype(str).map(order), kind="stable").reset_index(drop=True)


def rates_by_panel(errors: pd.DataFrame, groups: tuple[str, ...] = ("diagnosis", "muscle")) -> dict:
    """error_rates of each scenario and protocol by each of `groups`: {(scenario, protocol, by): table}."""
    return {(s, p, by): error_rates(e, by) for (s, p), e in errors.groupby(["scenario", "protocol"], sort=False)
            for by in groups}


def missed_patients(errors: pd.DataFrame, learned: set[tuple[str, str, str]], top: int = 8) -> pd.DataFrame:
    """The patients most models get wrong, per scenario and protocol: diagnosis, how many of the models
    that learned miss the patient (over half of the patient's test images wrong), and the mean share
    of the patient's images misclassified over those models. The `top` patients per scenario and
    protocol, most missed first (ties: the higher image error first, then patient id)."""
    keep = errors[[(s, m, p) in learned for s, m, p in zip(errors.scenario, errors.model, errors.protocol)]]
    if keep.empty:
        return pd.DataFrame(columns=["scenario", "protocol", "patient_id", "diagnosis", "models_missing",
                                     "models", "image_error_pct", "n_images"])
    per = (keep.groupby(["scenario", "protocol", "patient_id", "model"], sort=False)
           .agg(share=("wrong", "mean"), n=("wrong", "size"), diagnosis=("diagnosis", "first")).reset_index())
    per["missed"] = per["share"] > 0.5
    out = (per.groupby(["scenario", "protocol", "patient_id"], sort=False)
           .agg(diagnosis=("diagnosis", "first"), models_missing=("missed", "sum"), models=("model", "nunique"),
                image_error_pct=("share", "mean"), n_images=("n", "first")).reset_index())
    out["image_error_pct"] *= 100
    out = out.sort_values(["scenario", "protocol", "models_missing", "image_error_pct", "patient_id"],
                          ascending=[True, True, False, False, True], kind="stable")
    return out.groupby(["scenario", "protocol"], sort=False).head(top).reset_index(drop=True)


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
                      *("| " + " | ".join(str(v) for v in r) + " |" for r in rows)])


def _by_model_table(rates: pd.DataFrame, by: str, models: list[str], labels: dict[str, str]) -> str:
    values = list(dict.fromkeys(rates[by]))
    cell = {(r.model, r[by]): f"{r.error_pct:.0f}% ({r.n})" for _, r in rates.iterrows()}
    rows = [[labels.get(m, m), *(cell.get((m, v), "—") for v in values)] for m in models
            if any((m, v) in cell for v in values)]
    return _table(["Model", *(f"{v}" for v in values)], rows)


def markdown(errors: pd.DataFrame, panels: list[tuple[str, str]], models: list[str], labels: dict[str, str],
             learned: set[tuple[str, str, str]], class_names: dict[str, list[str]], repeats: int = 1) -> str:
    """The failure-analysis section's body: per scenario and protocol, errors by diagnosis (subtype),
    by muscle and side, and the most-missed patients; `repeats`: split.repeats of the run (Results.repeats)."""
    if errors.empty:
        return "No test predictions to analyse."
    lines = ["Share of test images misclassified (%, with the number of test images in brackets), pooled over "
             + ("folds; " if repeats == 1 else f"the folds of {repeats} repeats (every repeat tests each image "
                                               f"again, so an image counts once per repeat); ")
             + "rows are models. Diagnosis is the manifest's (N, IBM, PM, DM), so within a scenario's "
             "myositis class the subtypes are told apart: which myositis is missed. A patient is *missed* by a "
             "model when over half of the patient's test images are misclassified; models that did not learn "
             "are left out of that count.", ""]
    for scenario, protocol in panels:
        e = errors[(errors.scenario == scenario) & (errors.protocol == protocol)]
        if e.empty:
            continue
        classes = ", ".join(class_names.get(scenario, []))
        lines += [f"### {scenario} ({classes}), {protocol} protocol", "", "By diagnosis:", "",
                  _by_model_table(error_rates(e, "diagnosis"), "diagnosis", models, labels), ""]
        ok = e[[(scenario, m, protocol) in learned for m in e.model]]
        if not ok.empty:
            ms = error_rates(ok.assign(where=ok["side"].astype(str) + " " + ok["muscle"].astype(str)), "where")
            pooled = ms.groupby("where", sort=False).apply(
                lambda d: pd.Series({"error_pct": (d.error_pct * d.n).sum() / d.n.sum(), "n": int(d.n.iloc[0])}),
                include_groups=False).reset_index()
            lines += [f"By muscle and side (the {ok.model.nunique()} models that learned, pooled; n is the test "
                      f"images of one model):", "",
                      _table(["Side and muscle", "Error %", "n"],
                             [[r["where"], f"{r.error_pct:.1f}", int(r.n)] for _, r in pooled.iterrows()]), ""]
        worst = missed_patients(e, learned)
        if not worst.empty:
            lines += ["Most-missed patients:", "",
                      _table(["Patient", "Diagnosis", "Models missing the patient", "Image error % (mean over models)",
                              "Test images"],
                             [[r.patient_id, r.diagnosis, f"{int(r.models_missing)} of {int(r.models)}",
                               f"{r.image_error_pct:.0f}", int(r.n_images)] for _, r in worst.iterrows()]), ""]
    return "\n".join(lines).rstrip()
