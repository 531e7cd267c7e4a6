#!/usr/bin/env bash
# P1 (PEFT ÷ ours) and P3 (ours ÷ bare forward+backward) on the default backbone on a CUDA GPU, with the backbone
# in the dtype `backbone.dtype: auto` resolves to there (bf16 weights on a GPU with bf16; no autocast), at the default
# batch (8) and at batch 64. Prints tokens/s per side and the ratios; about 1-2 minutes, capped at 5.
#
#   benchmarks/gpu_check.sh [BACKBONE_DIR]      # default: models/backbone (run `dvc repro backbone` first)
#
# Exits 1 with a message, measuring nothing, when torch sees no CUDA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
BACKBONE=${1:-models/backbone}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  version=$("$PY" -c 'import torch; print(torch.__version__)')
  echo "gpu_check: no CUDA GPU visible to torch $version - nothing measured" >&2
  exit 1
fi
if [ ! -f "$BACKBONE/backbone.json" ]; then
  echo "gpu_check: no materialised backbone in $BACKBONE (run \`dvc repro backbone\` or pass the folder)" >&2
  exit 1
fi
"$PY" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

err=$(mktemp)
trap 'rm -f "$err"' EXIT
deadline=$((SECONDS + 290))
for batch in 8 64; do
  for bench in p1_peft_vs_ours p3_ours_vs_bare; do
    left=$((deadline - SECONDS))
    if [ "$left" -le 10 ]; then echo "gpu_check: 5-minute budget spent, stopping" >&2; exit 1; fi
    echo "== $bench, batch $batch"
    if ! out=$(timeout "$left" "$PY" "benchmarks/$bench.py" --device cuda --backbone "$BACKBONE" \
        --batch "$batch" --repeats 20 --warmup 5 --dtype auto 2>"$err"); then
      echo "gpu_check: $bench failed:" >&2; tail -20 "$err" >&2; exit 1
    fi
    grep -E 'tokens/s|ratio' <<<"$out"
  done
done
