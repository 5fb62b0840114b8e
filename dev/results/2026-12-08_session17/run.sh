#!/usr/bin/env bash
# Session 17's device calls, written before any ran: no GPU was lent in session 17. Code: the commit that added
# this file (or the later one a call's README row names). Carried: out/bins17.tar.xz, every binary of
# `make -j2 SM=90a all` at that commit (packed as this folder's README says).
#   PART=1 bash dev/results/2026-12-08_session17/run.sh OUT   version 8 (the one-pass backward) and version 3 in
#          the attention study at the bench's three shapes, both variants, then version 8 again with
#          PARALLAX_ONEPASS_UNORDERED=1 (what the fixed order costs; timing only, its bits may differ between
#          runs); then make ref and test_parallax on the Hopper path (TEST_PARALLAX_SKIP_VERSION=8 if a study run
#          of version 8 failed: a trap would end the process) and on the forced 8.x path. About 5 minutes.
#   PART=2 bash dev/results/2026-12-08_session17/run.sh OUT   make test, the README's test command, whole (about
#          9 minutes in session 14); SKIP8=1 passes TEST_PARALLAX_SKIP_VERSION=8 on.
#   PART=3 bash dev/results/2026-12-08_session17/run.sh OUT   make bench, then make bench-torch: both trainers'
#          tokens/s and the attention tables on one machine.
. "$(dirname "$0")/../run_lib.sh"
stamp() { echo "$(date +%T) $*" >>"$out/times.txt"; }

# the carried binaries, unpacked once per machine; make -t: nothing is rebuilt on the device
if [ ! -f out/.bins17 ]; then xz -dc out/bins17.tar.xz | tar xf - && touch out/.bins17; fi
make -t all >/dev/null
nvidia-smi -L >"$out/gpu.txt" 2>&1

# study_table LOG: versions 3 and 8 at every (shape, variant), then version 8 unordered; prints the number of
# (ordered) version 8 runs that failed
study_table() {
    local log=$1 shape flag v failed=0 rc
    : >"$log"
    for shape in "16 1024 12 64" "4 4096 12 64" "8 2048 8 128"; do
        for flag in "" "--softmax"; do
            for v in 3 8; do
                echo "=== shape $shape $flag: version $v" >>"$log"
                rc=0
                timeout 60 ./dev/cuda/attention_study $v $shape $flag >>"$log" 2>&1 || rc=$?
                echo "rc $rc" >>"$log"
                if [ "$v" = 8 ] && [ "$rc" != 0 ]; then failed=$((failed + 1)); fi
            done
        done
    done
    for shape in "16 1024 12 64" "4 4096 12 64" "8 2048 8 128"; do
        for flag in "" "--softmax"; do
            echo "=== shape $shape $flag: version 8, PARALLAX_ONEPASS_UNORDERED=1" >>"$log"
            rc=0
            timeout 60 env PARALLAX_ONEPASS_UNORDERED=1 ./dev/cuda/attention_study 8 $shape $flag >>"$log" 2>&1 || rc=$?
            echo "rc $rc" >>"$log"
        done
    done
    echo "$failed"
}

case "${PART:-1}" in
1)
    stamp start study
    failed8=$(study_table "$out/study.log")
    echo "version 8 runs failed: $failed8" >>"$out/study.log"
    skip=()
    if [ "$failed8" != 0 ]; then skip=(env TEST_PARALLAX_SKIP_VERSION=8); fi
    stamp start ref
    logged "$out/ref.log" "" timeout 150 make ref
    stamp start test_parallax
    logged "$out/test_parallax.log" "" timeout 150 "${skip[@]}" ./test_parallax
    logged "$out/test_parallax_sm80.log" "" timeout 150 env PARALLAX_ATTENTION=sm80 "${skip[@]}" ./test_parallax
    stamp end
    ;;
2)
    stamp start make test
    if [ "${SKIP8:-0}" = 1 ]; then
        logged "$out/test.log" "make test" timeout 580 env TEST_PARALLAX_SKIP_VERSION=8 make test
    else
        logged "$out/test.log" "make test" timeout 580 make test
    fi
    stamp end
    ;;
3)
    stamp start bench
    logged "$out/bench.log" "make bench" timeout 280 make bench
    stamp start bench-torch
    logged "$out/bench_torch.log" "make bench-torch" timeout 280 make bench-torch
    stamp end
    ;;
*)
    echo "run.sh: PART must be 1, 2 or 3" >&2
    exit 2
    ;;
esac
