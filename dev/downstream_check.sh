#!/usr/bin/env bash
# downstream_check: the trainer's last-word and HellaSwag scores against dev/downstream_ref.py's from the same
# checkpoint. Trains a d2 model 60 steps on a learnable synthetic stream (dev/synthetic_shards.py; the GPU
# machine has no corpus and no internet), with test files in llm.c's evaluation layout made here from the
# validation stream: last-word passages (80 context tokens, the next 3 the target) and 4-ending examples (the
# true continuation among 3 chunks from elsewhere; some longer than --seq-len, so the context is cut). Then
# the reference rescores every row and checks the trainer's OUT/<test>_<step>.csv (losses within bf16-derived
# tolerances, decisions equal outside near ties), and the step line and log.csv against the CSVs. Under a
# minute on an H100. Needs a GPU and a python3 with torch; prints SKIP without them.
#   bash dev/downstream_check.sh [./train_parallax]
set -u
cd "$(dirname "$0")/.."
exe=${1:-./train_parallax}
if ! nvidia-smi -L >/dev/null 2>&1; then echo "SKIP downstream_check: trainer vs reference scores: skipped: no GPU"; exit 0; fi
if [ ! -x "$exe" ]; then echo "FAIL downstream_check: $exe is not built (make train_parallax)"; exit 1; fi
py=""
for p in python3 /usr/bin/python3; do $p -c 'import torch, numpy' >/dev/null 2>&1 && { py=$p; break; }; done
if [ -z "$py" ]; then echo "SKIP downstream_check: skipped: no python3 with torch and numpy"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$py dev/synthetic_shards.py "$work" --train-tokens 400000 --val-tokens 40000 --seed "${SEED:-$RANDOM}" || exit 1
$py - "$work" <<'PY' || exit 1
import os, random, sys
import numpy as np
sys.path.insert(0, "data")
from eval_format import write_evalfile
d = sys.argv[1]
val = np.fromfile(f"{d}/val_000.bin", dtype="<u2", offset=1024).tolist()
rng = random.Random(5)
lw = [(0, val[i * 100:i * 100 + 80], [val[i * 100 + 80:i * 100 + 83]]) for i in range(64)]
hs = []
for i in range(48):
    s = 8000 + i * 300
    n_ctx = 200 if i % 8 == 0 else 40   # every 8th longer than --seq-len 128: its context is cut from the left
    ctx, label = val[s:s + n_ctx], rng.randrange(4)
    ends = []
    for k in range(4):
        n = rng.randrange(2, 7)
        o = s + n_ctx if k == label else rng.randrange(20000, 39000)
        ends.append(val[o:o + n])
    hs.append((label, ctx, ends))
write_evalfile(f"{d}/lastword.bin", lw)
write_evalfile(f"{d}/hellaswag.bin", hs)
PY
flags=(--train-data "$work/train_000.bin" --val-data "$work/val_000.bin" --prose-val-data "" --depth 2
       --batch 16 --seq-len 128 --total-batch 4096 --steps 60 --warmup 5 --val-every 30 --sample-every 0
       --checkpoint-every 60 --lastword "$work/lastword.bin" --hellaswag "$work/hellaswag.bin")
"$exe" "${flags[@]}" --out "$work/out" > "$work/train.out" 2>&1 || { echo "FAIL downstream_check: the run failed:"; tail -5 "$work/train.out"; exit 1; }
grep -E "lastword|hellaswag" "$work/train.out" | sed 's/^/downstream_check: /'
fail=0
$py dev/downstream_ref.py "$work/out/checkpoint_000060.ptf" --seq-len 128 \
    --lastword "$work/lastword.bin" --compare-lastword "$work/out/lastword_000060.csv" \
    --hellaswag "$work/hellaswag.bin" --compare-hellaswag "$work/out/hellaswag_000060.csv" || fail=1
# the step line and log.csv report what the CSV holds
$py - "$work/out" <<'PY' || fail=1
import csv, math, sys
out = sys.argv[1]
lw = list(csv.DictReader(open(f"{out}/lastword_000060.csv")))
hs = list(csv.DictReader(open(f"{out}/hellaswag_000060.csv")))
want = {"lastword_acc": sum(int(r["correct"]) for r in lw) / len(lw),
        "lastword_ppl": math.exp(sum(float(r["loss"]) for r in lw) / len(lw)),
        "hellaswag_acc": sum(r["pred"] == r["label"] for r in hs[::4]) / len(hs[::4])}
got = {r[2]: float(r[3]) for r in csv.reader(open(f"{out}/log.csv")) if r[0] == "60" and r[2] in want}
ok = set(got) == set(want) and all(abs(got[k] - want[k]) <= 1e-5 * max(1, abs(want[k])) for k in want)
print(f"{'PASS' if ok else 'FAIL'} downstream_check: log.csv at step 60 {got} equals the scores of the CSVs {want}")
sys.exit(0 if ok else 1)
PY
exit $fail
