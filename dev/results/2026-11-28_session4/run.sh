#!/usr/bin/env bash
# Session 4's final logs (call 18), one nvidia-h200-x2 machine (make test on GPU 0, the rest on GPU 1).
# Code: 12f58db. Reconstructed (see ../run_lib.sh); the make test log kept only its SKIP and summary lines.
#   git worktree add /tmp/s4 12f58db && cd /tmp/s4 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j32 all
[ -f data/shards/manifest.json ] || make data
CUDA_VISIBLE_DEVICES=0 logged "$out/make_test.log" "make test" make test &
test_pid=$!
export CUDA_VISIBLE_DEVICES=1
logged "$out/bench.log" bench ./dev/bench_parallax
train_short "$out/train20_parallax.log" parallax
train_short "$out/train20_softmax.log" softmax
wait "$test_pid"
grep -E '^SKIP|passed, .* failed, .* skipped' "$out/make_test.log" >"$out/make_test_summary.txt"
