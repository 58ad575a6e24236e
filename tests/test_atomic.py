"""Atomic writes: a failure part-way leaves the previous output byte-for-byte intact."""
from __future__ import annotations

import pytest

from pipeline.core.atomic import atomic_path, atomic_write_json, atomic_write_text


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_directory_is_replaced_whole(tmp_path):
    target = tmp_path / "run"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(ValueError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "b.txt").write_text("2")
            raise ValueError("stage failed")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_path(target, directory=True) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_json_is_stable(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1.5]})
    atomic_write_text(tmp_path / "b.json", '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n')
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
