"""Shared test set-up: never reach a model hub, and keep torch to the cores the machine has."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may fetch weights or data at run time
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser):
    parser.addoption("--update-tiny-baseline", action="store_true",
                     help="rewrite tests/data/baseline_tiny.json from the end-to-end run")
