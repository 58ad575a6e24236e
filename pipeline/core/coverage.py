"""Does a cohort cover a scenario? Checked for every scenario and protocol before any fold is made.

A scenario defines its classes (pipeline/core/scenarios.py); one without images of a class is not that
classification problem: S3 without IBM patients trains on one label and reports it as learned.
So each scenario needs every class it defines, with enough patients (patient folds) or images
(image folds) for split.folds, and at least one image of each (published folds). Otherwise the
refusal names the scenario, the class and the counts, before any training.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pandas as pd

from pipeline.core import scenarios
from pipeline.core.errors import DataError


def counts(rows: pd.DataFrame, scenario: str) -> dict[str, tuple[int, int]]:
    """{class name: (images, patients)} of the scenario's rows (column `label`)."""
    images = rows.groupby("label").size()
    patients = rows.groupby("label")["patient_id"].nunique()
    return {name: (int(images.get(k, 0)), int(patients.get(k, 0)))
            for k, name in enumerate(scenarios.class_names(scenario))}


def _table(found: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{name}: {i} image(s) of {p} patient(s)" for name, (i, p) in found.items())


def require(rows: pd.DataFrame, scenario: str, protocol: str, folds: int) -> None:
    """Refuse (DataError) a scenario's rows that lack a class or have too few of one for `protocol`'s folds."""
    found = counts(rows, scenario)
    for name, (images, patients) in found.items():
        if protocol == "patient":
            need, have, unit = folds, patients, "patient(s)"
        elif protocol == "image":
            need, have, unit = folds, images, "image(s)"
        else:
            need, have, unit = 1, images, "image(s)"
        if have < need:
            raise DataError(f"scenario {scenario}, protocol {protocol}: class {name!r} has {have} {unit}, but "
                            f"{'split.folds=' + str(folds) + ' folds need' if protocol != 'ucar' else 'the scenario needs'} "
                            f"at least {need} ({_table(found)}); add data of that class, lower split.folds, or "
                            f"drop {scenario} from split.scenarios")


def require_parts(splits: pd.DataFrame, where: str) -> None:
    """Refuse (DataError) folds whose training or test part lacks a class of its scenario: a model trained
    without a class never predicts it, and a test part without one scores the others alone. Checked on the
    folds as made (split, every protocol and repeat: published folds included) and again as train reads
    them. `splits` has the columns scenario, protocol, repeat, fold, part and label."""
    for (scenario, protocol, repeat, fold), rows in splits.groupby(["scenario", "protocol", "repeat", "fold"],
                                                                   sort=False):
        names = scenarios.class_names(scenario)
        for part in ("train", "test"):
            present = set(rows.loc[rows["part"] == part, "label"].astype(int))
            absent = [names[k] for k in range(len(names)) if k not in present]
            if absent:
                counts_in = rows[rows["part"] == part].groupby("label").size()
                have = ", ".join(f"{names[k]}: {int(counts_in.get(k, 0))}" for k in range(len(names)))
                raise DataError(f"{where}: scenario {scenario}, protocol {protocol}, repeat {repeat}, fold {fold}: "
                                f"the {part} part has no image of class {absent[0]!r} (images per class: {have}); "
                                f"every fold's training and test parts need every class of the scenario: add data of "
                                f"that class, lower split.folds, or drop {scenario} from split.scenarios")


@contextmanager
def carving(rows: pd.DataFrame, scenario: str, protocol: str, fold: int, val_fraction: float) -> Iterator[None]:
    """Turn scikit-learn's ValueError while carving fold `fold`'s validation part into a DataError with the counts."""
    try:
        yield
    except ValueError as e:
        raise DataError(f"scenario {scenario}, protocol {protocol}, fold {fold}: cannot carve a stratified "
                        f"validation part with split.val_fraction={val_fraction} ({str(e).splitlines()[0][:200]}); "
                        f"the scenario has {_table(counts(rows, scenario))}; raise split.val_fraction, lower "
                        f"split.folds or use a larger cohort") from None
