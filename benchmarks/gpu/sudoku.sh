#!/usr/bin/env bash
# The Sudoku GPU recipe as one short run inside a time budget: time a training step of
# configs/sudoku_gpu.yaml (and the network's speed at batch 1 and 256), size max_steps so that
# training ends by TRAIN_END seconds into the run, train, then test the checkpoint on the 36 / 30 /
# minimal / hard sets with depth, halting and breadth (benchmarks/sudoku_compute.py; hard first,
# so a run cut short keeps what matters most). $OUT gets summary.txt, compute.log (rows as they
# come), logs.tgz (the other logs and reports), last.ckpt and tensorboard.tgz.
#
# On the lent GPU machine (python3 has torch and lightning; jsonargparse travels as wheels, the
# generated puzzles as data_cache, made here first by a CPU smoke run or a `fit`):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl "jsonargparse==4.47.0" docstring-parser \
#       typeshed-client importlib-resources
#   run(command="bash benchmarks/gpu/sudoku.sh", carry=[".whl", "data_cache"], timeout_s=600)
# Anywhere else (a smoke run on a CPU):
#   DEVICE=cpu BATCH=16 STEPS=60 TIMED_STEPS=2 EVAL=smoke OUT=/tmp/gpu_smoke bash benchmarks/gpu/sudoku.sh
set -uo pipefail
TRAIN_END=${TRAIN_END:-470}   # seconds into the run by which training must end
EVAL_END=${EVAL_END:-570}     # and testing (cut there, keeping the rows so far; 80 s on an H200)
DEVICE=${DEVICE:-cuda}
EVAL=${EVAL:-full}
OUT=${OUT:-runs/gpu_sudoku}
WORK=$(mktemp -d)
mkdir -p "$OUT"
source "$(dirname "$0")/common.sh"
began=$(date +%s)
elapsed() { echo $(( $(date +%s) - began )); }
say() { echo "[$(elapsed) s] $*" | tee -a "$OUT/summary.txt"; }
pack() { tar czf "$OUT/logs.tgz" -C "$WORK" .; }
{ machine; } > "$OUT/summary.txt"
CONFIG=configs/sudoku_gpu.yaml
BATCH=${BATCH:-$(sed -n 's/^ *batch_size: *//p' "$CONFIG")}
ARGS=(--data.init_args.batch_size="$BATCH")

# 0. the compiled step must give the eager gradients under this machine's torch (torch 2.11's
# compiler once zeroed every gradient through the physics, and a whole run learned nothing)
compiled=true
if ! $PY -m pytest -q -p no:cacheprovider tests/test_sudoku_task.py -k compiled_step \
    > "$WORK/preflight.log" 2>&1; then
  say "the compiled step fails its test here (preflight.log): training eager"
  compiled=false
fi

# 1. speed, and the step time that sizes the run; eager if this torch cannot compile the step
speed() {
  $PY benchmarks/sudoku_speed.py --config "$CONFIG" --device "$DEVICE" --seconds 1 \
      --train-batch "$BATCH" --train-steps "${TIMED_STEPS:-20}" --name sudoku_speed_gpu "$@" \
      > "$WORK/speed.log" 2>&1
}
if $compiled && ! speed; then
  say "compiled step failed (tail of speed.log below); timing the eager step"
  tail -5 "$WORK/speed.log" >> "$OUT/summary.txt"
  compiled=false
fi
if ! $compiled; then
  ARGS+=(--model.init_args.compile=false)
  speed --cli-arg=--model.init_args.compile=false || { say "speed failed"; pack; exit 1; }
fi
cp docs/benchmarks/sudoku_speed_gpu.{md,json} "$WORK/"
pack
step=$($PY -c "import json; print(json.load(open('$WORK/sudoku_speed_gpu.json'))['train']['seconds_per_step'])")
# fit's own start (imports, data, compiling again from the cache, sanity check) takes about 45 s,
# and loading, logging, monitors and validation add about 35% to a step (H200, 2026-12-04)
STEPS=${STEPS:-$($PY -c "print(max(50, int(($TRAIN_END - $(elapsed) - 45) / (1.35 * $step))))")}
GUARD=$($PY -c "s = max(60, $TRAIN_END - $(elapsed) + 30); print(f'00:00:{s // 60:02d}:{s % 60:02d}')")
say "training step ${step} s at batch $BATCH: $STEPS steps, guard $GUARD"

# 2. train
$PY -m lit_metriplector fit --config "$CONFIG" "${ARGS[@]}" --trainer.accelerator="$DEVICE" \
    --trainer.max_steps="$STEPS" --trainer.max_time="$GUARD" --test_after_fit=false \
    --trainer.enable_progress_bar=false > "$WORK/fit.log" 2>&1 || say "fit failed: see fit.log"
CKPT=runs/sudoku_gpu/checkpoints/last.ckpt
trained=$($PY -c "import torch; print(torch.load('$CKPT', map_location='cpu', weights_only=False)['global_step'])")
say "trained $trained steps"
cp "$CKPT" "$OUT/last.ckpt"
tar czf "$OUT/tensorboard.tgz" --exclude checkpoints -C runs sudoku_gpu
pack

# 3. test-time compute: depth 64 and halting on every set, breadth on every set
if [ "$EVAL" = smoke ]; then
  KNOBS=(--test-size 8 --depth 8 --rollouts 2 --breadth-depth 8 --breadth-size 4)
else
  KNOBS=(--depth 64 --rollouts 16 64 --breadth-depth 64 --breadth-size 1000)
fi
timeout $(( EVAL_END - $(elapsed) )) $PY benchmarks/sudoku_compute.py --config "$CONFIG" --checkpoint "$CKPT" --device "$DEVICE" \
    --batch-size 16384 --halt 4 "${KNOBS[@]}" --sets 22-25:hard 22-25:minimal 30 36 \
    --breadth-sets 22-25:hard 22-25:minimal 30 36 --name sudoku_compute_gpu \
    > "$OUT/compute.log" 2>&1 || say "sudoku_compute failed: see compute.log"
cp docs/benchmarks/sudoku_compute_gpu.{md,json,png} "$WORK/" 2>/dev/null
pack
say "done"
cat "$OUT/summary.txt"
