#!/usr/bin/env bash
# After the small-kernel pass, nvidia-h200-x2 (make test on GPU 0, then the bench and the trainer on GPU 1).
# Code: b2bbd49 (51c0599 added these logs and changed no code). Reconstructed (see ../run_lib.sh); the
# summary file holds a selection of make test's lines. The trainer read shards train_000..002 only.
#   git worktree add /tmp/sk b2bbd49 && cd /tmp/sk && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j32 all
[ -f data/shards/manifest.json ] || make data
CUDA_VISIBLE_DEVICES=0 logged "$out/make_test.log" "make test" make test &
test_pid=$!
export CUDA_VISIBLE_DEVICES=1
logged "$out/bench.log" bench ./dev/bench_parallax
logged "$out/train8.log" "" ./train_parallax --train-data 'data/shards/train_00[0-2].bin' --steps 8 --warmup 2 \
    --val-every 4 --sample-every 8 --checkpoint-every 0 --out /tmp/mb32
wait "$test_pid"
grep -E '^(test_host|test_parallax): |passed, .* failed, .* skipped' "$out/make_test.log" >"$out/make_test_summary.txt"
