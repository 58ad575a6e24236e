#!/usr/bin/env bash
# Rewrite the regression baseline from this checkout's results, with the noise it must tolerate
# measured: the same pipeline run again in a scratch copy with another thread count (other rounding,
# another training trajectory, as another machine would give), then
#   python -m pipeline.check --update --calibration <that run's metrics.json>
#
#   bash scripts/calibrate_baseline.sh [THREADS]        # default 1 (the demo pins 2)
#
# Run it after `dvc repro`, from the project root, and commit reports/baseline.json. The copy reuses
# data/ and the DVC cache, so only the train stages and those after them run again.
set -euo pipefail
threads=${1:-1}
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar --exclude=./.venv --exclude=./checkpoints -cf - . | tar -xf - -C "$work"
printf 'train:\n  threads: %s\n' "$threads" > "$work/calibration-threads.yaml"
(cd "$work" && python -m pipeline.params apply calibration-threads.yaml > /dev/null && dvc repro --quiet)
cp "$work/reports/metrics.json" "$root/reports/calibration_metrics.json.tmp"
python -m pipeline.check --update --calibration "$root/reports/calibration_metrics.json.tmp"
rm -f "$root/reports/calibration_metrics.json.tmp"
