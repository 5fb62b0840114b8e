#!/usr/bin/env bash
# Session 3's final logs, nvidia-h200-x2 (each command on one GPU). Code: faa0628 for bench.log and
# make_test_summary.txt; 43b16e9 for train30_*.log (TRAIN_ONLY=1). Reconstructed (see ../run_lib.sh); the
# summary file holds a selection of make test's lines.
#   git worktree add /tmp/s3 faa0628 && cd /tmp/s3 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j32 all
[ -f data/shards/manifest.json ] || make data
if [ -z "${TRAIN_ONLY:-}" ]; then
    CUDA_VISIBLE_DEVICES=0 logged "$out/make_test.log" "make test" make test &
    test_pid=$!
    CUDA_VISIBLE_DEVICES=1 logged "$out/bench.log" bench ./dev/bench_parallax
    wait "$test_pid"
    grep -E '^SKIP|passed, .* failed' "$out/make_test.log" >"$out/make_test_summary.txt"
else
    for a in parallax softmax; do
        logged "$out/train30_$a.log" "" ./train_parallax --attention "$a" --train-data data/shards/train_000.bin \
            --steps 30 --warmup 5 --val-every 0 --sample-every 0 --checkpoint-every 0 --out "/tmp/run30_$a"
    done
fi
