"""A small stand-in for the public Uçar (2022) release, written in its published layout.

- images/<n>.PNG
- OrginalAndCroppedFileNames.xlsx: headers with newlines, `Patient Identifier` only on each
  patient's first row, muscle cells like RD / LFCR, diagnosis letters D, P, I, N,
  `Cropped Image Name` like 1.PNG
- FileList/S{1..4}_FileList_Fold_{1..5}.csv with FileNames, OrginalFileID, Labels, Class, Type
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import openpyxl
from PIL import Image

from pipeline.scenarios import SCENARIOS

HEADERS = ["Patient \nIdentifier", "2D Image", "Muscle\n(side+muscle)", "Age", "Sex", "Strength\n(MRC)",
           "Diagnosis\n(D, P, I, N)", "CPK", "Duration of symptoms \n(months)", "Cropped Image Name"]
CODES = {"DM": "D", "PM": "P", "IBM": "I", "N": "N"}
DEFAULT_PATIENTS = (("101", "N"), ("102", "IBM"), ("103", "PM"), ("104", "DM"), ("105", "N"), ("106", "IBM"))


def write_ucar_fixture(root: Path, patients=DEFAULT_PATIENTS, muscles=("D", "FCR", "FDP"), images_per_side: int = 1,
                       size: tuple[int, int] = (40, 30), drop_column: str | None = None, seed: int = 0) -> dict:
    """Write the release layout under `root`; return what was written.

    Returns {"images": list of dicts (source_name, path, patient_id, diagnosis, muscle, side),
    "folds": {scenario: list of (source_name, fold, part)}, "headers": the .xlsx header row}.
    `drop_column` (a header) leaves that column out, to test the error.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, rows = [], []
    for patient_id, diagnosis in patients:
        first = True
        for muscle in muscles:
            for side in ("R", "L"):
                for _ in range(images_per_side):
                    n = len(images) + 1
                    name = f"{n}.PNG"
                    Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(root / "images" / name)
                    images.append(dict(source_name=name, path=f"images/{name}", patient_id=patient_id,
                                       diagnosis=diagnosis, muscle=muscle, side=side))
                    # Patient Identifier (an integer, as in the release) only on the patient's first row
                    rows.append([int(patient_id) if first else None, f"IMG{n:04d}", f"{side}{muscle}", 60, "F", 4,
                                 CODES[diagnosis], 100, 12, name])
                    first = False
    headers = list(HEADERS)
    keep = [i for i, h in enumerate(headers) if h != drop_column]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append([headers[i] for i in keep])
    for row in rows:
        sheet.append([row[i] for i in keep])
    book.save(root / "OrginalAndCroppedFileNames.xlsx")

    folds = {}
    (root / "FileList").mkdir(exist_ok=True)
    for scenario, (class_names, label_of) in SCENARIOS.items():
        members = [im for im in images if im["diagnosis"] in label_of]
        # image-level stratified folds: within each class, every 5th image goes to one test fold
        test_fold = {}
        for label in sorted(set(label_of.values())):
            of_class = [im for im in members if label_of[im["diagnosis"]] == label]
            for i, im in enumerate(of_class):
                test_fold[im["source_name"]] = i % 5 + 1
        folds[scenario] = []
        for fold in range(1, 6):
            path = root / "FileList" / f"{scenario}_FileList_Fold_{fold}.csv"
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["FileNames", "OrginalFileID", "Labels", "Class", "Type"])
                rest = [im for im in members if test_fold[im["source_name"]] != fold]
                for i, im in enumerate(members):
                    if test_fold[im["source_name"]] == fold:
                        part, kind = "test", "Test"
                    elif rest.index(im) % 5 == 0:
                        part, kind = "val", "Validation"
                    else:
                        part, kind = "train", "Train"
                    label = label_of[im["diagnosis"]]
                    writer.writerow([im["source_name"], im["source_name"].split(".")[0], label, class_names[label], kind])
                    folds[scenario].append((im["source_name"], fold, part))
    return {"images": images, "folds": folds, "headers": [headers[i] for i in keep]}
