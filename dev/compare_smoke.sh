#!/usr/bin/env bash
# GPU smoke test of make compare with the real trainer on a tiny budget (about 3 minutes on one H100): builds
# train_parallax, then runs dev/compare_smoke.py (what it checks is in its docstring). PASS/FAIL/SKIP lines.
#   bash dev/compare_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make train_parallax >/dev/null
python=${PLOT_PYTHON:-}
if [ -z "$python" ]; then   # the first python3 with matplotlib (the plot), as the Makefile picks it
    for p in python3 /usr/bin/python3; do
        if "$p" -c 'import matplotlib' >/dev/null 2>&1; then python=$p; break; fi
    done
fi
[ -n "$python" ] || { echo "FAIL compare_smoke: no python3 with matplotlib found"; exit 1; }
exec "$python" dev/compare_smoke.py ./train_parallax
