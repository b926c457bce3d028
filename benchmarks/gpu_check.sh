#!/usr/bin/env bash
# One-file GPU check of cgpt's training: the Cerebras-GPT 111M preset (seq 2048, GPT-2 vocabulary 50257,
# the recipe's global batch of 120), bf16 autocast + torch.compile + the fused AdamW, first as one plain
# process, then as DDP and as FSDP over every visible GPU. Prints, per run: tokens/s, MFU (against the
# datasheet's dense bf16 peak, cgpt/train/perf.py), peak memory per GPU next to cgpt's estimate, and the
# loss of the first and last steps (synthetic learnable tokens: it must fall). Target: >= 45% MFU for
# 111M on one H100/H200-class GPU.
#
#   bash benchmarks/gpu_check.sh                       # from the repo root, with a CUDA build of torch==2.13.0
#   STEPS=100 bash benchmarks/gpu_check.sh             # a shorter check (each run also compiles for ~1 min)
#   PYTHON=.venv/bin/python MICRO=24 STRATEGIES="fsdp" bash benchmarks/gpu_check.sh
#
# Environment: PYTHON (python), STEPS (300 timed steps per run), WARMUP (10, compile happens there),
# SEQ (2048), BATCH (120, rounded down to a multiple of the GPU count), MICRO (20 sequences per forward),
# STRATEGIES ("ddp fsdp"), OUT (gpu_check.json: the rows as JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
STEPS=${STEPS:-300}
WARMUP=${WARMUP:-10}
SEQ=${SEQ:-2048}
BATCH=${BATCH:-120}
MICRO=${MICRO:-20}
STRATEGIES=${STRATEGIES:-ddp fsdp}
OUT=${OUT:-gpu_check.json}

NGPU=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -lt 1 ]; then
  echo "error: no CUDA GPU visible to $PYTHON (torch $("$PYTHON" -c 'import torch; print(torch.__version__)'))" >&2
  exit 2
fi
BATCH=$(( BATCH / NGPU * NGPU ))
SHARE=$(( BATCH / NGPU ))
if [ "$MICRO" -gt "$SHARE" ]; then MICRO=$SHARE; fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())"
echo "cerebras-111m: $NGPU GPU(s), global batch $BATCH x $SEQ, $SHARE per GPU in micro-batches of $MICRO, $WARMUP + $STEPS steps"

# shellcheck disable=SC2086  # STRATEGIES is a list
"$PYTHON" benchmarks/train_throughput.py \
  --preset cerebras-111m --device cuda --precision bf16 --compile \
  --strategy $STRATEGIES --nproc "$NGPU" \
  --seq-len "$SEQ" --batch "$BATCH" --micro-batch "$MICRO" \
  --steps "$STEPS" --warmup "$WARMUP" --json "$OUT"
echo "rows written to $OUT; MFU target for 111M on one H100/H200: >= 45%"
