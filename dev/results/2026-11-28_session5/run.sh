#!/usr/bin/env bash
# Session 5's final logs, one nvidia-h200-x2 machine (make test on GPU 0, the rest on GPU 1). Code: 2411e20.
# Reconstructed (see ../run_lib.sh); the make test log kept only its PASS/SKIP counts and SKIP lines.
#   git worktree add /tmp/s5 2411e20 && cd /tmp/s5 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j32 all
[ -f data/shards/manifest.json ] || make data
CUDA_VISIBLE_DEVICES=0 logged "$out/final_make_test.log" "make test" make test &
test_pid=$!
export CUDA_VISIBLE_DEVICES=1
CLOCK_MS=250 clocks_during "$out/final_bench_clocks.txt" logged "$out/final_bench.log" bench ./dev/bench_parallax
./dev/cuda/mma_peak >"$out/final_mma_peak.log" 2>&1
train_short "$out/final_train_parallax.log" parallax
train_short "$out/final_train_softmax.log" softmax
wait "$test_pid"
{
    grep -oE '^(PASS|SKIP|FAIL)' "$out/final_make_test.log" | sort | uniq -c
    grep '^SKIP' "$out/final_make_test.log"
    tail -n 1 "$out/final_make_test.log"
} >"$out/final_make_test_summary.txt"
