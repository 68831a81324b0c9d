#!/usr/bin/env bash
# The Sudoku GPU recipe as one short run: train configs/sudoku_gpu.yaml on hard puzzles too for a
# fixed number of steps (a wall-time guard on top), then test on 36 / 30 / minimal / hard sets at
# 16 and 64 iterations; times, exact rates and the logs go to $OUT (summary.txt first).
#
# On the lent GPU machine (python3 has torch and lightning; jsonargparse travels as wheels):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl "jsonargparse==4.47.0" docstring-parser \
#       typeshed-client importlib-resources
#   run(command="bash benchmarks/gpu/sudoku.sh", carry=[".whl"], timeout_s=590)
# Anywhere else (a smoke run on a CPU):
#   STEPS=4 TRAIN_SIZE=300 TEST_SIZE=8 OUT=/tmp/gpu_smoke bash benchmarks/gpu/sudoku.sh
set -euo pipefail
STEPS=${STEPS:-6000}          # about 6 minutes at batch 256 if a step takes 60 ms: adjust
GUARD=${GUARD:-00:00:07:00}   # max_time: the run stops here whatever STEPS says
TEST_SIZE=${TEST_SIZE:-1000}
TRAIN_SIZE=${TRAIN_SIZE:-200000}
OUT=${OUT:-runs/gpu_sudoku}
mkdir -p "$OUT"
source "$(dirname "$0")/common.sh"
CONFIG=(--config configs/sudoku_gpu.yaml
        "--data.init_args.train_sets=[\"22-44\",\"22-25:minimal\",\"22-25:hard\"]"
        --data.init_args.train_size="$TRAIN_SIZE" --data.init_args.test_size="$TEST_SIZE")
{ machine; } > "$OUT/summary.txt"

start=$(date +%s)
$PY -m lit_metriplector fit "${CONFIG[@]}" --trainer.max_steps="$STEPS" \
    --trainer.max_time="$GUARD" --test_after_fit=false --trainer.enable_progress_bar=false \
    > "$OUT/fit.log" 2>&1
echo "training: $(( $(date +%s) - start )) s, $STEPS steps asked, guard $GUARD" >> "$OUT/summary.txt"
for n in 16 64; do
  start=$(date +%s)
  $PY -m lit_metriplector test "${CONFIG[@]}" --ckpt_path last \
      --model.init_args.network.init_args.test_iterations="$n" \
      --trainer.enable_progress_bar=false > "$OUT/test_$n.log" 2>&1
  echo "test at $n iterations: $(( $(date +%s) - start )) s" >> "$OUT/summary.txt"
  grep -E "test/.*/(exact|cell_accuracy)" "$OUT/test_$n.log" >> "$OUT/summary.txt" || true
done
cat "$OUT/summary.txt"
