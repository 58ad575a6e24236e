"""`python -m pipeline.stagetime [--dir timing]`: the stages' wall times after `dvc repro`, slowest first,
printed and written to timing/summary.csv (the records themselves: pipeline/core/stagetime.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.core.stagetime import COLUMNS, TIMING_DIR, table


def main(argv: list[str] | None = None) -> int:
    import argparse
    import csv

    ap = argparse.ArgumentParser(prog="python -m pipeline.stagetime", description="the stages' wall times after dvc repro")
    ap.add_argument("--dir", default=str(TIMING_DIR), help="where the stages wrote their records (timing/)")
    args = ap.parse_args(argv)
    rows = table(Path(args.dir))
    if not rows:
        print(f"no stage records under {args.dir}/: run `dvc repro` (each stage writes one when it ends)",
              file=sys.stderr)
        return 1
    with open(Path(args.dir) / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"{'stage':<44} {'wall s':>8} {'start-up s':>10} {'folds':>5} {'side by side':>12} {'fold train s':>12}")
    for r in rows:
        print(f"{r['stage'][:44]:<44} {r['wall_s']:>8.1f} {r.get('startup_s') or 0:>10.1f} "
              f"{r.get('fold_runs') or '':>5} {r.get('side_by_side') or '':>12} {r.get('fold_train_s') or '':>12}")
    total = sum(r["wall_s"] for r in rows)
    print(f"{'TOTAL (stages one after another)':<44} {total:>8.1f}   -> {Path(args.dir) / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
