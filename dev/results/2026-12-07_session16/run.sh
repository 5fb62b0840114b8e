#!/usr/bin/env bash
# Session 16's device calls (one H100 or H200: each call's gpu.txt says which). Code: the commit that added this
# file (later calls: the commit their folder's README names).
#   PART=1 bash dev/results/2026-12-07_session16/run.sh OUT   versions 6 and 7 (dev/cuda/attention_rows_smem.cuh)
#          against version 3, old and new, in the attention study at the bench's three shapes, both variants;
#          then make ref and test_parallax (every version's checks). Carried: out/bins16.tar.xz (test_parallax,
#          dev/cuda/attention_study, dev/bench_parallax of this commit, SM=90a) and out/bins13.tar.xz (session
#          13's binaries: its attention_study is version 3 before this session's change, the baseline).
#   PART=2 bash dev/results/2026-12-07_session16/run.sh OUT   make test on the GPU after version 3 takes shared
#          memory at D = 128 Parallax (every binary of `make all`, SM=90a, carried as out/bins16b.tar.xz), then
#          version 3 against the old one at D = 128 in the study.
#   PART=3 bash dev/results/2026-12-07_session16/run.sh OUT   for a short call, PART=2 without make test: make ref,
#          test_parallax on the Hopper and the forced 8.x path, then the study at D = 128
. "$(dirname "$0")/../run_lib.sh"
stamp() { echo "$(date +%T) $*" >>"$out/times.txt"; }

# unpack_bins16: this session's binaries, over the tree, once per machine
unpack_bins16() {
    if [ ! -f out/.bins16 ]; then
        xz -dc out/bins16.tar.xz | tar xf - && touch out/.bins16
    fi
    if [ ! -x out/attention_study_13 ]; then
        xz -dc out/bins13.tar.xz | tar xOf - dev/cuda/attention_study >out/attention_study_13
        chmod +x out/attention_study_13
    fi
}

# study_table LOG: every (shape, variant) with the old version 3, then versions 3, 6, 7 of this commit
study_table() {
    local log=$1 shape flag
    : >"$log"
    for shape in "16 1024 12 64" "4 4096 12 64" "8 2048 8 128"; do
        for flag in "" "--softmax"; do
            echo "=== shape $shape $flag: version 3 before this session (session 13's binary)" >>"$log"
            timeout 60 ./out/attention_study_13 3 $shape $flag >>"$log" 2>&1 || echo "rc $?" >>"$log"
            for v in 3 6 7; do
                echo "=== shape $shape $flag: version $v" >>"$log"
                timeout 60 ./dev/cuda/attention_study $v $shape $flag >>"$log" 2>&1 || echo "rc $?" >>"$log"
            done
        done
    done
}

case "${PART:-1}" in
1)
    unpack_bins16
    nvidia-smi -L >"$out/gpu.txt" 2>&1
    stamp start study
    study_table "$out/study.log"
    stamp start ref
    logged "$out/ref.log" "" timeout 150 make ref
    stamp start test_parallax
    logged "$out/test_parallax.log" "" timeout 240 ./test_parallax
    stamp end
    ;;
2|3)
    if [ ! -f out/.bins16b ]; then xz -dc out/bins16b.tar.xz | tar xf - && touch out/.bins16b; fi
    if [ ! -x out/attention_study_13 ]; then
        xz -dc out/bins13.tar.xz | tar xOf - dev/cuda/attention_study >out/attention_study_13
        chmod +x out/attention_study_13
    fi
    make -t all >/dev/null
    nvidia-smi -L >"$out/gpu.txt" 2>&1
    if [ "$PART" = 2 ]; then
        stamp start make test
        logged "$out/test.log" "make test" timeout 520 make test
    else
        stamp start ref
        logged "$out/ref.log" "" timeout 150 make ref
        stamp start test_parallax
        logged "$out/test_parallax.log" "" timeout 150 ./test_parallax
        logged "$out/test_parallax_sm80.log" "" timeout 150 env PARALLAX_ATTENTION=sm80 ./test_parallax
    fi
    stamp start study
    : >"$out/study.log"
    for flag in "" "--softmax"; do
        echo "=== shape 8 2048 8 128 $flag: version 3 before this session (session 13's binary)" >>"$out/study.log"
        timeout 40 ./out/attention_study_13 3 8 2048 8 128 $flag >>"$out/study.log" 2>&1 || echo "rc $?" >>"$out/study.log"
        echo "=== shape 8 2048 8 128 $flag: version 3" >>"$out/study.log"
        timeout 40 ./dev/cuda/attention_study 3 8 2048 8 128 $flag >>"$out/study.log" 2>&1 || echo "rc $?" >>"$out/study.log"
    done
    stamp end
    ;;
*)
    echo "run.sh: PART must be 1, 2 or 3" >&2
    exit 2
    ;;
esac
