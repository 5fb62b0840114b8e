#!/usr/bin/env bash
# make compare: trains the four combinations (Parallax or softmax attention, Muon or AdamW) with the same seed,
# the same data order (the loader reads the shards in order) and the same token budget, then draws the
# loss curves and writes the table with dev/plot_losses.py.
#   make compare                                  # 200 steps of 2^18 tokens each, seed 1337
#   make compare COMPARE_STEPS=600 COMPARE_SEEDS="1337 1338"   # longer, and a second seed for the spread
# Output: $COMPARE_OUT (default out/compare)/<attention>_<optimizer>_s<seed>/log.csv, losses.png, table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${COMPARE_STEPS:-200}
seeds=${COMPARE_SEEDS:-1337}
out=${COMPARE_OUT:-out/compare}
python=${PLOT_PYTHON:-python3}
logs=()
labels=()
for seed in $seeds; do
    for attention in parallax softmax; do
        for optimizer in muon adamw; do
            dir=$out/${attention}_${optimizer}_s$seed
            echo "== $attention, $optimizer, seed $seed -> $dir"
            # shellcheck disable=SC2086
            ./train_parallax --attention "$attention" --optimizer "$optimizer" --seed "$seed" --steps "$steps" \
                --sample-every 0 --checkpoint-every 0 --out "$dir" ${COMPARE_FLAGS:-}
            logs+=("$dir/log.csv")
            labels+=("$attention $optimizer s$seed")
        done
    done
done
"$python" dev/plot_losses.py "${logs[@]}" --labels "$(IFS=,; echo "${labels[*]}")" --png "$out/losses.png" \
    --md "$out/table.md"
