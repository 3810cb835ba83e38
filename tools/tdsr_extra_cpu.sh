#!/bin/bash
# Issue 15's remaining CPU rows (docs/RESULTS.md), after tools/tdsr_table_cpu.sh:
#   x8     TDSR's Table 1 at 8x: bicubic, SR-FT+ and TDSR (beta 0.01) from the same residual start
#          (the slim D-DBPN, exactly bicubic untrained), the same iterations, one seed;
#   jpeg20 the CAJNN paper's use: LR inputs JPEG-compressed at quality 20, rows bicubic, the
#          warm-started CAJNN as a pre-processor, and that CAJNN fine-tuned through the frozen
#          detector (TDSR with CAJNN as S). Needs the CAJNN of
#          configs/sr/quick_schedules/cajnn_x4_jpeg_warm_cpu.yaml (tools/train_sr.py).
# Both end in one table on the first TEST_IMAGES test images with paired bootstrap intervals.
#
#   OMP_NUM_THREADS=1 bash tools/tdsr_extra_cpu.sh x8|jpeg20 [ITERATIONS] [TEST_IMAGES]
#
# Needs the demo detector (output/faster_rcnn_MNV2_FPN_synth/model_final.pth). Every run resumes; a
# finished run is skipped. Output: output/tdsr_res_cpu_x8/ or output/tdsr_cajnn_cpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${1:?x8 or jpeg20}
ITER=${2:-120}
TEST_IMAGES=${3:-100}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DETECTRON2_DATASETS=${DETECTRON2_DATASETS:-datasets}
Q=configs/tdsr/quick_schedules
SCHEDULE=(SOLVER.MAX_ITER "$ITER" SOLVER.STEPS "($((ITER * 2 / 3)),)" SOLVER.IMS_PER_BATCH 4
          SOLVER.CHECKPOINT_PERIOD "$(((ITER + 1) / 2))" DATASETS.TEST "()")

train() {  # output folder, run name, config, KEY VALUE...
  local out=$1 name=$2 config=$3
  shift 3
  if [ -f "$out/$name/model_final.pth" ]; then echo "[tdsr_extra] $name: done"; return; fi
  echo "[tdsr_extra] $name: training ($(date -u +%T))"
  local start=$SECONDS
  "$PY" tools/train_net.py --resume --config-file "$config" "${SCHEDULE[@]}" \
      OUTPUT_DIR "$out/$name" "$@" > "$out/$name.log" 2>&1
  echo "[tdsr_extra] $name: $((SECONDS - start)) s"
}

table() {  # output folder, eval_lr_detection arguments...
  local out=$1
  shift
  echo "[tdsr_extra] table ($(date -u +%T))"
  local start=$SECONDS
  "$PY" tools/eval_lr_detection.py --max-images "$TEST_IMAGES" --bootstrap-samples 300 \
      --num-vis 4 --output "$out/table" "$@" > "$out/table.log" 2>&1
  echo "[tdsr_extra] table: $((SECONDS - start)) s"
  cat "$out/table/table.md"
}

echo "[tdsr_extra] $PART, commit $(git rev-parse --short HEAD), $ITER iterations of batch 4 per run"
case "$PART" in
  x8)
    OUT=output/tdsr_res_cpu_x8
    mkdir -p "$OUT"
    train "$OUT" srft_plus_s0 "$Q/srft_plus_dbpn_slim_res_x8_synth_cpu.yaml" SEED 0 INPUT.SR.SEED 0
    train "$OUT" tdsr_b0.01_s0 "$Q/tdsr_dbpn_slim_res_x8_synth_cpu.yaml" SEED 0 INPUT.SR.SEED 0
    table "$OUT" --config "$Q/tdsr_dbpn_slim_res_x8_synth_cpu.yaml" \
        --row SR-FT+=@"$OUT/srft_plus_s0/model_final.pth" \
        --row TDSR=@"$OUT/tdsr_b0.01_s0/model_final.pth" \
        --compare SR-FT+:Bicubic --compare TDSR:SR-FT+ --compare TDSR:Bicubic
    ;;
  jpeg20)
    OUT=output/tdsr_cajnn_cpu
    CAJNN=output/sr/cajnn_x4_jpeg_warm_cpu/model_final.pth
    [ -f "$CAJNN" ] || { echo "[tdsr_extra] $CAJNN missing: train it first (tools/train_sr.py)"; exit 2; }
    mkdir -p "$OUT"
    train "$OUT" tdsr_s0 "$Q/cajnn_jpeg_x4_synth_cpu.yaml" SEED 0 INPUT.SR.SEED 0
    table "$OUT" --config "$Q/cajnn_jpeg_x4_synth_cpu.yaml" --dataset tt100k_synth10_test --jpeg-quality 20 \
        --row CAJNN=@"$CAJNN" --row CAJNN-TDSR=@"$OUT/tdsr_s0/model_final.pth" \
        --compare CAJNN:Bicubic --compare CAJNN-TDSR:CAJNN --compare CAJNN-TDSR:Bicubic
    ;;
  *) echo "unknown part $PART (x8 or jpeg20)"; exit 2 ;;
esac
