"""Where real images come from: a folder with a CSV manifest, or the public Uçar (2022) release.

Both readers return one row per image with `path` (relative to data.root, '/'-separated),
`patient_id`, `diagnosis` (N|IBM|PM|DM), `muscle` (D|B|R|G|T|FCR|FDP or ""), `side` (R|L or
""), `source_name` and `location` (the file and row to name in messages). They check everything
that can be checked without decoding images, so a bad manifest fails fast and names its row.

Row numbers: for a CSV, messages give the 1-based line of the file as an editor shows it (the
header is line 1, so the first data row is line 2); for the .xlsx, the spreadsheet row number
(the header is row 1).

Accepted values (case and surrounding spaces do not matter):
- diagnosis: N, normal, control, healthy -> N; IBM, inclusion body myositis, sIBM -> IBM;
  PM, polymyositis -> PM; DM, dermatomyositis -> DM; the release's one-letter codes I, P, D
  in its .xlsx only.
- muscle: D, B, R, G, T, FCR, FDP or deltoid, biceps (brachii), rectus femoris,
  (medial) gastrocnemius, tibialis anterior, flexor carpi radialis, flexor digitorum profundus.
- side: R, L, right, left.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from pipeline.errors import DataError
from pipeline.scenarios import MUSCLES

if TYPE_CHECKING:
    from pipeline.params import DataParams, Params

DIAGNOSIS_SPELLINGS = {
    "n": "N", "normal": "N", "control": "N", "healthy": "N",
    "ibm": "IBM", "inclusion body myositis": "IBM", "sibm": "IBM", "sporadic inclusion body myositis": "IBM",
    "pm": "PM", "polymyositis": "PM",
    "dm": "DM", "dermatomyositis": "DM",
}
UCAR_DIAGNOSIS_CODES = {"D": "DM", "P": "PM", "I": "IBM", "N": "N"}
MUSCLE_SPELLINGS = {
    "d": "D", "deltoid": "D", "b": "B", "biceps": "B", "biceps brachii": "B",
    "r": "R", "rectus femoris": "R", "g": "G", "gastrocnemius": "G", "medial gastrocnemius": "G",
    "t": "T", "tibialis anterior": "T", "fcr": "FCR", "flexor carpi radialis": "FCR",
    "fdp": "FDP", "flexor digitorum profundus": "FDP",
}
SIDE_SPELLINGS = {"r": "R", "right": "R", "l": "L", "left": "L"}
FOLDER_COLUMNS = ("path", "patient_id", "diagnosis")
UCAR_SHEET = "OrginalAndCroppedFileNames.xlsx"   # (sic), as published
UCAR_FOLD_PARTS = {"train": "train", "training": "train", "validation": "val", "val": "val", "test": "test"}
UCAR_FOLDS = 5
RECORD_COLUMNS = ["path", "patient_id", "diagnosis", "muscle", "side", "source_name", "location"]


def _words(value: object) -> str:
    """Lower-case text with runs of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(value).split()).lower()


def normalise_diagnosis(value: object) -> str | None:
    """N, IBM, PM or DM for an accepted spelling of a diagnosis (see the module docstring), else None."""
    return DIAGNOSIS_SPELLINGS.get(_words(value))


def _accepted(mapping: dict[str, str]) -> str:
    return ", ".join(sorted(mapping))


def check_data_root(root: Path) -> Path:
    """`root` if it is an existing directory, else a DataError saying which params key to fix."""
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"data root {root} {what} (resolved: {root.resolve()}); set data.root in params.yaml "
                        f"to the directory holding your images")
    return root


def resolve_image_path(root: Path, raw: str, where: str) -> tuple[str, Path]:
    """Normalise a manifest path ('/'-separated, relative) and the file it names inside `root`.

    Refuses absolute paths and paths that leave the data root, by '..' or by a link.
    """
    text = raw.strip().replace("\\", "/")
    if not text:
        raise DataError(f"{where}: empty path; expected an image path relative to the data root")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise DataError(f"{where}: path {raw!r} is absolute; expected a path relative to the data root {root}")
    parts = [p for p in PurePosixPath(text).parts if p != "."]
    if ".." in parts:
        raise DataError(f"{where}: path {raw!r} contains '..'; expected a path inside the data root {root}")
    rel = "/".join(parts)
    full = root / rel
    base = root.resolve()
    if not full.resolve().is_relative_to(base):
        raise DataError(f"{where}: path {raw!r} leads outside the data root {root} (through a link to "
                        f"{full.resolve()}); expected a file inside it")
    return rel, full


def _decode_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is dropped
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); save the CSV as UTF-8") from None


def read_csv_rows(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (lower-cased, stripped) and (file line, row) pairs of a CSV; blank rows are skipped.

    The delimiter (',', ';' or tab) is sniffed, preferring one whose header has every
    `required` column; a missing column is a DataError naming the headers found.
    """
    text = _decode_text(path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise DataError(f"{path}: empty file; expected a header row with columns {', '.join(required)}")
    try:
        guess = csv.Sniffer().sniff(first, delimiters=",;\t").delimiter
    except csv.Error:
        guess = ","
    header: list[str] = []
    delimiter = guess
    for candidate in dict.fromkeys([guess, ",", ";", "\t"]):
        names = [_words(h) for h in next(csv.reader([first], delimiter=candidate))]
        if all(col in names for col in required):
            delimiter, header = candidate, names
            break
    else:
        header = [_words(h) for h in next(csv.reader([first], delimiter=guess))]
        missing = [c for c in required if c not in header]
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header row has {header}; "
                        f"expected columns {', '.join(required)} separated by ',', ';' or tabs")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows: list[tuple[int, dict[str, str]]] = []
    seen_header = False
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue                      # empty rows (also ",,,") are skipped
        if not seen_header:
            seen_header = True
            continue
        if len(fields) > len(header):
            extra = [f for f in fields[len(header):] if f.strip()]
            if extra:
                raise DataError(f"{path} line {reader.line_num} (header = line 1): {len(fields)} fields but the header has "
                                f"{len(header)}; check for a stray {delimiter!r} (quote values that contain it)")
        values = {name: (fields[i].strip() if i < len(fields) else "") for i, name in enumerate(header)}
        rows.append((reader.line_num, values))
    return header, rows


def _muscle(value: str, where: str) -> str:
    if not value.strip():
        return ""
    code = MUSCLE_SPELLINGS.get(_words(value))
    if code is None:
        raise DataError(f"{where}: muscle {value!r} is not accepted; expected one of {', '.join(MUSCLES)} "
                        f"or their names ({_accepted({k: v for k, v in MUSCLE_SPELLINGS.items() if len(k) > 3})}), "
                        f"or empty")
    return code


def _side(value: str, where: str) -> str:
    if not value.strip():
        return ""
    side = SIDE_SPELLINGS.get(_words(value))
    if side is None:
        raise DataError(f"{where}: side {value!r} is not accepted; expected R, L, right, left or empty")
    return side


def read_folder(root: Path, manifest: str) -> pd.DataFrame:
    """Records of the `folder` source: the CSV manifest data.root/data.manifest, checked row by row."""
    check_data_root(root)
    path = root / manifest
    if not path.is_file():
        raise DataError(f"manifest {path} not found; expected a CSV at data.root/data.manifest with columns "
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
            raise DataError(f"{where}: diagnosis {row['diagnosis']!r} is not accepted; expected one of N, IBM, PM, "
                            f"DM or {_accepted(DIAGNOSIS_SPELLINGS)} (any case)")
        records.append(dict(path=rel, patient_id=row["patient_id"], diagnosis=diagnosis,
                            muscle=_muscle(row.get("muscle", ""), where), side=_side(row.get("side", ""), where),
                            source_name=PurePosixPath(rel).name, location=where))
    return check_records(pd.DataFrame(records, columns=RECORD_COLUMNS), str(path))


def check_records(records: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Refuse an empty list, a path listed twice and a patient given two diagnoses."""
    if records.empty:
        raise DataError(f"{origin}: no images listed (only a header or empty rows); expected one row per image")
    dup = records[records.duplicated("path", keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        places = "; ".join(dup[dup.path == first.path].location)
        raise DataError(f"{origin}: image {first.path!r} is listed more than once ({places}); "
                        f"each image must appear once")
    per_patient = records.groupby("patient_id", sort=False).diagnosis.unique()
    for patient_id, diagnoses in per_patient.items():
        if len(diagnoses) > 1:
            rows = records[records.patient_id == patient_id].drop_duplicates("diagnosis")
            places = "; ".join(f"{r.diagnosis} at {r.location}" for r in rows.itertuples())
            raise DataError(f"{origin}: patient {patient_id!r} has more than one diagnosis ({places}); "
                            f"a patient has one diagnosis")
    return records.reset_index(drop=True)


def _open_sheet(path: Path):
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    if not path.is_file():
        raise DataError(f"{path} not found; the ucar source expects the release's {UCAR_SHEET} in data.root")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    return book, book.worksheets[0]


def _cell_text(value: object) -> str:
    """A spreadsheet cell as text; whole numbers stored as floats (12.0) read as '12'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_ucar(root: Path) -> pd.DataFrame:
    """Records of the `ucar` source from data.root/OrginalAndCroppedFileNames.xlsx and data.root/images/."""
    check_data_root(root)
    path = root / UCAR_SHEET
    book, sheet = _open_sheet(path)
    try:
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None) or ()
        names = [_words(h) if h is not None else "" for h in header]
        wanted = {"patient_id": ("Patient Identifier", lambda n: n == "patient identifier"),
                  "muscle": ("Muscle...", lambda n: n.startswith("muscle")),
                  "diagnosis": ("Diagnosis...", lambda n: n.startswith("diagnosis")),
                  "image": ("Cropped Image Name", lambda n: n == "cropped image name")}
        index = {}
        for key, (label, match) in wanted.items():
            hits = [i for i, n in enumerate(names) if match(n)]
            if not hits:
                raise DataError(f"{path} row 1: no column {label!r}; the headers found are "
                                f"{[h for h in header if h is not None]}; expected the release's columns "
                                f"Patient Identifier, Muscle..., Diagnosis..., Cropped Image Name")
            index[key] = hits[0]
        images_dir = root / "images"
        if not images_dir.is_dir():
            raise DataError(f"{images_dir} not found; the ucar source expects the release's images/ folder in "
                            f"data.root")
        by_lower = {p.name.lower(): p.name for p in images_dir.iterdir()}
        records = []
        patient_id, diagnosis_of = "", {}
        for number, row in enumerate(rows, start=2):
            cells = {k: _cell_text(row[i]) if i < len(row) else "" for k, i in index.items()}
            if not any(_cell_text(c) for c in row):
                continue
            where = f"{path} row {number} (header = row 1)"
            if cells["patient_id"]:
                patient_id = cells["patient_id"]            # written on a patient's first row only
            elif not patient_id:
                raise DataError(f"{where}: no Patient Identifier on the first data row; expected one on each "
                                f"patient's first row")
            code = cells["diagnosis"].upper()
            diagnosis = UCAR_DIAGNOSIS_CODES.get(code) or (normalise_diagnosis(code) if code else None)
            if diagnosis is None and not code:
                diagnosis = diagnosis_of.get(patient_id)     # left blank below the patient's first row
            if diagnosis is None:
                raise DataError(f"{where}: diagnosis {cells['diagnosis']!r} is not accepted; expected D, P, I or "
                                f"N (DM, PM, IBM, normal)")
            diagnosis_of.setdefault(patient_id, diagnosis)
            side, muscle = _ucar_muscle(cells["muscle"], where)
            name = cells["image"]
            if not name:
                raise DataError(f"{where}: empty Cropped Image Name; expected a file name such as 1.PNG")
            actual = by_lower.get(PurePosixPath(name.replace("\\", "/")).name.lower())
            if actual is None:
                raise DataError(f"{where}: image {name!r} not found in {images_dir}")
            records.append(dict(path=f"images/{actual}", patient_id=patient_id, diagnosis=diagnosis,
                                muscle=muscle, side=side, source_name=name, location=where))
    finally:
        book.close()
    return check_records(pd.DataFrame(records, columns=RECORD_COLUMNS), str(path))


def _ucar_muscle(value: str, where: str) -> tuple[str, str]:
    """Side letter and muscle code from the release's muscle cell, e.g. 'LFCR' -> ('L', 'FCR')."""
    text = re.sub(r"[\s_-]+", "", value).upper()
    if len(text) >= 2 and text[0] in "RL" and text[1:] in MUSCLES:
        return text[0], text[1:]
    raise DataError(f"{where}: muscle {value!r} is not accepted; expected R or L followed by one of "
                    f"{', '.join(MUSCLES)}, e.g. RD, LFCR, RFDP")


def read_ucar_folds(root: Path, scenario: str) -> pd.DataFrame:
    """The published folds of `scenario`: columns source_name, fold (1-based), part (train|val|test).

    Read from data.root/FileList/<scenario>_FileList_Fold_<k>.csv, k = 1..5; a missing or
    malformed file is a DataError naming it.
    """
    if scenario not in ("S1", "S2", "S3", "S4"):
        raise DataError(f"scenario {scenario!r} has no published folds; expected S1, S2, S3 or S4")
    frames = []
    for fold in range(1, UCAR_FOLDS + 1):
        path = Path(root) / "FileList" / f"{scenario}_FileList_Fold_{fold}.csv"
        if not path.is_file():
            raise DataError(f"{path} not found; protocol 'ucar' needs the release's FileList/"
                            f"{scenario}_FileList_Fold_1..{UCAR_FOLDS}.csv in data.root")
        _, rows = read_csv_rows(path, ("filenames", "type"))
        if not rows:
            raise DataError(f"{path}: no rows; expected one row per image with FileNames and Type")
        seen: dict[str, int] = {}
        for line, row in rows:
            name = PurePosixPath(row["filenames"].replace("\\", "/")).name
            if not name:
                raise DataError(f"{path} line {line} (header = line 1): empty FileNames")
            part = UCAR_FOLD_PARTS.get(_words(row["type"]))
            if part is None:
                raise DataError(f"{path} line {line} (header = line 1): Type {row['type']!r} is not accepted; expected Train, "
                                f"Validation or Test")
            if name in seen:
                raise DataError(f"{path} line {line} (header = line 1): {name!r} is listed again (first at line {seen[name]}); "
                                f"an image has one part per fold")
            seen[name] = line
            frames.append((name, fold, part))
    return pd.DataFrame(frames, columns=["source_name", "fold", "part"])


# ---- the sources, in one table ------------------------------------------------------------------

def load_images(records: pd.DataFrame, root: Path, data: DataParams) -> tuple[np.ndarray, list[str]]:
    """Decode and resize every image of `records` (paths relative to `root`); also their sha256."""
    from pipeline import imageio

    images = np.empty((len(records), data.channels, data.image_size, data.image_size), dtype=np.uint8)

    def one(i: int) -> str:
        row = records.iloc[i]
        pixels, digest = imageio.read_image(root / row.path, max_pixels=data.max_pixels,
                                            channels=data.channels, where=row.location)
        images[i] = imageio.to_chw(imageio.fit_square(pixels, data.image_size), data.channels)
        return digest

    # PIL decodes and resizes without the GIL; map() re-raises the first error in row order.
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        digests = list(pool.map(one, range(len(records))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)   # after an error, decode nothing more
    return images, digests


def _load_files(records: pd.DataFrame, root: Path, data: DataParams) -> tuple[np.ndarray, pd.DataFrame]:
    images, sha256 = load_images(records, root, data)
    return images, records.assign(sha256=sha256)


def load_synthetic(params: Params) -> tuple[np.ndarray, pd.DataFrame]:
    """The built-in cohort (pipeline/synthetic.py), rendered and resized like real images."""
    from pipeline import imageio, synthetic

    data, syn = params.data, params.data.synthetic
    rendered, table = synthetic.generate(syn.patients, syn.images_per_side, syn.render_size, params.seed)
    images = np.empty((len(rendered), data.channels, data.image_size, data.image_size), dtype=np.uint8)
    for i, image in enumerate(rendered):
        images[i] = imageio.to_chw(imageio.fit_square(image, data.image_size), data.channels)
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
    published_folds: bool = False               # it ships folds of its own (protocol `ucar`)


# The one table of data sources: params validates data.source against it, prepare loads through
# it, and the report and the paper table take their words from it. To add a source, write its
# load function and add an entry here.
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
        caveat="same public cohort (Uçar release of Burlina 2017)", patient_data=True, published_folds=True),
}
