"""Stage `split`: cross-validation folds for each scenario, under each protocol.

Each scenario (split.scenarios) is its own classification problem with its own folds, made from
the same cohort: only the patients of the scenario's classes take part (S2 has no PM or DM
patients, S3 no normal ones).

Protocols:
- `patient`: stratified group k-fold by patient (scikit-learn's StratifiedGroupKFold); the
  validation part is carved from the training patients, again grouped by patient. No patient is
  in two parts of one fold: this is asserted here, on every run, not only in tests.
- `image`: stratified k-fold over images, the protocol of Uçar (2022) and most of the field.
  Repeated images of one muscle side land on both sides of the split, so accuracy is inflated by
  leakage; the summary measures how much.
- `ucar`: the folds published with the Uçar release (FileList/), source `ucar` only.

Writes data/splits/<scenario>.csv (image_id, patient_id, label, scenario, protocol, fold, part,
cohort) for each scenario, replacing the directory as a whole, and
reports/split_summary.md (counts per fold, part and class, and the measured leakage).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from pipeline.core import coverage, fingerprints, layout, scenarios
from pipeline.core.atomic import AtomicOutputs, atomic_outputs
from pipeline.core.cli import run_stage
from pipeline.core.errors import DataError
from pipeline.core.params import Params, load
from pipeline.core.readers import read_table
from pipeline.data import ucar_folds

MANIFEST, SUMMARY = layout.MANIFEST, layout.SPLIT_SUMMARY
# `cohort`: the fingerprint of the manifest the folds were made from (pipeline/core/fingerprints.py)
# `repeat`: 1..split.repeats, each repeat's folds drawn with its own seed (Params.repeat_seed)
COLUMNS = ["image_id", "patient_id", "label", "scenario", "protocol", "repeat", "fold", "part", "cohort"]


def scenario_images(manifest: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """The manifest rows that belong to `scenario`, with their integer `label`."""
    mapping = scenarios.label_map(scenario)
    rows = manifest[manifest["diagnosis"].isin(mapping)].copy()
    rows["label"] = rows["diagnosis"].map(mapping).astype(int)
    if rows.empty:
        raise DataError(f"{MANIFEST}: no images of the diagnoses {sorted(mapping)} that scenario "
                        f"{scenario} needs; diagnoses present: {sorted(manifest['diagnosis'].unique())}")
    return rows.reset_index(drop=True)


def _patient_folds(rows: pd.DataFrame, folds: int, val_fraction: float, seed: int) -> list[pd.DataFrame]:
    """Patient-grouped folds: test by StratifiedGroupKFold, validation patients from the rest."""
    coverage.require(rows, rows["scenario"].iat[0], "patient", folds)
    outer = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for k, (trainval_idx, test_idx) in enumerate(outer.split(rows, rows["label"], rows["patient_id"]), start=1):
        part = np.full(len(rows), "train", dtype=object)
        part[test_idx] = "test"
        trainval = rows.iloc[trainval_idx]
        # one patient -> one row, stratified by the patient's label, so validation is patient-grouped
        patients = trainval.groupby("patient_id", sort=True)["label"].first()
        n_val = max(len(np.unique(patients.values)), int(round(val_fraction * len(patients))))
        # a class with a single training patient cannot also give one to validation
        with coverage.carving(rows, rows["scenario"].iat[0], "patient", k, val_fraction):
            _, val_patients = train_test_split(patients.index.to_numpy(), test_size=n_val,
                                               stratify=patients.values, random_state=seed + k)
        part[np.flatnonzero(rows["patient_id"].isin(set(val_patients)).to_numpy() & (part != "test"))] = "val"
        out.append(rows.assign(fold=k, part=part))
    return out


def _image_folds(rows: pd.DataFrame, folds: int, val_fraction: float, seed: int) -> list[pd.DataFrame]:
    """Image-level stratified folds (the paper's protocol): patients ignored on purpose."""
    coverage.require(rows, rows["scenario"].iat[0], "image", folds)
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for k, (trainval_idx, test_idx) in enumerate(outer.split(rows, rows["label"]), start=1):
        part = np.full(len(rows), "train", dtype=object)
        part[test_idx] = "test"
        with coverage.carving(rows, rows["scenario"].iat[0], "image", k, val_fraction):
            _, val_idx = train_test_split(trainval_idx, test_size=val_fraction,
                                          stratify=rows["label"].to_numpy()[trainval_idx], random_state=seed + k)
        part[val_idx] = "val"
        out.append(rows.assign(fold=k, part=part))
    return out


def _ucar_folds(rows: pd.DataFrame, root: Path, folds: int) -> list[pd.DataFrame]:
    """The published FileList folds of the Uçar release, matched by cropped image name."""
    published = ucar_folds.read_ucar_folds(root, rows["scenario"].iat[0])
    out = []
    for k in range(1, folds + 1):
        fold = published[published["fold"] == k]
        if fold.empty:
            raise DataError(f"{root / 'FileList'}: no published fold {k} for scenario "
                            f"{rows['scenario'].iat[0]}; split.folds may be at most {published['fold'].max()}")
        part = rows["source_name"].map(dict(zip(fold["source_name"], fold["part"])))
        missing = rows.loc[part.isna(), "source_name"]
        if len(missing):
            raise DataError(f"{root / 'FileList'}: fold {k} does not list {len(missing)} image(s) of the "
                            f"scenario, e.g. {missing.iloc[0]!r}")
        out.append(rows.assign(fold=k, part=part.to_numpy()))
    return out


def assert_invariants(splits: pd.DataFrame, protocol: str) -> None:
    """In every repeat, every image is tested exactly once per scenario and protocol, and patient folds
    never share a patient."""
    for (scenario, repeat), by_repeat in splits.groupby(["scenario", "repeat"], sort=False):
        sub = by_repeat[by_repeat["protocol"] == protocol]
        tested = sub[sub["part"] == "test"].groupby("image_id").size()
        all_ids = sub["image_id"].unique()
        if len(tested) != len(all_ids) or (tested != 1).any():
            raise AssertionError(f"scenario {scenario}, protocol {protocol}, repeat {repeat}: each image must be in "
                                 f"the test part of exactly one fold")
        if protocol == "patient":
            for fold, f in sub.groupby("fold"):
                owners = f.groupby("patient_id")["part"].nunique()
                if (owners > 1).any():
                    bad = owners[owners > 1].index[0]
                    raise AssertionError(f"scenario {scenario}, patient protocol, repeat {repeat}, fold {fold}: "
                                         f"patient {bad} is in more than one part")


def leakage(fold: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, float]:
    """Fractions of test images with an image of the same patient (or patient and muscle side) in training."""
    m = manifest.set_index("image_id")
    f = fold.assign(muscle_side=(m.loc[fold["image_id"], "side"].fillna("").astype(str)
                                 + m.loc[fold["image_id"], "muscle"].fillna("").astype(str)).to_numpy())
    train, test = f[f["part"] == "train"], f[f["part"] == "test"]
    same_patient = test["patient_id"].isin(set(train["patient_id"]))
    train_keys = set(zip(train["patient_id"], train["muscle_side"]))
    same_side = [(p, s) in train_keys and s != "" for p, s in zip(test["patient_id"], test["muscle_side"])]
    return {"same_patient": float(same_patient.mean()), "same_muscle_side": float(np.mean(same_side))}


def make_splits(manifest: pd.DataFrame, params: Params) -> pd.DataFrame:
    """All folds of every scenario and protocol in params, as one table in the layout of the splits files."""
    sp = params.split
    ucar_folds.check_protocol(params)
    frames = []
    for scenario in sp.scenarios:
        rows = scenario_images(manifest, scenario).assign(scenario=scenario)
        for protocol in sp.protocols:   # every class of the scenario, for every protocol, before any fold
            coverage.require(rows, scenario, protocol, sp.folds)
        for protocol in sp.protocols:
            for repeat in range(1, sp.repeats + 1):    # ucar: one published partition (params allow R = 1)
                seed = params.repeat_seed(repeat)
                if protocol == "patient":
                    folds = _patient_folds(rows, sp.folds, sp.val_fraction, seed)
                elif protocol == "image":
                    folds = _image_folds(rows, sp.folds, sp.val_fraction, seed)
                else:
                    folds = _ucar_folds(rows, Path(params.data.root), sp.folds)
                frames.extend(f.assign(protocol=protocol, repeat=repeat) for f in folds)
    splits = pd.concat(frames, ignore_index=True).assign(cohort=fingerprints.cohort(manifest))[COLUMNS]
    coverage.require_parts(splits, "split")
    for protocol in sp.protocols:
        assert_invariants(splits, protocol)
    order = {s: i for i, s in enumerate(sp.scenarios)}
    return (splits.sort_values(["scenario", "protocol", "repeat", "fold", "image_id"], kind="stable",
                               key=lambda c: c.map(order) if c.name == "scenario" else c)
            .reset_index(drop=True))


def summarize(splits: pd.DataFrame, manifest: pd.DataFrame, params: Params) -> str:
    """Markdown summary: per scenario, counts per protocol, fold, part and class, and leakage per fold."""
    lines = [f"# Folds: scenarios {', '.join(params.split.scenarios)}, data source {params.data.source}, "
             f"seed {params.seed}", ""]
    for scenario in params.split.scenarios:
        names = scenarios.class_names(scenario)
        sub = splits[splits["scenario"] == scenario]
        counts = (sub.assign(cls=sub["label"].map(dict(enumerate(names))))
                  .pivot_table(index=["protocol", "repeat", "fold", "part"], columns="cls", values="image_id",
                               aggfunc="count", fill_value=0)
                  .reindex(columns=list(names), fill_value=0))
        counts["patients"] = sub.groupby(["protocol", "repeat", "fold", "part"])["patient_id"].nunique()
        lines += [f"## Scenario {scenario}: {scenarios.DESCRIPTIONS[scenario]}", "",
                  "### Images per class (and patients) in each part", "",
                  counts.reset_index().to_markdown(index=False), "",
                  "### Leakage: share of test images with an image of the same patient in training", "",
                  "| protocol | repeat | fold | same patient | same patient, same muscle side |", "|---|---|---|---|---|"]
        for (protocol, repeat, fold), f in sub.groupby(["protocol", "repeat", "fold"]):
            leak = leakage(f, manifest)
            lines.append(f"| {protocol} | {repeat} | {fold} | {leak['same_patient']:.1%} | "
                         f"{leak['same_muscle_side']:.1%} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_splits(splits: pd.DataFrame, scenario_order: Sequence[str], out: AtomicOutputs,
                 directory: Path = layout.SPLITS_DIR) -> None:
    """Replace the splits directory as a whole when `out` commits: one CSV per scenario."""
    tmp = out.path(directory, directory=True)
    os.chmod(tmp, 0o755)   # mkdtemp makes it private
    for scenario in scenario_order:
        splits[splits["scenario"] == scenario].to_csv(layout.splits_path(scenario, tmp), index=False)


def main(argv: list[str] | None = None) -> int:
    """Run the stage: read the manifest, write data/splits/<scenario>.csv and the summary."""
    argparse.ArgumentParser(prog="python -m pipeline.split", description=__doc__.splitlines()[0]).parse_args(argv)
    params = load()
    manifest = read_table(MANIFEST, "run `dvc repro prepare` (python -m pipeline.prepare) first")
    splits = make_splits(manifest, params)
    summary = summarize(splits, manifest, params)
    with atomic_outputs() as out:       # the folds and their summary are replaced together
        write_splits(splits, params.split.scenarios, out)
        out.path(SUMMARY).write_text(summary, encoding="utf-8")
    print(summary)
    return 0


if __name__ == "__main__":
    run_stage(main)
