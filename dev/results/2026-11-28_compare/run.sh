#!/usr/bin/env bash
# make compare's result: Parallax/softmax x Muon/AdamW, seeds 1337 and 1338, plus one AdamW run at lr 3e-3.
# One H200 per run (nvidia-h200-x2). Code: f349eb9's trainer (65db901 added these logs and changed only the
# bench and the plotter's labels; run its plotter). Reconstructed (see ../run_lib.sh). The GPU machine held
# shards train_000..002 only (a call carries 64 MiB), hence the --train-data below.
#   git worktree add /tmp/cmp 65db901 && cd /tmp/cmp && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make train_parallax
[ -f data/shards/manifest.json ] || make data
flags="--train-data data/shards/train_00[0-2].bin"
# seed 1337 through make compare's script, both GPUs; seed 1338 the same trainer command lines
COMPARE_GPUS="0 1" COMPARE_SEEDS="1337 1338" COMPARE_OUT="$out/runs" COMPARE_FLAGS="$flags" bash dev/compare.sh
run=$out/runs/parallax_adamw_lr3e-3_s1337
mkdir -p "$run"
# shellcheck disable=SC2086
./train_parallax --optimizer adamw --seed 1337 --adam-lr 3e-3 --sample-every 0 --checkpoint-every 0 \
    --out "$run" $flags >"$run/train.out" 2>&1
# this folder's layout: NAME.csv (the run's log.csv), NAME.out (its printout), the table and the plot
labels=()
for d in "$out"/runs/*/; do
    name=$(basename "$d")
    cp "$d/log.csv" "$out/$name.csv"
    cp "$d/train.out" "$out/$name.out"
    labels+=("$name")
done
logs=("$out"/*.csv)
names=$(printf '%s\n' "${labels[@]}" | tr _ ' ' | paste -sd,)
python3 dev/plot_losses.py "${logs[@]}" --labels "$names" --png "$out/losses.png" --md "$out/table.md"
