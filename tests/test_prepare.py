"""The prepare stage: contract outputs for every source, the folder and ucar adapters, bad input.

Every bad input of the issue's list is refused with a DataError naming the file, row or value,
and leaves the outputs of the previous good run byte-for-byte as they were.
"""
from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import GOOD_ROWS, png_header_only, snapshot, write_manifest, write_params
from pipeline import prepare
from pipeline.core.cli import run_stage
from pipeline.core.errors import DataError
from pipeline.core.params import load
from pipeline.data import imageio
from pipeline.data.imageio import fit_square, read_image, read_input_file
from pipeline.data.manifests import read_ucar
from pipeline.data.ucar_folds import read_ucar_folds
from ucar_fixture import write_ucar_fixture


def outputs(root: Path) -> tuple[np.ndarray, pd.DataFrame]:
    images = np.load(root / "data/processed/images.npy")
    manifest = pd.read_csv(root / "data/processed/manifest.csv", dtype=str, keep_default_na=False)
    return images, manifest


# --- synthetic ---------------------------------------------------------------------------------

def test_synthetic_source_writes_the_contract(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, source="synthetic", image_size=24, channels=3,
                 synthetic={"patients": 4, "images_per_side": 1, "render_size": 48})
    monkeypatch.chdir(tmp_path)
    assert prepare.main([]) == 0
    images, manifest = outputs(tmp_path)
    assert images.dtype == np.uint8 and images.shape == (4 * 14, 3, 24, 24)
    assert (images[:, 0] == images[:, 2]).all()                       # gray replicated to 3 channels
    assert list(manifest.columns) == prepare.MANIFEST_COLUMNS
    assert manifest.image_id.astype(int).tolist() == list(range(56))
    assert set(manifest.source) == {"synthetic"} and set(manifest.diagnosis) == {"N", "IBM", "PM", "DM"}
    assert manifest.sha256.str.fullmatch("[0-9a-f]{64}").all() and manifest.sha256.is_unique
    assert (tmp_path / "reports/figures/cohort_examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "56 images of 4 patients (N 1, IBM 1, PM 1, DM 1)" in capsys.readouterr().out


def test_synthetic_sha256_is_of_the_rendered_image(tmp_path, monkeypatch):
    write_params(tmp_path, source="synthetic", image_size=48, synthetic={"patients": 4, "images_per_side": 1,
                                                                         "render_size": 48})
    monkeypatch.chdir(tmp_path)
    images, manifest = prepare.prepare(load())
    assert [hashlib.sha256(im[0].tobytes()).hexdigest() for im in images[:5]] == manifest.sha256[:5].tolist()


# --- ucar ----------------------------------------------------------------------------------------

def test_ucar_source_reads_the_release_layout(tmp_path, monkeypatch):
    written = write_ucar_fixture(tmp_path / "release", size=(40, 30))
    write_params(tmp_path, source="ucar", root=str(tmp_path / "release"), image_size=16)
    monkeypatch.chdir(tmp_path)
    assert prepare.main([]) == 0
    images, manifest = outputs(tmp_path)
    expected = pd.DataFrame(written["images"])
    assert len(manifest) == len(expected) == images.shape[0]
    for column in ("source_name", "path", "patient_id", "diagnosis", "muscle", "side"):
        assert manifest[column].tolist() == expected[column].tolist(), column
    assert set(manifest.source) == {"ucar"}
    # patient ids were written only on each patient's first row and carried forward
    assert manifest.groupby("patient_id").size().tolist() == [6] * 6
    assert manifest.sha256[0] == hashlib.sha256((tmp_path / "release/images/1.PNG").read_bytes()).hexdigest()
    # 40 wide x 30 deep: padded at the bottom, so the last processed rows are black
    assert images[:, 0, -3:, :].max() == 0 and images[:, 0, :8, :].mean() > 50


def test_ucar_columns_are_matched_by_their_title_exactly(tmp_path):
    """The release's header row (tests/ucar_fixture.py HEADERS, cell for cell): "Muscle\nD - deltoid..." and
    "Muscle Strength\n(1 - 10)" are two columns, matched by the first line of the cell; the real first row's
    shapes (a string id, a 14-digit 2D image, strength '10') load."""
    from pipeline.data.manifests import column_title, read_ucar
    from ucar_fixture import HEADERS

    assert [column_title(h) for h in HEADERS][2:7] == ["muscle", "age", "sex", "muscle strength", "diagnosis"]
    written = write_ucar_fixture(tmp_path, patients=(("M001", "DM"), ("M002", "N")), muscles=("D",))
    assert written["headers"] == HEADERS
    records = read_ucar(tmp_path)
    assert records.patient_id.tolist() == ["M001", "M001", "M002", "M002"]
    assert records.muscle.tolist() == ["D"] * 4 and records.diagnosis.tolist() == ["DM", "DM", "N", "N"]


def test_two_ucar_columns_with_one_title_are_refused(tmp_path):
    import openpyxl

    from pipeline.data.manifests import read_ucar

    write_ucar_fixture(tmp_path, muscles=("D",))
    book = openpyxl.load_workbook(tmp_path / "OrginalAndCroppedFileNames.xlsx")
    book.active["F1"] = "Muscle\n(side)"     # Muscle Strength retitled: now two columns titled Muscle
    book.save(tmp_path / "OrginalAndCroppedFileNames.xlsx")
    with pytest.raises(DataError, match=r"row 1: 2 columns are titled 'Muscle'.*rename or remove all but one"):
        read_ucar(tmp_path)


@pytest.mark.parametrize("scenario", ["S1", "S2", "S3", "S4"])
def test_read_ucar_folds_returns_the_published_folds(tmp_path, scenario):
    written = write_ucar_fixture(tmp_path, muscles=("D",))
    folds = read_ucar_folds(tmp_path, scenario)
    assert list(folds.columns) == ["source_name", "fold", "part"]
    assert list(folds.itertuples(index=False, name=None)) == written["folds"][scenario]
    published = pd.DataFrame(written["folds"][scenario], columns=["source_name", "fold", "part"])
    for k in range(1, 6):
        test = folds[(folds.fold == k) & (folds.part == "test")].source_name
        assert set(test) == set(published[(published.fold == k) & (published.part == "test")].source_name)
    assert folds[folds.part == "test"].source_name.is_unique    # every image tested once


def test_split_uses_each_scenarios_published_folds(tmp_path, monkeypatch):
    """The ucar adapter through prepare and split, scenarios S1-S4 in one run: each scenario's test
    sets are exactly its own published FileList test sets."""
    from pipeline import split

    # three muscles: six images of the one PM and DM patient each, so that every published fold's training
    # and test parts hold every class (split refuses a fold without one)
    written = write_ucar_fixture(tmp_path / "release", muscles=("D", "B", "FCR"))
    write_params(tmp_path, source="ucar", root=str(tmp_path / "release"), image_size=16)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["split"] = {"scenarios": ["S1", "S2", "S3", "S4"], "protocols": ["ucar"], "folds": 5}
    raw["train"]["folds"] = [1, 2, 3, 4, 5]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert prepare.main([]) == 0 and split.main([]) == 0
    manifest = pd.read_csv("data/processed/manifest.csv", dtype=str)
    name_of = dict(zip(manifest["image_id"].astype(int), manifest["source_name"]))
    for scenario in ("S1", "S2", "S3", "S4"):
        splits = pd.read_csv(f"data/splits/{scenario}.csv")
        published = pd.DataFrame(written["folds"][scenario], columns=["source_name", "fold", "part"])
        for k in range(1, 6):
            ours = {name_of[i] for i in splits[(splits.fold == k) & (splits.part == "test")]["image_id"]}
            theirs = set(published[(published.fold == k) & (published.part == "test")]["source_name"])
            assert ours == theirs and ours, (scenario, k)


def test_read_ucar_folds_refuses_missing_and_malformed_files(tmp_path):
    write_ucar_fixture(tmp_path, muscles=("D",))
    (tmp_path / "FileList/S2_FileList_Fold_4.csv").unlink()
    with pytest.raises(DataError, match="S2_FileList_Fold_4.csv not found"):
        read_ucar_folds(tmp_path, "S2")
    path = tmp_path / "FileList/S1_FileList_Fold_2.csv"
    path.write_text(path.read_text().replace("Validation", "Holdout", 1))
    with pytest.raises(DataError, match=r"S1_FileList_Fold_2.csv line \d+ .*Type 'Holdout' is not accepted"):
        read_ucar_folds(tmp_path, "S1")
    path = tmp_path / "FileList/S3_FileList_Fold_1.csv"
    path.write_text(path.read_text().replace("Type", "Kind", 1))
    with pytest.raises(DataError, match=r"S3_FileList_Fold_1.csv: missing column\(s\) type"):
        read_ucar_folds(tmp_path, "S3")


# --- folder: formats and normalisation ---------------------------------------------------------

def test_folder_source_accepts_formats_depths_and_modes(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    flat = lambda h, w, v, dtype=np.uint8: np.full((h, w), v, dtype=dtype)  # noqa: E731
    files = {
        "gray8.png": (Image.fromarray(flat(30, 40, 200)), 200),
        "gray16.png": (Image.fromarray(flat(40, 30, 257 * 100, np.uint16)), 100),   # 16-bit: v * 255 / 65535
        "rgb.jpg": (Image.new("RGB", (50, 50), (255, 0, 0)), 76),                    # luminance 0.299 * 255
        "rgba.png": (Image.new("RGBA", (20, 20), (255, 255, 255, 0)), 0),            # transparent: no echo
        "palette.png": (Image.new("RGB", (24, 16), (0, 0, 255)).convert("P"), 29),   # 0.114 * 255
        "rgb.bmp": (Image.new("RGB", (64, 48), (0, 255, 0)), 150),                   # 0.587 * 255
        "gray16.tif": (Image.fromarray(flat(33, 33, 65535, np.uint16)), 255),
        "gray8.tiff": (Image.fromarray(flat(100, 12, 10)), 10),
    }
    rows = []
    for i, (name, (image, _)) in enumerate(files.items()):
        image.save(raw / name)
        rows.append((name, f"P{i % 4}", ["N", "IBM", "PM", "DM"][i % 4], "", ""))
    write_manifest(raw / "manifest.csv", rows)
    write_params(tmp_path, source="folder", root="raw", image_size=32)
    monkeypatch.chdir(tmp_path)
    images, manifest = prepare.prepare(load())
    assert images.shape == (len(files), 1, 32, 32)
    for i, (name, (_, value)) in enumerate(files.items()):
        centre = int(images[i, 0, 14:18, 14:18].mean().round())
        assert abs(centre - value) <= (3 if name.endswith(".jpg") else 1), (name, centre, value)
    assert manifest.source_name.tolist() == list(files)


def test_three_channels_keep_colour_and_replicate_gray(tmp_path):
    Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "red.png")
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(tmp_path / "gray.png")
    red, _ = read_image(tmp_path / "red.png", max_pixels=10**6, channels=3)
    gray, _ = read_image(tmp_path / "gray.png", max_pixels=10**6, channels=3)
    assert red.shape == (16, 16, 3) and tuple(red[0, 0]) == (255, 0, 0)
    assert gray.shape == (16, 16, 3) and (gray == 90).all()


def test_fit_square_pads_instead_of_stretching():
    wide = np.full((20, 40), 255, np.uint8)                     # depth 20, width 40
    out = fit_square(wide, 40)
    assert (out[:20] == 255).all() and (out[20:] == 0).all()    # padded below: deeper than the scan
    tall = np.full((40, 20), 255, np.uint8)
    out = fit_square(tall, 40)
    assert (out[:, 10:30] == 255).all() and (out[:, :10] == 0).all() and (out[:, 30:] == 0).all()
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert np.abs(fit_square(checker, 32).astype(int) - 128).max() <= 1   # area averaging, no aliasing


# --- bad input: refused with a named reason, earlier outputs untouched --------------------------

def _rewrite(rows):
    return lambda root: write_manifest(root / "data/raw/manifest.csv", rows)


def _replace_image(name, data: bytes):
    return lambda root: (root / "data/raw" / name).write_bytes(data)


def _save_image(name, array):
    def mutate(root):
        Image.fromarray(array).save(root / "data/raw" / name)
        _rewrite(GOOD_ROWS + [(name, "P1", "N", "", "")])(root)
    return mutate


def _params(**data):
    return lambda root: write_params(root, **{"source": "folder", "image_size": 16, **data})


def _ucar_without(column):
    def mutate(root):
        write_ucar_fixture(root / "release", muscles=("D",), drop_column=column)
        write_params(root, source="ucar", root="release", image_size=16)
    return mutate


def _bomb(root):
    (root / "data/raw/bomb.png").write_bytes(png_header_only(20000, 20000))
    _rewrite(GOOD_ROWS + [("bomb.png", "P1", "N", "", "")])(root)
    write_params(root, source="folder", image_size=16, max_pixels=10**10)   # leave it to PIL's own guard


BAD_INPUTS = {
    "missing manifest column": (lambda root: write_manifest(
        root / "data/raw/manifest.csv", [r[:2] for r in GOOD_ROWS], header=("path", "patient_id")),
        ["manifest.csv: missing column(s) diagnosis", "the header row has ['path', 'patient_id']"]),
    "unknown diagnosis": (_rewrite(GOOD_ROWS[:2] + [("ibm2_d.png", "P2", "ALS", "D", "R")]),
                          ["manifest.csv line 4 (header = line 1)", "diagnosis 'ALS' is not accepted",
                           "inclusion body myositis"]),
    "corrupt image": (_replace_image("pm3_d.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),
                      ["pm3_d.png [data/raw/manifest.csv line 6", "corrupt or truncated"]),
    "truncated image": (lambda root: (root / "data/raw/dm4_d.png").write_bytes(
        (root / "data/raw/dm4_d.png").read_bytes()[:200]), ["dm4_d.png", "corrupt or truncated PNG"]),
    "zero-byte file": (_replace_image("n1_fdp.png", b""), ["n1_fdp.png", "empty file (0 bytes)"]),
    "patient with two diagnoses": (_rewrite(GOOD_ROWS[:1] + [("n1_fdp.png", "P1", "DM", "FDP", "L")]),
                                   ["patient 'P1' has more than one diagnosis", "N at", "DM at", "line 3"]),
    "duplicate paths": (_rewrite(GOOD_ROWS + [("./n1_d.png", "P1", "N", "D", "R")]),
                        ["'n1_d.png' is listed more than once", "line 2", "line 10"]),
    "empty dataset": (_rewrite([None, ",,,,"]), ["manifest.csv: no images listed"]),
    "missing data root": (_params(root="no/such/dir"), ["data root no/such/dir does not exist", "data.root"]),
    "missing manifest": (lambda root: (root / "data/raw/manifest.csv").unlink(),
                         ["manifest data/raw/manifest.csv not found", "path, patient_id, diagnosis"]),
    "absolute path": (_rewrite(GOOD_ROWS + [("/etc/passwd", "P1", "N", "", "")]),
                      ["line 10", "'/etc/passwd' is absolute"]),
    "path escaping the root": (_rewrite(GOOD_ROWS + [("../../params.yaml", "P1", "N", "", "")]),
                               ["line 10", "contains '..'", "inside the data root"]),
    "huge header": (lambda root: (_replace_image("ibm2_fdp.png", png_header_only(5000, 5000))(root),
                                  _params(max_pixels=1_000_000)(root)),
                    ["ibm2_fdp.png", "5000x5000 = 25000000 pixels", "data.max_pixels = 1000000",
                     "refused before decoding"]),
    "decompression bomb": (_bomb, ["bomb.png", "decompression bomb"]),
    "1x1 image": (_save_image("dot.png", np.zeros((1, 1), np.uint8)), ["dot.png", "1x1 pixels", "at least 8"]),
    "tiny image": (_save_image("strip.png", np.zeros((5, 300), np.uint8)), ["strip.png", "300x5", "at least 8"]),
    "xlsx missing a column": (_ucar_without("Diagnosis\nD - Dermatomyositis\nP - Polymyositis\nI - IBM\nN - normal"),
                              ["OrginalAndCroppedFileNames.xlsx row 1", "no column 'Diagnosis'",
                               "headers found", "Cropped Image Name"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_and_earlier_outputs_kept(data_project, case):
    mutate, fragments = BAD_INPUTS[case]
    before = snapshot(data_project)
    assert len(before) == 3
    mutate(data_project)
    with pytest.raises(DataError) as info:
        prepare.main([])
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert snapshot(data_project) == before
    assert not list((data_project / "data").glob(".processed*"))      # no temporary left behind


def test_stage_prints_the_error_and_exits_2(data_project, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["prepare"])
    (data_project / "data/raw/n1_d.png").write_bytes(b"")
    with pytest.raises(SystemExit) as info:
        run_stage(prepare.main)
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: data/raw/n1_d.png [data/raw/manifest.csv line 2")


def test_a_good_rerun_replaces_the_outputs(data_project):
    before = snapshot(data_project)
    # a mirror image of n1_d.png (an identical copy would be refused: pipeline/data/duplicates.py)
    Image.open(data_project / "data/raw/n1_d.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        data_project / "data/raw/extra.png")
    _rewrite(GOOD_ROWS + [("extra.png", "P1", "normal", "", "")])(data_project)
    assert prepare.main([]) == 0
    images, manifest = outputs(data_project)
    assert len(manifest) == 9 and manifest.diagnosis.iloc[-1] == "N" and manifest.muscle.iloc[-1] == ""
    assert (images[8] == images[0][..., ::-1]).all() and snapshot(data_project) != before


# --- reading files: regular files only, bounded memory ------------------------------------------

def test_read_input_file_refuses_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "pipe")                  # opening it would block until a writer came
    (tmp_path / "dir").mkdir()
    (tmp_path / "zero").symlink_to("/dev/zero")   # never ends
    for name, kind in [("pipe", "a named pipe (FIFO)"), ("dir", "a directory"), ("zero", "a character device")]:
        with pytest.raises(DataError, match=rf"^{name}: is {kind.replace('(', '.').replace(')', '.')}, not a regular"):
            read_input_file(tmp_path / name, max_bytes=100, at=name)
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(DataError, match="101 bytes, more than the 100 accepted for one file; refused before reading"):
        read_input_file(tmp_path / "big", max_bytes=100, at="big")
    assert read_input_file(tmp_path / "big", max_bytes=101, at="big") == b"x" * 101


def test_image_files_are_bounded_by_max_pixels(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "METADATA_BYTES", 0)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "padded.png").write_bytes((tmp_path / "ok.png").read_bytes() + b"\0" * 20_000)
    assert read_image(tmp_path / "ok.png", max_pixels=1600, channels=1)[0].shape == (40, 40)
    with pytest.raises(DataError, match=r"padded.png: \d+ bytes, more than the 12800 accepted .*data.max_pixels = 1600"):
        read_image(tmp_path / "padded.png", max_pixels=1600, channels=1)


def test_max_pixels_bounds_the_padded_square(tmp_path):
    Image.fromarray(np.zeros((10, 1000), np.uint8)).save(tmp_path / "strip.png")      # 10^4 pixels, square 10^6
    assert read_image(tmp_path / "strip.png", max_pixels=10**6, channels=3)[0].shape == (10, 1000, 3)
    with pytest.raises(DataError, match="10 = 10000 pixels, padded to a 1000x1000 square = 1000000 pixels, more than "
                                        "data.max_pixels = 999999"):
        read_image(tmp_path / "strip.png", max_pixels=10**6 - 1, channels=1)


def test_16_bit_scaling_is_exact_and_lean(tmp_path):
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(values).save(tmp_path / "all.png")
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)   # the documented formula
    tracemalloc.start()
    gray, _ = read_image(tmp_path / "all.png", max_pixels=10**6, channels=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (gray == expected).all()
    assert peak < 10 * values.size     # file + 32-bit integers; the float64 chain took over 30 bytes a pixel
    clipped = imageio._to_uint8(Image.fromarray(np.array([[-5, 70000, 257 * 3]] * 8, np.int32)), 1, "")
    assert clipped[0].tolist() == [0, 255, 3]


def test_transparency_is_composited_over_black_exactly():
    value, alpha = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    rgba = Image.fromarray(np.stack([value, 255 - value, value // 2, alpha], axis=-1), "RGBA")
    reference = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    assert (imageio._to_uint8(rgba, 3, "") == np.asarray(reference)).all()
    assert (imageio._to_uint8(rgba, 1, "") == np.asarray(reference.convert("L"))).all()


def test_jpeg_orientation_tag_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotate 90 degrees clockwise to display
    array = np.zeros((20, 40), np.uint8)
    array[:, :10] = 255                                # bright on the left edge
    Image.fromarray(array).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    gray, _ = read_image(tmp_path / "turned.jpg", max_pixels=10**6, channels=1)
    assert gray.shape == (40, 20) and gray[:10].mean() > 200 and gray[-10:].mean() < 50   # now on top


def test_ucar_image_names_match_exactly_before_ignoring_case(tmp_path):
    write_ucar_fixture(tmp_path, muscles=("D",))
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "images/1.png")    # beside 1.PNG
    records = read_ucar(tmp_path)
    assert records.path.iloc[0] == "images/1.PNG"
    book_path = tmp_path / "OrginalAndCroppedFileNames.xlsx"
    book = openpyxl.load_workbook(book_path)
    book.active["J2"] = "1.Png"
    book.save(book_path)
    with pytest.raises(DataError, match=r"row 2 .*image '1.Png' matches '1.PNG', '1.png' .* differ only in case"):
        read_ucar(tmp_path)
