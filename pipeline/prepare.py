"""Stage `prepare`: the cohort as one uint8 array plus a manifest.

Reads params.yaml (`data`, `seed`) and, by data.source, renders the synthetic cohort
(pipeline/synthetic.py) or reads a folder with a CSV manifest or the public Uçar release
(pipeline/sources.py). Every image is decoded and resized the same way (pipeline/imageio.py:
8-bit, luminance or RGB, padded to a square with black, area-resampled to data.image_size).

Outputs, written only once everything has been read (a failed run leaves the previous ones):
- data/processed/images.npy: uint8 (N, data.channels, data.image_size, data.image_size)
- data/processed/manifest.csv: image_id, patient_id, diagnosis, muscle, side, source, path,
  sha256, source_name; row i describes images.npy[i]
- reports/figures/cohort_examples.png: one example per diagnosis (rows) and muscle (columns)
"""
from __future__ import annotations

import argparse
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import imageio, sources, synthetic
from pipeline.atomic import atomic_path, atomic_write_bytes
from pipeline.cli import run_stage
from pipeline.params import Params, load
from pipeline.scenarios import DIAGNOSES

PROCESSED_DIR = Path("data/processed")
FIGURE_PATH = Path("reports/figures/cohort_examples.png")
MANIFEST_COLUMNS = ["image_id", "patient_id", "diagnosis", "muscle", "side", "source", "path", "sha256",
                    "source_name"]


def prepare(params: Params) -> tuple[np.ndarray, pd.DataFrame]:
    """Build the processed cohort for params.data: images (N, C, S, S) uint8 and the manifest."""
    data = params.data
    if data.source == "synthetic":
        syn = data.synthetic
        rendered, table = synthetic.generate(syn.patients, syn.images_per_side, syn.render_size, params.seed)
        images = np.empty((len(rendered), data.channels, data.image_size, data.image_size), dtype=np.uint8)
        for i, image in enumerate(rendered):
            images[i] = imageio.to_chw(imageio.fit_square(image, data.image_size), data.channels)
        return images, _manifest(table, "synthetic")
    root = Path(data.root)
    records = sources.read_folder(root, data.manifest) if data.source == "folder" else sources.read_ucar(root)
    images, sha256 = load_images(records, root, params)
    return images, _manifest(records.assign(sha256=sha256), data.source)


def load_images(records: pd.DataFrame, root: Path, params: Params) -> tuple[np.ndarray, list[str]]:
    """Decode and resize every image of `records` (paths relative to `root`); also their sha256."""
    data = params.data
    images = np.empty((len(records), data.channels, data.image_size, data.image_size), dtype=np.uint8)

    def one(i: int) -> str:
        row = records.iloc[i]
        pixels, digest = imageio.read_image(root / row.path, max_pixels=data.max_pixels,
                                            channels=data.channels, where=row.location)
        images[i] = imageio.to_chw(imageio.fit_square(pixels, data.image_size), data.channels)
        return digest

    # PIL decodes and resizes without the GIL; map() re-raises the first error in row order.
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        digests = list(pool.map(one, range(len(records))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)   # after an error, decode nothing more
    return images, digests


def _manifest(table: pd.DataFrame, source: str) -> pd.DataFrame:
    manifest = table.reset_index(drop=True).assign(source=source)
    manifest.insert(0, "image_id", np.arange(len(manifest)))
    return manifest[MANIFEST_COLUMNS]


def cohort_figure(images: np.ndarray, manifest: pd.DataFrame, source: str) -> bytes:
    """PNG of example images: rows = diagnoses present (N, IBM, PM, DM), columns = muscles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diagnoses = [d for d in DIAGNOSES if (manifest.diagnosis == d).any()]
    muscles = [m for m in synthetic.MUSCLES if (manifest.muscle == m).any()]
    columns = muscles or [""] * min(7, int(manifest.diagnosis.value_counts().max()))
    size = images.shape[-1]
    fig, axes = plt.subplots(len(diagnoses), len(columns), squeeze=False,
                             figsize=(1.6 * len(columns) + 0.6, 1.6 * len(diagnoses) + 0.8))
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
    fig.suptitle(f"Cohort examples: {source} data, {len(manifest)} images of {manifest.patient_id.nunique()} "
                 f"patients, shown at {size}x{size} px as the models see them", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(images: np.ndarray, manifest: pd.DataFrame, figure_png: bytes,
                  processed_dir: Path = PROCESSED_DIR, figure_path: Path = FIGURE_PATH) -> None:
    """Replace `processed_dir` (images.npy, manifest.csv) as a whole, then the figure, atomically."""
    with atomic_path(processed_dir, directory=True) as tmp:
        os.chmod(tmp, 0o755)   # mkdtemp makes it private; the cohort is not secret
        with open(tmp / "images.npy", "wb") as f:
            np.save(f, images, allow_pickle=False)
        manifest.to_csv(tmp / "manifest.csv", index=False)
    atomic_write_bytes(figure_path, figure_png)


def summary(manifest: pd.DataFrame, images: np.ndarray, seconds: float) -> str:
    """One line for the console: images, patients per diagnosis, time taken."""
    patients = manifest.drop_duplicates("patient_id").diagnosis.value_counts()
    per = ", ".join(f"{d} {patients.get(d, 0)}" for d in DIAGNOSES)
    _, c, s, _ = images.shape
    return (f"prepare: {len(manifest)} images of {manifest.patient_id.nunique()} patients ({per}) from "
            f"{manifest.source.iloc[0]}, {c}x{s}x{s} uint8, in {seconds:.1f} s -> {PROCESSED_DIR}/, {FIGURE_PATH}")


def main(argv: list[str] | None = None) -> int:
    """Run the stage: read params.yaml, build the cohort, write data/processed and the figure."""
    argparse.ArgumentParser(prog="python -m pipeline.prepare", description=__doc__.splitlines()[0]).parse_args(argv)
    start = time.perf_counter()
    params = load()
    images, manifest = prepare(params)
    figure = cohort_figure(images, manifest, params.data.source)
    write_outputs(images, manifest, figure)
    print(summary(manifest, images, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    run_stage(main)
