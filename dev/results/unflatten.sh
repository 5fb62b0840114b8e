#!/usr/bin/env bash
# unflatten.sh RUNS DEST: files a device call flattened to RUNS/<run>__<file> go back to DEST/<run>/<file>, for
# the runs whose log.csv is there (a later make compare with COMPARE_OUT=DEST reuses the finished ones).
set -euo pipefail
if [ $# -ne 2 ] || [ ! -d "$1" ]; then
    echo "usage: bash $0 RUNS DEST   (RUNS: a folder of <run>__<file> files)" >&2
    exit 2
fi
for f in "$1"/*__log.csv; do
    [ -e "$f" ] || continue
    run=$(basename "$f" __log.csv)
    mkdir -p "$2/$run"
    for g in "$1/$run"__*; do cp "$g" "$2/$run/${g##*__}"; done
done
