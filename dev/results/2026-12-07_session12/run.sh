#!/usr/bin/env bash
# Session 12's device calls. Code: the commit that added this file (later calls: the commit their folder's
# README names); one H100 or H200 (each call's gpu.txt says which).
#   PART=1 bash dev/results/2026-12-07_session12/run.sh OUT   make compare at its default budget (200 steps of
#          2^18 tokens on the whole corpus), Muon, Parallax against matched softmax, seeds 1337-1339, for as long
#          as one device call allows. Carried: out/corpus.tar.xz (train_parallax and data/shards, xz: the six
#          training shards are 112 MB, over the carry limit) and out/compare200 (the finished runs' log.csv and
#          run.json from earlier calls, which compare.py reuses). The run folders come back as OUT/runs.tgz (a call
#          returns 8 files at most).
#   PART=2 bash dev/results/2026-12-07_session12/run.sh OUT   dev/bench_parallax model (carried, built with SM=90a)
#          with the SM clock and power logged every 100 ms, then make compare as in PART=1 under AdamW
#          (OPTS, SEEDS), its folders archived every 20 s so that a call cut short still brings back what finished.
. "$(dirname "$0")/../run_lib.sh"
nvidia-smi -L >"$out/gpu.txt" 2>&1
stamp() { echo "$(date +%T) $*" >>"$out/times.txt"; }
[ -f out/corpus.tar.xz ] && { mkdir -p data/shards && xz -dc -T0 out/corpus.tar.xz | tar xf - -C data/shards; }
[ -f out/bins.tgz ] && { tar xzf out/bins.tgz && make -t all >/dev/null; }
[ -f out/bins.tar.xz ] && xz -dc out/bins.tar.xz | tar xf -   # train_parallax, dev/bench_parallax (PART=2)
cmp_out=out/compare200
mkdir -p "$cmp_out"
flatten() {   # the run folders' small files, one archive (only 8 files come back from a call)
    tar czf "$out/runs.tgz" --exclude='*.ptf' "$cmp_out"
    cp "$cmp_out"/table.md "$out/" 2>/dev/null || true
}
case "${PART:-1}" in
1)
    stamp start compare
    logged "$out/compare.log" "" timeout -s TERM "${COMPARE_WALL:-540}" env COMPARE_SEEDS="1337 1338 1339" \
        COMPARE_ARMS="${ARMS:-parallax softmax_match}" COMPARE_OPTIMIZERS=muon COMPARE_OUT="$cmp_out" \
        COMPARE_CHECKPOINT_EVERY=0 PLOT_PYTHON=python3 bash dev/compare.sh
    pkill -f train_parallax || true   # timeout stops compare.py, not the trainer it started
    stamp end
    flatten
    ;;
2)
    stamp start bench
    CLOCK_MS=100 clocks_during "$out/clocks.csv" logged "$out/bench_model.log" "" ./dev/bench_parallax model
    stamp start compare
    ( while sleep 20; do tar czf "$out/runs.tgz.part" --exclude='*.ptf' "$cmp_out" 2>/dev/null &&
        mv "$out/runs.tgz.part" "$out/runs.tgz"; done ) &
    saver=$!
    logged "$out/compare.log" "" timeout -s TERM "${COMPARE_WALL:-540}" env COMPARE_SEEDS="${SEEDS:-1337}" \
        COMPARE_ARMS="${ARMS:-parallax softmax_match}" COMPARE_OPTIMIZERS="${OPTS:-adamw}" COMPARE_OUT="$cmp_out" \
        COMPARE_CHECKPOINT_EVERY=0 PLOT_PYTHON=python3 bash dev/compare.sh
    pkill -f train_parallax || true
    kill "$saver" 2>/dev/null || true
    stamp end
    flatten
    ;;
esac
