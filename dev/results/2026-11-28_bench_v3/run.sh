#!/usr/bin/env bash
# Attention version 3's first measurement, one H200 (nvidia-h200). Code: f349eb9. Reconstructed (see
# ../run_lib.sh); the summary file holds a selection of make test's lines (run on an nvidia-h200-x2 before).
# The trainer read shards train_000..002 only.
#   git worktree add /tmp/v3 f349eb9 && cd /tmp/v3 && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j16 all
[ -f data/shards/manifest.json ] || make data
logged "$out/make_test.log" "make test" make test
grep -E '^FAIL|^(test_host|test_parallax): |passed, .* failed, .* skipped' "$out/make_test.log" >"$out/make_test_summary.txt"
./dev/bench_parallax >"$out/bench.log" 2>&1
for a in parallax softmax; do
    logged "$out/mb32_$a.log" "" ./train_parallax --attention "$a" --train-data 'data/shards/train_00[0-2].bin' \
        --batch 32 --total-batch 524288 --steps 8 --warmup 2 --val-every 0 --sample-every 0 --checkpoint-every 0
done
