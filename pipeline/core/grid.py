"""The run grid: the (scenario, model, protocol, repeat, fold) runs a params file asks for, in one order,
where each one lives, and reading one back, checked.

Everything that walks the runs asks here (train's jobs, evaluate, the report, the checklist's flow
table, the shard planner, the figures, the failure analysis and the reading): the grid is built from
params in this module only. A finished evaluation carries the same repeats and folds in
reports/metrics.json, and `Results.fold_keys` lists them through `fold_keys` below, so a reader of the
results and a reader of params walk the folds in the same order: repeat by repeat, then fold, the
order of reports/per_fold.csv and of metrics.json's per-fold lists.

    for run in grid.runs(params): record = grid.read(run, layout.RUNS, ("meta", "predictions"))
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple, Sequence

import numpy as np

from pipeline.core import layout, scenarios
from pipeline.core.errors import DataError
from pipeline.core.readers import read_json, read_table

if TYPE_CHECKING:
    from pipeline.core.params import Params

PARTS = ("meta", "predictions", "validation", "history", "trials")   # trials: a tuned run's, else None


class Run(NamedTuple):
    """One fold run of one train stage."""
    scenario: str
    model: str
    protocol: str
    repeat: int
    fold: int

    def dir(self, runs: str | Path = layout.RUNS) -> Path:
        """runs/<scenario>/<model>/<protocol>/fold-<k> (repeat-<r>/fold-<k> after the first repeat)."""
        return layout.run_dir(self.scenario, self.model, self.protocol, self.fold, runs, repeat=self.repeat)

    @property
    def remedy(self) -> str:
        """What makes this run: its train stage's command."""
        return f"make it with `{layout.train_command(self.scenario, self.model, self.protocol)}` (or `dvc repro`)"


def fold_keys(repeats: int, folds: Iterable[int]) -> list[tuple[int, int]]:
    """(repeat, fold) of every fold of every repeat, repeat by repeat."""
    folds = list(folds)
    return [(r, k) for r in range(1, repeats + 1) for k in folds]


def folds_of(params: Params, folds: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """(repeat, fold) of the runs of one train stage: train.folds (or `folds`, a subset asked for) in every
    repeat of split.repeats."""
    return fold_keys(params.split.repeats, folds or params.train.folds)


def stages(params: Params) -> list[tuple[str, str, str]]:
    """(scenario, model, protocol) of every train stage, in dvc.yaml's matrix order."""
    return [(s, m, p) for s in params.split.scenarios for m in params.train.models for p in params.split.protocols]


def runs(params: Params) -> list[Run]:
    """Every fold run the params ask for: each train stage's folds of every repeat."""
    return [Run(s, m, p, r, k) for s, m, p in stages(params) for r, k in folds_of(params)]


def read(run: Run, root: str | Path = layout.RUNS, parts: Sequence[str] = PARTS) -> dict:
    """The files of one run that `parts` names (of PARTS), each checked: metrics.json belongs to this run
    (scenario, model, protocol, fold, repeat, class names, a positive n_train); predictions.csv and
    validation.csv have the columns, labels and probabilities of the scenario's classes, no image twice,
    and no image in both; history.csv has its columns. DataError names the file at fault and the command
    that remakes it."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown run parts {unknown}; expected some of {list(PARTS)}")
    d, make = run.dir(root), run.remedy
    names = list(scenarios.class_names(run.scenario))
    out: dict = {}
    if "meta" in parts:
        out["meta"] = _meta(run, d / layout.RUN_METRICS, names, make)
    if "predictions" in parts or "validation" in parts:   # validation is checked against the test part
        pred = _predictions(d / layout.PREDICTIONS, names, make, "test")
        if "predictions" in parts:
            out["predictions"] = pred
        if "validation" in parts:
            val = _predictions(d / layout.VALIDATION, names, make, "validation")
            shared = set(val["image_id"]) & set(pred["image_id"])
            if shared:   # the operating point is chosen on validation images: a test image among them would leak
                raise DataError(f"{d / layout.VALIDATION}: image_id {sorted(shared)[0]} is also in "
                                f"{d / layout.PREDICTIONS} (validation and test parts share {len(shared)} images); "
                                f"{make}")
            out["validation"] = val
    if "history" in parts:
        out["history"] = read_table(d / layout.HISTORY, make, required=layout.HISTORY_COLUMNS)
    if "trials" in parts:   # written by a tuned run only (tune.trials > 0)
        out["trials"] = (read_table(d / layout.TRIALS, make, required=["trial", "state", "value"])
                         if (d / layout.TRIALS).is_file() else None)
    return out


def fold_rows(splits, scenario: str, protocol: str, fold: int, repeat: int = 1):
    """The rows of one fold of one repeat of one protocol in a scenario's splits file (every part); DataError
    naming what the file holds when that fold is not there. Train's and deploy's one fold selection."""
    rows = splits[(splits["protocol"] == protocol) & (splits["fold"] == fold) & (splits["scenario"] == scenario)
                  & (splits["repeat"] == repeat)]
    if rows.empty:
        have = sorted(set(zip(splits["scenario"], splits["protocol"], splits["repeat"], splits["fold"])))
        raise DataError(f"{layout.splits_path(scenario)}: no rows for scenario {scenario}, protocol {protocol!r}, "
                        f"repeat {repeat}, fold {fold}; present (scenario, protocol, repeat, fold): {have[:12]}; "
                        f"rerun `dvc repro split`")
    return rows


def _meta(run: Run, path: Path, names: list[str], make: str) -> dict:
    meta = read_json(path, make)
    for key in ("scenario", "model", "protocol", "fold", "repeat"):
        want = getattr(run, key)
        if key in meta and meta[key] != want:
            raise DataError(f"{path}: {key} is {meta[key]!r} but this evaluation expects {want!r} "
                            f"(a stale run?); {make}")
    if "class_names" in meta and list(meta["class_names"]) != names:
        raise DataError(f"{path}: class_names {meta['class_names']} differ from scenario {run.scenario}'s "
                        f"{names}; {make}")
    n_train = meta.get("n_train")
    if not isinstance(n_train, int) or isinstance(n_train, bool) or n_train <= 0:
        raise DataError(f"{path}: n_train is {n_train!r}; expected a positive integer; {make}")
    return meta


def _predictions(path: Path, names: list[str], make: str, part: str):
    """predictions.csv (the test part) or validation.csv, checked; labels as int64."""
    cols = layout.prob_columns(names)
    table = read_table(path, make, required=[*layout.PREDICTION_COLUMNS, *cols])
    if table.empty:
        raise DataError(f"{path}: no rows; a fold's {part} part holds at least one image; {make}")
    bad = table[cols + ["label"]].isna().any(axis=1) | ~table["label"].isin(range(len(names)))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: data row {row + 1} has label {table['label'].iloc[row]!r} or an empty "
                        f"probability; expected labels 0..{len(names) - 1} and numbers in {cols}")
    dup = table["image_id"].duplicated()
    if dup.any():
        raise DataError(f"{path}: image_id {table['image_id'][dup].iloc[0]} appears more than once")
    table["label"] = table["label"].astype(np.int64)
    return table
