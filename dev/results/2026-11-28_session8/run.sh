#!/usr/bin/env bash
# Session 8's final logs. Code: commit 1fdfddb; one H200 (nvidia-h200). Reconstructed (see ../run_lib.sh).
#   git worktree add /tmp/s8 1fdfddb && cd /tmp/s8 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j16 all >"$out/final_build.log" 2>&1
[ -f data/shards/manifest.json ] || make data
logged "$out/final_test.log" "make test" make test
{
    ./dev/cuda/attention_study 3
    ./dev/cuda/attention_study 3 16 1024 12 64 --softmax
} >"$out/final_study.log" 2>&1
clocks_during "$out/final_bench_clocks.txt" logged "$out/final_bench.log" bench ./dev/bench_parallax
train_short "$out/final_train_parallax.log" parallax
train_short "$out/final_train_softmax.log" softmax
# call 8, on a freshly started machine: the bench's model section again, the trainer at 2^19-token steps
logged "$out/second_bench_model.log" bench ./dev/bench_parallax model
train_short "$out/train_2e19_parallax.log" parallax --total-batch 524288 --steps 14
train_short "$out/train_2e19_softmax.log" softmax --total-batch 524288 --steps 14
# claim_model.py (CPU, beside this script) is the model of the persistent forward's claims in dev/cuda/NOTES.md
