#!/usr/bin/env bash
# Session 7's final logs, from two freshly started nvidia-h200-x2 machines (make test on GPU 0, the rest on
# GPU 1). Code: 3cdb0f7 for final_*, 2a44295 for final1_* (PREFIX=final1). Reconstructed (see ../run_lib.sh).
#   git worktree add /tmp/s7 3cdb0f7 && cd /tmp/s7 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
p=$out/${PREFIX:-final}
make -j32 all >"${p}_build.log" 2>&1
[ -f data/shards/manifest.json ] || make data
CUDA_VISIBLE_DEVICES=0 logged "${p}_test.log" "make test" make test &
test_pid=$!
export CUDA_VISIBLE_DEVICES=1
clocks_during "${p}_bench_clocks.txt" logged "${p}_bench.log" bench ./dev/bench_parallax
train_short "${p}_train_parallax.log" parallax
train_short "${p}_train_softmax.log" softmax
wait "$test_pid"
