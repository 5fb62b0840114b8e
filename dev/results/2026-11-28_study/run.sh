#!/usr/bin/env bash
# The kernel study program, each version, nvidia-h200-x2 (the study on GPU 1 while make ref and test_parallax
# ran on GPU 0). Code: 1c85fce (8363172 added these logs and changed no code). Reconstructed (see
# ../run_lib.sh).
#   git worktree add /tmp/st 1c85fce && cd /tmp/st && bash /path/to/this/run.sh OUT
. "$(dirname "$0")/../run_lib.sh"
make -j32 all
(
    export CUDA_VISIBLE_DEVICES=0
    make ref
    ./test_parallax >"$out/test_parallax.log" 2>&1 && rc=0 || rc=$?
    { tail -n 1 "$out/test_parallax.log"; echo "test_parallax rc $rc"; } >"$out/test_parallax_summary.txt"
) &
test_pid=$!
export CUDA_VISIBLE_DEVICES=1
study() { echo "== ./dev/cuda/attention_study $*"; ./dev/cuda/attention_study "$@"; }
{
    study 3
    study 2
    study 1 2 1024 12 64
    study 3 16 1024 12 64 --softmax
    study 3 8 2048 8 128
} >"$out/study.log" 2>&1 && rc=0 || rc=$?
echo "rc $rc" >>"$out/study.log"
wait "$test_pid"
