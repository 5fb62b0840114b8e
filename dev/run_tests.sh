#!/usr/bin/env bash
# Runs every test program and counts their lines. Each program prints one line per check, starting with
# PASS, FAIL or SKIP ("skipped: no GPU"). A program that exits non-zero without printing a FAIL line
# counts as one failure. The last line is "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
crashed=0

run() {
    local name=$1; shift
    echo "== $name: $*"
    local before after
    before=$(grep -c '^FAIL ' "$log")
    "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    after=$(grep -c '^FAIL ' "$log")
    if [ "$rc" -ne 0 ] && [ "$after" -eq "$before" ]; then
        echo "FAIL $name: exited with status $rc" | tee -a "$log"
    fi
}

run host ./dev/test_host
run dist ./dev/test_dist ./train_parallax
if [ -n "${PYTHON:-}" ]; then
    run reference "$PYTHON" dev/test_reference.py
    run host-vs-reference "$PYTHON" dev/test_host.py ./dev/test_host
    run downstream-ref "$PYTHON" dev/test_downstream_ref.py
    run bench-torch "$PYTHON" dev/test_bench_torch.py
else
    echo "FAIL reference: no python3 with torch found (Debian: apt-get install python3-torch)" | tee -a "$log"
fi
if [ -n "${DATA_PYTHON:-}" ]; then
    run data "$DATA_PYTHON" data/test_data.py
    run recall "$DATA_PYTHON" dev/test_recall.py ./train_parallax
    run eval-data "$DATA_PYTHON" data/test_eval_data.py ./train_parallax
else
    echo "FAIL data: no python3 with numpy and regex found (Debian: apt-get install python3-numpy python3-regex)" | tee -a "$log"
fi
run cli "${DATA_PYTHON:-${PYTHON:-python3}}" dev/test_cli.py ./train_parallax
run docs "${DATA_PYTHON:-${PYTHON:-python3}}" dev/test_docs.py
if [ -n "${PLOT_PYTHON:-}" ]; then
    run plot "$PLOT_PYTHON" dev/test_plot.py
    run compare "$PLOT_PYTHON" dev/test_compare.py
else
    echo "FAIL plot: no python3 with matplotlib found (Debian: apt-get install python3-matplotlib)" | tee -a "$log"
fi
run test_parallax ./test_parallax
# the 8.x attention path forced on this GPU, then the binary built from compute_80 PTX alone (it runs the
# 8.x path and would fail on any Hopper instruction); without a GPU each prints one SKIP line
run test_parallax-sm80 env PARALLAX_ATTENTION=sm80 ./test_parallax
run test_parallax-ptx80 ./test_parallax_ptx80
run dist-gpu bash dev/dist_check.sh ./train_parallax
run recall-gpu bash dev/recall_check.sh ./train_parallax
run downstream-gpu bash dev/downstream_check.sh ./train_parallax

passed=$(grep -c '^PASS ' "$log")
failed=$(grep -c '^FAIL ' "$log")
skipped=$(grep -c '^SKIP ' "$log")
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
