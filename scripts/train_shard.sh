#!/usr/bin/env bash
# One worker's share of the train matrix, shared through the DVC remote's run cache.
#
#   bash scripts/train_shard.sh INDEX COUNT        # INDEX in 0..COUNT-1
#
# Run it at the project root of a checkout of the commit every worker uses, with the DVC remote in
# .dvc/config (docs/across-machines.md). It reproduces the train stages that
# `python -m pipeline.shard` assigns to this shard, restoring those the remote's run cache already
# holds (so a shard run again trains only what did not finish), then pushes what finished, even
# when a stage failed. Its exit status is that of `dvc repro`.
set -euo pipefail
index=${1:?usage: bash scripts/train_shard.sh INDEX COUNT}
count=${2:?usage: bash scripts/train_shard.sh INDEX COUNT}
# a step of its own: `dvc repro` given no target, as `dvc repro $(...)` is when the shard command
# fails, would reproduce the whole pipeline
targets=$(python -m pipeline.shard --index "$index" --count "$count")
echo "shard $index of $count:" $targets
status=0
dvc repro --pull --keep-going $targets || status=$?
dvc push --run-cache
exit "$status"
