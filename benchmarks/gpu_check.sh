#!/usr/bin/env bash
# The GPU checks of issue 7 in one prepared run, for a lent GPU machine (about 6 minutes on an H200).
#
#   bash benchmarks/gpu_check.sh OUTDIR                  # on the GPU
#   bash benchmarks/gpu_check.sh --cpu-dry-run OUTDIR    # the same script on a CPU, shrunk (CI runs it);
#                                                        # or GPU_CHECK_DRY_RUN=1
#
# 1. benchmarks/throughput.py on CUDA, every default model, batch 64, 3x224x224: the pipeline's
#    training images/s against the random-tensor ceiling measured in the same run.
# 2. The paper profile (profiles/paper.yaml, then profiles/gpu-check.yaml) for two folds of every default
#    model, stage by stage as dvc.yaml orders them, each stage timed (dvc itself is not needed on the machine).
#    A lent machine reaches no hub: without the ImageNet weights of dual_vgg in the Hugging Face cache, dual_vgg
#    is trained from scratch instead, which costs the same per step; the output and projection.json say so.
#    Then profile, deploy (ONNX export, int8, ONNX Runtime latency: on the CPU), evaluate and report.
# 3. The projection of the whole paper profile (4 scenarios, 5 folds, both protocols) from those timings.
# Writes under OUTDIR: throughput.json, timings.csv, projection.json, reports.tar.gz, log.txt; its last lines
# list what was measured and what was skipped.
# The dry run applies profiles/gpu-check-dry-run.yaml too (32x32 input, 14 patients, stanet and dual_vgg,
# fold 1, one epoch, device cpu, one thread) and runs throughput.py on the CPU at that size.
# Installs nothing but the wheels carried in .whl/ (thop, absent from the GPU image). Make them
# beforehand, where pip reaches PyPI: pip download --no-deps -d .whl thop==0.1.1.post2209072238
set -uo pipefail
DRY=${GPU_CHECK_DRY_RUN:-0}
if [ "${1:-}" = "--cpu-dry-run" ]; then DRY=1; shift; fi
OUT_DIR=$(mkdir -p "${1:?usage: gpu_check.sh [--cpu-dry-run] OUTDIR}" && cd "$1" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
# stop starting new training runs after this many seconds (a lent GPU's lease; a loaded CPU's dry run)
BUDGET=${GPU_CHECK_BUDGET_S:-$([ "$DRY" = 1 ] && echo 1800 || echo 420)}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if compgen -G "$REPO/.whl/*.whl" >/dev/null && ! python3 -c "import thop" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$REPO"/.whl/*.whl && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$REPO:${PYTHONPATH:-}"
exec > >(tee -a "$OUT_DIR/log.txt") 2>&1
START=$(date +%s.%N)
elapsed() { python3 -c "import time; print(round(time.time() - $START, 1))"; }

if [ "$DRY" = 1 ]; then
  echo "== CPU dry run: the script's every step at a toy size on the CPU; its times project nothing"
  THROUGHPUT=(--device cpu --input 3,32,32 --batch-size 4 --steps 2 --warmup 1 --rounds 1 --threads 1
              --models stanet,dual_vgg)
else
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader || true
  THROUGHPUT=(--device cuda --input 3,224,224 --batch-size 64
              --models stanet,dual_vgg,resnet18,mobilenetv3_small_100,efficientnet_b0)
fi
python3 -c "import sys, torch, timm; print('python', sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. throughput (t=$(elapsed)s)"
python3 "$REPO/benchmarks/throughput.py" "${THROUGHPUT[@]}" --json "$OUT_DIR/throughput.json"

echo "== 2. paper profile, two folds (t=$(elapsed)s)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT   # what it made is in OUTDIR/reports.tar.gz
cp "$REPO/params.yaml" "$WORK/" && cd "$WORK" || exit 1
python3 -m pipeline.params apply "$REPO/profiles/paper.yaml" >/dev/null
python3 -m pipeline.params apply "$REPO/profiles/gpu-check.yaml" >/dev/null
if [ "$DRY" = 1 ]; then python3 -m pipeline.params apply "$REPO/profiles/gpu-check-dry-run.yaml" >/dev/null 2>&1; fi
# dual_vgg's ImageNet weights: from the Hugging Face cache or not at all (no hub is reached)
SCRATCH_NOTE=$(python3 - <<'PY'
import yaml
import models
from pipeline.core.params import load
p = load()
if "dual_vgg" in p.train.models and p.train.pretrained_for("dual_vgg"):
    try:
        models.create_model("dual_vgg", 2, 3, pretrained=True)
    except models.WeightsNotFoundError:
        raw = yaml.safe_load(open("params.yaml"))
        raw["train"]["overrides"]["dual_vgg"]["pretrained"] = False   # the rest of Uçar's recipe stays
        with open("from-scratch.yaml", "w") as f:
            yaml.safe_dump({"train": {"overrides": raw["train"]["overrides"]}}, f)
        print("no ImageNet weights (timm/vgg16.tv_in1k, timm/vgg19.tv_in1k) in this machine's Hugging Face cache: "
              "trained from scratch for timing, with Uçar's recipe otherwise; a step costs the same, its accuracy "
              "means nothing")
PY
)
if [ -n "$SCRATCH_NOTE" ]; then
  python3 -m pipeline.params apply from-scratch.yaml >/dev/null 2>&1
  echo "dual_vgg: $SCRATCH_NOTE"
fi
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
MODELS=$(python3 -c "from pipeline.core.params import load; print(' '.join(load().train.models))" 2>/dev/null)
FOLDS=$(python3 -c "from pipeline.core.params import load; print(' '.join(map(str, load().train.folds)))" 2>/dev/null)
EPOCHS=$(python3 -c "from pipeline.core.params import load; print(load().train.epochs)" 2>/dev/null)
for fold in $FOLDS; do
  for model in $MODELS; do
    if python3 -c "import sys; sys.exit(0 if $(elapsed) < $BUDGET else 1)"; then
      timed train "$model" patient "$fold" -- python3 -m pipeline.train --scenario S1 --model "$model" --protocol patient --fold "$fold" \
        | grep -E "epoch (1|$EPOCHS)/|validation balanced accuracy|error"
    else
      echo "$model fold $fold: skipped, past the ${BUDGET}s budget"; echo "train,$model,patient,$fold,,skipped" >> "$OUT_DIR/timings.csv"
    fi
  done
done
echo "== 3. profile, deploy, evaluate, report (t=$(elapsed)s)"
for model in $MODELS; do timed profile "$model" - - -- python3 -m pipeline.profile --model "$model" > /dev/null; done
# the report reads every deploy stage's output: export, check and quantize S1's trained folds (ONNX Runtime on the CPU)
DEPLOY_PROTOCOLS=$(python3 -c "from pipeline.core.params import load; print(' '.join(load().deploy_protocols()))" 2>/dev/null)
DEPLOY_FOLDS=$(python3 -c "from pipeline.core.params import load; print(' '.join(map(str, load().deploy_folds())))" 2>/dev/null)
for model in $MODELS; do
  timed deploy "$model" "$DEPLOY_PROTOCOLS" "$DEPLOY_FOLDS" -- python3 -m pipeline.deploy --scenario S1 --model "$model" | tail -3
done
timed evaluate - - - -- python3 -m pipeline.evaluate > /dev/null && timed report - - - -- python3 -m pipeline.report > /dev/null
tar czf "$OUT_DIR/reports.tar.gz" reports params.yaml 2>/dev/null
NOTES=(--note "device=$([ "$DRY" = 1 ] && echo "cpu dry run at a toy size: projects nothing" || echo cuda)")
[ -n "$SCRATCH_NOTE" ] && NOTES+=(--note "dual_vgg=$SCRATCH_NOTE")
python3 "$REPO/benchmarks/project_paper_time.py" "$OUT_DIR/timings.csv" --json "$OUT_DIR/projection.json" "${NOTES[@]}"
echo "== measured and skipped"
python3 - "$OUT_DIR" <<'PY'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = list(csv.DictReader(open(out / "timings.csv")))
throughput = json.loads((out / "throughput.json").read_text()) if (out / "throughput.json").is_file() else {"results": []}
print("measured: throughput of " + (", ".join(r["model"] for r in throughput["results"]) or "nothing"))
done = [r for r in rows if r["status"] == "0"]
print("measured: " + ", ".join(f"{r['stage']} {r['model']} fold {r['fold']}".replace(" - fold -", "").replace(" fold -", "")
                               for r in done))
skipped = [r for r in rows if r["status"] != "0"]
print("skipped or failed: " + (", ".join(f"{r['stage']} {r['model']} fold {r['fold']} ({r['status'] or 'skipped'})"
                                         for r in skipped) or "none"))
PY
if [ "$DRY" = 1 ]; then
  echo "skipped by the dry run: nvidia-smi and CUDA; 224x224 input; $(python3 -c "
from pipeline.core.roster import DEFAULT_MODELS
print(', '.join(m for m in DEFAULT_MODELS if m not in '$MODELS'.split()) or 'no models')") (only $MODELS were run); folds other than $FOLDS"
fi
echo "== done in $(elapsed)s"
