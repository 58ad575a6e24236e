"""The prepare stage's figure: one example image per diagnosis (rows) and muscle (columns), as the models
see them (reports/figures/cohort_examples.png). Its own module, so prepare depends on the figure
primitives and the scenarios' names only, not on the report's statistics and results.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.reporting.figurekit import FigureSpec
from pipeline.reporting.figurekit import figure as _figure
from pipeline.reporting.figurekit import save as _save
from pipeline.reporting.figurekit import title as _title


def cohort_examples(images: np.ndarray, manifest: Any, source_label: str, path: str | Path) -> None:
    """Example images: rows = diagnoses present (N, IBM, PM, DM), columns = muscles, as the models see them."""
    import pandas as pd

    from pipeline.core.scenarios import DIAGNOSES, MUSCLES

    diagnoses = [d for d in DIAGNOSES if (manifest.diagnosis == d).any()]
    muscles = [m for m in MUSCLES if (manifest.muscle == m).any()]
    columns = muscles or [""] * min(7, int(manifest.diagnosis.value_counts().max()))
    size = images.shape[-1]
    fig = _figure(1.6 * len(columns) + 0.6, 1.6 * len(diagnoses) + 0.8)
    axes = fig.subplots(len(diagnoses), len(columns), squeeze=False)
    for r, diagnosis in enumerate(diagnoses):
        of_diagnosis = manifest[manifest.diagnosis == diagnosis]
        # one patient per row where possible (the first listed), right side first
        first = of_diagnosis.patient_id.iloc[0]
        ordered = pd.concat([of_diagnosis[of_diagnosis.patient_id == first], of_diagnosis])
        ordered = ordered.sort_values("side", key=lambda s: s != "R", kind="stable")
        for c, muscle in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            pick = ordered[ordered.muscle == muscle] if muscle else of_diagnosis.iloc[c:c + 1]
            if pick.empty:
                ax.set_axis_off()
                continue
            row = pick.iloc[0]
            image = images[row.image_id]
            shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            ax.imshow(shown, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"{row.side}{muscle} · {row.patient_id}" if muscle else str(row.patient_id), fontsize=7)
            if c == 0:
                ax.set_ylabel(diagnosis, fontsize=10)
    _title(fig, f"Cohort examples: {source_label}, {len(manifest)} images of {manifest.patient_id.nunique()} "
                f"patients, shown at {size}x{size} px as the models see them")
    _save(fig, path)


@dataclass(frozen=True)
class CohortInputs:
    """What the prepare stage's figures are drawn from."""
    images: np.ndarray
    manifest: Any            # pandas.DataFrame, data/processed/manifest.csv
    source_label: str


def _draw_cohort(x: CohortInputs, path: Path) -> None:
    cohort_examples(x.images, x.manifest, x.source_label, path)


# its entry in the one table of figures (pipeline/reporting/figures.py FIGURES)
COHORT = FigureSpec("cohort_examples.png", "One example image per diagnosis (rows) and muscle (columns), at the input "
                    "size the models see.", "prepare", _draw_cohort)
