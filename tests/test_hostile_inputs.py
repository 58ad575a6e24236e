"""A corpus of hostile inputs to the prepare stage, each with its expected outcome.

Each case starts from a project where a good `prepare` run has written data/processed and
reports/figures/cohort_examples.png (folder source, 8 images of 4 patients), changes one thing,
and runs the stage. Accepted inputs are checked on the normalised result of `prepare()` (the
stage's core, which writes nothing); refused ones on the DataError message from `main()`. In
every case the earlier outputs must be byte-for-byte unchanged.

| # | input                                               | outcome                                                |
|---|-----------------------------------------------------|--------------------------------------------------------|
| 1 | random bytes named .png                             | refused: not a readable PNG, JPEG, BMP or TIFF image   |
| 2 | PNG cut after 200 bytes                             | refused: corrupt or truncated PNG data                 |
| 3 | JPEG cut in half                                    | refused: corrupt or truncated JPEG data                |
| 4 | GIF (a format outside the list)                     | refused: not a readable PNG, JPEG, BMP or TIFF image   |
| 5 | zero-byte image file                                | refused: empty file (0 bytes)                          |
| 6 | 1x1 image                                           | refused: at least 8 pixels on each side                |
| 7 | PNG header claiming 5000x5000, max_pixels 10^6      | refused before decoding: more than data.max_pixels     |
| 8 | PNG header claiming 20000x20000 (PIL's bomb guard)  | refused: decompression bomb                            |
| 9 | 32-bit float TIFF                                   | refused: pixel format 'F' is not accepted              |
| 10| 16-bit grayscale PNG, value 257*60                  | accepted: scaled by the dtype range to 60              |
| 11| palette PNG, one blue entry                         | accepted: luminance 0.114*255 = 29                     |
| 12| RGBA PNG, white, alpha 0 on the left half           | accepted: transparent half black (0), opaque half 255  |
| 13| manifest with empty rows (blank line and ',,,,')    | accepted: the same 8 images, blank rows skipped        |
| 14| manifest with a UTF-8 byte-order mark               | accepted: the same 8 images                            |
| 15| manifest delimited by ';'                           | accepted: the same 8 images                            |
| 16| manifest delimited by tabs                          | accepted: the same 8 images                            |
| 17| diagnoses ' ibm ', 'Inclusion Body Myositis', 'NORMAL', 'Dermatomyositis' | accepted: IBM, IBM, N, DM        |
| 18| Windows-style path 'sub\\img.png'                   | accepted: path normalised to 'sub/img.png'             |
| 19| path '../outside.png'                               | refused: contains '..'                                 |
| 20| absolute path '/etc/hostname'                       | refused: path is absolute                              |
| 21| link inside the root to a file outside it           | refused: leads outside the data root                   |
| 22| manifest in Latin-1 with a non-ASCII byte           | refused: not UTF-8 text                                |
| 23| muscle 'quadriceps'                                 | refused: muscle not accepted, codes listed             |
| 24| ucar .xlsx without the 'Cropped Image Name' column  | refused: names the column and the headers found        |
| 25| ucar .xlsx muscle cell 'XD'                         | refused: expected R or L + muscle code                 |
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import openpyxl
import pytest
from PIL import Image

from conftest import GOOD_ROWS, png_header_only, snapshot, write_manifest, write_params
from pipeline import prepare
from pipeline.errors import DataError
from pipeline.params import load
from ucar_fixture import write_ucar_fixture

RAW = Path("data/raw")


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Path], None]
    refused: tuple[str, ...] = ()                         # message fragments, if refused
    check: Callable[[np.ndarray, object], None] | None = None   # assertions on prepare(), if accepted


def add_image(name: str, data: bytes | Image.Image, **params) -> Callable[[Path], None]:
    """Put one more image in the data root, listed as patient P1's (normal)."""
    def mutate(root: Path) -> None:
        target = root / RAW / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Image.Image):
            data.save(target)
        else:
            target.write_bytes(data)
        write_manifest(root / RAW / "manifest.csv", GOOD_ROWS + [(name, "P1", "N", "", "")])
        if params:
            write_params(root, source="folder", image_size=16, **params)
    return mutate


def rows_with(path_or_fields) -> Callable[[Path], None]:
    extra = path_or_fields if isinstance(path_or_fields, tuple) else (path_or_fields, "P1", "N", "", "")
    return lambda root: write_manifest(root / RAW / "manifest.csv", GOOD_ROWS + [extra])


def image_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def noise(h: int, w: int, mode: str = "L") -> Image.Image:
    array = np.random.default_rng(0).integers(0, 256, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
    return Image.fromarray(array)


def same_as_good(images: np.ndarray, manifest) -> None:
    assert manifest.path.tolist() == [r[0] for r in GOOD_ROWS]
    assert manifest.diagnosis.tolist() == [r[2] for r in GOOD_ROWS]
    assert manifest.muscle.tolist() == [r[3] for r in GOOD_ROWS] and manifest.side.tolist() == [r[4] for r in GOOD_ROWS]
    assert images.shape == (8, 1, 16, 16)


def last_centre(value: int) -> Callable[[np.ndarray, object], None]:
    def check(images: np.ndarray, manifest) -> None:
        assert len(manifest) == 9 and manifest.diagnosis.iloc[-1] == "N"
        assert abs(int(images[-1, 0, 6:10, 6:10].mean().round()) - value) <= 1
    return check


def rgba_half_transparent() -> Image.Image:
    array = np.full((16, 16, 4), 255, np.uint8)
    array[:, :8, 3] = 0
    return Image.fromarray(array)


def check_rgba(images: np.ndarray, manifest) -> None:
    assert (images[-1, 0, :, :8] == 0).all() and (images[-1, 0, :, 8:] == 255).all()


def link_outside(root: Path) -> None:
    outside = root / "secret.png"
    noise(20, 20).save(outside)
    (root / RAW / "inside.png").symlink_to(outside)
    rows_with("inside.png")(root)


def latin1_manifest(root: Path) -> None:
    text = "path,patient_id,diagnosis\n" + "".join(f"{r[0]},Pat\xe9 {r[1]},{r[2]}\n" for r in GOOD_ROWS)
    (root / RAW / "manifest.csv").write_bytes(text.encode("latin-1"))


def spellings(root: Path) -> None:
    rows = [list(r) for r in GOOD_ROWS]
    rows[2][2], rows[3][2], rows[0][2], rows[1][2] = " ibm ", "Inclusion Body Myositis", "NORMAL", "normal"
    rows[6][2], rows[7][2] = "Dermatomyositis", " dm"
    write_manifest(root / RAW / "manifest.csv", [tuple(r) for r in rows])


def backslash_path(root: Path) -> None:
    (root / RAW / "sub").mkdir()
    noise(20, 30).save(root / RAW / "sub" / "img.png")
    rows_with("sub\\img.png")(root)


def ucar_without_image_column(root: Path) -> None:
    write_ucar_fixture(root / "release", muscles=("D",), drop_column="Cropped Image Name")
    write_params(root, source="ucar", root="release", image_size=16)


def ucar_bad_muscle(root: Path) -> None:
    write_ucar_fixture(root / "release", muscles=("D",))
    path = root / "release" / "OrginalAndCroppedFileNames.xlsx"
    book = openpyxl.load_workbook(path)
    book.active["C3"] = "XD"
    book.save(path)
    write_params(root, source="ucar", root="release", image_size=16)


PNG = image_bytes(noise(40, 40), "PNG")
JPEG = image_bytes(noise(40, 40, "RGB"), "JPEG")
CASES = [
    Case("random bytes", add_image("junk.png", bytes(range(256)) * 4),
         refused=("junk.png", "not a readable PNG, JPEG, BMP or TIFF image")),
    Case("truncated PNG", add_image("cut.png", PNG[:200]), refused=("cut.png", "corrupt or truncated PNG")),
    Case("truncated JPEG", add_image("cut.jpg", JPEG[: len(JPEG) // 2]),
         refused=("cut.jpg", "corrupt or truncated JPEG")),
    Case("GIF", add_image("anim.gif", image_bytes(noise(20, 20), "GIF")),
         refused=("anim.gif", "not a readable PNG, JPEG, BMP or TIFF image")),
    Case("zero-byte file", add_image("empty.png", b""), refused=("empty.png", "empty file (0 bytes)")),
    Case("1x1 image", add_image("dot.png", noise(1, 1)), refused=("dot.png", "1x1 pixels", "at least 8 pixels")),
    Case("huge header", add_image("huge.png", png_header_only(5000, 5000), max_pixels=10**6),
         refused=("huge.png", "5000x5000", "more than data.max_pixels = 1000000", "refused before decoding")),
    Case("PIL bomb", add_image("bomb.png", png_header_only(20000, 20000), max_pixels=10**10),
         refused=("bomb.png", "decompression bomb")),
    Case("float TIFF", add_image("float.tif", Image.fromarray(np.ones((16, 16), np.float32))),
         refused=("float.tif", "pixel format 'F' is not accepted")),
    Case("16-bit PNG", add_image("deep.png", Image.fromarray(np.full((20, 20), 257 * 60, np.uint16))),
         check=last_centre(60)),
    Case("palette PNG", add_image("palette.png", Image.new("RGB", (20, 20), (0, 0, 255)).convert("P")),
         check=last_centre(29)),
    Case("RGBA PNG", add_image("alpha.png", rgba_half_transparent()), check=check_rgba),
    Case("empty rows", lambda root: write_manifest(root / RAW / "manifest.csv",
                                                   GOOD_ROWS[:3] + [None, ",,,,"] + GOOD_ROWS[3:] + [None]),
         check=same_as_good),
    Case("byte-order mark", lambda root: write_manifest(root / RAW / "manifest.csv", GOOD_ROWS, bom=True),
         check=same_as_good),
    Case("';' delimiter", lambda root: write_manifest(root / RAW / "manifest.csv", GOOD_ROWS, delimiter=";"),
         check=same_as_good),
    Case("tab delimiter", lambda root: write_manifest(root / RAW / "manifest.csv", GOOD_ROWS, delimiter="\t"),
         check=same_as_good),
    Case("diagnosis spellings", spellings,
         check=lambda images, m: m.diagnosis.tolist() == ["N", "N", "IBM", "IBM", "PM", "PM", "DM", "DM"] or
         pytest.fail(f"normalised to {m.diagnosis.tolist()}")),
    Case("backslash path", backslash_path,
         check=lambda images, m: m.path.iloc[-1] == "sub/img.png" or pytest.fail(m.path.iloc[-1])),
    Case("'..' path", rows_with("../outside.png"), refused=("line 10", "'../outside.png' contains '..'")),
    Case("absolute path", rows_with("/etc/hostname"), refused=("line 10", "'/etc/hostname' is absolute")),
    Case("link escaping the root", link_outside, refused=("'inside.png' leads outside the data root",)),
    Case("Latin-1 manifest", latin1_manifest, refused=("manifest.csv: not UTF-8 text", "save the CSV as UTF-8")),
    Case("unknown muscle", rows_with(("n1_d.png", "P1", "N", "quadriceps", "R")),
         refused=("muscle 'quadriceps' is not accepted", "D, B, R, G, T, FCR, FDP")),
    Case(".xlsx missing a column", ucar_without_image_column,
         refused=("OrginalAndCroppedFileNames.xlsx row 1", "no column 'Cropped Image Name'", "headers found",
                  r"'Patient \nIdentifier'")),   # header newlines shown as \n
    Case(".xlsx bad muscle cell", ucar_bad_muscle,
         refused=("OrginalAndCroppedFileNames.xlsx row 3", "muscle 'XD' is not accepted", "R or L followed by")),
]


def test_corpus_is_large_enough_and_documented():
    assert len(CASES) >= 12
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(bool(c.refused) != (c.check is not None) for c in CASES)   # one expected outcome each
    assert __doc__.count("\n| ") - 1 == len(CASES)                          # the table lists every case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(data_project, case):
    before = snapshot(data_project)
    case.mutate(data_project)
    if case.refused:
        with pytest.raises(DataError) as info:
            prepare.main([])
        for fragment in case.refused:
            assert fragment in str(info.value), (fragment, str(info.value))
    else:
        images, manifest = prepare.prepare(load())
        case.check(images, manifest)
    assert snapshot(data_project) == before
