"""Time the default `dvc repro` in a fresh clone, stage by stage (issue 39): a benchmark, not a test.

    python benchmarks/demo_time.py [--repo .] [--work /tmp/demo-time] [--csv timing.csv] [--keep]

Clones `--repo` (its committed HEAD) into `--work`, runs `python -m dvc repro` there with this interpreter
(the environment the README's install command made) and prints, per stage, its wall time (from DVC's
"Running stage" line to the next), the seconds its fold runs report training (train stages: the sum of
"... s on <CPU>" over the stage's folds) and what is left (start-up, imports, data loading, writing, DVC's
hashing), then the totals and the machine. The suite does not run it; CI can, to see where the demo's time
goes on its machine.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAGE = re.compile(r"Running stage '([^']+)'")
FOLD = re.compile(r"\(best epoch \d+/\d+, ([0-9.]+)s on ")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_repro(work: Path, env: dict) -> list[dict]:
    """Run `dvc repro` in `work`; one row per stage: wall seconds, fold training seconds, the rest."""
    rows: list[dict] = []
    start = last = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter()
        stage = STAGE.search(line)
        if stage:
            if rows:
                rows[-1]["wall_s"] = now - last
            rows.append({"stage": stage.group(1), "wall_s": None, "fold_train_s": 0.0, "folds": 0})
            last = now
        fold = FOLD.search(line)
        if fold and rows:
            rows[-1]["fold_train_s"] += float(fold.group(1))
            rows[-1]["folds"] += 1
    code = proc.wait()
    if rows:
        rows[-1]["wall_s"] = time.perf_counter() - last
    if code != 0:
        raise SystemExit(f"dvc repro exited {code} in {work}")
    rows.append({"stage": "TOTAL", "wall_s": time.perf_counter() - start,
                 "fold_train_s": sum(r["fold_train_s"] for r in rows), "folds": sum(r["folds"] for r in rows)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".")
    ap.add_argument("--work", default="/tmp/demo-time")
    ap.add_argument("--csv")
    ap.add_argument("--keep", action="store_true", help="keep the clone (default: removed)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    subprocess.run(["git", "clone", "-q", str(Path(args.repo).resolve()), str(work)], check=True)
    env = {**os.environ, "PYTHONPATH": str(work), "MPLBACKEND": "Agg", "DVC_NO_ANALYTICS": "1"}
    rows = time_repro(work, env)
    for r in rows:
        r["other_s"] = None if r["wall_s"] is None else r["wall_s"] - (r["fold_train_s"] / max(1, _workers(work, r)))
    print(f"{'stage':34s} {'wall s':>8s} {'folds':>6s} {'fold train s':>13s} {'other s':>8s}")
    for r in sorted(rows[:-1], key=lambda r: -(r["wall_s"] or 0)) + rows[-1:]:
        print(f"{r['stage']:34s} {r['wall_s']:8.1f} {r['folds']:6d} {r['fold_train_s']:13.1f} "
              f"{(r['other_s'] or 0):8.1f}")
    print(f"{cpu_model()}, {os.cpu_count()} cores; train stages' 'other' assumes their folds ran side by side as "
          f"train.parallel_folds says")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["stage", "wall_s", "folds", "fold_train_s", "other_s"])
            writer.writeheader()
            writer.writerows(rows)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _workers(work: Path, row: dict) -> int:
    """Folds side by side in a train stage (train.parallel_folds of the clone's params.yaml); 1 otherwise."""
    if not row["stage"].startswith("train"):
        return 1
    import yaml

    train = (yaml.safe_load((work / "params.yaml").read_text()) or {}).get("train", {})
    return max(1, int(train.get("parallel_folds", 1) or 1))


if __name__ == "__main__":
    sys.exit(main())
