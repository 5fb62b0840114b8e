#!/usr/bin/env bash
# Session 12's device calls. Code: the commit that added this file (later calls: the commit their folder's
# README names); one H100 or H200 (each call's gpu.txt says which).
#   PART=1 bash dev/results/2026-12-07_session12/run.sh OUT   make compare at its default budget (200 steps of
#          2^18 tokens on the whole corpus), Muon, Parallax against matched softmax, seeds 1337-1339, for as long
#          as one device call allows. Carried: train_parallax and out/corpus.tar.xz (data/shards, xz: the six
#          training shards are 112 MB, over the carry limit); out/compare200 (the finished runs, which compare.py
#          reuses) stays on a warm machine from one call to the next. The run folders come back as OUT/runs.tgz (a call
#          returns 8 files at most).
#   PART=2 bash dev/results/2026-12-07_session12/run.sh OUT   dev/bench_parallax model (carried, built with SM=90a)
#          with the SM clock and power logged every 100 ms, then make compare as in PART=1 under AdamW
#          (OPTS, SEEDS), its folders archived every 20 s so that a call cut short still brings back what finished.
#   PART=3 bash dev/results/2026-12-07_session12/run.sh OUT   (for the next session) the whole default comparison,
#          3 arms x Muon and AdamW x 3 seeds, reusing the 11 runs of call4/ and call5/runs.tgz (tracked, so no
#          carry needed) and running the 7 missing ones, archived as in PART=2; repeat on a warm machine until
#          compare.log ends with the table (about 16 min of GPU in all).
# The carried archives, made at the repository root after `make data` and the build:
#   (cd data/shards && tar cf - train_00?.bin val_000.bin valprose_000.bin gpt2_tokenizer.bin manifest.json) | xz -T2 > out/corpus.tar.xz
#   tar cf - train_parallax dev/bench_parallax | xz -T2 > out/bins.tar.xz      (PART=2 and 3 carry both)
. "$(dirname "$0")/../run_lib.sh"
nvidia-smi -L >"$out/gpu.txt" 2>&1
stamp() { echo "$(date +%T) $*" >>"$out/times.txt"; }
[ -f out/corpus.tar.xz ] && { mkdir -p data/shards && xz -dc -T0 out/corpus.tar.xz | tar xf - -C data/shards; }
[ -f out/bins.tgz ] && { tar xzf out/bins.tgz && make -t all >/dev/null; }
[ -f out/bins.tar.xz ] && xz -dc out/bins.tar.xz | tar xf -   # train_parallax, dev/bench_parallax (PART=2)
cmp_out=out/compare200
mkdir -p "$cmp_out"
archive_runs() {   # the run folders' small files, one archive (only 8 files come back from a call)
    tar czf "$out/runs.tgz.part" --exclude='*.ptf' "$cmp_out" && mv "$out/runs.tgz.part" "$out/runs.tgz"
}
flatten() {
    archive_runs
    cp "$cmp_out"/table.md "$out/" 2>/dev/null || true
}
# compare_archived [VAR=VALUE...]: make compare with these settings for at most COMPARE_WALL s, the run folders
# archived into OUT/runs.tgz every 20 s (a call cut short still brings back what finished)
compare_archived() {
    ( while sleep 20; do archive_runs 2>/dev/null; done ) &
    local saver=$!
    logged "$out/compare.log" "" timeout -s TERM "${COMPARE_WALL:-540}" env "$@" COMPARE_OUT="$cmp_out" \
        COMPARE_CHECKPOINT_EVERY=0 PLOT_PYTHON=python3 bash dev/compare.sh
    pkill -f -- "--out $cmp_out/" || true   # timeout stops compare.py, not the trainer it started (only that one)
    kill "$saver" 2>/dev/null || true
}
case "${PART:-1}" in
1)
    stamp start compare
    compare_archived COMPARE_SEEDS="1337 1338 1339" COMPARE_ARMS="${ARMS:-parallax softmax_match}" COMPARE_OPTIMIZERS=muon
    stamp end
    flatten
    ;;
2)
    stamp start bench
    CLOCK_MS=100 clocks_during "$out/clocks.csv" logged "$out/bench_model.log" "" ./dev/bench_parallax model
    stamp start compare
    compare_archived COMPARE_SEEDS="${SEEDS:-1337}" COMPARE_ARMS="${ARMS:-parallax softmax_match}" \
        COMPARE_OPTIMIZERS="${OPTS:-adamw}"
    stamp end
    flatten
    ;;
3)
    if [ ! -f "$cmp_out/.seeded" ]; then   # the first call on this machine: the runs so far, from git
        for a in "$(dirname "$0")"/call4/runs.tgz "$(dirname "$0")"/call5/runs.tgz; do tar xzf "$a"; done
        rm -rf "$cmp_out/parallax_adamw_s1338"   # stopped by call 5's wall, no checkpoint: run again
        s13="$(dirname "$0")/../2026-12-07_session13/call2/runs.tgz"   # two more finished there
        if [ -f "$s13" ]; then tar xzf "$s13" && rm -rf "$cmp_out/softmax_adamw_s1338"; fi   # that one unfinished
        touch "$cmp_out/.seeded"
    fi
    stamp start compare
    compare_archived
    stamp end
    flatten
    ;;
esac
