#!/usr/bin/env bash
# What the mission promises "on the GPU", run once on a lent GPU machine (issue 17): each step's outcome goes to
# $OUT/gpu_checks.tsv (step, exit status, seconds) and its log to $OUT/<step>.log; a failing step does not stop the
# others. Usage, from the repository root, with the shared fixtures beside it:
#     OUT=/tmp/gpu bash scripts/gpu_checks.sh            # on the GPU machine
#     OUT=/tmp/cpu QUICK=1 bash scripts/gpu_checks.sh    # a dry run of every command on the CPU (tiny backbone)
# DINOv3 weights: WEIGHTS=<file> (default: a random backbone: speed and plumbing only).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_checks}
PY=${PY:-python}
WEIGHTS=${WEIGHTS:-random}
FIXTURES=${FIXTURES:-../shared/fixtures}
mkdir -p "$OUT"
: > "$OUT/gpu_checks.tsv"
if [ "${QUICK:-0}" = 1 ]; then
    DEVICE=cpu NPROC=2 BENCH=(--quick) AMP=(--amp false)
    TINY=(--network_def#backbone_kwargs '{"embed_dim": 48, "depth": 4, "num_heads": 2}' --spatial_size '[64, 64]')
    SET=(--set 'network_def#backbone_kwargs={"embed_dim": 48, "depth": 4, "num_heads": 2}' --set 'spatial_size=[64, 64]')
else
    DEVICE=cuda NPROC=1 BENCH=() TINY=() SET=() AMP=(--amp true)
fi
COMMON=(--bundle_root bundle --backbone_weights "$WEIGHTS" --num_workers 2 "${TINY[@]}")

step() {  # step NAME COMMAND...: run it, record its status and time
    local name=$1; shift
    local start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    local status=$?
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" | tee -a "$OUT/gpu_checks.tsv"
}

CONFIGS=bundle/configs
DATA="$FIXTURES/endoscopy/kvasir_seg_256"
step datalist $PY -m segdino_monai.cli prepare-data --layout kvasir "$DATA" -o "$OUT/datalist.json"
step bench $PY -m segdino_monai.cli bench --device "$DEVICE" --video --out "$OUT/bench" "${BENCH[@]}"
step bench_cuda_graphs $PY -m segdino_monai.cli bench --device "$DEVICE" --cuda-graphs --batches 1 256 --sizes 256 \
    --out "$OUT/bench_graphs" "${BENCH[@]}"
step train_amp_bf16 $PY -m monai.bundle run training --config_file "$CONFIGS/train.json" "${COMMON[@]}" \
    --datalist "$OUT/datalist.json" --output_dir "$OUT/eval" --ckpt_dir "$OUT/models" "${AMP[@]}" \
    --train#trainer#max_epochs 2
step evaluate $PY -m monai.bundle run evaluating --config_file "['$CONFIGS/train.json','$CONFIGS/evaluate.json']" \
    "${COMMON[@]}" --datalist "$OUT/datalist.json" --output_dir "$OUT/eval" --ckpt_dir "$OUT/models" "${AMP[@]}"
step infer_native $PY -m monai.bundle run inference --config_file "$CONFIGS/inference.json" "${COMMON[@]}" \
    --dataset_dir "$DATA/images" --output_dir "$OUT/infer" --ckpt_dir "$OUT/models" --inference_mode native
step feature_cache $PY -m monai.bundle run training --config_file "$CONFIGS/train.json" "${COMMON[@]}" \
    --datalist "$OUT/datalist.json" --output_dir "$OUT/eval_cache" --ckpt_dir "$OUT/models_cache" \
    --feature_cache true --train#trainer#max_epochs 2
step dicom $PY -m segdino_monai.cli dicom "$FIXTURES/dicom/us" -o "$OUT/dicom" --bundle-root bundle \
    --backbone-weights "$WEIGHTS" --checkpoint "$OUT/models/model.pt" --modality ultrasound --no-progress "${SET[@]}"
step video $PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m segdino_monai.cli video \
    "$FIXTURES/dicom/us" -o "$OUT/video" --bundle-root bundle --backbone-weights "$WEIGHTS" \
    --checkpoint "$OUT/models/model.pt" --modality ultrasound --batch-size 8 --no-progress "${SET[@]}"
step infer_tta $PY -m monai.bundle run inference --config_file "$CONFIGS/inference.json" "${COMMON[@]}" \
    --dataset_dir "$DATA/images" --output_dir "$OUT/infer_tta" --ckpt_dir "$OUT/models" --tta true --uncertainty true
step torchrun_train $PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m monai.bundle run training \
    --config_file "['$CONFIGS/train.json','$CONFIGS/multi_gpu_train.json']" "${COMMON[@]}" \
    --datalist "$OUT/datalist.json" --output_dir "$OUT/eval_ddp" --ckpt_dir "$OUT/models_ddp" \
    --train#trainer#max_epochs 2
step torchrun_evaluate $PY -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m monai.bundle run \
    evaluating --config_file "['$CONFIGS/train.json','$CONFIGS/evaluate.json','$CONFIGS/multi_gpu_evaluate.json']" \
    "${COMMON[@]}" --datalist "$OUT/datalist.json" --output_dir "$OUT/eval_ddp" --ckpt_dir "$OUT/models_ddp"
echo "outcomes: $OUT/gpu_checks.tsv"
