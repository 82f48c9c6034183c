#!/usr/bin/env bash
# Everything gapbench measures on a GPU, as one prepared call for a session that is lent one
# (about 5 minutes of an H200; run it with a time limit of 9 minutes, leaving room for a rerun):
#
#   bash benchmarks/gpu_session.sh                      # on the GPU machine; writes under $OUT
#   DEVICE=cpu SIZE=tiny bash benchmarks/gpu_session.sh # the same steps, tiny, on any CPU (a dry run)
#
# 1. the CUDA path checked against the CPU and its step times (benchmarks/gpu.py);
# 2. the per-run cost of a training step alone against the job's runs trained together (E = 4,
#    15) at the paper's size, H = 128, batch 64, T = 100 and 1000 (benchmarks/batched_training.py):
#    the GPU targets of "Many runs as one computation" (>= 10x per-run throughput for the
#    elementwise models, >= 3x for lstm and gru).
# Results: $OUT/*.csv and *.txt, each naming the machine and commit.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/bench/gpu_session}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-paper}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -c "import gapbench.tasks" 2>/dev/null || \
  python3 -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
{ git rev-parse --short HEAD 2>/dev/null || echo "no git"; } > "$OUT/machine.txt"
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$OUT/machine.txt"; fi
python3 -c "import torch; print('torch', torch.__version__)" >> "$OUT/machine.txt"

if [ "$SIZE" = tiny ]; then
  sizes=(--hidden 8 --batch 4 --lengths 10 --runs 2 --steps 2 --repeats 1)
  elementwise=(vanilla); gated=(lstm)
else
  sizes=(--hidden 128 --batch 64 --lengths 100 1000 --runs 4 15 --steps 3 --repeats 2)
  elementwise=(vanilla linear irnn orthogonal identity indrnn); gated=(lstm gru)
fi

status=0
if [ "$DEVICE" = cuda ]; then
  timeout 150 python3 benchmarks/gpu.py --out "$OUT" 2>&1 | tee "$OUT/gpu_check.txt" || status=1
fi
timeout 240 python3 benchmarks/batched_training.py --device "$DEVICE" --models "${elementwise[@]}" "${gated[@]}" \
  "${sizes[@]}" --out "$OUT/batched_training.csv" 2>&1 | tee "$OUT/batched_training.txt" || status=1
exit $status
