#!/usr/bin/env bash
# The byte-LM comparison as one short GPU run: configs/lm.yaml (the best Metriplector recipe) and
# configs/lm_lru.yaml (the strongest baseline) for the same bytes, one after the other; validation
# bits/byte, test bits/byte, wall time and bytes/s go to $OUT/summary.txt, the logs beside it.
#
# On the lent GPU machine (python3 has torch and lightning; jsonargparse travels as wheels, as in
# benchmarks/gpu/sudoku.sh; the corpus travels in shared/ or is named by CORPUS):
#   run(command="CORPUS=shared/data/english bash benchmarks/gpu/lm.sh", carry=[".whl"], timeout_s=590)
# A smoke run anywhere:
#   STEPS=4 BATCH=2 VAL_WINDOWS=4 TEST_WINDOWS=4 CORPUS=../shared/data/english \
#       OUT=/tmp/gpu_lm bash benchmarks/gpu/lm.sh
set -euo pipefail
STEPS=${STEPS:-2500}      # x BATCH x 256 bytes: 2500 x 16 x 256 = 10.2M bytes, the CPU budget
BATCH=${BATCH:-16}
VAL_WINDOWS=${VAL_WINDOWS:-256}
TEST_WINDOWS=${TEST_WINDOWS:-512}
GUARD=${GUARD:-00:00:04:00}   # max_time per model: the run stops here whatever STEPS says
CORPUS=${CORPUS:-../shared/data/english}
OUT=${OUT:-runs/gpu_lm}
mkdir -p "$OUT"
source "$(dirname "$0")/common.sh"
{ machine
  echo "$STEPS steps of $BATCH x 256 bytes, guard $GUARD a model"; } > "$OUT/summary.txt"
for config in lm lm_lru; do
  start=$(date +%s)
  $PY -m lit_metriplector fit --config "configs/$config.yaml" --data.init_args.path="$CORPUS" \
      --data.init_args.batch_size="$BATCH" --data.init_args.val_windows="$VAL_WINDOWS" \
      --data.init_args.test_windows="$TEST_WINDOWS" --trainer.max_steps="$STEPS" \
      --trainer.max_time="$GUARD" --trainer.val_check_interval="$(( STEPS < 250 ? STEPS : 250 ))" --test_after_fit=true \
      --trainer.logger=lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir="$OUT" \
      --trainer.logger.name="$config" --trainer.enable_progress_bar=false \
      > "$OUT/$config.log" 2>&1
  seconds=$(( $(date +%s) - start ))
  $PY - "$OUT/$config" "$seconds" "$BATCH" >> "$OUT/summary.txt" <<'EOF'
import csv, pathlib, sys
folder, seconds, batch = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(sorted(folder.glob("version_*/metrics.csv"))[-1])))
val = [(int(r["step"]) + 1, float(r["val/bpb"])) for r in rows if r.get("val/bpb")]
test = [float(r["test/bpb"]) for r in rows if r.get("test/bpb")]
steps, bpb = val[-1]
print(f"{folder.name}: {steps} steps, val {bpb:.3f} bits/byte, test "
      f"{test[-1] if test else float('nan'):.3f}, {seconds} s with tests, "
      f"{steps * batch * 256 / seconds:,.0f} bytes/s overall")
EOF
done
cat "$OUT/summary.txt"
