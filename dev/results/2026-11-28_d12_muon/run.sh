#!/usr/bin/env bash
# The first two d12 runs (Parallax and softmax, Muon, the defaults of then: micro-batch 16, 200 steps of 2^18
# tokens, attention version 2), one H200. Code: the trainer of 77dc409 (which added these logs). Reconstructed
# (see ../run_lib.sh). The GPU machine held shards train_000..002 only.
#   git worktree add /tmp/d12 77dc409 && cd /tmp/d12 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make train_parallax
[ -f data/shards/manifest.json ] || make data
for a in parallax softmax; do
    ./train_parallax --attention "$a" --train-data 'data/shards/train_00[0-2].bin' --out "$out/$a" \
        >"$out/${a}_muon.out" 2>&1
    cp "$out/$a/log.csv" "$out/${a}_muon.csv"
done
python3 dev/plot_losses.py "$out/parallax_muon.csv" "$out/softmax_muon.csv" --labels "parallax muon,softmax muon" \
    --png "$out/losses.png" --md "$out/table.md"
