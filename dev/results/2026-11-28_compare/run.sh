#!/usr/bin/env bash
# make compare's result: Parallax/softmax x Muon/AdamW, seeds 1337 and 1338, plus one AdamW run at lr 3e-3.
# One H200 per run (nvidia-h200-x2, one run per GPU at a time; here one after another). Code: f349eb9's
# trainer (65db901 added these logs and changed only the bench and the plotter). Reconstructed (see
# ../run_lib.sh). Each run is the trainer command line dev/compare.sh builds, plus --train-data: the GPU
# machine held shards train_000..002 only (a call carries 64 MiB).
#   git worktree add /tmp/cmp 65db901 && cd /tmp/cmp && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make train_parallax
[ -f data/shards/manifest.json ] || make data
# train_one NAME FLAGS...: one run into OUT/runs/NAME; its log.csv and printout become OUT/NAME.csv, .out
train_one() {
    local name=$1 dir=$out/runs/$1
    shift
    mkdir -p "$dir"
    ./train_parallax "$@" --steps 200 --sample-every 0 --checkpoint-every 0 --out "$dir" \
        --train-data 'data/shards/train_00[0-2].bin' >"$dir/train.out" 2>&1
    cp "$dir/log.csv" "$out/$name.csv"
    cp "$dir/train.out" "$out/$name.out"
}
for seed in 1337 1338; do
    for a in parallax softmax; do
        for o in muon adamw; do
            train_one "${a}_${o}_s$seed" --attention "$a" --optimizer "$o" --seed "$seed"
        done
    done
done
train_one parallax_adamw_lr3e-3_s1337 --attention parallax --optimizer adamw --seed 1337 --adam-lr 3e-3
logs=("$out"/*.csv)
labels=$(for f in "${logs[@]}"; do basename "$f" .csv; done | tr _ ' ' | paste -sd,)
python3 dev/plot_losses.py "${logs[@]}" --labels "$labels" --png "$out/losses.png" --md "$out/table.md"
