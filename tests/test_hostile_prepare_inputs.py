"""A corpus of hostile inputs to the prepare stage, each with its expected outcome.

Each case starts from a project where a good `prepare` run has written data/processed and
reports/figures/cohort_examples.png (folder source, 8 images of 4 patients), changes one thing,
and runs the stage. Accepted inputs are checked on the normalised result of `prepare()` (the
stage's core, which writes nothing); refused ones on the DataError message from `main()`. In
every case the earlier outputs must be byte-for-byte unchanged. A few refused cases also run as
`python -m pipeline.prepare` in a subprocess: exit code 2, one `error:` line, no traceback.

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
| 23| muscle 'quadriceps'                                 | accepted: kept as 'quadriceps' (descriptive metadata)  |
| 24| ucar .xlsx without the 'Cropped Image Name' column  | refused: names the column and the headers found        |
| 25| ucar .xlsx muscle cell 'XD'                         | refused: expected R or L + muscle code                 |
| 26| ucar Patient Identifier A4 a formula, no saved value| refused: names cell A4, says to save it in Excel       |
| 27| ucar Patient Identifier A4 a formula, value saved   | accepted: the saved value, patients kept apart         |
| 28| ucar Diagnosis G5 a formula, no saved value         | refused: names cell G5                                 |
| 29| ucar Patient Identifier A4 saved as the error #N/A  | refused: names cell A4 and the error                   |
| 30| named pipe (FIFO) named as an image                 | refused before opening: is a named pipe (FIFO)         |
| 31| directory named as an image                         | refused: is a directory                                |
| 32| Unix socket named as an image                       | refused: is a socket                                   |
| 33| link to itself (a loop) named as an image           | refused: cannot be followed                            |
| 34| image missing from the data root                    | refused while reading the manifest: not found          |
| 35| wide strip 100000x10, max_pixels 10^8               | refused before decoding: padded square 10^10 pixels    |
| 36| tall strip 10x100000, max_pixels 10^8               | refused before decoding: padded square 10^10 pixels    |
| 37| ucar images/ link to /dev/zero                      | refused: leads outside the data root                   |
| 38| ucar images/ link to an image outside the root      | refused: leads outside the data root                   |
| 39| ucar images/ entry that is a named pipe             | refused before opening: is a named pipe (FIFO)         |
| 40| NUL byte in a manifest path                         | refused: line 10, a NUL byte                           |
| 41| NUL bytes of a UTF-16 manifest without a BOM        | refused: line 1, a NUL byte, save as CSV UTF-8         |
| 42| 200 KB manifest field                               | refused: line 10, field longer than the limit          |
| 43| manifest with lone CR line ends (old Mac CSV)       | accepted: the same 8 images                            |
| 44| diagnoses 'I', 'p', 'D', 'n' (the release's codes)  | accepted: IBM, PM, DM, N                               |
| 45| muscles 'Vastus   lateralis', ' Deltoid ', 'fcr'    | accepted: 'Vastus lateralis', D, FCR                   |
| 46| muscle with a control character (BEL)               | refused: control character                             |
| 47| muscle of 101 characters                            | refused: 101 characters long                           |
| 48| the same file under two patients                    | refused: both rows, same pixels, a leak               |
| 49| the same file twice for one patient                 | refused: both rows, not a second acquisition           |
| 50| one path listed 2000 times                          | refused: 5 places shown, '... and 1995 more'           |
| 51| manifest header of 5000 unknown columns             | refused: 20 shown, '... and 4980 more'                 |
| 52| patient 'Pé01' in Unicode NFC and in NFD            | refused: both spellings named (issue 24, item 4)       |
| 53| patient 'P1' and 'P1' + a zero-width space          | refused: both spellings named (item 4)                 |
| 54| every id of P1 written 'P\u200b1'                   | accepted: normalised to 'P1' (item 4)                  |
| 55| two columns named patient_id                        | refused: columns 2 and 4, both 'patient_id' (item 5)   |
| 56| columns 'patient_id' and 'Patient_ID\u200b'         | refused: one name after normalising (item 5)           |
| 57| same pixels, another PNG compression, other patient | refused: same pixels under different patients (item 6) |
| 58| two byte-identical pairs                            | refused: both groups listed in one message (item 6)    |
| 59| same pixels twice for a patient, keep-one           | accepted: the copy dropped, 8 images (item 6)          |
| 60| same pixels twice for a patient, allow              | accepted: both kept, 9 images (item 6)                 |
| 61| two-page TIFF                                       | refused: holds 2 pages (item 10)                       |
| 62| 12-bit data in a 16-bit PNG                         | accepted, dark as documented (item 10; warned)         |
"""
from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import openpyxl
import pytest
from PIL import Image

from conftest import GOOD_ROWS, png_header_only, snapshot, write_manifest, write_params
from pipeline import prepare
from pipeline.core.errors import DataError
from pipeline.core.params import load
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


# two normal patients in a row: merging them, the silent failure, breaks no other check
UCAR_PATIENTS = (("101", "N"), ("102", "N"), ("103", "IBM"), ("104", "PM"), ("105", "DM"))


def ucar_formula(cell: str, formula: str, saved: str | None = None, error: bool = False) -> Callable[[Path], None]:
    """A ucar release whose `cell` holds `formula`, with `saved` as the value Excel stored (None: none stored,
    as openpyxl writes formulas)."""
    def mutate(root: Path) -> None:
        write_ucar_fixture(root / "release", patients=UCAR_PATIENTS, muscles=("D",))   # rows 2-3: 101, 4-5: 102, ...
        path = root / "release" / "OrginalAndCroppedFileNames.xlsx"
        book = openpyxl.load_workbook(path)
        book.active[cell] = f"={formula}"
        book.save(path)
        if saved is not None:   # store a value with the formula, as Excel does on saving
            with zipfile.ZipFile(path) as z:
                parts = {name: z.read(name) for name in z.namelist()}
            xml = parts["xl/worksheets/sheet1.xml"].decode()
            kind = ' t="e"' if error else ""
            xml, n = re.subn(rf'<c r="{cell}"[^>]*>.*?</c>', f'<c r="{cell}"{kind}><f>{formula}</f><v>{saved}</v></c>', xml)
            assert n == 1
            parts["xl/worksheets/sheet1.xml"] = xml.encode()
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                for name, data in parts.items():
                    z.writestr(name, data)
        write_params(root, source="ucar", root="release", image_size=16)
    return mutate


def patients_apart(images: np.ndarray, manifest) -> None:
    assert manifest.groupby("patient_id", sort=False).size().to_dict() == {p: 2 for p, _ in UCAR_PATIENTS}


def ucar_image_replaced(make: Callable[[Path, Path], None]) -> Callable[[Path], None]:
    """A ucar release whose images/2.PNG (patient 101's second row) is replaced by make(root, path)."""
    def mutate(root: Path) -> None:
        write_ucar_fixture(root / "release", muscles=("D",))
        target = root / "release" / "images" / "2.PNG"
        target.unlink()
        make(root, target)
        write_params(root, source="ucar", root="release", image_size=16)
    return mutate


def outside_image(root: Path, target: Path) -> None:
    noise(20, 20).save(root / "outside.png")
    target.symlink_to(root / "outside.png")


def special_file(make: Callable[[Path], None], name: str = "special.png") -> Callable[[Path], None]:
    """`make(path)` creates a non-regular file at data/raw/<name>, listed as patient P1's image."""
    def mutate(root: Path) -> None:
        make(root / RAW / name)
        rows_with(name)(root)
    return mutate


def unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.path.relpath(path))   # relative: the socket path limit is 108 bytes; the file stays after close


def self_link(path: Path) -> None:
    path.symlink_to(path.name)


def strip(height: int, width: int) -> Image.Image:
    return Image.fromarray(np.full((height, width), 128, np.uint8))


def utf16_manifest(root: Path) -> None:
    text = "path,patient_id,diagnosis\n" + "".join(f"{r[0]},{r[1]},{r[2]}\n" for r in GOOD_ROWS)
    (root / RAW / "manifest.csv").write_bytes(text.encode("utf-16-le"))


def lone_cr_manifest(root: Path) -> None:
    write_manifest(root / RAW / "manifest.csv", GOOD_ROWS)
    path = root / RAW / "manifest.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))


def with_column(column: int, values: list[str]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        rows = [list(r) for r in GOOD_ROWS]
        for row, value in zip(rows, values):
            row[column] = value
        write_manifest(root / RAW / "manifest.csv", [tuple(r) for r in rows])
    return mutate


def copied_image(patient: str) -> Callable[[Path], None]:
    """data/raw/copy.png: the bytes of n1_d.png (patient P1's), listed for `patient`."""
    def mutate(root: Path) -> None:
        shutil.copy(root / RAW / "n1_d.png", root / RAW / "copy.png")
        rows_with(("copy.png", patient, "N" if patient == "P1" else "DM", "", ""))(root)
    return mutate


def same_path_many_times(root: Path) -> None:
    write_manifest(root / RAW / "manifest.csv", GOOD_ROWS + [("n1_d.png", "P1", "N", "D", "R")] * 1999)


def two_spellings(first: str, second: str) -> Callable[[Path], None]:
    """P1's two images listed under `first` and `second` (spellings of one id)."""
    return with_column(1, [first, second])


def header_of(header: tuple[str, ...]) -> Callable[[Path], None]:
    return lambda root: write_manifest(root / RAW / "manifest.csv", [r + ("x",) for r in GOOD_ROWS], header=header)


def recompressed(patient: str, **params) -> Callable[[Path], None]:
    """data/raw/copy.png: n1_d.png's pixels saved with another compression level (other bytes), listed for `patient`."""
    def mutate(root: Path) -> None:
        with Image.open(root / RAW / "n1_d.png") as im:
            im.save(root / RAW / "copy.png", compress_level=0)
        assert (root / RAW / "copy.png").read_bytes() != (root / RAW / "n1_d.png").read_bytes()
        rows_with(("copy.png", patient, "N" if patient == "P1" else "DM", "", ""))(root)
        if params:
            write_params(root, source="folder", image_size=16, **params)
    return mutate


def two_copied_pairs(root: Path) -> None:
    shutil.copy(root / RAW / "n1_d.png", root / RAW / "copy1.png")
    shutil.copy(root / RAW / "dm4_d.png", root / RAW / "copy4.png")
    write_manifest(root / RAW / "manifest.csv",
                   GOOD_ROWS + [("copy1.png", "P1", "N", "", ""), ("copy4.png", "P4", "DM", "", "")])


def two_pages() -> bytes:
    buffer = io.BytesIO()
    noise(20, 20).save(buffer, format="TIFF", save_all=True, append_images=[noise(20, 20)])
    return buffer.getvalue()


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
    Case("unknown muscle", lambda root: write_manifest(root / RAW / "manifest.csv",
                                                       [("n1_d.png", "P1", "N", "quadriceps", "R")] + GOOD_ROWS[1:]),
         check=lambda images, m: m.muscle.iloc[0] == "quadriceps" or pytest.fail(m.muscle.iloc[0])),
    Case(".xlsx missing a column", ucar_without_image_column,
         refused=("OrginalAndCroppedFileNames.xlsx row 1", "no column 'Cropped Image Name'", "headers found",
                  r"'Muscle Strength\n(1 - 10)'")),   # header newlines shown as \n
    Case(".xlsx bad muscle cell", ucar_bad_muscle,
         refused=("OrginalAndCroppedFileNames.xlsx row 3", "muscle 'XD' is not accepted", "R or L followed by")),
    Case(".xlsx formula without a saved value", ucar_formula("A4", "100+2"),
         refused=("OrginalAndCroppedFileNames.xlsx cell A4 (Patient Identifier)", "'=100+2' was saved without its value",
                  "save it", "or type the value")),
    Case(".xlsx formula with a saved value", ucar_formula("A4", "100+2", saved="102"), check=patients_apart),
    Case(".xlsx diagnosis formula without a value", ucar_formula("G5", "G4"),
         refused=("OrginalAndCroppedFileNames.xlsx cell G5 (Diagnosis)", "saved without its value")),
    Case(".xlsx error value", ucar_formula("A4", "NA()", saved="#N/A", error=True),
         refused=("OrginalAndCroppedFileNames.xlsx cell A4 (Patient Identifier)", "spreadsheet error '#N/A'")),
    Case("named pipe", special_file(os.mkfifo),
         refused=("line 10", "image 'special.png' is a named pipe (FIFO)",
                  "expected a regular image file")),
    Case("directory named as an image", special_file(os.mkdir, "folder.png"),
         refused=("line 10", "image 'folder.png' is a directory", "expected a regular image file")),
    Case("socket", special_file(unix_socket), refused=("line 10", "image 'special.png' is a socket")),
    Case("link loop", special_file(self_link), refused=("line 10", "path 'special.png' cannot be followed")),
    Case("missing image", rows_with("nowhere.png"), refused=("line 10", "image 'nowhere.png' not found")),
    Case("wide strip", add_image("wide.png", strip(10, 100000)),
         refused=("wide.png", "100000x10 = 1000000 pixels, padded to a 100000x100000 square = 10000000000 pixels",
                  "data.max_pixels = 100000000", "refused before decoding")),
    Case("tall strip", add_image("tall.png", strip(100000, 10)),
         refused=("tall.png", "10x100000", "padded to a 100000x100000 square", "data.max_pixels = 100000000")),
    Case("ucar link to /dev/zero", ucar_image_replaced(lambda root, target: target.symlink_to("/dev/zero")),
         refused=("OrginalAndCroppedFileNames.xlsx row 3", "'images/2.PNG' leads outside the data root")),
    Case("ucar link out of the root", ucar_image_replaced(outside_image),
         refused=("OrginalAndCroppedFileNames.xlsx row 3", "'images/2.PNG' leads outside the data root")),
    Case("ucar named pipe", ucar_image_replaced(lambda root, target: os.mkfifo(target)),
         refused=("OrginalAndCroppedFileNames.xlsx row 3", "'images/2.PNG' is a named pipe (FIFO)")),
    Case("NUL in a path", rows_with("n1_\x00d.png"), refused=("manifest.csv line 10", "a NUL byte")),
    Case("UTF-16 manifest", utf16_manifest, refused=("manifest.csv line 1", "a NUL byte", "save it as CSV UTF-8")),
    Case("200 KB field", rows_with("x" * 200_000 + ".png"),
         refused=("manifest.csv line 10", "a field longer than 131072 characters")),
    Case("lone CR line ends", lone_cr_manifest, check=same_as_good),
    Case("release diagnosis codes", with_column(2, ["n", "N", "I", "i", "P", "p", "D", "d"]),
         check=lambda images, m: m.diagnosis.tolist() == ["N", "N", "IBM", "IBM", "PM", "PM", "DM", "DM"] or
         pytest.fail(f"normalised to {m.diagnosis.tolist()}")),
    Case("other muscles", with_column(3, ["Vastus   lateralis", " Deltoid ", "fcr", "quadriceps"]),
         check=lambda images, m: m.muscle.tolist()[:4] == ["Vastus lateralis", "D", "FCR", "quadriceps"] or
         pytest.fail(m.muscle.tolist())),
    Case("control character in a muscle", with_column(3, ["bi\x07ceps"]),
         refused=("manifest.csv line 2", "contains the control character '\\x07'", "or empty")),
    Case("101-character muscle", with_column(3, ["m" * 101]),
         refused=("manifest.csv line 2", "is 101 characters long", "at most 100 characters")),
    Case("one file, two patients", copied_image("P4"),
         refused=("manifest.csv line 2", "'n1_d.png'", "manifest.csv line 10", "'copy.png'", "patients 'P1', 'P4'",
                  "training and test")),
    Case("one file twice for a patient", copied_image("P1"),
         refused=("manifest.csv line 2", "manifest.csv line 10", "not a second acquisition of patient 'P1'")),
    Case("a path listed 2000 times", same_path_many_times,
         refused=("'n1_d.png' is listed more than once", "line 2 (header = line 1); ", "... and 1995 more")),
    Case("5000 columns", lambda root: write_manifest(root / RAW / "manifest.csv", [("x",) * 5000],
                                                     header=tuple(f"column {i}" for i in range(5000))),
         refused=("manifest.csv: missing column(s) path, patient_id, diagnosis", "'column 19', ... and 4980 more")),
    Case("NFC and NFD ids", two_spellings("P\u00e901", "Pe\u030101"),
         refused=("'P\\xe901' (", "'Pe\\u030101' (", "manifest.csv line 2", "manifest.csv line 3",
                  "the same once normalised")),
    Case("zero-width space in an id", two_spellings("P1", "P1\u200b"),
         refused=("'P1' (", "'P1\\u200b' (", "the same once normalised")),
    Case("zero-width id alone", two_spellings("P\u200b1", "P\u200b1"),
         check=lambda images, m: m.patient_id.tolist()[:2] == ["P1", "P1"] or pytest.fail(m.patient_id.tolist())),
    Case("two patient_id columns", header_of(("path", "patient_id", "diagnosis", "patient_id", "side", "muscle")),
         refused=("manifest.csv line 1", "columns 2 and 4 are both named 'patient_id'")),
    Case("patient_id and Patient_ID + zero-width", header_of(("path", "patient_id", "diagnosis", "muscle", "side",
                                                              "Patient_ID\u200b")),
         refused=("columns 2 and 6 are both named 'patient_id'",)),
    Case("same pixels, other bytes, other patient", recompressed("P4"),
         refused=("same pixels under different patients", "'n1_d.png'", "'copy.png'", "patient 'P4'",
                  "training and test")),
    Case("two byte-identical pairs", two_copied_pairs,
         refused=("'copy1.png'", "'n1_d.png'", "'copy4.png'", "'dm4_d.png'", "2 group(s) of images repeated within one patient")),
    Case("same pixels in a patient, keep-one", recompressed("P1", duplicates="keep-one"),
         check=lambda images, m: (len(m) == 8 and "copy.png" not in m.path.tolist()) or pytest.fail(m.path.tolist())),
    Case("same pixels in a patient, allow", recompressed("P1", duplicates="allow"),
         check=lambda images, m: len(m) == 9 or pytest.fail(m.path.tolist())),
    Case("two-page TIFF", add_image("stack.tif", two_pages()), refused=("stack.tif", "holds 2 pages")),
    Case("12-bit data in 16 bits", add_image("deep12.png", Image.fromarray(np.full((20, 20), 4000, np.uint16))),
         check=last_centre(16)),
]
# the stage as users run it, for a few refused cases (each a subprocess: a few seconds)
IN_SUBPROCESS = ["named pipe", "NUL in a path", "200 KB field", "wide strip", ".xlsx formula without a saved value",
                 "one file, two patients", "link loop"]



def test_corpus_is_large_enough_and_documented():
    assert len(CASES) >= 12
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(bool(c.refused) != (c.check is not None) for c in CASES)   # one expected outcome each
    assert __doc__.count("\n| ") - 1 == len(CASES)                          # the table lists every case
    assert {c.name for c in CASES if c.refused} >= set(IN_SUBPROCESS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(data_project, case):
    before = snapshot(data_project)
    case.mutate(data_project)
    if case.refused:
        with pytest.raises(DataError) as info:
            prepare.main([])
        for fragment in case.refused:
            assert fragment in str(info.value), (fragment, str(info.value))
        assert len(str(info.value)) < 2000    # every list and value in a message is cut short
    else:
        images, manifest = prepare.prepare(load())
        case.check(images, manifest)
    assert snapshot(data_project) == before


@pytest.mark.parametrize("name", IN_SUBPROCESS)
def test_refused_input_exits_2_without_a_traceback(data_project, name):
    case = next(c for c in CASES if c.name == name)
    before = snapshot(data_project)
    case.mutate(data_project)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pipeline.prepare"], cwd=data_project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1                                    # one line
    for fragment in case.refused:
        assert fragment in done.stderr, (fragment, done.stderr)
    assert snapshot(data_project) == before
