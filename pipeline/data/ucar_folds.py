"""The Uçar (2022) release's published folds (protocol `ucar`): read for the split stage.

The release ships, per scenario, FileList/<scenario>_FileList_Fold_<k>.csv (k = 1..5), naming each
cropped image and its part (Train, Validation, Test) in fold k. Only data.source `ucar` has them.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from pipeline.core.errors import DataError
from pipeline.core.params import UCAR_PUBLISHED_FOLDS, Params, ParamsError
from pipeline.data.manifests import file_problem, shown, lower_words, read_csv_rows

SOURCE = "ucar"   # the one data.source whose release ships folds of its own
UCAR_FOLD_PARTS = {"train": "train", "training": "train", "validation": "val", "val": "val", "test": "test"}
UCAR_FOLDS = UCAR_PUBLISHED_FOLDS   # params refuses other split.folds with protocol ucar


def check_protocol(params: Params) -> None:
    """Refuse protocol `ucar` for a data source that ships no published folds."""
    if "ucar" in params.split.protocols and params.data.source != SOURCE:
        raise ParamsError(f"split.protocols: 'ucar' folds exist only for data.source {SOURCE!r}, "
                          f"not {params.data.source!r}; use 'patient' and/or 'image'")


def read_ucar_folds(root: Path, scenario: str) -> pd.DataFrame:
    """The published folds of `scenario`: columns source_name, fold (1-based), part (train|val|test).

    Read from data.root/FileList/<scenario>_FileList_Fold_<k>.csv, k = 1..5; a missing or
    malformed file is a DataError naming it.
    """
    if scenario not in ("S1", "S2", "S3", "S4"):
        raise DataError(f"scenario {scenario!r} has no published folds; expected S1, S2, S3 or S4")
    frames = []
    for fold in range(1, UCAR_FOLDS + 1):
        path = Path(root) / "FileList" / f"{scenario}_FileList_Fold_{fold}.csv"
        problem = file_problem(path)
        if problem is not None:
            raise DataError(f"{path} {problem}; protocol 'ucar' needs the release's FileList/"
                            f"{scenario}_FileList_Fold_1..{UCAR_FOLDS}.csv in data.root")
        _, rows = read_csv_rows(path, ("filenames", "type"))
        if not rows:
            raise DataError(f"{path}: no rows; expected one row per image with FileNames and Type")
        seen: dict[str, int] = {}
        for line, row in rows:
            name = PurePosixPath(row["filenames"].replace("\\", "/")).name
            if not name:
                raise DataError(f"{path} line {line} (header = line 1): empty FileNames")
            part = UCAR_FOLD_PARTS.get(lower_words(row["type"]))
            if part is None:
                raise DataError(f"{path} line {line} (header = line 1): Type {shown(row['type'])} is not accepted; expected Train, "
                                f"Validation or Test")
            if name in seen:
                raise DataError(f"{path} line {line} (header = line 1): {shown(name)} is listed again (first at line {seen[name]}); "
                                f"an image has one part per fold")
            seen[name] = line
            frames.append((name, fold, part))
    return pd.DataFrame(frames, columns=["source_name", "fold", "part"])
