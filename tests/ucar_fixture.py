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

from pipeline.core.scenarios import SCENARIOS

# the release's header row, cell for cell (OrginalAndCroppedFileNames.xlsx of github:e-ucar/myositis_classification):
# a title, and for some a legend of codes on the lines below it; "Muscle" and "Muscle Strength" are two columns
HEADERS = ["Patient Identifier", "2D Image",
           "Muscle\nD - deltoid\nB - biceps\nR - rectus\nG - gastroc\nT - tibialis ant\nFCR - FCR\nFDP -FDP",
           "Age", "Sex", "Muscle Strength\n(1 - 10)",
           "Diagnosis\nD - Dermatomyositis\nP - Polymyositis\nI - IBM\nN - normal", "CPK",
           "Duration of symptoms (months)", "Cropped Image Name"]
CODES = {"DM": "D", "PM": "P", "IBM": "I", "N": "N"}
DEFAULT_PATIENTS = (("101", "N"), ("102", "IBM"), ("103", "PM"), ("104", "DM"), ("105", "N"), ("106", "IBM"))


def write_ucar_fixture(root: Path, patients=DEFAULT_PATIENTS, muscles=("D", "FCR", "FDP"), images_per_side: int = 1,
                       size: tuple[int, int] = (40, 30), drop_column: str | None = None, seed: int = 0,
                       sides: tuple[str, ...] = ("R", "L")) -> dict:
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
            for side in sides:
                for _ in range(images_per_side):
                    n = len(images) + 1
                    name = f"{n}.PNG"
                    Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(root / "images" / name)
                    images.append(dict(source_name=name, path=f"images/{name}", patient_id=patient_id,
                                       diagnosis=diagnosis, muscle=muscle, side=side))
                    # the release's rows' shapes (its first: M001, 20150922134027, RD, 65, F, 10, D, 63, 36,
                    # 1.PNG): Patient Identifier only on the patient's first row, as written (an integer id is
                    # stored as a number), the 2D image a 14-digit timestamp
                    pid = (int(patient_id) if patient_id.isdigit() else patient_id) if first else None
                    rows.append([pid, str(20150922134027 + n), f"{side}{muscle}", 65, "F", "10",
                                 CODES[diagnosis], 63, 36, name])
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
