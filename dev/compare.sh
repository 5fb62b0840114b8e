#!/usr/bin/env bash
# make compare: Parallax, softmax and softmax with the MLP widened to Parallax's parameter count, each under
# Muon and AdamW, three seeds, same data order; then the statistics table and the plot with seed bands. The
# work is dev/compare.py (its --help says how runs resume and how the equal-time mode sets each run's steps);
# this script passes it the Makefile's variables:
#   make compare                                    # 200 steps of 2^18 tokens per run, seeds 1337 1338 1339
#   make compare COMPARE_SEEDS="1 2 3 4 5" COMPARE_STEPS=600
#   make compare COMPARE_TIME=150                   # equal time: 150 s of training per run
#   make compare COMPARE_GPUS="0 1 2 3"             # runs spread over GPUs, one run per GPU at a time
#   make compare COMPARE_ARMS="parallax softmax" COMPARE_OPTIMIZERS=muon COMPARE_FLAGS="--batch 16"
# Run it again after an interruption: finished runs are reused, unfinished ones resume from their checkpoint.
# Output: $COMPARE_OUT (default out/compare)/<arm>_<optimizer>_s<seed>/ (log.csv, train.out, run.json),
# table.md, losses.png. COMPARE_TRAINER replaces ./train_parallax (dev/test_compare.py uses a stand-in).
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--steps "${COMPARE_STEPS:-200}" --seeds "${COMPARE_SEEDS:-1337 1338 1339}" --gpus "${COMPARE_GPUS:--}"
      --out "${COMPARE_OUT:-out/compare}" --trainer "${COMPARE_TRAINER:-./train_parallax}"
      --arms "${COMPARE_ARMS:-parallax softmax softmax_match}" --optimizers "${COMPARE_OPTIMIZERS:-muon adamw}"
      --checkpoint-every "${COMPARE_CHECKPOINT_EVERY:-50}" --flags "${COMPARE_FLAGS:-}")
[ -n "${COMPARE_TIME:-}" ] && args+=(--time-budget "$COMPARE_TIME")
[ "${COMPARE_KEEP_CHECKPOINTS:-0}" = 1 ] && args+=(--keep-checkpoints)
[ "${COMPARE_REPORT_ONLY:-0}" = 1 ] && args+=(--report-only)
exec "${PLOT_PYTHON:-python3}" dev/compare.py "${args[@]}"
