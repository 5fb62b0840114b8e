#!/usr/bin/env bash
# Session 6's final logs, one nvidia-h200-x2 machine (make test on GPU 0, the rest on GPU 1). Code: 90c9cc8.
# Reconstructed (see ../run_lib.sh); the make test log kept only its summary lines.
#   git worktree add /tmp/s6 90c9cc8 && cd /tmp/s6 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j32 all
[ -f data/shards/manifest.json ] || make data
CUDA_VISIBLE_DEVICES=0 logged "$out/final_make_test.log" "make test" make test &
test_pid=$!
export CUDA_VISIBLE_DEVICES=1
clocks_during "$out/final_bench_clocks.txt" logged "$out/final_bench.log" bench ./dev/bench_parallax
train_short "$out/final_train_parallax.log" parallax
train_short "$out/final_train_softmax.log" softmax
wait "$test_pid"
tail -n 1 "$out/final_make_test.log" >"$out/final_make_test_summary.txt"
