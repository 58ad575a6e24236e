#!/usr/bin/env bash
# The GPU checks of issue 7 in one prepared run, for a lent GPU machine (about 6 minutes on an H200).
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# 1. benchmarks/throughput.py on CUDA, every default model, batch 64, 3x224x224: the pipeline's
#    training images/s against the random-tensor ceiling measured in the same run.
# 2. The paper profile (profiles/paper.yaml) for two folds of every default model, stage by stage as
#    dvc.yaml orders them, each stage timed (dvc itself is not needed on the machine).
# 3. The projection of the whole paper profile (4 scenarios, 5 folds, both protocols) from those timings.
# Writes under OUTDIR: throughput.json, timings.csv, projection.json, reports.tar.gz, log.txt.
# Installs nothing but the wheels carried in .whl/ (thop, absent from the GPU image). Make them
# beforehand, where pip reaches PyPI: pip download --no-deps -d .whl thop==0.1.1.post2209072238
set -uo pipefail
OUT_DIR=$(mkdir -p "${1:?usage: gpu_check.sh OUTDIR}" && cd "$1" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUDGET=${GPU_CHECK_BUDGET_S:-420}   # stop starting new training runs after this many seconds
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if compgen -G "$REPO/.whl/*.whl" >/dev/null && ! python3 -c "import thop" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$REPO"/.whl/*.whl && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$REPO:${PYTHONPATH:-}"
exec > >(tee -a "$OUT_DIR/log.txt") 2>&1
START=$(date +%s.%N)
elapsed() { python3 -c "import time; print(round(time.time() - $START, 1))"; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
python3 -c "import sys, torch, timm; print('python', sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. throughput (t=$(elapsed)s)"
python3 "$REPO/benchmarks/throughput.py" --device cuda --input 3,224,224 --batch-size 64 \
  --models stanet,dual_vgg,resnet18,mobilenetv3_small_100,efficientnet_b0 --json "$OUT_DIR/throughput.json"

echo "== 2. paper profile, two folds (t=$(elapsed)s)"
WORK=$(mktemp -d)
cp "$REPO/params.yaml" "$WORK/" && cd "$WORK" || exit 1
python3 -m pipeline.params apply "$REPO/profiles/paper.yaml" >/dev/null
python3 -m pipeline.params apply "$REPO/profiles/gpu-check.yaml" >/dev/null
echo "stage,model,protocol,fold,seconds,status" > "$OUT_DIR/timings.csv"
timed() {  # timed STAGE MODEL PROTOCOL FOLD -- command...
  local stage=$1 model=$2 protocol=$3 fold=$4; shift 5
  local t0 t1 rc
  t0=$(date +%s.%N); "$@"; rc=$?; t1=$(date +%s.%N)
  echo "$stage,$model,$protocol,$fold,$(python3 -c "print(round($t1 - $t0, 2))"),$rc" >> "$OUT_DIR/timings.csv"
  return $rc
}
timed prepare - - - -- python3 -m pipeline.prepare | tail -5
timed split - - - -- python3 -m pipeline.split > /dev/null
MODELS=$(python3 -c "from pipeline.params import load; print(' '.join(load().train.models))")
for fold in 1 2; do
  for model in $MODELS; do
    if python3 -c "import sys; sys.exit(0 if $(elapsed) < $BUDGET else 1)"; then
      timed train "$model" patient "$fold" -- python3 -m pipeline.train --scenario S1 --model "$model" --protocol patient --fold "$fold" \
        | grep -E "epoch (1|30)/|test accuracy|error"
    else
      echo "$model fold $fold: skipped, past the ${BUDGET}s budget"; echo "train,$model,patient,$fold,,skipped" >> "$OUT_DIR/timings.csv"
    fi
  done
done
echo "== 3. profile, evaluate, report (t=$(elapsed)s)"
for model in $MODELS; do timed profile "$model" - - -- python3 -m pipeline.profile --model "$model" > /dev/null; done
timed evaluate - - - -- python3 -m pipeline.evaluate > /dev/null && timed report - - - -- python3 -m pipeline.report > /dev/null
tar czf "$OUT_DIR/reports.tar.gz" reports params.yaml 2>/dev/null
python3 "$REPO/benchmarks/project_paper_time.py" "$OUT_DIR/timings.csv" --json "$OUT_DIR/projection.json"
echo "== done in $(elapsed)s"
