"""benchmarks/gpu_check.sh in its CPU dry run, offline, with an empty Hugging Face cache: the script a lent
GPU machine runs is known to run to the end before a GPU is ever lent.

Runs in a copy of the project's tracked code (as a fresh clone has it). dual_vgg's ImageNet weights are not
to be had, so the script trains it from scratch and says so in its output and in projection.json.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from projects import child_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_offline_to_the_end_and_times_dual_vgg(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("pipeline", "models", "benchmarks", "profiles"):
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml"):   # train hashes the code deps dvc.yaml declares
        shutil.copy(ROOT / name, clone / name)
    hf_home = tmp_path / "empty-hf-cache"
    hf_home.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    out = tmp_path / "out"
    start, cpu = time.perf_counter(), child_cpu_seconds()
    proc = subprocess.run(["bash", str(clone / "benchmarks/gpu_check.sh"), "--cpu-dry-run", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    print(f"gpu_check.sh --cpu-dry-run: {time.perf_counter() - start:.0f} s wall, {child_cpu_seconds() - cpu:.0f} s CPU")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "== done in" in log and "CPU dry run" in log
    assert "dual_vgg: no ImageNet weights" in log and "trained from scratch" in log
    throughput = json.loads((out / "throughput.json").read_text())
    assert [r["model"] for r in throughput["results"]] == ["stanet", "dual_vgg"]
    assert all(r["ceiling_img_s"] > 0 and r["pipeline_img_s"] > 0 for r in throughput["results"])
    rows = list(csv.DictReader(open(out / "timings.csv")))
    done = {(r["stage"], r["model"]) for r in rows if r["status"] == "0"}
    for stage in ("prepare", "split", "evaluate", "report"):
        assert (stage, "-") in done, (stage, rows)
    for model in ("stanet", "dual_vgg"):
        assert {("train", model), ("profile", model), ("deploy", model)} <= done, (model, rows)
    # the report reads the deploy stages' output; the dry run deploys fold 1 of the patient protocol
    assert {(r["protocol"], r["fold"]) for r in rows if r["stage"] == "deploy"} == {("patient", "1")}, rows
    projection = json.loads((out / "projection.json").read_text())
    assert projection["per_model_fold_seconds"]["dual_vgg"] > 0
    # the paper profile deploys 4 scenarios x 2 protocols x 5 folds of repeat 1 per model
    assert projection["deploy_folds_per_model"] == 40 and projection["deploy_fold_seconds"]["dual_vgg"] > 0
    assert "trained from scratch" in projection["notes"]["dual_vgg"]
    assert "dry run" in projection["notes"]["device"]
    measured = [line for line in log.splitlines() if line.startswith("measured: ")]
    assert any("train dual_vgg fold 1" in line for line in measured), measured
    assert any(line.startswith("skipped or failed: none") for line in log.splitlines())
    assert any(line.startswith("skipped by the dry run:") and "resnet18" in line for line in log.splitlines())
    assert (out / "reports.tar.gz").stat().st_size > 0
