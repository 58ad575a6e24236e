"""One normalisation of identities (patient ids, column names) for every source.

A patient id typed twice can differ in bytes and not on screen: "Pé01" in Unicode NFC (é one code
point) and NFD (e + a combining accent), "Ｐ０１" in fullwidth characters (an East Asian input method),
a zero-width space pasted from a web page, a trailing space or no-break space. Taken as bytes, those
are two patients, and patient folds then put one person in training and test. So every id is
normalised the same way, here and nowhere else, before anything groups by it: Unicode NFKC
(compatibility forms folded: fullwidth letters and digits, no-break and other Unicode spaces),
zero-width characters removed, every run of Unicode whitespace inside made one space and the
surrounding whitespace stripped; and two spellings that differ only in that are refused, naming
both, since the manifest's author should decide which is right. Column names are normalised the
same way, and a header with two columns of one name is refused (the reader would keep one silently).

The sources' readers (pipeline/data/manifests.py: the folder manifest and the Uçar sheet, and through the
folder reader `pipeline.predict --manifest`) pass every record through `check_spellings`; every later
stage reads the ids prepare wrote, already normalised (tests/test_hostile_cohorts.py checks both).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from pipeline.core.errors import DataError

# zero-width space, non-joiner, joiner, word joiner, byte-order mark / zero-width no-break space, soft hyphen
ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def normalise(text: str) -> str:
    """`text` in Unicode NFKC, zero-width characters removed, runs of Unicode whitespace made one space,
    surrounding whitespace stripped."""
    return " ".join(ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", str(text))).split())


def _shown(text: str) -> str:
    return ascii(text)   # the escapes show what the screen does not (\u200b, e + \u0301)


def check_spellings(values: Iterable[tuple[str, str]], what: str) -> dict[str, str]:
    """{raw: normalised} for (raw, where) pairs; two raw spellings that normalise to one are a DataError naming both."""
    first: dict[str, tuple[str, str]] = {}
    out: dict[str, str] = {}
    for raw, where in values:
        if raw in out:
            continue
        norm = normalise(raw)
        out[raw] = norm
        seen = first.setdefault(norm, (raw, where))
        if seen[0] != raw:
            raise DataError(f"{what} {_shown(seen[0])} ({seen[1]}) and {_shown(raw)} ({where}) are the same once "
                            f"normalised (Unicode NFKC, zero-width characters removed, Unicode spaces made one and "
                            f"stripped) but "
                            f"differ as written; write them the same way, so one patient is not taken for two or "
                            f"two for one")
    return out


def unique_header(names: list[str], where: str) -> list[str]:
    """`names` (already normalised by the caller); two equal names are a DataError naming the columns."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name and name in seen:
            raise DataError(f"{where}: columns {seen[name] + 1} and {i + 1} are both named {name!r} (after "
                            f"normalising case, spaces and Unicode); rename one, so no column is silently ignored")
        seen.setdefault(name, i)
    return names
