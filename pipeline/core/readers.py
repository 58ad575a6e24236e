"""Reading what another stage wrote: JSON records and CSV tables, checked as they are read.

Text columns (ids, names, codes) are read as strings exactly as written: pandas' default would
turn a patient called `NA`, `None` or `NULL` into a missing value and `007` into 7.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from pipeline.core.errors import DataError

# columns that hold identifiers or words, never numbers, in any table the pipeline writes
TEXT_COLUMNS = ("patient_id", "diagnosis", "muscle", "side", "source", "path", "sha256", "source_name",
                "scenario", "protocol", "part", "model", "cohort")


def read_json(path: Path, remedy: str) -> dict:
    """A JSON file another stage wrote; a missing or corrupt one is a DataError saying `remedy`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; {remedy}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); {remedy}") from None


def read_table(path: Path, remedy: str, required: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV another stage wrote, text columns as written; DataError if missing, unreadable or lacking
    a `required` column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; {remedy}")
    try:
        header = pd.read_csv(path, nrows=0).columns
        table = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS if c in header}, keep_default_na=False,
                            na_values={c: [""] for c in header if c not in TEXT_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not a readable CSV table ({type(e).__name__}: {str(e)[:200]}); {remedy}") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; it has {list(table.columns)}; {remedy}")
    return table


def read_evaluation(metrics_path: Path, per_fold_path: Path | None, remedy: str) -> tuple[dict, pd.DataFrame | None]:
    """reports/metrics.json and, when asked for, the per_fold.csv written with it; a pair from two
    different evaluate runs (metrics.json names its per_fold.csv by sha256) is a DataError."""
    import hashlib

    metrics = read_json(metrics_path, remedy)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("meta"), dict):
        raise DataError(f"{metrics_path}: not a metrics file of this pipeline (no meta); {remedy}")
    if per_fold_path is None:
        return metrics, None
    table = read_table(per_fold_path, remedy)
    want = metrics["meta"].get("per_fold_sha256")
    have = hashlib.sha256(Path(per_fold_path).read_bytes()).hexdigest()
    if want != have:
        raise DataError(f"{per_fold_path} was not written with {metrics_path} (sha256 {have[:12]}..., the metrics "
                        f"name {str(want)[:12]}...): the two come from different evaluate runs; {remedy}")
    return metrics, table
