"""The one table of validation protocols: each protocol's name, its words in the report, and how
figures draw it. params.py keeps the names only (PROTOCOLS; tests/test_params.py keeps them equal),
so that a change of words or colour here retrains nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    name: str           # the value of split.protocols
    words: str          # in sentences: "under patient folds"
    described: str      # the report header's description
    colour: str         # figures: its colour (matplotlib)
    marker: str         # figures: its marker


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("patient", "patient folds",
             "patient (folds grouped by patient: no patient in both training and test)", "#1f77b4", "o"),
    Protocol("image", "image-level folds",
             "image (image-level folds, as in the paper: a patient's images in training and test)", "#d62728", "s"),
    Protocol("ucar", "the published folds",
             "ucar (the published FileList image-level folds of Uçar 2022)", "#ff7f0e", "D"),
)}


def words(protocol: str) -> str:
    """The protocol in a sentence ("patient folds"); its name when it is not in the table."""
    return PROTOCOLS[protocol].words if protocol in PROTOCOLS else protocol


def described(protocol: str) -> str:
    """The protocol as the report's header describes it; its name when it is not in the table."""
    return PROTOCOLS[protocol].described if protocol in PROTOCOLS else protocol


def colour(protocol: str) -> str:
    return PROTOCOLS[protocol].colour if protocol in PROTOCOLS else "grey"


def marker(protocol: str) -> str:
    return PROTOCOLS[protocol].marker if protocol in PROTOCOLS else "o"
