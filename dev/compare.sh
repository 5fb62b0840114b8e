#!/usr/bin/env bash
# make compare: trains the four combinations (Parallax or softmax attention, Muon or AdamW) with the same seed,
# the same data order (the loader reads the shards in order) and the same token budget, then draws the
# loss curves and writes the table with dev/plot_losses.py.
#   make compare                                  # 200 steps of 2^18 tokens each, seed 1337
#   make compare COMPARE_STEPS=600 COMPARE_SEEDS="1337 1338"   # longer, and a second seed for the spread
#   make compare COMPARE_GPUS="0 1 2 3"           # runs spread over GPUs, one run per GPU at a time
# Output: $COMPARE_OUT (default out/compare)/<attention>_<optimizer>_s<seed>/log.csv (and train.out, the
# trainer's printout), losses.png, table.md. COMPARE_TRAINER replaces ./train_parallax (dev/test_compare.py
# runs this script on a CPU with a stand-in).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${COMPARE_STEPS:-200}
seeds=${COMPARE_SEEDS:-1337}
gpus=(${COMPARE_GPUS:--})   # "-": one lane on whatever GPU CUDA_VISIBLE_DEVICES already gives
out=${COMPARE_OUT:-out/compare}
trainer=${COMPARE_TRAINER:-./train_parallax}
python=${PLOT_PYTHON:-python3}
runs=()
for seed in $seeds; do
    for attention in parallax softmax; do
        for optimizer in muon adamw; do
            runs+=("$attention $optimizer $seed")
        done
    done
done

# one run: its printout goes to DIR/train.out; a failed run stops the comparison
train_one() {
    local attention=$1 optimizer=$2 seed=$3 gpu=$4
    local dir=$out/${attention}_${optimizer}_s$seed
    mkdir -p "$dir"
    if [ "$gpu" = "-" ]; then
        echo "== $attention, $optimizer, seed $seed -> $dir"
    else
        echo "== GPU $gpu: $attention, $optimizer, seed $seed -> $dir"
        export CUDA_VISIBLE_DEVICES=$gpu
    fi
    # shellcheck disable=SC2086
    if ! "$trainer" --attention "$attention" --optimizer "$optimizer" --seed "$seed" \
        --steps "$steps" --sample-every 0 --checkpoint-every 0 --out "$dir" ${COMPARE_FLAGS:-} >"$dir/train.out" 2>&1; then
        echo "compare: the run in $dir failed; its last lines:" >&2
        tail -n 20 "$dir/train.out" >&2
        return 1
    fi
    grep -E "^step +$steps " "$dir/train.out" || true
}

# GPU number i takes runs i, i + n, i + 2n, ... in turn; the GPUs work at the same time
pids=()
for i in "${!gpus[@]}"; do
    (
        for ((j = i; j < ${#runs[@]}; j += ${#gpus[@]})); do
            # shellcheck disable=SC2086
            train_one ${runs[$j]} "${gpus[$i]}"
        done
    ) &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ "$status" -eq 0 ] || exit 1

logs=()
labels=()
for run in "${runs[@]}"; do
    read -r attention optimizer seed <<<"$run"
    logs+=("$out/${attention}_${optimizer}_s$seed/log.csv")
    labels+=("$attention $optimizer s$seed")
done
"$python" dev/plot_losses.py "${logs[@]}" --labels "$(IFS=,; echo "${labels[*]}")" --png "$out/losses.png" \
    --md "$out/table.md"
