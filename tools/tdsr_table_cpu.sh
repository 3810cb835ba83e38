#!/bin/bash
# TDSR's Table 1 at 4x on the synthetic TT100K on CPU (issue 15; docs/RESULTS.md): SR-FT+ and TDSR for
# beta in {0.01, 0.1, 1} from the same residual start (the slim D-DBPN in MODEL.SR.RESIDUAL mode,
# exactly bicubic untrained), the same iterations; SR-FT+ at seeds 0 and 1; the TDSR beta with the
# best COCO AP on the first 50 *training* images (no test image is used to choose) again at seed 1;
# then one table of every row on the test images with paired bootstrap intervals.
#
#   OMP_NUM_THREADS=1 bash tools/tdsr_table_cpu.sh [ITERATIONS] [TEST_IMAGES] [BATCH]
#
# (defaults 150 iterations, every test image, batch 6 as the paper)
#
# Needs the demo detector (output/faster_rcnn_MNV2_FPN_synth/model_final.pth, `make demo` or
# tools/train_net.py --config-file configs/faster_rcnn_MNV2_FPN_synth.yaml). Every run resumes; a
# finished run is skipped. Output: output/tdsr_res_cpu/{<run>/, select/, table_x4/}.
set -euo pipefail
cd "$(dirname "$0")/.."
ITER=${1:-150}
TEST_IMAGES=${2:-0}
BATCH=${3:-6}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DETECTRON2_DATASETS=${DETECTRON2_DATASETS:-datasets}
Q=configs/tdsr/quick_schedules
SRFT=$Q/srft_plus_dbpn_slim_res_x4_synth_cpu.yaml
TDSR=$Q/tdsr_dbpn_slim_res_x4_synth_cpu.yaml
OUT=output/tdsr_res_cpu
SCHEDULE=(SOLVER.MAX_ITER "$ITER" SOLVER.STEPS "($((ITER * 2 / 3)),)" SOLVER.IMS_PER_BATCH "$BATCH"
          SOLVER.CHECKPOINT_PERIOD "$(((ITER + 1) / 2))" DATASETS.TEST "()")

train() {  # run name, config, KEY VALUE...
  local name=$1 config=$2
  shift 2
  if [ -f "$OUT/$name/model_final.pth" ]; then echo "[tdsr_table] $name: done"; return; fi
  echo "[tdsr_table] $name: training ($(date -u +%T))"
  local start=$SECONDS
  "$PY" tools/train_net.py --resume --config-file "$config" "${SCHEDULE[@]}" \
      OUTPUT_DIR "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  echo "[tdsr_table] $name: $((SECONDS - start)) s"
}

mkdir -p "$OUT"
echo "[tdsr_table] commit $(git rev-parse --short HEAD), $ITER iterations of batch $BATCH per run"
train srft_plus_s0 "$SRFT" SEED 0 INPUT.SR.SEED 0
for beta in 0.01 0.1 1.0; do
  train "tdsr_b${beta}_s0" "$TDSR" MODEL.TDSR.BETA "$beta" SEED 0 INPUT.SR.SEED 0
done
train srft_plus_s1 "$SRFT" SEED 1 INPUT.SR.SEED 1

if [ ! -f "$OUT/select/results.json" ]; then
  echo "[tdsr_table] choosing beta on 50 training images ($(date -u +%T))"
  "$PY" tools/eval_lr_detection.py --config "$TDSR" --dataset tt100k_synth10_train --max-images 50 \
      --row TDSR_b0.01=@"$OUT/tdsr_b0.01_s0/model_final.pth" \
      --row TDSR_b0.1=@"$OUT/tdsr_b0.1_s0/model_final.pth" \
      --row TDSR_b1.0=@"$OUT/tdsr_b1.0_s0/model_final.pth" \
      --num-vis 0 --output "$OUT/select" > "$OUT/select.log" 2>&1
fi
BEST=$("$PY" -c "
import json
rows = json.load(open('$OUT/select/results.json'))['rows']
print(max(('0.01', '0.1', '1.0'), key=lambda b: rows['TDSR_b' + b]['metrics']['bbox']['AP']))")
echo "[tdsr_table] best beta on the training images: $BEST"
train "tdsr_b${BEST}_s1" "$TDSR" MODEL.TDSR.BETA "$BEST" SEED 1 INPUT.SR.SEED 1

echo "[tdsr_table] table ($(date -u +%T))"
start=$SECONDS
"$PY" tools/eval_lr_detection.py --config "$TDSR" --max-images "$TEST_IMAGES" \
    --row SR-FT+_s0=@"$OUT/srft_plus_s0/model_final.pth" \
    --row SR-FT+_s1=@"$OUT/srft_plus_s1/model_final.pth" \
    --row TDSR_b0.01_s0=@"$OUT/tdsr_b0.01_s0/model_final.pth" \
    --row TDSR_b0.1_s0=@"$OUT/tdsr_b0.1_s0/model_final.pth" \
    --row TDSR_b1.0_s0=@"$OUT/tdsr_b1.0_s0/model_final.pth" \
    --row "TDSR_b${BEST}_s1"=@"$OUT/tdsr_b${BEST}_s1/model_final.pth" \
    --compare SR-FT+_s0:Bicubic --compare SR-FT+_s1:Bicubic \
    --compare TDSR_b0.01_s0:SR-FT+_s0 --compare TDSR_b0.1_s0:SR-FT+_s0 \
    --compare TDSR_b1.0_s0:SR-FT+_s0 --compare "TDSR_b${BEST}_s1:SR-FT+_s1" \
    --compare TDSR_b0.01_s0:Bicubic --compare TDSR_b0.1_s0:Bicubic --compare TDSR_b1.0_s0:Bicubic \
    --bootstrap-samples 300 --num-vis 4 --output "$OUT/table_x4" > "$OUT/table_x4.log" 2>&1
echo "[tdsr_table] table: $((SECONDS - start)) s"
cat "$OUT/table_x4/table.md"
