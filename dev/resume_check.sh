#!/usr/bin/env bash
# On a GPU: a d12 run killed with SIGKILL between two checkpoints and then resumed must print the same loss,
# gradient norm, skipped updates and validation losses at every later step, to the printed digit, as the same
# run uninterrupted, and its log.csv must hold every row once, equal to the uninterrupted run's. Also checks
# --keep-last, --checkpoint-every 0, the checkpoint size that --help states, the --skip-outliers rule, and
# that a NaN loss stops the run before its update with the last checkpoint intact.
#   bash dev/resume_check.sh [more train_parallax flags, e.g. --train-data 'data/shards/train_00[0-2].bin']
# Builds nothing (uses ./train_parallax). Prints PASS / FAIL / SKIP lines, exits 1 on a failure. About 2
# minutes on an H100; needs about 12 GB of disk under ${RESUME_CHECK_DIR:-/tmp} (d12 checkpoints, 2.5 GiB).
# The runs: 120 steps of 2 micro-batches of 16 x 1024, checkpoints at 40, 80, 120, the last 2 kept, the
# outlier guard at z = 1 (over the last 64 steps) so that the resumed run must restore its windows to
# skip the same updates; the kill comes after checkpoint_000080.ptf is renamed into place and step 82 is logged.
set -u
cd "$(dirname "$0")/.." || exit 1
EXE=./train_parallax
failed=0
pass() { echo "PASS resume_check: $1: $2"; }
fail() { echo "FAIL resume_check: $1: $2"; failed=1; }

if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "SKIP resume_check: resume after SIGKILL: skipped: no GPU"
    exit 0
fi
if [ ! -x "$EXE" ]; then
    fail "train_parallax is built" "$EXE not found (run make train_parallax)"
    exit 1
fi
work=$(mktemp -d "${RESUME_CHECK_DIR:-/tmp}/resume_check.XXXXXX")
trap 'rm -rf "$work"' EXIT
FLAGS=(--steps 120 --warmup 5 --batch 16 --total-batch 32768 --checkpoint-every 40 --keep-last 2 --val-every 20
       --sample-every 0 --skip-outliers 1 --seed 1337 "$@")
BUF=()
command -v stdbuf >/dev/null && BUF=(stdbuf -oL)   # step lines reach the file before the kill
echo "resume_check: flags ${FLAGS[*]}; work dir $work"

# the numbers of a printout: step lines without the timing, skipped updates, validation after step $2
numbers() {
    sed -nE 's/^(step +[0-9]+\/[0-9]+ \| loss [^|]+\| lr [^|]+\| norm [^|]+)\|.*/\1/p;
             /^step +[0-9]+ \| (update skipped|val loss)/p' "$1" |
        awk -v after="$2" '{ split($2, s, "/"); if (s[1] + 0 > after) print }'
}
# log.csv without the timing columns and the memory row
log_numbers() { grep -v ',gpu_memory_gib,' "$1" | cut -d, -f1-6; }

# 1. the uninterrupted run
A=$work/a
"$EXE" "${FLAGS[@]}" --out "$A" >"$work/a.out" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    fail "uninterrupted run" "exit status $rc: $(tail -n 3 "$work/a.out")"
    exit 1
fi
kept=$(cd "$A" && ls checkpoint_* 2>/dev/null | tr '\n' ' ')
[ "$kept" = "checkpoint_000080.ptf checkpoint_000120.ptf " ] && pass "--keep-last 2" "kept $kept" ||
    fail "--keep-last 2" "OUT holds '$kept', expected checkpoint_000080.ptf checkpoint_000120.ptf"
said=$("$EXE" "${FLAGS[@]}" --help | sed -nE 's/.*one checkpoint is ([0-9.]+) GiB.*/\1/p')
size=$(stat -c %s "$A/checkpoint_000120.ptf" 2>/dev/null || echo 0)
real=$(awk -v b="$size" 'BEGIN { printf "%.2f", b / 1073741824 }')
[ -n "$said" ] && [ "$said" = "$real" ] && pass "checkpoint size in --help" "$said GiB, the file $size bytes" ||
    fail "checkpoint size in --help" "--help says '$said' GiB, checkpoint_000120.ptf is $size bytes ($real GiB)"

# 2. the same run, killed with SIGKILL after checkpoint 80 is in place and step 82 is logged
B=$work/b
"${BUF[@]}" "$EXE" "${FLAGS[@]}" --out "$B" >"$work/b1.out" 2>&1 &
pid=$!
last_step() { awk -F, '$3 == "train" { s = $1 } END { print s + 0 }' "$B/log.csv" 2>/dev/null || echo 0; }
while ! { [ -f "$B/checkpoint_000080.ptf" ] && [ "$(last_step)" -ge 82 ]; }; do
    if ! kill -0 "$pid" 2>/dev/null; then
        fail "kill between checkpoints" "the run ended before step 82: $(tail -n 3 "$work/b1.out")"
        exit 1
    fi
    sleep 0.05
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
at=$(last_step)
if [ -e "$B/checkpoint_000120.ptf" ] || [ "$at" -ge 120 ]; then
    fail "kill between checkpoints" "the kill came too late (step $at logged)"
    exit 1
fi
pass "kill between checkpoints" "SIGKILL at step $at, newest checkpoint $(cd "$B" && ls checkpoint_*.ptf | tail -n 1)"
d=$(diff <(numbers "$work/a.out" 0 | head -n "$(numbers "$work/b1.out" 0 | wc -l)") <(numbers "$work/b1.out" 0) | head -n 4)
[ -z "$d" ] && pass "same numbers before the kill" "$(numbers "$work/b1.out" 0 | wc -l) lines" ||
    fail "same numbers before the kill" "the runs differ before any resume: $d"

# 3. resumed: the same numbers as the uninterrupted run at every step after the checkpoint, the log equal
"$EXE" "${FLAGS[@]}" --out "$B" --resume 1 >"$work/b2.out" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    fail "resumed run" "exit status $rc: $(tail -n 3 "$work/b2.out")"
    exit 1
fi
grep -q "^resumed from $B/checkpoint_000080.ptf at step 80" "$work/b2.out" &&
    pass "resumed from the newest checkpoint" "$(grep '^resumed from' "$work/b2.out")" ||
    fail "resumed from the newest checkpoint" "$(grep -m1 'resumed\|error\|train_parallax:' "$work/b2.out")"
want=$(numbers "$work/a.out" 80)
got=$(numbers "$work/b2.out" 80)
n=$(echo "$want" | grep -c 'loss')
skips=$(echo "$want" | grep -c 'update skipped')
d=$(diff <(echo "$want") <(echo "$got") | head -n 6)
[ -z "$d" ] && [ "$n" -ge 40 ] && pass "same numbers after the resume" "$n lines (steps 81..120, $skips skipped updates)" ||
    fail "same numbers after the resume" "$n lines expected; first differences: $d"
d=$(diff <(log_numbers "$A/log.csv") <(log_numbers "$B/log.csv") | head -n 6)
[ -z "$d" ] && pass "log.csv equal to the uninterrupted run's" "$(wc -l <"$B/log.csv") lines" ||
    fail "log.csv equal to the uninterrupted run's" "first differences: $d"
dup=$(cut -d, -f1,3 "$B/log.csv" | sort | uniq -d | head -n 3)
[ -z "$dup" ] && pass "log.csv holds each row once" "no repeated (step, kind)" ||
    fail "log.csv holds each row once" "repeated: $dup"

# 4. the outlier guard skipped the updates that its rule names, recomputed from the uninterrupted run's log
# (loss and norm as logged, rounded: decisions within 0.01 of the threshold are not judged)
read -r n_skipped n_close bad < <(python3 - "$A/log.csv" <<'EOF'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
train = [(int(r["step"]), float(r["loss"]), float(r["grad_norm"])) for r in rows if r["kind"] == "train"]
skipped = {int(r["step"]) for r in rows if r["kind"] == "skipped"}
window, z_max, close, bad = 64, 1.0, 0, []
for i in range(window, len(train)):
    zs = []
    for k in (1, 2):
        w = [t[k] for t in train[i - window:i]]
        mean = sum(w) / window
        sd = math.sqrt(sum((y - mean) ** 2 for y in w) / window)
        zs.append((train[i][k] - mean) / sd if sd > 0 else 0.0)
    if any(abs(z - z_max) < 0.01 for z in zs):
        close += 1
    elif any(z > z_max for z in zs) != (train[i][0] in skipped):
        bad.append(str(train[i][0]))
print(len(skipped), close, ",".join(bad) or "none")
EOF
)
[ "${n_skipped:-0}" -gt 0 ] && [ "$bad" = "none" ] &&
    pass "--skip-outliers 1 skips what its rule says" "$n_skipped updates skipped, $n_close near the threshold not judged" ||
    fail "--skip-outliers 1 skips what its rule says" "${n_skipped:-?} skipped; steps decided otherwise than the rule: ${bad:-?}"

# 5. a NaN loss (the trainer's test hook) at step 25 of a d2 run: not applied, exit 1 naming the step, the
# checkpoints of steps 10 and 20 intact, and a resume from step 20 runs to the end
D=$work/d
DFLAGS=(--depth 2 --steps 30 --warmup 2 --batch 16 --total-batch 32768 --checkpoint-every 10 --keep-last 0
        --val-every 0 --sample-every 0 "$@")
TRAIN_PARALLAX_NAN_AT_STEP=25 "$EXE" "${DFLAGS[@]}" --out "$D" >"$work/d1.out" 2>&1
rc=$?
msg=$(grep 'not finite' "$work/d1.out")
kept=$(cd "$D" && ls checkpoint_* 2>/dev/null | tr '\n' ' ')
[ "$rc" -eq 1 ] && [[ "$msg" == *"step 25: loss nan"* ]] && [[ "$msg" == *"checkpoint_000020.ptf (step 20), is intact"* ]] &&
    [ "$kept" = "checkpoint_000010.ptf checkpoint_000020.ptf " ] &&
    pass "a NaN loss stops the run before its update" "exit 1: $msg" ||
    fail "a NaN loss stops the run before its update" "exit $rc, OUT holds '$kept': ${msg:-$(tail -n 2 "$work/d1.out")}"
"$EXE" "${DFLAGS[@]}" --out "$D" --resume 1 >"$work/d2.out" 2>&1
rc=$?
rows=$(awk -F, '$3 == "train" { printf "%s ", $1 }' "$D/log.csv")
want=$(seq -s ' ' 1 30)
[ "$rc" -eq 0 ] && grep -q "^resumed from $D/checkpoint_000020.ptf at step 20" "$work/d2.out" && [ "$rows" = "$want " ] &&
    pass "the checkpoint before the NaN resumes" "steps 21..30 run, log.csv train rows 1..30 once" ||
    fail "the checkpoint before the NaN resumes" "exit $rc, train rows '$rows': $(tail -n 2 "$work/d2.out")"

# 6. --checkpoint-every 0 writes none, not even at the end
C=$work/c
"$EXE" "${FLAGS[@]}" --steps 3 --warmup 1 --val-every 0 --checkpoint-every 0 --out "$C" >"$work/c.out" 2>&1
rc=$?
n=$(ls "$C" 2>/dev/null | grep -c '^checkpoint')
[ "$rc" -eq 0 ] && [ "$n" -eq 0 ] && pass "--checkpoint-every 0" "no checkpoint written" ||
    fail "--checkpoint-every 0" "exit status $rc, $n checkpoint files: $(tail -n 2 "$work/c.out")"
exit $failed
