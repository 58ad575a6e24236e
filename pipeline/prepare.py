"""Stage `prepare`: the cohort as one uint8 array plus a manifest.

Reads params.yaml (`data`, `seed`) and loads data.source through the table of sources
(pipeline/data/sources.py `SOURCES`): the synthetic cohort (pipeline/data/synthetic.py), a folder with a
CSV manifest, or the public Uçar release. Every image is decoded and resized the same way (pipeline/data/imageio.py:
8-bit, luminance or RGB, padded to a square with black, area-resampled to data.image_size).

Outputs, written only once everything has been read (a failed run leaves the previous ones):
- data/processed/images.npy: uint8 (N, data.channels, data.image_size, data.image_size)
- data/processed/manifest.csv: image_id, patient_id, diagnosis, muscle, side, source, path,
  sha256, source_name; row i describes images.npy[i]
- reports/figures/cohort_examples.png: one example per diagnosis (rows) and muscle (columns)
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import layout
from pipeline.core.atomic import atomic_outputs
from pipeline.core.cli import run_stage
from pipeline.core.params import Params, load
from pipeline.core.scenarios import DIAGNOSES
from pipeline.data.sources import SOURCES
from pipeline.reporting.cohortfigure import COHORT, CohortInputs
from pipeline.reporting.figurekit import draw_specs

MANIFEST_COLUMNS = ["image_id", "patient_id", "diagnosis", "muscle", "side", "source", "path", "sha256",
                    "source_name"]


def prepare(params: Params) -> tuple[np.ndarray, pd.DataFrame]:
    """Build the processed cohort for params.data: images (N, C, S, S) uint8 and the manifest."""
    images, table = SOURCES[params.data.source].load(params)
    manifest = table.reset_index(drop=True).assign(source=params.data.source)
    manifest.insert(0, "image_id", np.arange(len(manifest)))
    return images, manifest[MANIFEST_COLUMNS]


def write_outputs(images: np.ndarray, manifest: pd.DataFrame, source: str,
                  processed_dir: Path = layout.PROCESSED_DIR, figures_dir: Path = layout.FIGURES_DIR) -> None:
    """Replace `processed_dir` (images.npy, manifest.csv) as a whole and the figures, all together."""
    with atomic_outputs() as out:
        tmp = out.path(processed_dir, directory=True)
        os.chmod(tmp, 0o755)   # mkdtemp makes it private; the cohort is not secret
        with open(tmp / layout.IMAGES.name, "wb") as f:
            np.save(f, images, allow_pickle=False)
        manifest.to_csv(tmp / layout.MANIFEST.name, index=False)
        draw_specs([COHORT], CohortInputs(images, manifest, SOURCES[source].label), figures_dir, out)


def summary(manifest: pd.DataFrame, images: np.ndarray, seconds: float) -> str:
    """One line for the console: images, patients per diagnosis, time taken."""
    patients = manifest.drop_duplicates("patient_id").diagnosis.value_counts()
    per = ", ".join(f"{d} {patients.get(d, 0)}" for d in DIAGNOSES)
    _, c, s, _ = images.shape
    return (f"prepare: {len(manifest)} images of {manifest.patient_id.nunique()} patients ({per}) from "
            f"{manifest.source.iloc[0]}, {c}x{s}x{s} uint8, in {seconds:.1f} s -> {layout.PROCESSED_DIR}/, "
            f"{layout.FIGURES_DIR / COHORT.file}")


def main(argv: list[str] | None = None) -> int:
    """Run the stage: read params.yaml, build the cohort, write data/processed and the figure."""
    argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__.splitlines()[0]).parse_args(argv)
    start = time.perf_counter()
    params = load()
    images, manifest = prepare(params)
    write_outputs(images, manifest, params.data.source)
    print(summary(manifest, images, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    run_stage(main)
