"""The table of data sources (`SOURCES`): for each `data.source`, how prepare loads its images and
how the report names it.

- `synthetic`: the built-in deterministic cohort (pipeline/data/synthetic.py), rendered, then resized.
- `folder`: the images a CSV manifest lists under data.root (read by pipeline/data/manifests.py).
- `ucar`: the public Uçar (2022) release under data.root (read by pipeline/data/manifests.py; its
  published folds by pipeline/data/ucar_folds.py, for the split stage).

Every source's images go through the same resize (`resize_all`): each is fitted to a square of
data.image_size (imageio.fit_square) and laid out as data.channels x size x size uint8.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from pipeline.data import duplicates, imageio
from pipeline.data.manifests import read_folder, read_ucar

if TYPE_CHECKING:
    from pipeline.core.params import DataParams, Params


def resize_all(count: int, data: DataParams, pixels_of: Callable[[int], tuple[np.ndarray, Any]]
               ) -> tuple[np.ndarray, list[Any]]:
    """Images 0..count-1, each `pixels_of(i)` (its pixels and something to keep, e.g. a digest)
    fitted to data.image_size and data.channels; also what each kept, in order.

    Two at a time: PIL decodes and resizes without the GIL. map() re-raises the first error in
    row order, and after an error nothing more is started.
    """
    images = np.empty((count, data.channels, data.image_size, data.image_size), dtype=np.uint8)

    def one(i: int) -> Any:
        pixels, kept = pixels_of(i)
        images[i] = imageio.to_chw(imageio.fit_square(pixels, data.image_size), data.channels)
        return kept

    pool = ThreadPoolExecutor(max_workers=2)
    try:
        kept = list(pool.map(one, range(count)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)   # after an error, decode nothing more
    return images, kept


def load_images(records: pd.DataFrame, root: Path, data: DataParams) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode and resize every image of `records` (paths relative to `root`); also the sha256 of each file's
    bytes and of its decoded pixels (pipeline/data/duplicates.py)."""
    def decode(i: int) -> tuple[np.ndarray, tuple[str, str]]:
        row = records.iloc[i]
        pixels, digest = imageio.read_image(root / row.path, max_pixels=data.max_pixels, channels=data.channels,
                                            where=row.location)
        return pixels, (digest, duplicates.pixel_digest(pixels))

    return resize_all(len(records), data, decode)


def _load_files(records: pd.DataFrame, root: Path, data: DataParams) -> tuple[np.ndarray, pd.DataFrame]:
    images, digests = load_images(records, root, data)
    records = records.assign(sha256=[d[0] for d in digests], pixels=[d[1] for d in digests])
    keep = duplicates.resolve(records, data.duplicates)
    images = images if len(keep) == len(images) else images[keep]   # no copy of the cohort when nothing is dropped
    return images, records.iloc[keep].drop(columns="pixels").reset_index(drop=True)


def load_synthetic(params: Params) -> tuple[np.ndarray, pd.DataFrame]:
    """The built-in cohort (pipeline/data/synthetic.py), rendered and resized like real images."""
    from pipeline.data import synthetic

    syn = params.data.synthetic
    rendered, table = synthetic.generate(syn.patients, syn.images_per_side, syn.render_size, params.seed)
    images, _ = resize_all(len(rendered), params.data, lambda i: (rendered[i], None))
    return images, table


def load_folder(params: Params) -> tuple[np.ndarray, pd.DataFrame]:
    """Images listed in data.root/data.manifest."""
    root = Path(params.data.root)
    return _load_files(read_folder(root, params.data.manifest), root, params.data)


def load_ucar(params: Params) -> tuple[np.ndarray, pd.DataFrame]:
    """The public Uçar (2022) release of Burlina et al. (2017) under data.root."""
    root = Path(params.data.root)
    return _load_files(read_ucar(root), root, params.data)


@dataclass(frozen=True)
class DataSource:
    """Everything the pipeline knows of one `data.source`: how to load it and how reports name it."""
    load: Callable[[Params], tuple[np.ndarray, pd.DataFrame]]   # images (N, C, S, S) uint8, one table row each
    label: str                                  # figure subtitles
    describe: Callable[[DataParams], str]       # the report header's words
    caveat: str                                 # beside a published figure: can they be compared
    patient_data: bool                          # False: results say nothing about patients


# The one table of data sources: prepare loads through it, and the report (and through it the paper
# table) takes its words from it. params validates data.source against params.SOURCE_NAMES, which
# tests/test_params.py keeps equal to these keys. To add a source: its load function, an entry here,
# its name in params.SOURCE_NAMES.
SOURCES: dict[str, DataSource] = {
    "synthetic": DataSource(
        load=load_synthetic, label="synthetic cohort",
        describe=lambda d: (f"synthetic cohort (the built-in deterministic generator: {d.synthetic.patients} "
                            f"patients, {d.synthetic.images_per_side} images per muscle side); not patient data"),
        caveat="synthetic cohort: not comparable to the published figure", patient_data=False),
    "folder": DataSource(
        load=load_folder, label="own image folder",
        describe=lambda d: f"real: own images listed in {d.root}/{d.manifest}",
        caveat="own image folder: a different cohort from the published figure's", patient_data=True),
    "ucar": DataSource(
        load=load_ucar, label="Uçar/Burlina public cohort",
        describe=lambda d: (f"real: the public Uçar 2022 release of Burlina et al. 2017 (80 patients, 3214 "
                            f"images) from {d.root}"),
        caveat="same public cohort (Uçar release of Burlina 2017)", patient_data=True),
}
