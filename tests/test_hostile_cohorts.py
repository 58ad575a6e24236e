"""Hostile cohorts and new keys (hardening round 4, issue 37): the real Uçar header row
(tests/test_prepare.py), classes missing from a fold's part, one patient written two ways, and the
input surfaces that turn added. Each row is one test below; each failed on the code before it (the
header, the parts and the NFKC rows), or covers a new key.

| item | input                                                                  | outcome                                    |
|------|------------------------------------------------------------------------|--------------------------------------------|
| 1    | published (ucar) folds whose fold 2 has no normal image in training    | split refuses: scenario, protocol, fold,   |
|      |                                                                        | part and class named                       |
| 2    | a splits file whose fold lacks a class in its test part (made by hand) | train refuses before building a network    |
| 3    | S2 without normal patients, under image and patient folds              | refused: scenario and class 'normal'       |
| 4    | one patient as 'P1' and fullwidth 'Ｐ１' in a folder manifest           | refused: both spellings named              |
| 5    | 'P1' and 'P1' + no-break space / ideographic space / inner double space | one patient (normalised alike)             |
| 6    | one patient as 'M001' and 'Ｍ００１' in the Uçar sheet                    | refused: both spellings named              |
| 7    | every reader of a user's table goes through the one normalisation      | only manifests.py parses user tables, and  |
|      |                                                                        | each record list passes check_records      |
| 8    | train.max_steps_per_epoch -1, 'two', 2.5; profile.latency_runs 1       | refused at load, naming the key            |
| 9    | a profile that caps steps but sets 0 epochs                            | refused at load (epochs 1..10000)          |
| 10   | scripts/ucar_release_check.py on a folder without the release          | one line, exit 1, nothing written there    |
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from PIL import Image

from conftest import write_manifest, write_params
from pipeline import prepare, split, train
from pipeline.core import coverage
from pipeline.core.errors import DataError
from pipeline.core.params import ParamsError, apply_profile, from_dict
from pipeline.data.manifests import read_folder, read_ucar
from ucar_fixture import write_ucar_fixture

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_lists_every_item():
    items = {int(line.split("|")[1]) for line in __doc__.splitlines() if line.startswith("| ") and
             line.split("|")[1].strip().isdigit()}
    assert items == set(range(1, 11))


# ---- 1-3: every class in every fold's training and test part -------------------------------------------

PATIENTS = tuple((f"{101 + i}", dx) for i, dx in enumerate(["N", "IBM", "PM", "DM"] * 5))


def test_1_published_folds_without_a_class_in_training_are_refused(tmp_path, monkeypatch):
    release = tmp_path / "release"
    write_ucar_fixture(release, patients=PATIENTS, muscles=("D",))
    # fold 2 of S1: every normal training image moved to validation, as a hand-edited FileList might
    path = release / "FileList/S1_FileList_Fold_2.csv"
    table = pd.read_csv(path)
    table.loc[(table.Class == table.Class[table.Labels == 0].iloc[0]) & (table.Type == "Train"), "Type"] = "Validation"
    table.to_csv(path, index=False)
    write_params(tmp_path, source="ucar", root=str(release), image_size=16)
    raw = (tmp_path / "params.yaml").read_text().replace("protocols:\n  - patient\n  - image", "protocols:\n  - ucar")
    (tmp_path / "params.yaml").write_text(raw)
    monkeypatch.chdir(tmp_path)
    assert prepare.main([]) == 0
    with pytest.raises(DataError) as e:
        split.make_splits(pd.read_csv(tmp_path / "data/processed/manifest.csv", dtype={"patient_id": str}),
                          from_dict(__import__("yaml").safe_load(raw)))
    message = str(e.value)
    assert "scenario S1, protocol ucar, repeat 1, fold 2: the train part has no image of class 'normal'" in message
    assert "images per class: normal: 0, myositis:" in message


def test_2_train_refuses_a_fold_whose_test_part_lacks_a_class():
    rows = pd.DataFrame({"image_id": range(8), "patient_id": [f"P{i}" for i in range(8)],
                         "label": [0, 1, 0, 1, 0, 1, 1, 1], "scenario": "S1", "protocol": "image", "repeat": 1,
                         "fold": 1, "part": ["train", "train", "val", "val", "train", "test", "test", "test"]})
    with pytest.raises(DataError, match=r"fold 1: the test part has no image of class 'normal'"):
        train.fold_data(rows, "S1", "image", 1)
    with pytest.raises(DataError, match=r"the train part has no image of class 'myositis'"):
        coverage.require_parts(rows.assign(label=[0, 0, 0, 1, 0, 1, 1, 1]), "here")


@pytest.mark.parametrize("protocol", ["image", "patient"])
def test_3_a_scenario_without_normal_patients_is_refused(protocol):
    from builders import cohort

    p = from_dict({"split": {"scenarios": ["S2"], "protocols": [protocol], "folds": 2},
                   "train": {"models": ["stanet"], "folds": [1, 2]}})
    with pytest.raises(DataError, match=rf"scenario S2, protocol {protocol}: class 'normal' has 0"):
        split.make_splits(cohort({"IBM": 4, "PM": 4, "DM": 4}), p)


# ---- 4-7: one person, one id -----------------------------------------------------------------------

def _folder(root: Path, ids: list[str]) -> None:
    raw = root / "data/raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, pid in enumerate(ids):
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(raw / name)
        rows.append((name, pid, "N" if pid.endswith("2") else "DM", "D", "R"))   # P2 normal, P1 (any spelling) DM
    write_manifest(raw / "manifest.csv", rows)


def test_4_a_fullwidth_spelling_of_an_id_is_refused_naming_both(tmp_path):
    _folder(tmp_path, ["P1", "P1", "\uff30\uff11", "P2"])    # P1, P1, fullwidth P1, P2
    with pytest.raises(DataError) as e:
        read_folder(tmp_path / "data/raw", "manifest.csv")
    message = str(e.value)
    assert "'P1' (" in message and "'\\uff30\\uff11' (" in message and "the same once normalised" in message
    assert "NFKC" in message


@pytest.mark.parametrize("variant", ["P1\u00a0", "\u3000P1", "P1 "])
def test_5_ids_that_differ_only_in_surrounding_unicode_spaces_are_one_patient(tmp_path, variant):
    _folder(tmp_path, [variant, variant, "P2", "P2"])
    records = read_folder(tmp_path / "data/raw", "manifest.csv")
    assert records.patient_id.tolist() == ["P1", "P1", "P2", "P2"]


def test_5_inner_runs_of_spaces_are_one_space():
    from pipeline.data.identity import normalise

    assert normalise("P\u00a0\u00a001") == normalise("P  01") == normalise("P 01") == "P 01"
    assert normalise("\uff30\uff10\uff11\u3000") == "P01"


def test_6_the_ucar_sheet_refuses_one_patient_in_fullwidth_and_ascii(tmp_path):
    write_ucar_fixture(tmp_path, patients=(("M001", "DM"), ("M002", "N")), muscles=("D",))
    book = openpyxl.load_workbook(tmp_path / "OrginalAndCroppedFileNames.xlsx")
    book.active["A3"] = "\uff2d\uff10\uff10\uff11"    # M001's second row, its id written again in fullwidth
    book.save(tmp_path / "OrginalAndCroppedFileNames.xlsx")
    with pytest.raises(DataError, match=r"'M001' \(.*row 2.*\) and '\\uff2d\\uff10\\uff10\\uff11' \(.*row 3"):
        read_ucar(tmp_path)


def test_7_only_the_sources_parse_a_users_tables_and_every_record_passes_the_normalisation():
    """Who reads patient ids from a file a user wrote: csv and openpyxl are used in pipeline/data/manifests.py
    alone (pandas' read_csv only in pipeline/core/readers.py, which reads what stages wrote, ids already
    normalised), and both of its readers return through check_records, which normalises every id."""
    users = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        text = path.read_text()
        for needle in ("csv.reader", "DictReader", "openpyxl", "read_excel", "pd.read_csv"):
            if needle in text:
                users.setdefault(needle, set()).add(path.name)
    assert users == {"csv.reader": {"manifests.py"}, "openpyxl": {"manifests.py"}, "pd.read_csv": {"readers.py"}}
    tree = ast.parse((ROOT / "pipeline/data/manifests.py").read_text())
    readers = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in ("read_folder", "read_ucar")}
    for name, func in readers.items():
        returns = [n for n in ast.walk(func) if isinstance(n, ast.Return)]
        assert returns and all(isinstance(r.value, ast.Call) and getattr(r.value.func, "id", "") == "check_records"
                               for r in returns), name
    assert set(readers) == {"read_folder", "read_ucar"}


# ---- 8-10: the surfaces this turn added ------------------------------------------------------------

@pytest.mark.parametrize("dotted, value", [("train.max_steps_per_epoch", -1), ("train.max_steps_per_epoch", "two"),
                                           ("train.max_steps_per_epoch", 2.5), ("profile.latency_runs", 1)])
def test_8_bad_new_keys_are_refused_at_load(dotted, value):
    section, key = dotted.split(".")
    with pytest.raises(ParamsError, match=rf"{dotted}: .* is not accepted"):
        from_dict({section: {key: value}})


def test_9_a_profile_capping_steps_with_zero_epochs_is_refused(tmp_path):
    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    before = target.read_bytes()
    profile = tmp_path / "bad.yaml"
    profile.write_text("train:\n  epochs: 0\n  max_steps_per_epoch: 1\n")
    with pytest.raises(ParamsError, match=r"train.epochs: 0 is not accepted; expected an integer in 1..10000"):
        apply_profile(profile, target)
    assert target.read_bytes() == before     # nothing lost


def test_10_the_release_check_names_what_is_missing(tmp_path):
    empty = tmp_path / "not-a-release"
    empty.mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "scripts/ucar_release_check.py"), str(empty), str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert "OrginalAndCroppedFileNames.xlsx" in done.stderr and "not found" in done.stderr
    assert list(empty.iterdir()) == []
