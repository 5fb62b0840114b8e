#!/usr/bin/env bash
# Attention version 2, nvidia-h200-x2 (make test on GPU 0, the bench and the trainer on GPU 1). Code: 3a00c51.
# Reconstructed (see ../run_lib.sh). The trainer read shards train_000..002 only.
#   git worktree add /tmp/v2 3a00c51 && cd /tmp/v2 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j32 all
[ -f data/shards/manifest.json ] || make data
CUDA_VISIBLE_DEVICES=0 logged "$out/make_test.log" "make test" make test &
test_pid=$!
export CUDA_VISIBLE_DEVICES=1
logged "$out/bench.log" bench ./dev/bench_parallax
for a in parallax softmax; do
    logged "$out/mb32_$a.log" "" ./train_parallax --attention "$a" --train-data 'data/shards/train_00[0-2].bin' \
        --batch 32 --total-batch 524288 --steps 8 --warmup 2 --val-every 0 --sample-every 0 --checkpoint-every 0
done
wait "$test_pid"
