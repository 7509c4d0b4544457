#!/usr/bin/env bash
# Long fits on one GPU: the plain protector and appeal protectors, EPOCHS epochs each (the CPU
# recipe runs 5), side by side on one card; then (THROUGHPUT=1) protect's speed, fp32 and bf16.
# Each fit's protector.pt and CSV log are copied to COPY_TO (if set) as soon as it ends.
#   bash bench/gpu_appeal_fits.sh RUNS EPOCHS [FIT ...]   (default fits: plain curves saturation)
# EXTRA: more trainer/model arguments for every fit.
set -euo pipefail
runs=${1:-runs/gpu}
epochs=${2:-30}
fits=("${@:3}")
[ ${#fits[@]} -gt 0 ] || fits=(plain curves saturation)
read -r -a extra <<< "${EXTRA:-}"
mkdir -p "$runs"
appeal=(--config configs/overlays/appeal.yaml)
bounded=(--model.enhancer.init_args.max_shift 0.2 --model.enhancer.init_args.colour_shift 0.03
    --model.appeal.init_args.jpeg_quality 90)
declare -A fit_args=(
    [plain]=""
    [curves]="${appeal[*]}"
    # Bounded curves plus saturation, NIMA scored through JPEG: the families the per-photo
    # bound favours, without the sharpening that looked grainy after 5 epochs.
    [saturation]="${appeal[*]} ${bounded[*]} --model.enhancer.init_args.saturation 0.3 --model.enhancer_lr 0.1"
    # The same bounds at the overlay's enhancer rate: tone only, with saturation, and narrower.
    [tone]="${appeal[*]} ${bounded[*]}"
    [tone_saturation]="${appeal[*]} ${bounded[*]} --model.enhancer.init_args.saturation 0.3"
    [tone_narrow]="${appeal[*]} --model.enhancer.init_args.max_shift 0.1 --model.enhancer.init_args.colour_shift 0.02 --model.appeal.init_args.jpeg_quality 90"
)

common=(--config configs/standin.yaml --trainer.accelerator gpu --trainer.max_epochs "$epochs"
    --trainer.check_val_every_n_epoch 5 --data.num_workers 4
    --trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.enable_progress_bar false
    --trainer.max_time "${MAX_TIME:-00:00:06:00}")

fit() {
    local name=$1
    shift
    if ! python3 train.py fit "${common[@]}" "$@" "${extra[@]}" \
        --trainer.logger.save_dir "$runs/$name" --trainer.default_root_dir "$runs/$name" > "$runs/$name.log" 2>&1; then
        echo "$name failed:"
        tail -20 "$runs/$name.log"
        return 1
    fi
    if [ -n "${COPY_TO:-}" ]; then
        cp "$runs/$name/protector.pt" "$COPY_TO/$name.pt"
        cp "$runs/$name"/lightning_logs/*/metrics.csv "$COPY_TO/$name.csv"
    fi
    echo "$name: $(grep -c 'train:' "$runs/$name.log") epochs; $(grep 'val:' "$runs/$name.log" | tail -1)"
}

for name in "${fits[@]}"; do
    [[ -v fit_args[$name] ]] || { echo "unknown fit '$name' (known: ${!fit_args[*]})" >&2; exit 2; }
done
for name in "${fits[@]}"; do
    read -r -a args <<< "${fit_args[$name]}"
    fit "$name" "${args[@]}" &
done
wait
[ "${THROUGHPUT:-0}" = 1 ] || exit 0

# Files to files over all 1,404 photos (decode, protect, JPEG q90, write, re-read check).
for name in plain curves; do
    for precision in 32-true bf16-mixed; do
        out="$runs/files_${name}_$precision"
        speed=$(python3 -m protector protect --protector "$runs/$name/protector.pt" --input ../shared/standin/images \
            --output "$out" --classifier standin --batch-size 64 --precision "$precision" --no-progress --overwrite 2>&1 \
            | grep -o 'speed: .*' || true)
        echo "protect $name $precision: $speed"
    done
done
