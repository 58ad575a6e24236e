"""The pipeline projects the suite builds, each built once per test session and shared.

Every test that reads a finished run's outputs takes one of these session-scoped fixtures (conftest.py
makes them available everywhere); none builds its own (tests/test_layout.py checks that no test module
outside this one calls `scratch_project` or runs `dvc repro`). A test that needs a variant derives it
from a shared run: a copy that changes one thing.

- `smoke_run`: profiles/smoke.yaml, `dvc repro` of every stage in well under a minute: the fast tier's
  end to end run (S1, stanet and handcrafted, patient folds, one epoch of two steps).
- `tiny_run`: profiles/tiny.yaml, S1-S4, two models, both protocols, two folds, two repeats; checked
  against tests/data/baseline_tiny.json. `tiny_threads2` is its S1 in a copy, trained again with
  train.threads 2.
- `paper_run`, `ucar_run`: profiles/paper.yaml at 224x224x3, shrunk to what a CPU affords (one optimizer
  step per epoch, one fold of each repeat); `ucar_run` adds the Uçar release layout and dual_vgg.
- `placeholder_checkout`: the project with a placeholder for every stage output and a dvc.lock that
  matches it (`dvc commit`), for what `dvc status` sees after an edit; nothing is trained.
- `shard_base`: a git and DVC project with a local remote, for the Slurm round trip; the workers train
  in clones of it (that is what the round trip tests).

Disk: a trained project links its outputs to DVC's cache instead of copying them (`cache.type`
hardlink, then copy where the file system has no hard links), and `built_once` drops what no test of a
shared project reads as soon as it is built: the checkpoints (the tests of resuming train their own
folds), and, for a project whose tests run no `dvc` command on it (`dvc_outputs=False`: the threads-2
twin, the paper and Uçar runs), the weights and DVC's cache too. resnet18's 45 MB of weights over the
tiny run's 32 folds were otherwise held four times over (workspace, cache, and twice in the checkpoint)
in each of the two tiny runs, and dual_vgg's 146 MB over the Uçar run's 8 folds as many: a CI disk
filled up once (tests/test_e2e.py checks what a shared project keeps).

Under pytest-xdist each project is still built once per session, whichever worker asks first: the build
runs under a file lock in the directory the workers share (`built_once`), and a worker that asks later
waits for it and reads it. conftest.py groups each project's tests on one worker (`xdist_group`), so that
the tiny, paper and Uçar runs are built side by side (the threads-2 twin, derived from the tiny run, goes
with the tiny run's tests).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
# what a copy of a finished project leaves out: the checkpoints and weights (hundreds of MB for resnet18,
# read by no test of a copy) and DVC's cache (a copy's stages find their outputs in the workspace)
HEAVY = shutil.ignore_patterns("checkpoints", "cache", "*.pt", "__pycache__")

# fixtures whose tests share one xdist worker, so that each project is built once
# (a test that takes two of them goes with the first listed here)
GROUPS = {"tiny_threads2": "tiny", "tiny_run": "tiny", "tiny_report": "tiny", "smoke_run": "smoke",
          "paper_run": "paper", "ucar_run": "ucar", "placeholder_checkout": "placeholder"}
# the groups whose tests run first, longest build first (conftest.py: the slowest work is handed out first)
GROUP_ORDER = ["ucar", "tiny", "paper"]


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
                             f"--- stderr\n{proc.stderr[-6000:]}")
    return proc


def child_cpu_seconds() -> float:
    """CPU seconds of finished child processes (user + system): on a shared machine, a steadier figure than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def scratch_project(work: Path, profiles: list[str | Path], link_cache: bool = False) -> dict:
    """Copy the project (code, scripts, profiles, dvc.yaml, params.yaml) into `work`, make it a git and DVC
    repository and apply `profiles` in turn; returns the environment to run its commands in. With
    `link_cache`, DVC hard-links its outputs to its cache rather than copying them (read-only files:
    `light_copy` makes a writable copy)."""
    for name in ("pipeline", "models", "profiles", "scripts", "tests/data"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, work / name)
    # stages run `python -m ...` and the scripts `python` and `dvc`: make those the test's own; one torch
    # thread unless a profile says otherwise (two xdist workers share CI's two cores)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(work), "MPLBACKEND": "Agg", "DVC_NO_ANALYTICS": "1",
           "OMP_NUM_THREADS": "1"}   # and OMP_WAIT_POLICY, from os.environ: conftest.py sets it and says why
    run(["git", "init", "-q"], work, env)
    run([sys.executable, "-m", "dvc", "init", "-q"], work, env)
    if link_cache:
        run([sys.executable, "-m", "dvc", "config", "cache.type", "hardlink,copy"], work, env)
    for profile in profiles:
        run([sys.executable, "-m", "pipeline.params", "apply", str(profile)], work, env)
    return env


def repro(work: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """`dvc repro` in `work`, timed (printed: pytest -s shows it, the durations table shows the fixture)."""
    start, cpu = time.perf_counter(), child_cpu_seconds()
    proc = run([sys.executable, "-m", "dvc", "repro", *args], work, env)
    print(f"{work.name}: dvc repro {' '.join(args)} in {time.perf_counter() - start:.0f} s wall, "
          f"{child_cpu_seconds() - cpu:.0f} s CPU")
    return proc


def trim(work: Path, dvc_outputs: bool) -> None:
    """Drop what no test of a finished shared project reads: its checkpoints, and unless `dvc_outputs`
    (a test runs `dvc status` or `dvc repro` on it) the weights in runs/ and DVC's cache."""
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    if not dvc_outputs:
        for weights in (work / "runs").rglob("*.pt"):
            weights.unlink()
        shutil.rmtree(work / ".dvc" / "cache", ignore_errors=True)


def built_once(tmp_path_factory, name: str, build, dvc_outputs: bool = True) -> tuple[Path, dict]:
    """`build(work)` (which returns a JSON-able dict: the environment, the repro's output) once per test
    session, for every xdist worker: under a file lock in the directory the workers share; a later caller
    waits for the lock and reads what was built. A build that failed is made again by the next caller.
    What no test of it reads is dropped as soon as it is built (`trim`)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    work, done = shared / f"shared-{name}", shared / f"shared-{name}.json"
    with FileLock(str(shared / f"shared-{name}.lock")):
        if not done.is_file():
            if work.exists():
                shutil.rmtree(work)
            work.mkdir()
            record = build(work)
            trim(work, dvc_outputs)
            done.write_text(json.dumps(record))
    return work, json.loads(done.read_text())


def _repro_record(work: Path, env: dict, proc: subprocess.CompletedProcess) -> dict:
    return {"env": env, "stdout": proc.stdout, "stderr": proc.stderr}


def _as_proc(record: dict) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], 0, record["stdout"], record["stderr"])


def light_copy(work: Path, to: Path, env: dict) -> tuple[Path, dict]:
    """A copy of a finished project without checkpoints, weights or DVC's cache, with its own PYTHONPATH;
    its files are writable (the file contents are copied, not DVC's read-only mode of a linked output)."""
    shutil.copytree(work, to, symlinks=True, ignore=HEAVY, copy_function=shutil.copyfile, dirs_exist_ok=True)
    return to, {**env, "PYTHONPATH": str(to)}


def _profile_build(*profiles: str, extra: dict | None = None):
    """A build for `built_once`: a scratch project with `profiles` applied (then `extra`, a profile written
    into it), after `dvc repro`."""
    def build(work: Path) -> dict:
        applied = list(profiles)
        if extra:
            (work / "extra.yaml").write_text(yaml.safe_dump(extra))
            applied.append("extra.yaml")
        env = scratch_project(work, applied, link_cache=True)
        env["OMP_NUM_THREADS"] = str((extra or {}).get("train", {}).get("threads", 1))
        return _repro_record(work, env, repro(work, env))
    return build


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """profiles/smoke.yaml after `dvc repro`: (work, env, proc)."""
    work, record = built_once(tmp_path_factory, "smoke", _profile_build("profiles/smoke.yaml"))
    return work, record["env"], _as_proc(record)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """profiles/tiny.yaml after `dvc repro`: (work, env, proc). Read it; copy it to change it."""
    work, record = built_once(tmp_path_factory, "tiny", _profile_build("profiles/tiny.yaml"))
    return work, record["env"], _as_proc(record)


# the twin's stages that train again: S1's, both models, both protocols (2 folds x 2 repeats each)
TWIN_TRAINS = [f"train@S1-{model}-{protocol}" for model in ("stanet", "resnet18") for protocol in ("patient", "image")]


@pytest.fixture(scope="session")
def tiny_threads2(tiny_run, tmp_path_factory, pytestconfig):
    """The tiny run's S1 at train.threads 2 (the profile pins 1): other rounding, another trajectory:
    (work, env, proc, the same scenarios' metrics.json at one thread).

    Derived from the finished tiny run, not built beside it: a light copy restricted to S1
    (split.scenarios), whose evaluate pools the tiny run's own S1 runs first (reports/metrics_threads1.json),
    and then, with train.threads 2, S1's train stages (TWIN_TRAINS: 16 fold runs of both models and both
    protocols) train again and evaluate pools those (reports/metrics.json; `dvc repro --single-item`: the
    copy has no weights of the other scenarios, and one evaluation's runs share their thread count).
    With --update-tiny-baseline all four scenarios train again: the baseline's noise is calibrated on all."""
    full = pytestconfig.getoption("--update-tiny-baseline")

    def build(work: Path) -> dict:
        source, env, _ = tiny_run
        _, env = light_copy(source, work, env)     # into built_once's (empty) directory
        env["OMP_NUM_THREADS"] = "2"

        def apply(name: str, data: dict) -> None:
            (work / name).write_text(yaml.safe_dump(data))
            run([sys.executable, "-m", "pipeline.params", "apply", name], work, env)

        if full:
            shutil.copy(work / "reports/metrics.json", work / "reports/metrics_threads1.json")
            apply("twin.yaml", {"train": {"threads": 2}})
            return _repro_record(work, env, repro(work, env))
        apply("s1.yaml", {"split": {"scenarios": ["S1"]}})
        repro(work, env, "--single-item", "evaluate")
        shutil.copy(work / "reports/metrics.json", work / "reports/metrics_threads1.json")
        apply("twin.yaml", {"train": {"threads": 2}})
        trained = repro(work, env, "--single-item", *TWIN_TRAINS)
        pooled = repro(work, env, "--single-item", "evaluate")
        return {"env": env, "stdout": trained.stdout + pooled.stdout, "stderr": trained.stderr + pooled.stderr}

    work, record = built_once(tmp_path_factory, "tiny-threads2-full" if full else "tiny-threads2", build,
                              dvc_outputs=False)
    return work, record["env"], _as_proc(record), work / "reports/metrics_threads1.json"


@pytest.fixture(scope="session")
def tiny_report(tiny_run, tmp_path_factory):
    """A light copy of the tiny run, for tests that draw its report again (they write into it)."""
    work, env, _ = tiny_run
    return light_copy(work, tmp_path_factory.mktemp("tiny-report") / "work", env)


# what a CPU shrinks in any paper run: the models, the folds trained, epochs, the optimizer steps in one and
# their batch (one step is a path through training), latency runs, the protocols exported to ONNX, int8 calibration images,
# resamples
CPU_SIZES = """\
train:
  models: [stanet]
  folds: [1]
  epochs: 1
  max_steps_per_epoch: 1
  optim:
    batch_size: 16       # one step of 16 images is the path one of 256 is (256 is the shrunk cohort's whole training part)
profile:
  latency_runs: 2
  warmup_runs: 1
  threads: 1
  batch_size: 2          # the throughput batch at 224 px (32 by default: dual_vgg's 96 images there were 100 s)
deploy:
  protocols: [patient]   # one protocol exported, checked and quantized (the demo's default too)
  calibration_images: 2  # int8 calibration is one pass per image (dual_vgg's 8 at 224 px were 6 s a deploy)
  paper_input_latency_runs: 2
evaluate:
  bootstrap: 100
"""
PAPER_SHRINK = """\
# profiles/paper.yaml as CI's CPU can run it: only sizes shrink
profile_name: paper-cpu-shrunk
data:
  synthetic:
    patients: 27          # the fewest with 5 patients of every class in S1-S4: 5 patient folds each
    images_per_side: 1
""" + CPU_SIZES
# the paper run trains the proposed network alone; the Uçar run adds the classical baseline (its texture
# features at 224 px were the paper run's costliest stages) and Uçar's own network
PAPER_MODELS = ["stanet"]


@pytest.fixture(scope="session")
def paper_run(tmp_path_factory):
    """profiles/paper.yaml, then PAPER_SHRINK, after `dvc repro`: (work, proc)."""
    def build(work: Path) -> dict:
        (work / "shrink.yaml").write_text(PAPER_SHRINK)
        env = scratch_project(work, ["profiles/paper.yaml", "shrink.yaml"], link_cache=True)
        return _repro_record(work, env, repro(work, env))   # train.threads: 0 is torch's default: OMP_NUM_THREADS, 1
    work, record = built_once(tmp_path_factory, "paper", build, dvc_outputs=False)
    return work, _as_proc(record)


# 5 patients of each diagnosis: five patient folds in every scenario (S4's four classes too)
UCAR_PATIENTS = tuple((f"M{101 + i:03d}", diagnosis) for i, diagnosis in enumerate(["N", "IBM", "PM", "DM"] * 5))
# with Uçar's own network (dual_vgg, on the paper's recipe from stand-in ImageNet weights, its batch shrunk to
# 2 images: one step at 224 px is a path), so that the report's Uçar rows are filled from the ucar protocol
UCAR_MODELS = [*PAPER_MODELS, "handcrafted", "dual_vgg"]
UCAR_SHRINK = """\
# the paper profile on the ucar fixture, as CI's CPU can run it: only sizes shrink
profile_name: "Uçar release layout, synthetic stand-in images (tests/ucar_fixture.py)"
""" + CPU_SIZES.replace(f"models: [{', '.join(PAPER_MODELS)}]", f"models: [{', '.join(UCAR_MODELS)}]")


def ucar_shrink() -> str:
    """UCAR_SHRINK with the paper's own dual_vgg recipe, its batch shrunk to 2 images (a profile's
    train.overrides replaces the recipes whole: the rest of the recipe is copied from profiles/paper.yaml)."""
    shrink = yaml.safe_load(UCAR_SHRINK)
    recipe = yaml.safe_load((ROOT / "profiles/paper.yaml").read_text())["train"]["overrides"]["dual_vgg"]
    shrink["train"]["overrides"] = {"dual_vgg": {**recipe, "batch_size": 2}}
    # the exported networks untimed at 224 px (deploy.paper_input_latency_runs 0): the paper run times them
    # there already, and dual_vgg's 1- and 2-thread fp32 and int8 timings were most of its deploy stages.
    # (deploy.protocols stays [patient]: an empty list means every protocol, not none)
    shrink["deploy"]["paper_input_latency_runs"] = 0
    return yaml.safe_dump(shrink, sort_keys=False, allow_unicode=True)


@pytest.fixture(scope="session")
def ucar_run(tmp_path_factory):
    """The Uçar release layout (tests/ucar_fixture.py) under profiles/paper.yaml, profiles/ucar.yaml and
    UCAR_SHRINK, after `dvc repro`: (work, proc, what the fixture wrote)."""
    from builders import vgg_stand_ins
    from ucar_fixture import write_ucar_fixture

    def build(work: Path) -> dict:
        # step 1: the release under data/raw, as published (random-pixel stand-ins at 256x224, resized to 224);
        # one image per patient (the right deltoid: every network at 224 px predicts each test and validation
        # image, and dual_vgg's forward there is most of its stages); several muscles and both sides are
        # parsed in tests/test_prepare.py
        written = write_ucar_fixture(work / "data" / "raw", patients=UCAR_PATIENTS, muscles=("D",), size=(256, 224),
                                     sides=("R",))
        (work / "shrink.yaml").write_text(ucar_shrink())
        # step 2: the paper profile, then the ucar profile (then, here only, the CPU's sizes)
        env = scratch_project(work, ["profiles/paper.yaml", "profiles/ucar.yaml", "shrink.yaml"], link_cache=True)
        # the ImageNet weights the paper's dual_vgg recipe asks for, as a user's filled cache holds them
        # (random stand-ins: no hub is reached)
        hub = work.parent / f"{work.name}-hub"
        hub.mkdir(exist_ok=True)
        vgg_stand_ins(hub)
        env.update(HF_HOME=str(hub), HF_HUB_CACHE=str(hub))
        return {**_repro_record(work, env, repro(work, env)), "written": written}   # step 3

    work, record = built_once(tmp_path_factory, "ucar", build, dvc_outputs=False)
    written = record["written"]
    written["folds"] = {s: [tuple(x) for x in v] for s, v in written["folds"].items()}   # JSON made them lists
    return work, _as_proc(record), written


def placeholders(work: Path) -> None:
    """A file (or a directory holding one) for every stage output and data dependency that is not
    there, so that `dvc commit` can record a consistent dvc.lock without running anything."""
    from dvc.repo import Repo

    with Repo(str(work)) as repo:
        stages = list(repo.index.stages)
        for kind in ("outs", "deps"):
            for stage in stages:
                for item in getattr(stage, kind):
                    path = Path(item.fs_path)
                    if path.exists() or path.suffix == ".py":
                        continue
                    if path.suffix:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text("placeholder\n")
                    else:
                        path.mkdir(parents=True, exist_ok=True)
                        (path / "placeholder").write_text("placeholder\n")


@pytest.fixture(scope="session")
def placeholder_checkout(tmp_path_factory):
    """The project (default params) with placeholder outputs and a matching dvc.lock: (work, env). Its
    tests edit a file and take the edit back: they run on one worker (conftest.py's xdist_group)."""
    work = tmp_path_factory.mktemp("placeholders")
    env = scratch_project(work, [])
    placeholders(work)
    run([sys.executable, "-m", "dvc", "commit", "-f", "-q"], work, env)
    return work, env


@pytest.fixture
def shard_base(tmp_path):
    """The tiny profile at S1, one epoch of two steps, as a committed git and DVC project with a local
    remote: (base, remote, env without PYTHONPATH, commit)."""
    from pipeline.core import layout

    base, remote = tmp_path / "project", tmp_path / "remote"
    base.mkdir()
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(
        {"split": {"scenarios": ["S1"]}, "train": {"threads": 1, "epochs": 1, "max_steps_per_epoch": 2}}))
    env = scratch_project(base, ["profiles/tiny.yaml", tmp_path / "small.yaml"])
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}   # every clone runs its own code
    for model in ("stanet", "resnet18"):
        (base / "reports/complexity").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / layout.complexity_path(model), base / layout.complexity_path(model))
    run([sys.executable, "-m", "dvc", "remote", "add", "-d", "shared", str(remote)], base, env)
    run(["git", "add", "-A"], base, env)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "project"], base, env)
    return base, remote, env, run(["git", "rev-parse", "HEAD"], base, env).stdout.strip()


def assemble(clone: Path, env: dict) -> subprocess.CompletedProcess:
    """`dvc repro --pull` in a clone whose train stages are all in the remote's run cache (trains nothing)."""
    return repro(clone, env, "--pull")
