"""Shared test set-up: never reach a model hub, and keep torch to the cores the machine has.

Also: a small project directory with params.yaml and a good `prepare` run in it (data-stage tests), and
the shared pipeline projects of tests/projects.py (each built once per session). Under pytest-xdist every
test that takes one of those projects runs on one worker (its `xdist_group`), and each worker's torch
keeps to one thread, so that two workers share two cores without oversubscribing them.
"""
from __future__ import annotations

import os

# A torch thread that waits for work sleeps rather than spins (OpenMP's passive wait): two xdist workers
# share two cores, so a stage on two threads beside a worker on one oversubscribes them, and spinning
# threads made such a stage 3.8x slower (a tiny-profile resnet18 train stage: 35.8 s spinning, 9.4 s
# passive, identical predictions; the wait policy changes when a thread sleeps, not what it computes).
# Set before torch is first imported, here and in every process the tests start (they inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.core.params import Params, to_dict
from projects import (GROUP_ORDER, GROUPS, paper_run, placeholder_checkout, shard_base, smoke_run,  # noqa: F401 (fixtures)
                      tiny_report, tiny_run, tiny_threads2, ucar_run)

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may fetch weights or data at run time
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one of several workers: one thread each, here and in the stages it starts
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)   # before xdist's own, which reads the groups set here (else none is read)
def pytest_collection_modifyitems(config, items):
    """Each shared project's tests on one xdist worker (`--dist loadgroup`): the project is built once
    either way (tests/projects.py's `built_once`), and grouped its tests wait on nothing but their own build.

    And the longest work first (longest-processing-time scheduling on two workers): the shared projects
    in GROUP_ORDER (the Uçar run, the longest build, first), then the other slow tests, then the fast
    tier. xdist hands out work units in collection order (pyproject's `--no-loadscope-reorder`: by default
    it orders them by their number of tests, which put the one-test Uçar run behind hundreds of short
    ones and made it the suite's tail)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        group = next((g for f, g in GROUPS.items() if f in names), None)   # GROUPS' order decides
        if group:
            item.add_marker(pytest.mark.xdist_group(group))

    def rank(item) -> tuple[int, int]:
        group = next((m.args[0] for m in item.iter_markers("xdist_group")), None)
        return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER),
                0 if item.get_closest_marker("slow") else 1)

    items.sort(key=rank)   # stable: collection order within a rank


FRESH = "MYOBENCH_FRESH_PROCESS"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test marked `fresh_process` runs in a pytest of its own (a fresh interpreter), not in the worker
    that collected it: a test that forks a process that trains (train.parallel_folds) inherits whatever
    the worker's earlier tests left in torch, and a fork after autograd has started its threads in the
    parent cannot train ("Unable to handle autograd's threading in combination with fork-based
    multiprocessing"; it failed once, after slow tests ran first on that worker). The stages themselves
    fork from a fresh process, as here."""
    if pyfuncitem.get_closest_marker("fresh_process") is None or os.environ.get(FRESH):
        return None
    nodeid = pyfuncitem.nodeid.split("@")[0]     # without xdist's group suffix
    # its own --basetemp: a pytest of its own would otherwise number a new one and, keeping one
    # (tmp_path_retention_count), delete this session's, shared projects and all
    basetemp = pyfuncitem.config._tmp_path_factory.mktemp("fresh-process")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           "-m", "slow or not slow", f"--basetemp={basetemp}", nodeid], cwd=pyfuncitem.config.rootpath,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, FRESH: "1"},
                          capture_output=True, text=True)
    if proc.returncode != 0 or " passed" not in proc.stdout:
        pytest.fail(f"{nodeid}, in a fresh process, exited {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}",
                    pytrace=False)
    return True     # called: the body ran there


@pytest.fixture(scope="session", autouse=True)
def _xdist_groups_held(request):
    """Every test errors, before any project is built, when xdist has lost the groups: its `--dist
    loadgroup` marks a grouped test by a suffix of its node id, which pytest 9.2 no longer lets it set
    (pytest-dev/pytest-xdist#1386; pyproject pins pytest below 9.2). The tests would pass all the same,
    each project's tests spread over both workers, the second waiting minutes for the first's build."""
    session = request.session
    if not (os.environ.get("PYTEST_XDIST_WORKER") and getattr(session.config.option, "loadgroup", False)):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]]
    if lost:
        pytest.fail(f"--dist loadgroup: {len(lost)} grouped tests lost their group (e.g. {lost[0]}): pytest "
                    f"{pytest.__version__} with this pytest-xdist does not group (pytest-dev/pytest-xdist#1386); "
                    f"install pytest<9.2, as pyproject.toml pins it", pytrace=False)


def pytest_addoption(parser):
    parser.addoption("--update-tiny-baseline", action="store_true",
                     help="rewrite tests/data/baseline_tiny.json from the end-to-end run")


def write_params(directory: Path, **data: object) -> None:
    """Write directory/params.yaml: the defaults with `data.<key>` replaced (`synthetic` may be a dict)."""
    raw = to_dict(Params())
    for key, value in data.items():
        raw["data"][key] = {**raw["data"][key], **value} if isinstance(value, dict) else value
    (directory / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def snapshot(root: Path) -> dict[str, bytes]:
    """Bytes of every file `prepare` writes under `root` (to check that a failed run kept them)."""
    files = sorted((root / "data" / "processed").rglob("*")) + [root / "reports" / "figures" / "cohort_examples.png"]
    return {str(p.relative_to(root)): p.read_bytes() for p in files if p.is_file()}


GOOD_ROWS = [  # path, patient_id, diagnosis, muscle, side
    ("n1_d.png", "P1", "N", "D", "R"), ("n1_fdp.png", "P1", "N", "FDP", "L"),
    ("ibm2_d.png", "P2", "IBM", "D", "R"), ("ibm2_fdp.png", "P2", "IBM", "FDP", "R"),
    ("pm3_d.png", "P3", "PM", "D", "L"), ("pm3_fdp.png", "P3", "PM", "FDP", "L"),
    ("dm4_d.png", "P4", "DM", "D", "R"), ("dm4_fdp.png", "P4", "DM", "FDP", "R"),
]


def write_manifest(path: Path, rows, header=("path", "patient_id", "diagnosis", "muscle", "side"),
                   delimiter: str = ",", bom: bool = False) -> None:
    """Write a manifest CSV (rows of strings; None writes an empty line)."""
    lines = [delimiter.join(header)] + ["" if r is None else delimiter.join(r) for r in rows]
    path.write_bytes(("\ufeff" if bom else "").encode() + ("\n".join(lines) + "\n").encode())


@pytest.fixture(scope="session")
def good_data_project(tmp_path_factory) -> Path:
    """A folder-source project (8 small PNGs, 4 patients) after one successful `prepare` run."""
    from pipeline import prepare

    root = tmp_path_factory.mktemp("good_data_project")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (name, *_rest) in enumerate(GOOD_ROWS):
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(raw / name)
    write_manifest(raw / "manifest.csv", GOOD_ROWS)
    write_params(root, source="folder", image_size=16, channels=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert prepare.main([]) == 0
    return root


@pytest.fixture
def data_project(good_data_project, tmp_path, monkeypatch) -> Path:
    """A fresh copy of `good_data_project` as the working directory."""
    root = tmp_path / "project"
    shutil.copytree(good_data_project, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no pixel data behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)   # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))
