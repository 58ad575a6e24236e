"""Reading the lists of real images: a folder's CSV manifest, or the public Uçar (2022) release's sheet.

Both readers (`read_folder`, `read_ucar`) return one row per image with `path` (relative to data.root, '/'-separated),
`patient_id`, `diagnosis` (N|IBM|PM|DM), `muscle` (D|B|R|G|T|FCR|FDP, another muscle's name
(folder source only) or ""), `side` (R|L or ""), `source_name` and `location` (the file and row
to name in messages). They check everything that can be checked without decoding images, so a
bad manifest fails fast and names its row: every image path must name a regular file inside
data.root (links are followed, but not out of it; a named pipe, device, socket or directory is
refused before it is opened). After decoding, rows whose images have the same decoded pixels are
refused or resolved by pipeline/data/duplicates.py (`data.duplicates`). Patient ids and column names
are normalised by pipeline/data/identity.py (Unicode NFKC, zero-width characters removed, Unicode spaces
made one and stripped); spellings that collide only after it, and two columns of one name, are refused.

Row numbers: for a CSV, messages give the 1-based line of the file as an editor shows it (the
header is line 1, so the first data row is line 2); for the .xlsx, the spreadsheet row number
(the header is row 1).

Accepted values (case and surrounding spaces do not matter):
- diagnosis: N, normal, control, healthy -> N; I, IBM, inclusion body myositis, sIBM -> IBM;
  P, PM, polymyositis -> PM; D, DM, dermatomyositis -> DM (the one-letter codes are the
  release's, accepted in both sources).
- muscle, folder source: D, B, R, G, T, FCR, FDP or deltoid, biceps (brachii), rectus femoris,
  (medial) gastrocnemius, tibialis anterior, flexor carpi radialis, flexor digitorum profundus
  become the code; any other name (quadriceps, vastus lateralis) is kept as written, with
  runs of spaces collapsed: the muscle is descriptive metadata, and an own cohort may image
  other muscles. Refused: control characters and more than 100 characters. Empty is allowed.
- muscle, ucar source: R or L followed by a code (RD, LFCR), the release's format, strictly.
- side: R, L, right, left.

In the ucar .xlsx, a cell the stage reads must hold a value: a formula is read as the value
Excel saved with it, and a formula saved without one (as openpyxl and some converters write
them) is refused, naming the cell; so is a spreadsheet error such as #REF!.

Messages show at most `MESSAGE_ITEMS` items of a list (`HEADER_ITEMS` column names) and
`MESSAGE_CHARS` characters of a value, then count the rest.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import pandas as pd

from pipeline.core.errors import DataError
from pipeline.core.scenarios import MUSCLES
from pipeline.data import identity, imageio

DIAGNOSIS_SPELLINGS = {   # n, i, p, d: the release's one-letter codes
    "n": "N", "normal": "N", "control": "N", "healthy": "N",
    "i": "IBM", "ibm": "IBM", "inclusion body myositis": "IBM", "sibm": "IBM", "sporadic inclusion body myositis": "IBM",
    "p": "PM", "pm": "PM", "polymyositis": "PM",
    "d": "DM", "dm": "DM", "dermatomyositis": "DM",
}
MUSCLE_SPELLINGS = {
    "d": "D", "deltoid": "D", "b": "B", "biceps": "B", "biceps brachii": "B",
    "r": "R", "rectus femoris": "R", "g": "G", "gastrocnemius": "G", "medial gastrocnemius": "G",
    "t": "T", "tibialis anterior": "T", "fcr": "FCR", "flexor carpi radialis": "FCR",
    "fdp": "FDP", "flexor digitorum profundus": "FDP",
}
SIDE_SPELLINGS = {"r": "R", "right": "R", "l": "L", "left": "L"}
FOLDER_COLUMNS = ("path", "patient_id", "diagnosis")
UCAR_SHEET = "OrginalAndCroppedFileNames.xlsx"   # (sic), as published
RECORD_COLUMNS = ["path", "patient_id", "diagnosis", "muscle", "side", "source_name", "location"]
MAX_MUSCLE_CHARS = 100
MAX_CSV_BYTES = 256 << 20   # a manifest of a million images is about 100 MB
MESSAGE_ITEMS = 5           # list items shown in one message; the rest are counted
HEADER_ITEMS = 20           # column names shown (the release's sheet has 10 columns)
MESSAGE_CHARS = 80          # characters of one value shown in a message


def lower_words(value: object) -> str:
    """Lower-case text with runs of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(value).split()).lower()


def normalise_diagnosis(value: object) -> str | None:
    """N, IBM, PM or DM for an accepted spelling of a diagnosis (see the module docstring), else None."""
    return DIAGNOSIS_SPELLINGS.get(lower_words(value))


def _accepted(mapping: dict[str, str]) -> str:
    return ", ".join(sorted(mapping))


def shown(value: object) -> str:
    """repr of `value` for a message, cut to MESSAGE_CHARS (a 100 KB cell must not make a 100 KB message)."""
    text = repr(value)
    return text if len(text) <= MESSAGE_CHARS else f"{text[:MESSAGE_CHARS]}... ({len(str(value))} characters)"


def _listing(items: Iterable[object], sep: str = "; ", limit: int = MESSAGE_ITEMS) -> str:
    """The first `limit` of `items` joined by `sep`, then '... and N more'."""
    items = [str(i) for i in items]
    shown = sep.join(items[:limit])
    return shown if len(items) <= limit else f"{shown}{sep}... and {len(items) - limit} more"


def check_data_root(root: Path) -> Path:
    """`root` if it is an existing directory, else a DataError saying which params key to fix."""
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"data root {root} {what} (resolved: {root.resolve()}); set data.root in params.yaml "
                        f"to the directory holding your images")
    return root


def resolve_image_path(root: Path, raw: str, where: str) -> tuple[str, Path]:
    """Normalise a manifest path ('/'-separated, relative) and the file it names inside `root`.

    Refuses absolute paths, paths that leave the data root (by '..' or by a link), paths that
    name nothing, and anything but a regular file (a named pipe would block the stage, a device
    never ends): the type is read with stat, before anything opens the file.
    """
    text = raw.strip().replace("\\", "/")
    if not text:
        raise DataError(f"{where}: empty path; expected an image path relative to the data root")
    if "\x00" in text:   # no file name holds one; the OS would refuse the path with a bare ValueError
        raise DataError(f"{where}: path {shown(raw)} contains a NUL byte; expected an image path relative to "
                        f"the data root")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise DataError(f"{where}: path {shown(raw)} is absolute; expected a path relative to the data root {root}")
    parts = [p for p in PurePosixPath(text).parts if p != "."]
    if ".." in parts:
        raise DataError(f"{where}: path {shown(raw)} contains '..'; expected a path inside the data root {root}")
    rel = "/".join(parts)
    full = root / rel
    try:
        resolved = full.resolve()
    except (OSError, RuntimeError) as e:   # RuntimeError: a loop of links
        raise DataError(f"{where}: path {shown(raw)} cannot be followed ({e}); expected an image file inside the "
                        f"data root {root}") from None
    if not resolved.is_relative_to(root.resolve()):
        raise DataError(f"{where}: path {shown(raw)} leads outside the data root {root} (through a link to "
                        f"{resolved}); expected a file inside it")
    problem = file_problem(resolved)
    if problem is not None:
        raise DataError(f"{where}: image {shown(raw)} {problem}; expected a regular image file (PNG, JPEG, BMP or "
                        f"TIFF) inside the data root {root}, or a link to one there")
    return rel, full


def file_problem(path: Path) -> str | None:
    """Why `path` (links followed) is no input file ('not found', 'is a named pipe (FIFO)', ...); None if it is one.

    Only stat is called: opening a named pipe would block until a writer comes.
    """
    try:
        kind = imageio.file_type(os.stat(path).st_mode)
    except FileNotFoundError:
        return "not found"
    except (OSError, ValueError) as e:
        return f"cannot be read ({e.strerror if isinstance(e, OSError) else e})"
    return None if kind is None else f"is {kind}"


LINE_BREAK = re.compile(r"\r\n|\r|\n")   # as the csv module and editors count lines


def _decode_text(path: Path) -> str:
    data = imageio.read_input_file(path, max_bytes=MAX_CSV_BYTES, at=str(path), what="CSV file")
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is dropped
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); save the CSV as UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:   # refused here, so no field, path or id can hold one
        line = len(LINE_BREAK.findall(text, 0, nul)) + 1
        raise DataError(f"{path} line {line} (header = line 1): a NUL byte (\\x00), which CSV text never holds; "
                        f"if the file was saved as UTF-16 ('Unicode Text'), save it as CSV UTF-8")
    return text


def _csv_records(path: Path, lines: Iterable[str], delimiter: str, first_line: int = 1
                 ) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of each CSV record; any csv.Error is a DataError naming the line."""
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        start = first_line + reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                problem = (f"a field longer than {csv.field_size_limit()} characters; a field holds a path, an id "
                           f"or a word: look for a double quote that opens a field and is never closed")
            else:
                problem = f"not readable as CSV ({e})"
            raise DataError(f"{path} line {start} (header = line 1): {problem}") from None
        yield start, first_line - 1 + reader.line_num, fields


def read_csv_rows(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (lower-cased, stripped) and (file line, row) pairs of a CSV; blank rows are skipped.

    The delimiter (',', ';' or tab) is sniffed, preferring one whose header has every
    `required` column; a missing column is a DataError naming the headers found.
    """
    text = _decode_text(path)
    lines = LINE_BREAK.split(text)
    number, first = next(((n, line) for n, line in enumerate(lines, start=1) if line.strip()), (0, ""))
    if not first:
        raise DataError(f"{path}: empty file; expected a header row with columns {', '.join(required)}")
    try:
        guess = csv.Sniffer().sniff(first[:65536], delimiters=",;\t").delimiter
    except csv.Error:
        guess = ","

    def header_with(delimiter: str) -> list[str]:
        fields = next(_csv_records(path, [first], delimiter, first_line=number), (0, 0, []))[2]
        return [lower_words(identity.normalise(h)) for h in fields]

    header: list[str] = []
    delimiter = guess
    for candidate in dict.fromkeys([guess, ",", ";", "\t"]):
        names = header_with(candidate)
        if all(col in names for col in required):
            delimiter, header = candidate, names
            break
    else:
        header = header_with(guess)
        missing = [c for c in required if c not in header]
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header row has "
                        f"[{_listing(map(shown, header), sep=', ', limit=HEADER_ITEMS)}]; expected columns {', '.join(required)} "
                        f"separated by ',', ';' or tabs")
    identity.unique_header(header, f"{path} line {number} (the header)")
    rows: list[tuple[int, dict[str, str]]] = []
    seen_header = False
    # newline="": the csv module sees every line ending (\r\n, \n, a lone \r) and counts lines as LINE_BREAK does
    for _, line, fields in _csv_records(path, io.StringIO(text, newline=""), delimiter):
        if not any(f.strip() for f in fields):
            continue                      # empty rows (also ",,,") are skipped
        if not seen_header:
            seen_header = True
            continue
        if len(fields) > len(header):
            extra = [f for f in fields[len(header):] if f.strip()]
            if extra:
                raise DataError(f"{path} line {line} (header = line 1): {len(fields)} fields but the header has "
                                f"{len(header)}; check for a stray {delimiter!r} (quote values that contain it)")
        values = {name: (fields[i].strip() if i < len(fields) else "") for i, name in enumerate(header)}
        rows.append((line, values))
    return header, rows


def _muscle(value: str, where: str) -> str:
    """A folder manifest's muscle: the code of a known code or name, else the name as written (spaces collapsed)."""
    name = " ".join(value.split())    # also turns tabs and line breaks into single spaces
    if not name:
        return ""
    code = MUSCLE_SPELLINGS.get(name.lower())
    if code is not None:
        return code
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None or len(name) > MAX_MUSCLE_CHARS:
        what = (f"contains the control character {control!r}" if control is not None
                else f"is {len(name)} characters long")
        raise DataError(f"{where}: muscle {shown(value)} {what}; expected a muscle's name or code of at most "
                        f"{MAX_MUSCLE_CHARS} characters (e.g. {', '.join(MUSCLES)}, deltoid, quadriceps), or empty")
    return name


def _side(value: str, where: str) -> str:
    if not value.strip():
        return ""
    side = SIDE_SPELLINGS.get(lower_words(value))
    if side is None:
        raise DataError(f"{where}: side {shown(value)} is not accepted; expected R, L, right, left or empty")
    return side


def read_folder(root: Path, manifest: str) -> pd.DataFrame:
    """Records of the `folder` source: the CSV manifest data.root/data.manifest, checked row by row."""
    check_data_root(root)
    path = root / manifest
    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"manifest {path} {problem}; expected a CSV file at data.root/data.manifest with columns "
                        f"{', '.join(FOLDER_COLUMNS)} (optional: muscle, side)")
    _, rows = read_csv_rows(path, FOLDER_COLUMNS)
    records = []
    for line, row in rows:
        where = f"{path} line {line} (header = line 1)"
        rel, _ = resolve_image_path(root, row["path"], where)
        if not row["patient_id"]:
            raise DataError(f"{where}: empty patient_id; every image needs the patient it belongs to")
        diagnosis = normalise_diagnosis(row["diagnosis"])
        if diagnosis is None:
            raise DataError(f"{where}: diagnosis {shown(row['diagnosis'])} is not accepted; expected one of N, IBM, "
                            f"PM, DM or {_accepted(DIAGNOSIS_SPELLINGS)} (any case)")
        records.append(dict(path=rel, patient_id=row["patient_id"], diagnosis=diagnosis,
                            muscle=_muscle(row.get("muscle", ""), where), side=_side(row.get("side", ""), where),
                            source_name=PurePosixPath(rel).name, location=where))
    return check_records(pd.DataFrame(records, columns=RECORD_COLUMNS), str(path))


def check_records(records: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Refuse an empty list, a path listed twice and a patient given two diagnoses."""
    if records.empty:
        raise DataError(f"{origin}: no images listed (only a header or empty rows); expected one row per image")
    ids = identity.check_spellings(zip(records.patient_id, records.location), "patient ids")
    records = records.assign(patient_id=records.patient_id.map(ids))
    empty = records[records.patient_id == ""]
    if not empty.empty:
        raise DataError(f"{empty.location.iloc[0]}: patient_id {ascii(next(k for k, v in ids.items() if not v))} "
                        f"is empty once zero-width characters and spaces are removed; every image needs its patient")
    dup = records[records.duplicated("path", keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        places = _listing(dup[dup.path == first.path].location)
        raise DataError(f"{origin}: image {shown(first.path)} is listed more than once ({places}); "
                        f"each image must appear once")
    per_patient = records.groupby("patient_id", sort=False).diagnosis.unique()
    for patient_id, diagnoses in per_patient.items():
        if len(diagnoses) > 1:
            rows = records[records.patient_id == patient_id].drop_duplicates("diagnosis")
            places = _listing(f"{r.diagnosis} at {r.location}" for r in rows.itertuples())
            raise DataError(f"{origin}: patient {shown(patient_id)} has more than one diagnosis ({places}); "
                            f"a patient has one diagnosis")
    return records.reset_index(drop=True)


def _open_book(path: Path, data_only: bool):
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class SheetCell:
    """One cell of the release's sheet: what Excel saved as its value, and its formula if it has one."""
    value: object
    formula: str | None = None
    error: bool = False          # the saved value is a spreadsheet error such as #REF!


@contextlib.contextmanager
def _sheet_rows(path: Path) -> Iterator[Iterator[tuple[int, list[SheetCell]]]]:
    """(spreadsheet row number, cells) of the first sheet of the workbook `path`.

    The workbook is read twice: with data_only=True for the values Excel saved, and with
    data_only=False to know which cells hold formulas. openpyxl computes no formula, so a
    formula saved without its value reads as None, the same as an empty cell, and only the
    second reading tells them apart.
    """
    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"{path} {problem}; the ucar source expects the release's {UCAR_SHEET} (a regular file) "
                        f"in data.root")
    values_book = _open_book(path, data_only=True)
    try:
        formulas_book = _open_book(path, data_only=False)
        try:
            rows = zip(values_book.worksheets[0].iter_rows(), formulas_book.worksheets[0].iter_rows())
            yield ((number, [SheetCell(v.value, f.value if f.data_type == "f" else None, v.data_type == "e")
                             for v, f in zip(values, formulas)])
                   for number, (values, formulas) in enumerate(rows, start=1))
        finally:
            formulas_book.close()
    finally:
        values_book.close()


def _cell_text(value: object) -> str:
    """A spreadsheet cell as text; whole numbers stored as floats (12.0) read as '12'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sheet_text(cells: list[SheetCell], column: int, number: int, label: str, path: Path) -> str:
    """The text of a cell the stage reads; a formula without a saved value or an error value is a DataError."""
    from openpyxl.utils import get_column_letter

    cell = cells[column] if column < len(cells) else SheetCell(None)
    at = f"{path} cell {get_column_letter(column + 1)}{number} ({label})"
    if cell.formula is not None and cell.value is None:
        raise DataError(f"{at}: the formula {shown(cell.formula)} was saved without its value, so it would read "
                        f"as an empty cell (the stage computes no formulas); open the workbook in Excel or "
                        f"LibreOffice and save it, so the values are stored, or type the value in place of the formula")
    if cell.error:
        raise DataError(f"{at}: holds the spreadsheet error {shown(cell.value)}; expected a value")
    return _cell_text(cell.value)


def _ucar_image(images_dir: Path, listing: dict[str, list[str]], name: str, root: Path, where: str) -> str:
    """The path (relative to root) of the release image `name`: exact name first, else the one differing in case."""
    base = PurePosixPath(name.replace("\\", "/")).name
    matches = [base] if base in listing.get(base.lower(), []) else listing.get(base.lower(), [])
    if not matches:
        raise DataError(f"{where}: image {shown(name)} not found in {images_dir}")
    if len(matches) > 1:
        raise DataError(f"{where}: image {shown(name)} matches {_listing(map(shown, matches), sep=', ')} in "
                        f"{images_dir}, which differ only in case; rename all but one")
    # the same checks as a folder manifest's paths: inside the data root, a regular file
    rel, _ = resolve_image_path(root, f"images/{matches[0]}", where)
    return rel


def read_ucar(root: Path) -> pd.DataFrame:
    """Records of the `ucar` source from data.root/OrginalAndCroppedFileNames.xlsx and data.root/images/."""
    check_data_root(root)
    path = root / UCAR_SHEET
    with _sheet_rows(path) as rows:
        _, first = next(rows, (1, []))
        header = [c.value for c in first]
        # a column is matched by its title, the first line of its cell (the release puts a legend of codes
        # on the lines below it: "Muscle\nD - deltoid\n..."), normalised, exactly: "Muscle" and "Muscle
        # Strength" are two columns
        titles = [column_title(h) for h in header]
        wanted = {"patient_id": "Patient Identifier", "muscle": "Muscle", "diagnosis": "Diagnosis",
                  "image": "Cropped Image Name"}
        index = {}
        for key, label in wanted.items():
            hits = [i for i, t in enumerate(titles) if t == lower_words(label)]
            if len(hits) > 1:
                raise DataError(f"{path} row 1: {len(hits)} columns are titled {label!r} "
                                f"({_listing((shown(header[i]) for i in hits), sep=', ')}); rename or remove all but "
                                f"one, so no column is silently ignored")
            if not hits:
                raise DataError(f"{path} row 1: no column {label!r}; the headers found are "
                                f"[{_listing((shown(h) for h in header if h is not None), sep=', ', limit=HEADER_ITEMS)}]; expected the "
                                f"release's columns titled (first line of the cell) {', '.join(wanted.values())}")
            index[key] = hits[0]
        images_dir = root / "images"
        if not images_dir.is_dir():
            raise DataError(f"{images_dir} not found; the ucar source expects the release's images/ folder in "
                            f"data.root")
        listing: dict[str, list[str]] = {}
        for entry in sorted(p.name for p in images_dir.iterdir()):
            listing.setdefault(entry.lower(), []).append(entry)
        records = []
        patient_id, diagnosis_of = "", {}
        for number, row in rows:
            cells = {k: _sheet_text(row, i, number, wanted[k], path) for k, i in index.items()}
            if not any(_cell_text(c.value) for c in row):
                continue
            where = f"{path} row {number} (header = row 1)"
            if cells["patient_id"]:
                patient_id = cells["patient_id"]            # written on a patient's first row only
            elif not patient_id:
                raise DataError(f"{where}: no Patient Identifier on the first data row; expected one on each "
                                f"patient's first row")
            code = cells["diagnosis"]
            diagnosis = normalise_diagnosis(code) if code else diagnosis_of.get(patient_id)  # blank below the first row
            if diagnosis is None:
                raise DataError(f"{where}: diagnosis {shown(cells['diagnosis'])} is not accepted; expected D, P, I "
                                f"or N (DM, PM, IBM, normal)")
            diagnosis_of.setdefault(patient_id, diagnosis)
            side, muscle = _ucar_muscle(cells["muscle"], where)
            name = cells["image"]
            if not name:
                raise DataError(f"{where}: empty Cropped Image Name; expected a file name such as 1.PNG")
            records.append(dict(path=_ucar_image(images_dir, listing, name, root, where), patient_id=patient_id,
                                diagnosis=diagnosis, muscle=muscle, side=side, source_name=name, location=where))
    return check_records(pd.DataFrame(records, columns=RECORD_COLUMNS), str(path))


def column_title(cell: object) -> str:
    """A header cell's title: its first line, Unicode-normalised, lower case, whitespace collapsed
    ("Muscle\nD - deltoid\n..." -> "muscle"); an empty cell has the title ""."""
    if cell is None:
        return ""
    lines = [line for line in str(cell).splitlines() if identity.normalise(line)]
    return lower_words(identity.normalise(lines[0])) if lines else ""


def _ucar_muscle(value: str, where: str) -> tuple[str, str]:
    """Side letter and muscle code from the release's muscle cell, e.g. 'LFCR' -> ('L', 'FCR')."""
    text = re.sub(r"[\s_-]+", "", value).upper()
    if len(text) >= 2 and text[0] in "RL" and text[1:] in MUSCLES:
        return text[0], text[1:]
    raise DataError(f"{where}: muscle {shown(value)} is not accepted; expected R or L followed by one of "
                    f"{', '.join(MUSCLES)}, e.g. RD, LFCR, RFDP")
