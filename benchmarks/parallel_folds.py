"""Folds one after another against folds side by side: one train stage's wall time, start-up included.

Run at the root of a checkout after `dvc repro split` (it reads data/processed and data/splits and
leaves the checkout as it was). For each model it runs the whole train stage
(`python -m pipeline.train --model M --protocol P`, every fold of train.folds) as a separate
process, in a scratch directory of its own, under two settings of params.yaml:

  serial:       train.threads T, train.parallel_folds 1  (one fold at a time on T threads)
  side by side: train.threads T, train.parallel_folds W  (W folds at once, T // W threads each)

Rounds alternate the order of the two, and the median round of each is reported, because a shared
machine's speed drifts; the ratio serial / side by side is the speed-up.

    python benchmarks/parallel_folds.py --models stanet,resnet18,handcrafted --rounds 2
    python benchmarks/parallel_folds.py --models stanet --dvc-log repro.log   # also the stage times

With --dvc-log it also prints each stage's wall time from the log of `dvc repro -v` (its DEBUG lines
carry timestamps): from the last timestamp before "Running stage 'X'" to "stage: 'X' was reproduced".

A benchmark, not a test: it prints figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.core.sysinfo import cpu_name  # noqa: E402


def stage_seconds(workdir: Path, model: str, protocol: str) -> float:
    """Wall time of one train stage from nothing (no runs, no checkpoints) in `workdir`."""
    for leftover in ("runs", "checkpoints"):
        shutil.rmtree(workdir / leftover, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.train", "--model", model, "--protocol", protocol], cwd=workdir,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def scratch(base: dict, threads: int, workers: int, epochs: int | None, parent: Path) -> Path:
    """A directory with the checkout's processed data and folds, and params.yaml set to threads and workers
    (and every model to `epochs`, when given)."""
    d = parent / f"t{threads}-w{workers}"
    (d / "data").mkdir(parents=True)
    for sub in ("processed", "splits"):
        shutil.copytree(ROOT / "data" / sub, d / "data" / sub)
    raw = {**base, "train": {**base["train"], "threads": threads, "parallel_folds": workers}}
    if epochs:
        raw["train"]["epochs"] = epochs
        raw["train"]["overrides"] = {m: {**o, **({"epochs": epochs} if "epochs" in o else {})}
                                     for m, o in (raw["train"].get("overrides") or {}).items()}
    (d / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return d


DEBUG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
RUNNING = re.compile(r"^Running stage '([^']+)'")
DONE = re.compile(r"stage: '([^']+)' was reproduced")


def dvc_stage_times(log: Path) -> tuple[list[tuple[str, float]], float]:
    """(stage, seconds) in the order run, and the whole run's seconds, from `dvc repro -v`'s output."""
    last, first, starts, times = None, None, {}, []
    for line in log.read_text(errors="replace").splitlines():
        m = DEBUG_TIME.match(line)
        if m:
            last = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            first = first or last
            done = DONE.search(line)
            if done and done.group(1) in starts:
                times.append((done.group(1), (last - starts.pop(done.group(1))).total_seconds()))
            continue
        running = RUNNING.match(line)
        if running and last is not None:
            starts[running.group(1)] = last
    total = (last - first).total_seconds() if last and first else float("nan")
    return times, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="stanet,resnet18,handcrafted")
    ap.add_argument("--protocol", default="patient")
    ap.add_argument("--threads", type=int, default=2, help="train.threads: the stage's cores (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="train.parallel_folds side by side (default 2)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="every model's epochs (default: params.yaml's; fewer on a busy machine)")
    ap.add_argument("--dvc-log", type=Path, help="the output of `dvc repro -v`, for its stage times")
    args = ap.parse_args()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    folds = base["train"]["folds"]
    with tempfile.TemporaryDirectory(prefix="parallel-folds-") as tmp:
        serial = scratch(base, args.threads, 1, args.epochs, Path(tmp))
        side = scratch(base, args.threads, args.workers, args.epochs, Path(tmp))
        print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; load average before: "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"each figure: one `python -m pipeline.train --protocol {args.protocol}` stage, {len(folds)} folds, "
              f"start-up included; median of {args.rounds} alternating rounds"
              f"{f'; {args.epochs} epoch(s) per model' if args.epochs else ''}\n")
        print(f"| model | one after another, {args.threads} threads, s | {args.workers} side by side, "
              f"{args.threads // args.workers} thread(s) each, s | speed-up |")
        print("|---|---|---|---|")
        for model in args.models.split(","):
            times: dict[str, list[float]] = {"serial": [], "side": []}
            for r in range(args.rounds):
                order = [("serial", serial), ("side", side)]
                for name, d in order if r % 2 == 0 else order[::-1]:
                    times[name].append(stage_seconds(d, model, args.protocol))
            a, b = statistics.median(times["serial"]), statistics.median(times["side"])
            print(f"| {model} | {a:.1f} | {b:.1f} | {a / b:.2f}x |", flush=True)
        print(f"\nload average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.dvc_log:
        times, total = dvc_stage_times(args.dvc_log)
        print(f"\nstage times from {args.dvc_log} (`dvc repro -v`): {total:.0f} s in all\n")
        print("| stage | s |\n|---|---|")
        for name, seconds in times:
            print(f"| {name} | {seconds:.1f} |")
        print(f"| sum of stages | {sum(s for _, s in times):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
