"""The train matrix split over workers: which train stages worker I of N runs.

    python -m pipeline.shard --index 0 --count 4     # the DVC targets of shard 0 of 4, one per line

A worker runs its shard with `dvc repro` and shares the results through the DVC remote's run cache
(`dvc push --run-cache`); one `dvc repro --pull` elsewhere then restores every trained stage
instead of training it (scripts/train_shard.sh, docs/across-machines.md). DVC is the scheduler:
this module only chooses the partition.

The shards together hold every train stage of params.yaml exactly once. They are balanced by
expected cost, longest first (each stage goes to the shard with the least cost so far), so the
expensive stages (dual_vgg's) land on different workers. A stage's cost is its model's MACs per
image (reports/complexity/<model>.json, from the profile stage, committed with the code) times its
epochs times the folds it trains. It ignores the start-up every stage pays, and that a depthwise
network runs slower than its MACs say; the balance is as good as that estimate. It reads only
committed files, never what a run produced, so every worker computes the same partition.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from pipeline.core import grid, layout
from pipeline.core.cli import run_stage
from pipeline.core.errors import PipelineError
from pipeline.core.params import Params, load
from pipeline.core.readers import read_json

PAPER_SIDE = 224   # reports/complexity/*.json's paper_setting is 3 x 224 x 224


class ShardError(PipelineError):
    """--index or --count that cannot name a shard of the train matrix."""


@dataclass(frozen=True)
class Stage:
    """One train stage and its expected cost (multiply-accumulates over its whole training)."""
    name: str
    cost: float


def macs_per_image(model: str, params: Params) -> float | None:
    """Forward MACs of one training-size image, from the model's complexity record; None without one.

    A record made for another input size is scaled by the pixel count: a convolution's work grows
    with it."""
    path = layout.complexity_path(model)
    if not path.is_file():
        return None
    remedy = f"run `dvc repro profile@{model}` and commit {path}"
    record = read_json(path, remedy)
    side = params.data.image_size
    training = record.get("training_setting") if isinstance(record, dict) else None
    if isinstance(training, dict) and training.get("input") == [params.data.channels, side, side]:
        return _macs(training, f"{path}: training_setting.macs", remedy)
    paper = record.get("paper_setting") if isinstance(record, dict) else None
    if not isinstance(paper, dict):
        raise ShardError(f"{path}: no paper_setting object with macs (the record is {_shown(record)}); {remedy}")
    return _macs(paper, f"{path}: paper_setting.macs", remedy) * side * side / (PAPER_SIDE * PAPER_SIDE)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _macs(setting: dict, where: str, remedy: str) -> float:
    """A record's MACs: a finite positive number, else ShardError naming the field."""
    value = setting.get("macs")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ShardError(f"{where} is {_shown(value)}; expected a positive number of multiply-accumulates; {remedy}")
    return float(value)


def train_stages(params: Params) -> list[Stage]:
    """Every train stage of params.yaml, in dvc.yaml's matrix order, with its expected cost.

    A model without a complexity record counts as the costliest model that has one (a note on
    stderr says so): an unknown stage is better overestimated, on a shard of its own, than piled
    onto a busy one."""
    macs = {m: macs_per_image(m, params) for m in params.train.models}
    known = [v for v in macs.values() if v is not None]
    for model in [m for m, v in macs.items() if v is None]:
        print(f"note: {layout.complexity_path(model)} is missing; {model} is counted as costly as the costliest "
              f"profiled model (run `dvc repro profile@{model}` and commit the file for a better balance)",
              file=sys.stderr)
        macs[model] = max(known, default=1.0)
    folds = len(grid.folds_of(params))   # every fold of every repeat
    return [Stage(layout.train_stage(scenario, model, protocol), macs[model] * params.train.epochs_for(model) * folds)
            for scenario, model, protocol in grid.stages(params)]


def partition(stages: list[Stage], count: int) -> list[list[Stage]]:
    """`count` shards holding every stage once, balanced by cost: longest first, each to the least-loaded
    shard (ties to the lower index), so the result depends only on the stages and `count`."""
    shards: list[list[Stage]] = [[] for _ in range(count)]
    load_of = [0.0] * count
    order = {s.name: i for i, s in enumerate(stages)}
    for stage in sorted(stages, key=lambda s: (-s.cost, order[s.name])):
        k = min(range(count), key=lambda i: (load_of[i], i))
        shards[k].append(stage)
        load_of[k] += stage.cost
    return [sorted(shard, key=lambda s: order[s.name]) for shard in shards]


def shard(params: Params, index: int, count: int) -> list[str]:
    """The DVC targets of shard `index` (0-based) of `count`."""
    stages = train_stages(params)
    if count < 1:
        raise ShardError(f"--count {count} is not accepted; expected a number of workers >= 1")
    if count > len(stages):
        # an empty shard would leave a worker's `dvc repro` with no target, and that reproduces everything
        raise ShardError(f"--count {count} exceeds the {len(stages)} train stages of params.yaml "
                         f"(split.scenarios x train.models x split.protocols); use at most {len(stages)} workers")
    if not 0 <= index < count:
        raise ShardError(f"--index {index} is not accepted with --count {count}; expected 0..{count - 1}")
    return [s.name for s in partition(stages, count)[index]]


def main(argv: list[str] | None = None) -> int:
    """Print the targets of one shard, one per line."""
    ap = argparse.ArgumentParser(prog="python -m pipeline.shard", description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=int, required=True, help="this worker's shard, 0..count-1")
    ap.add_argument("--count", type=int, required=True, help="how many workers share the train matrix")
    args = ap.parse_args(argv)
    print("\n".join(shard(load(), args.index, args.count)))
    return 0


if __name__ == "__main__":
    run_stage(main)
