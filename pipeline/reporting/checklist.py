"""The reporting checklist section of reports/README.md: the items of CLAIM 2024 (Checklist for
Artificial Intelligence in Medical Imaging, Mongan et al., 2020, updated 2024) and TRIPOD+AI
(Collins et al., BMJ 2024) that the pipeline knows, each filled from this run's params, metrics,
runs and manifest, and the items only the authors can answer, listed as such.

Provenance is read where the report is made: the git commit of the working tree (and whether it
had uncommitted changes), the sha256 of dvc.lock's entries for the stages upstream of the report
(the report's own entry is written after it), and the cohort and split fingerprints evaluate
recorded in metrics.json.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from pipeline.reporting.results import Results

CHECKLISTS = ("CLAIM 2024 (Checklist for Artificial Intelligence in Medical Imaging, Mongan, Moy and Kahn, "
              "Radiology: Artificial Intelligence 2020; 2024 update)",
              "TRIPOD+AI 2024 (Collins et al., BMJ 2024;385:e078378)")

FOR_THE_AUTHORS = (
    ("Ethics approval, consent and de-identification", "CLAIM 2024 data; TRIPOD+AI ethics and open science"),
    ("Clinical setting, intended use and intended users; where the model would sit in the care pathway",
     "CLAIM 2024 background and objectives; TRIPOD+AI intended use"),
    ("How the reference standard was established on real data: who labelled, with what (biopsy, clinical "
     "criteria), blinding, inter-reader variability", "CLAIM 2024 ground truth; TRIPOD+AI outcome"),
    ("Eligibility of patients and images, recruitment dates and sites, missing data",
     "CLAIM 2024 data; TRIPOD+AI participants"),
    ("Sample-size rationale", "CLAIM 2024 data partitions; TRIPOD+AI sample size"),
    ("Patient characteristics beyond diagnosis (age, sex, disease duration) and fairness across them",
     "CLAIM 2024 results; TRIPOD+AI fairness"),
    ("External validation on data from another site or device", "CLAIM 2024 evaluation; TRIPOD+AI evaluation"),
    ("Study registration, protocol, funding and conflicts of interest", "CLAIM 2024 other information; TRIPOD+AI "
                                                                        "open science"),
)


@dataclass(frozen=True)
class Provenance:
    """Where this run's code and data came from."""
    commit: str
    dvc_lock: str
    cohort: str
    splits: dict[str, str]
    packages: dict[str, str]


def git_commit(cwd: str | Path = ".") -> str:
    """HEAD's commit and whether the working tree differs from it, or why it is unknown."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=20)
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return head.stdout.strip() + (" with uncommitted changes to tracked files" if dirty else "")


def declared_in(path: str | Path = "params.yaml", keys: tuple[str, ...] = ("evaluate", "primary"),
                cwd: str | Path = ".", limit: int = 200) -> str:
    """The commit (short hash and date) that last changed params.yaml's `keys` (the declared primary
    comparison), read from git's history of the file; or that the working tree changes it still, or why it
    is unknown. A declaration is only as old as its commit: results on the same deterministic cohort may
    predate it, and the report says when it was made, not that it came first."""
    import yaml

    def value(text: str | None) -> str | None:
        try:
            node = yaml.safe_load(text) if text is not None else None
        except yaml.YAMLError:
            return None
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        return json.dumps(node, sort_keys=True)

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)

    try:
        log = git("log", f"-{limit}", "--format=%h %as", "--", str(path))
        if log.returncode != 0:
            return "not in a git checkout: when it was declared is unknown"
        commits = [line.split() for line in log.stdout.splitlines() if line.strip()]
        now = value(Path(cwd, path).read_text(encoding="utf-8")) if Path(cwd, path).is_file() else None
        if not commits:
            return "not committed yet"
        texts = [git("show", f"{h}:{path}") for h, _ in commits]
    except (OSError, subprocess.SubprocessError):
        return "git not available: when it was declared is unknown"
    values = [value(t.stdout) if t.returncode == 0 else None for t in texts]
    if values[0] != now:
        return "changed in the working tree since the last commit"
    for i, v in enumerate(values):
        if i + 1 == len(values) or values[i + 1] != v:
            h, date = commits[i]
            return f"last changed in commit {h}, {date}" + (" or earlier" if i + 1 == len(values) == limit else "")
    return "unknown"


def dvc_lock_digest(path: str | Path = "dvc.lock", exclude: str = "report") -> str:
    """sha256 of dvc.lock's stage entries other than `exclude`, in canonical form (sorted YAML), so the
    report can name the exact upstream state it was made from; or why it is unknown."""
    path = Path(path)
    if not path.is_file():
        return "unknown (no dvc.lock: not made by `dvc repro`)"
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        return f"unknown (dvc.lock unreadable: {str(e)[:80]})"
    stages = {k: v for k, v in (lock.get("stages") or {}).items() if k != exclude}
    text = yaml.safe_dump(stages, sort_keys=True)
    return f"sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]} (dvc.lock, {len(stages)} stages before `{exclude}`)"


def flow_table(r: Results, runs: dict) -> pd.DataFrame:
    """Patients and images per class in each fold's test part, and the training and validation part
    sizes, per scenario, protocol, repeat and fold (read from the first model's runs, keyed (scenario,
    model, protocol, repeat, fold): every model shares the folds)."""
    model = r.models[0]
    rows = []
    for s in r.scenarios:
        names = r.class_names(s)
        for p in r.protocols:
            for rep, k in r.fold_keys:
                run = runs.get((s, model, p, rep, k))
                if run is None:
                    continue
                pred = run["predictions"]
                row = {"scenario": s, "protocol": p, "repeat": rep, "fold": k,
                       "n_train": run["meta"].get("n_train"), "n_val": run["meta"].get("n_val")}
                for c, name in enumerate(names):
                    of = pred[pred["label"] == c]
                    row[f"test {name}"] = f"{of['patient_id'].nunique()} / {len(of)}"
                rows.append(row)
    return pd.DataFrame(rows)


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


def section(params, r: Results, runs: dict, source_words: str, patient_data: bool, provenance: Provenance,
            manifest: pd.DataFrame | None, failures_anchor: str = "#failure-analysis") -> str:
    """The checklist section (Markdown, without its heading): what the run knows, then the flow table,
    then the items for the authors."""
    meta = r.meta
    tp = params.train
    folds = list(meta["folds"])
    repeats = params.split.repeats
    repeat_words = f"{repeats} repeat{'s' if repeats > 1 else ''}"
    cohort = ""
    if manifest is not None and len(manifest):
        per = manifest.drop_duplicates("patient_id")["diagnosis"].value_counts()
        cohort = (f"; {manifest['patient_id'].nunique()} patients ({', '.join(f'{d} {n}' for d, n in per.items())}), "
                  f"{len(manifest)} images")
    recipes = sorted({(r["meta"].get("model"), r["meta"].get("optimizer"), r["meta"].get("lr"),
                       r["meta"].get("batch_size"), r["meta"].get("epochs")) for r in runs.values()},
                     key=lambda t: str(t[0]))
    recipe_words = "; ".join(f"{m}: {o} lr {lr}, batch {b}, {e} epochs" for m, o, lr, b, e in recipes)
    size = "x".join(str(v) for v in meta.get("input_size") or [])
    most_epochs = max(r["meta"].get("epochs") or 0 for r in runs.values()) if runs else "n/a"
    n_patients = manifest["patient_id"].nunique() if manifest is not None else "n/a"
    stats = meta.get("statistics") or {}
    reference = ("labels are the generator's: each synthetic patient is generated from its diagnosis, so the "
                 "reference standard is exact by construction and says nothing about clinical labelling"
                 if not patient_data else
                 "the diagnosis column of the source's manifest, taken as given; how it was established is for the "
                 "authors (below)")
    items = [
        ("Title and data source", "CLAIM 2024 title; TRIPOD+AI title", f"the report's title and first line: {source_words}"),
        ("Data source and cohort", "CLAIM 2024 data sources; TRIPOD+AI data",
         f"{source_words}{cohort}; cohort fingerprint {provenance.cohort}"),
        ("Reference standard", "CLAIM 2024 ground truth; TRIPOD+AI outcome", reference),
        ("Inclusion and flow", "CLAIM 2024 data partitions, flow of participants; TRIPOD+AI participants",
         f"every image of the cohort's patients enters each scenario whose classes include the patient's diagnosis; "
         f"{params.split.folds}-fold cross-validation per protocol, {len(folds)} fold(s) trained, "
         f"{repeat_words} (each with folds drawn again); patients and images per class of every fold and repeat "
         f"in the table below and in [split_summary.md](split_summary.md) "
         f"(measured patient overlap between training and test per protocol)"),
        ("Preprocessing and augmentation", "CLAIM 2024 data preprocessing; TRIPOD+AI data preparation",
         f"images resized to {size} ({params.data.channels} channel(s)), uint8; training-time augmentation "
         f"{'on (crop/shift, horizontal flip, gain, brightness, contrast; no vertical flip)' if tp.augment else 'off'}; "
         f"input normalised with the training part's pixel statistics (or the pretrained weights')"),
        ("Model and training", "CLAIM 2024 model, training; TRIPOD+AI model development",
         f"{len(meta['models'])} models ({', '.join(meta['models'])}); recipes from the runs' metrics.json: "
         f"{recipe_words}; pretrained weights: {'yes' if tp.pretrained else 'no'} by default; class weighting "
         f"{'on' if tp.class_weighting else 'off'}; epoch taken by `train.select_by: {tp.select_by}`. The recipes "
         f"were chosen by hand and recorded in params.yaml (`train.optim`, `train.overrides`, reasons in the "
         f"repository README); no automated hyperparameter search"),
        ("Metrics and uncertainty", "CLAIM 2024 evaluation metrics, statistical significance; TRIPOD+AI performance",
         "balanced accuracy (headline), accuracy, macro-F1, AUC, per-class sensitivity and specificity, each per fold "
         "and as mean over folds; " + "; ".join(f"{k}: {v}" for k, v in stats.items())),
        ("Robustness: repeats and seeds", "CLAIM 2024 robustness; TRIPOD+AI model evaluation",
         (f"not assessed: one seed ({params.seed}) and one repeat of {params.split.folds}-fold cross-validation; the "
          f"fold-to-fold spread (per-fold figure) is the only variation shown, and how the results move with "
          f"another seed or another partition is unknown" if params.split.repeats == 1 else
          f"one seed ({params.seed}) drives the cohort, the folds and every model's initialisation (repeat r > 1 "
          f"draws its folds from a seed derived from it); {repeat_words} of {params.split.folds}-fold "
          f"cross-validation; fold-to-fold spread in the per-fold figure; other seeds of the initialisation were "
          f"not run")),
        ("Decision threshold and output", "TRIPOD+AI model output and threshold",
         f"the model outputs class probabilities (softmax); every table and figure uses the argmax (0.5 for two "
         f"classes; the ROC figure marks it); for binary scenarios a second operating point, the highest "
         f"threshold reaching sensitivity {params.evaluate.target_sensitivity:g} on each fold's validation part "
         f"(never its test part), is reported with its test sensitivity and specificity"),
        ("Class imbalance", "TRIPOD+AI class imbalance",
         f"balanced accuracy as the headline metric, each fold's majority-class rate reported beside it; class "
         f"weighting in the loss {'on' if tp.class_weighting else 'off'}"),
        ("Failure analysis and subgroups", "CLAIM 2024 failure analysis; TRIPOD+AI fairness",
         f"errors by diagnosis subtype, muscle and side, and the most-missed patients: [Failure analysis]"
         f"({failures_anchor})"),
        ("Limitations that follow from the params", "CLAIM 2024 limitations; TRIPOD+AI limitations",
         f"input {size} (the paper used 224x224); {n_patients} patients; {params.split.folds} folds and {repeat_words} "
         f"(few degrees of freedom: small differences go undetected); at most {most_epochs} epochs per model"),
        ("Code and data provenance", "CLAIM 2024 code and data availability; TRIPOD+AI open science",
         f"git commit {provenance.commit}; {provenance.dvc_lock}; cohort fingerprint {provenance.cohort}; split "
         f"fingerprints {', '.join(f'{s} {h}' for s, h in provenance.splits.items()) or 'n/a'}; packages "
         f"{', '.join(f'{k} {v}' for k, v in provenance.packages.items())}"),
    ]
    lines = [f"The items of {CHECKLISTS[0]} and {CHECKLISTS[1]} that a pipeline can know, filled from this run. "
             "Item topics, not the checklists' item numbers, are named.", "",
             "| Item | Checklists | This run |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c.replace('|', '/')} |" for a, b, c in items]
    flow = flow_table(r, runs)
    if not flow.empty:
        lines += ["", "Flow per partition: each fold's test part as patients / images per class; n_train and n_val "
                  "are the training and validation images.", "", _md(flow)]
    lines += ["", "For the authors (a pipeline cannot know these):", ""]
    lines += [f"- {a} ({b})" for a, b in FOR_THE_AUTHORS]
    return "\n".join(lines)
