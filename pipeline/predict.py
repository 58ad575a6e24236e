"""Apply one run's trained folds to new images: `python -m pipeline.predict`.

    python -m pipeline.predict runs/S1/stanet/patient scans/                 # a folder of images
    python -m pipeline.predict runs/S1/stanet/patient a.png b.png --out p.csv
    python -m pipeline.predict runs/S1/stanet/patient --manifest scans/manifest.csv --runtime onnxruntime

Inputs: image files, folders (their PNG, JPEG, BMP and TIFF files, sorted by name) or a manifest as
the `folder` source reads it (path, patient_id, diagnosis[, muscle, side], paths relative to the
manifest's folder). Every image is read and resized exactly as prepare does (pipeline/data/imageio.py:
8 bits, luminance or RGB, padded to a square with black, resampled to the run's input size) and
normalised with each fold's own statistics, stored in its metrics.json by training. The folds form
an ensemble: the mean of their softmax probabilities. Under `--runtime onnxruntime` each fold is
exported to ONNX (pipeline/deployment/exports.py) and run by ONNX Runtime on the CPU.

Writes a CSV (default predict.csv): one row per image with its probabilities, the predicted class and
the number of folds; with a manifest, also <out>_patients.csv: the mean probability over each
patient's images and the class it predicts. A run trained on the synthetic cohort is announced as such.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import layout
from pipeline.core.atomic import atomic_write_text
from pipeline.core.cli import run_stage
from pipeline.core.errors import DataError
from pipeline.core.params import DataParams
from pipeline.data.imageio import FORMATS
from pipeline.data.manifests import read_folder
from pipeline.data.sources import load_images
from pipeline.deployment import exports

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")   # the files of FORMATS a folder is searched for


def image_records(inputs: list[str], manifest: str | None) -> tuple[pd.DataFrame, Path]:
    """The images to score, as records of the folder source (path, location[, patient_id, diagnosis]),
    and the root their paths are relative to."""
    if manifest is not None:
        if inputs:
            raise DataError(f"give images or --manifest, not both (got {len(inputs)} image argument(s) and "
                            f"--manifest {manifest})")
        path = Path(manifest)
        return read_folder(path.parent, path.name), path.parent
    if not inputs:
        raise DataError("no images given; expected image files, folders of images or --manifest CSV")
    rows = []
    for i, arg in enumerate(inputs, 1):
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and not p.is_dir())
            if not found:
                raise DataError(f"{path}: a folder with no {', '.join(FORMATS)} image ({', '.join(SUFFIXES)}); "
                                f"expected image files")
            rows += [{"path": str(p), "location": f"in folder {path} (argument {i})"} for p in found]
        else:
            rows.append({"path": str(path), "location": f"argument {i}"})
    records = pd.DataFrame(rows)
    dup = records[records.duplicated("path")]
    if not dup.empty:
        raise DataError(f"{dup.iloc[0].path}: given more than once; each image must appear once")
    return records, Path(".")


def ensemble(folds: list[exports.Fold], images: np.ndarray, runtime: str, threads: int) -> np.ndarray:
    """Mean probability over the folds, each fold normalising with its own statistics."""
    import torch

    torch.set_num_threads(threads)
    total = np.zeros((len(images), len(folds[0].class_names)), dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        for fold in folds:
            net = fold.build()
            x = exports.normalise(images, fold)
            if runtime == "torch":
                prob = exports.torch_probabilities(net, x)
            else:
                path = exports.export_onnx(net, fold.input_size, Path(tmp) / f"fold-{fold.fold}.onnx")
                prob = exports.ort_probabilities(exports.session(path, threads), x)
            total += prob
    return total / len(folds)


def tables(records: pd.DataFrame, prob: np.ndarray, class_names: list[str], n_folds: int
           ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Per-image rows, and per-patient rows when the records name patients."""
    columns = layout.prob_columns(class_names)
    keep = [c for c in ("path", "patient_id", "diagnosis") if c in records.columns]
    images = records[keep].reset_index(drop=True)
    for j, col in enumerate(columns):
        images[col] = np.round(prob[:, j], 6)
    images["predicted"] = [class_names[k] for k in prob.argmax(1)]
    images["folds"] = n_folds
    if "patient_id" not in records.columns:
        return images, None
    per = pd.DataFrame(prob, columns=columns).assign(patient_id=images["patient_id"].to_numpy())
    patients = per.groupby("patient_id", sort=False)[columns].mean()
    patients.insert(0, "images", per.groupby("patient_id", sort=False).size())
    patients["predicted"] = [class_names[k] for k in patients[columns].to_numpy().argmax(1)]
    patients[columns] = patients[columns].round(6)
    return images, patients.reset_index()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained run: runs/<scenario>/<model>/<protocol>")
    ap.add_argument("images", nargs="*", help="image files or folders of images")
    ap.add_argument("--manifest", help="a CSV as the folder source reads it (path, patient_id, diagnosis, ...)")
    ap.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    ap.add_argument("--folds", type=int, nargs="+", help="the folds to ensemble (default: every trained fold)")
    ap.add_argument("--channels", type=int, choices=(1, 3),
                    help="the channel count the images are meant for; refused unless the run was trained on it")
    ap.add_argument("--out", default="predict.csv", help="per-image CSV (default: predict.csv)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    ap.add_argument("--max-pixels", type=int, default=DataParams.max_pixels,
                    help=f"largest padded image accepted, in pixels (default: {DataParams.max_pixels})")
    args = ap.parse_args(argv)
    folds = exports.load_run(args.run, args.folds)
    first = folds[0]
    channels, size, _ = first.input_size
    if args.channels is not None and args.channels != channels:
        raise DataError(f"{args.run}: trained on {channels}-channel {size}x{size} input, but --channels {args.channels} "
                        f"was asked for; use a run trained with data.channels: {args.channels}, or leave --channels out "
                        f"(images are then converted as prepare converts them)")
    if not first.is_network and args.runtime == "onnxruntime":
        raise DataError(f"{args.run}: {first.model} is not a network and is not exported to ONNX; "
                        f"use --runtime torch")
    if first.data_source == "synthetic":
        print(exports.SYNTHETIC_CAVEAT)
    records, root = image_records(args.images, args.manifest)
    images, _ = load_images(records, root, DataParams(image_size=size, channels=channels, max_pixels=args.max_pixels))
    prob = ensemble(folds, images, args.runtime, args.threads)
    per_image, per_patient = tables(records, prob, first.class_names, len(folds))
    out = Path(args.out)
    atomic_write_text(out, per_image.to_csv(index=False))
    written = [str(out)]
    if per_patient is not None:
        patients_out = out.with_name(f"{out.stem}_patients{out.suffix or '.csv'}")
        atomic_write_text(patients_out, per_patient.to_csv(index=False))
        written.append(str(patients_out))
    counts = per_image["predicted"].value_counts()
    print(f"{len(per_image)} image(s) scored by {first.model} ({first.scenario}, {first.protocol} folds "
          f"{[f.fold for f in folds]}, mean probability) under {args.runtime}: "
          + ", ".join(f"{c} {int(counts.get(c, 0))}" for c in first.class_names) + f" -> {', '.join(written)}")
    return 0


if __name__ == "__main__":
    run_stage(main)
