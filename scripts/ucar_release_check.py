"""Run the ucar source on the real release's metadata with placeholder images, as a new user would.

    python scripts/ucar_release_check.py RELEASE_DIR [WORKDIR]

RELEASE_DIR holds OrginalAndCroppedFileNames.xlsx and FileList/ of github:e-ucar/myositis_classification
(not its images). The script writes random-pixel placeholders images/1.PNG .. images/<n>.PNG for every
image the sheet names, runs `prepare` and `split` (S1-S4, the patient and ucar protocols, 32x32) in WORKDIR
(a temporary directory by default), and prints the image and patient counts, the N/IBM/PM/DM image counts
and whether each scenario's published FileList folds are reproduced file by file (train, val and test).
Not part of the test suite: the release is not in this repository and tests never reach a network.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    release = Path(argv[0])
    for need in ("OrginalAndCroppedFileNames.xlsx", "FileList"):
        if not (release / need).exists():
            print(f"error: {release / need} not found; expected the release's metadata (OrginalAndCroppedFileNames.xlsx "
                  f"and FileList/ of github:e-ucar/myositis_classification) in {release}", file=sys.stderr)
            return 1
    work = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="ucar-release-"))
    raw = work / "data/raw"
    (raw / "images").mkdir(parents=True, exist_ok=True)
    shutil.copy(release / "OrginalAndCroppedFileNames.xlsx", raw)
    shutil.copytree(release / "FileList", raw / "FileList", dirs_exist_ok=True)
    sheet = openpyxl.load_workbook(raw / "OrginalAndCroppedFileNames.xlsx", read_only=True).active
    names = [row[-1] for row in sheet.iter_rows(min_row=2, values_only=True) if row and row[-1]]
    rng = np.random.default_rng(0)
    for name in names:   # distinct random pixels: data.duplicates refuses identical images of one patient
        Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)).save(raw / "images" / str(name))
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    env = {"PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "MPLBACKEND": "Agg"}
    (work / "check.yaml").write_text(yaml.safe_dump({"data": {"image_size": 32},
                                                      "split": {"scenarios": ["S1", "S2", "S3", "S4"]}}))
    for args in (["pipeline.params", "apply", str(ROOT / "profiles/ucar.yaml")], ["pipeline.params", "apply", "check.yaml"],
                 ["pipeline.prepare"], ["pipeline.split"]):
        proc = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"python -m {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
    manifest = pd.read_csv(work / "data/processed/manifest.csv")
    counts = manifest.diagnosis.value_counts()
    print(f"{len(manifest)} images, {manifest.patient_id.nunique()} patients; images by diagnosis: "
          + ", ".join(f"{d} {counts.get(d, 0)}" for d in ("N", "IBM", "PM", "DM")))
    source = dict(zip(manifest.image_id, manifest.source_name))
    exact = True
    for scenario in ("S1", "S2", "S3", "S4"):
        splits = pd.read_csv(work / f"data/splits/{scenario}.csv")
        ours = splits[splits.protocol == "ucar"]
        differ = []
        for fold in range(1, 6):
            published = pd.read_csv(raw / f"FileList/{scenario}_FileList_Fold_{fold}.csv")
            for part, kind in (("train", "Train"), ("val", "Validation"), ("test", "Test")):
                theirs = set(published[published.Type == kind].FileNames)
                mine = {source[i] for i in ours[(ours.fold == fold) & (ours.part == part)].image_id}
                if theirs != mine or not theirs:
                    differ.append(f"fold {fold} {part}: {len(theirs ^ mine)} files differ")
        exact &= not differ
        print(f"{scenario}: {ours.image_id.nunique()} images; published folds "
              + ("reproduced file by file (train, val, test of folds 1-5)" if not differ else "; ".join(differ)))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
