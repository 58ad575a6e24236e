"""Duplicate images, found by their decoded pixels, not their bytes.

The same picture saved twice (another PNG compression level, a re-export, a copy) has other
bytes but the same pixels: to a model it is the same image. Rows whose decoded pixels are equal
form a group, and every group is listed in one run (a user fixes them all at once):
- a group spanning two patients is refused: patient-level folds would put the image in
  training and test (a leak), and one of the two attributions is wrong;
- a group within one patient is decided by `data.duplicates`: `refuse` (the default: a copy is
  not a second acquisition; it counts twice, and image-level folds would test on an image they
  trained on), `keep-one` (the first row of each group is kept, the others dropped) or `allow`
  (all kept); either of the last two prints a note naming the groups.
"""
from __future__ import annotations

import hashlib
import sys

import numpy as np
import pandas as pd

from pipeline.core.errors import DataError

GROUPS_SHOWN = 5   # groups listed in one message; the rest are counted
ROWS_SHOWN = 4     # rows listed per group


def pixel_digest(pixels: np.ndarray) -> str:
    """sha256 of a decoded image: its shape and its pixel values."""
    h = hashlib.sha256(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).data)
    return h.hexdigest()


def _describe(group: pd.DataFrame) -> str:
    rows = [f"{r.location} ('{r.path}', patient {r.patient_id!r})" for r in group.head(ROWS_SHOWN).itertuples()]
    more = f", ... and {len(group) - ROWS_SHOWN} more" if len(group) > ROWS_SHOWN else ""
    return f"[{', '.join(rows)}{more}]"


def _groups_text(groups: list[pd.DataFrame]) -> str:
    shown = "; ".join(_describe(g) for g in groups[:GROUPS_SHOWN])
    return shown + (f"; ... and {len(groups) - GROUPS_SHOWN} more group(s)" if len(groups) > GROUPS_SHOWN else "")


def resolve(records: pd.DataFrame, policy: str) -> np.ndarray:
    """Positions of the rows of `records` (columns path, patient_id, location, pixels) to keep, under `policy`.

    Raises DataError listing every group that is refused."""
    repeated = records[records.duplicated("pixels", keep=False)]
    if repeated.empty:
        return np.arange(len(records))
    groups = [g for _, g in repeated.groupby("pixels", sort=False)]
    across = [g for g in groups if g.patient_id.nunique() > 1]
    within = [g for g in groups if g.patient_id.nunique() == 1]
    problems = []
    if across:
        patients = ", ".join(repr(p) for p in dict.fromkeys(across[0].patient_id))
        problems.append(f"{len(across)} group(s) of images with the same pixels under different patients (patients {patients} "
                        f"first), which would put an image in training and test of a patient-level fold: "
                        f"{_groups_text(across)}")
    if within and policy == "refuse":
        problems.append(f"{len(within)} group(s) of images repeated within one patient (a copy is not a second acquisition of "
                        f"patient {within[0].patient_id.iloc[0]!r}: it counts twice, and image-level folds would test "
                        f"on an image they trained on): {_groups_text(within)}; set data.duplicates: keep-one to "
                        f"keep the first of each, or allow to keep them all")
    if problems:
        raise DataError(f"duplicate images by decoded pixels (not only byte-identical files): "
                        f"{' | '.join(problems)}; remove the copies")
    if not within:
        return np.arange(len(records))
    if policy == "keep-one":
        dropped = set().union(*(set(g.index[1:]) for g in within))
        print(f"note: data.duplicates = keep-one: {len(dropped)} copy row(s) dropped, the first of each group kept: "
              f"{_groups_text(within)}", file=sys.stderr)
        return np.array([i for i, label in enumerate(records.index) if label not in dropped], dtype=int)
    print(f"note: data.duplicates = allow: {len(within)} group(s) of images with the same pixels within one patient "
          f"kept, each counted as an image: {_groups_text(within)}", file=sys.stderr)
    return np.arange(len(records))
