"""Classification scenarios (Uçar 2022; Burlina 2017's problems A, B, C are S1, S2, S3).

Each scenario maps a diagnosis (N, IBM, PM, DM) to a class index, or leaves it out.
"""
from __future__ import annotations

DIAGNOSES = ("N", "IBM", "PM", "DM")
# the seven muscles of the public cohort (Burlina et al. 2017): deltoid, biceps, rectus femoris,
# medial gastrocnemius, tibialis anterior, flexor carpi radialis, flexor digitorum profundus
MUSCLES = ("D", "B", "R", "G", "T", "FCR", "FDP")

# scenario -> (class names in label order, diagnosis -> label); diagnoses not listed are excluded
SCENARIOS: dict[str, tuple[tuple[str, ...], dict[str, int]]] = {
    "S1": (("normal", "myositis"), {"N": 0, "IBM": 1, "PM": 1, "DM": 1}),
    "S2": (("normal", "IBM"), {"N": 0, "IBM": 1}),
    "S3": (("IBM", "PM_DM"), {"IBM": 0, "PM": 1, "DM": 1}),
    "S4": (("normal", "IBM", "PM", "DM"), {"N": 0, "IBM": 1, "PM": 2, "DM": 3}),
}

DESCRIPTIONS = {
    "S1": "normal vs myositis (IBM, PM, DM)",
    "S2": "normal vs IBM",
    "S3": "IBM vs PM/DM",
    "S4": "four classes: normal, IBM, PM, DM",
}


def class_names(scenario: str) -> tuple[str, ...]:
    """Class names of `scenario`, in label order."""
    return SCENARIOS[scenario][0]


def label_map(scenario: str) -> dict[str, int]:
    """Diagnosis -> label for `scenario`; diagnoses absent from it are excluded from the scenario."""
    return SCENARIOS[scenario][1]

