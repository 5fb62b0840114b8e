#!/usr/bin/env bash
# recall_check: the loss mask on a GPU (issue 19), on data of data/recall_tasks.py (d2, width 256; under a
# minute on an H100). Prints PASS / FAIL / SKIP lines, exits 1 on a failure.
#   1. an all-ones mask gives the same bits as no mask: losses, grad norms, validation losses and counts
#   2. the gradient scale is 1 / (scored targets of the whole step): a step of two micro-batches, the second
#      with no answers (its mask all 0), trains to the same bits as the first alone
#   3. a short recall run (Parallax, Muon, 600 steps): at init the accuracy is 0 and the loss ln(50257); at the
#      end the answer accuracy is well above chance (1/8 of the value symbols), and the reported count equals a
#      recount from the dumped predictions (TRAIN_PARALLAX_PREDICTIONS) against the answers read from the files
#   4. with 2 GPUs and torchrun: check 2 over 2 ranks gives the single-GPU bits (the scored count summed over
#      the ranks); check 1's unmasked run over 2 ranks stays within rounding of one GPU's
#   bash dev/recall_check.sh [./train_parallax]
set -u
cd "$(dirname "$0")/.." || exit 1
exe=${1:-./train_parallax}
failed=0
pass() { echo "PASS recall_check: $1: $2"; }
fail() { echo "FAIL recall_check: $1: $2"; failed=1; }
if ! nvidia-smi -L >/dev/null 2>&1; then echo "SKIP recall_check: the loss mask on a GPU: skipped: no GPU"; exit 0; fi
if [ ! -x "$exe" ]; then fail "train_parallax is built" "$exe not found (make train_parallax)"; exit 1; fi
py=""
for p in python3 /usr/bin/python3; do $p -c 'import numpy' >/dev/null 2>&1 && { py=$p; break; }; done
if [ -z "$py" ]; then fail "python3 with numpy" "none found"; exit 1; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the data: recall (seed 11); plain/ without masks, ones/ with all-ones masks, one/ its first 64 training
# examples, dup/ those 64 twice (the second time with no answers)
$py - "$work" <<'PY' || { echo "FAIL recall_check: data: the generator failed"; exit 1; }
import os, shutil, sys
import numpy as np
sys.path.insert(0, "data")
import recall_tasks as rt
w = sys.argv[1]
rt.write_task("recall", f"{w}/recall", 12800, 256, 11)
def load(path):
    return np.fromfile(path, dtype="<u2", offset=1024), np.fromfile(rt.mask_path(path), dtype=np.uint8, offset=1024)
def save(d, split, toks, mask):
    os.makedirs(d, exist_ok=True)
    rt.write_shard(f"{d}/{split}_000.bin", toks)
    if mask is not None:
        rt.write_mask(f"{d}/{split}_000.mask", mask, 128)
tr, trm = load(f"{w}/recall/train_000.bin")
va, vam = load(f"{w}/recall/val_000.bin")
for split, t in (("train", tr), ("val", va)):
    save(f"{w}/plain", split, t, None)
    save(f"{w}/ones", split, t, np.ones(len(t), np.uint8))
n = 64 * 128
head, hm = tr[:n + 1], trm[:n + 1].copy()
hm[-1] = 0
save(f"{w}/one", "train", head, hm)
save(f"{w}/dup", "train", np.concatenate([tr[:n], head]), np.concatenate([trm[:n], np.zeros(n + 1, np.uint8)]))
for d in ("one", "dup"):
    save(f"{w}/{d}", "val", va, vam)
print(f"recall_check: data in {w}: {int(trm.sum())} training answers, {int(vam.sum())} validation answers")
PY

common=(--prose-val-data "" --seq-len 128 --depth 2 --width 256 --sample-every 0 --checkpoint-every 0)
train() {   # name, then flags: one run into $work/out_<name>; its printout in $work/<name>.out
    local name=$1; shift
    "$exe" "${common[@]}" "$@" --out "$work/out_$name" > "$work/$name.out" 2>&1 ||
        { fail "run $name" "exit $?: $(tail -3 "$work/$name.out" | tr '\n' ' ')"; return 1; }
}
data() { echo --train-data "$work/$1/train_000.bin" --val-data "$work/$1/val_000.bin"; }
rows() {   # step, kind, loss, lr, norm, eval tokens, eval correct of the train and val rows
    grep -E ',(train|val),' "$1" | cut -d, -f1,3-6,9,10
}

# 1. all-ones mask = no mask
short=(--batch 16 --total-batch 4096 --steps 6 --warmup 2 --val-every 3 --val-batches 4)
if train plain $(data plain) "${short[@]}" && train ones $(data ones) "${short[@]}"; then
    grep -q "loss mask: --train-data" "$work/ones.out" && ! grep -q "loss mask" "$work/plain.out" && mk=1 || mk=0
    if [ $mk = 1 ] && [ -n "$(rows "$work/out_plain/log.csv")" ] && [ "$(rows "$work/out_plain/log.csv")" = "$(rows "$work/out_ones/log.csv")" ]; then
        pass "all-ones mask" "6 steps and 3 validations: the same losses, norms and counts as no mask ($(rows "$work/out_ones/log.csv" | tail -1))"
    else
        fail "all-ones mask" "mask read: $mk; the logs differ: $(diff <(rows "$work/out_plain/log.csv") <(rows "$work/out_ones/log.csv") | head -4 | tr '\n' ' ')"
    fi
fi

# 2. the gradient scale: one micro-batch of 64 examples, or the same plus 64 without answers
scale=(--batch 64 --steps 5 --warmup 2 --val-every 5 --val-batches 2)
same() { cut -d, -f1,3,4,5,6 "$1" | grep -E ',(train|val),'; }   # without the tokens column (the steps differ)
if train one $(data one) "${scale[@]}" --total-batch 8192 && train dup $(data dup) "${scale[@]}" --total-batch 16384; then
    if [ -n "$(same "$work/out_one/log.csv")" ] && [ "$(same "$work/out_one/log.csv")" = "$(same "$work/out_dup/log.csv")" ]; then
        pass "gradient scale" "a second micro-batch without answers changes no bit of 5 steps (1 / scored targets of the step)"
    else
        fail "gradient scale" "$(diff <(same "$work/out_one/log.csv") <(same "$work/out_dup/log.csv") | head -4 | tr '\n' ' ')"
    fi
fi

# 3. learning, and the recount
if TRAIN_PARALLAX_PREDICTIONS="$work/preds.bin" train learn --train-data "$work/recall/train_000.bin" \
        --val-data "$work/one/val_000.bin" --batch 64 --total-batch 8192 --steps 600 --warmup 20 --val-every 300; then
    $py - "$work" <<'PY'
import csv, sys
import numpy as np
w = sys.argv[1]
rows = [r for r in csv.DictReader(open(f"{w}/out_learn/log.csv")) if r["kind"] == "val"]
first, last = rows[0], rows[-1]
def say(ok, name, detail):
    print(f"{'PASS' if ok else 'FAIL'} recall_check: {name}: {detail}")
    return ok
ok = say(first["step"] == "0" and int(first["eval_correct"]) == 0 and abs(float(first["loss"]) - np.log(50257)) < 1e-3,
         "at init", f"accuracy {first['eval_correct']} of {first['eval_tokens']}, loss {first['loss']} (ln 50257 = {np.log(50257):.6f})")
acc = int(last["eval_correct"]) / int(last["eval_tokens"])
ok &= say(acc > 0.3, "recall learns", f"answer accuracy {acc:.4f} at step {last['step']} (chance 0.125), loss {last['loss']}")
toks = np.fromfile(f"{w}/one/val_000.bin", dtype="<u2", offset=1024)
mask = np.fromfile(f"{w}/one/val_000.mask", dtype=np.uint8, offset=1024)
answers = toks[1:][mask[1:] == 1]   # windows in token order: the scored targets are the answers, in order
raw = np.fromfile(f"{w}/preds.bin", dtype="<i4")
preds = raw[1:]
correct = int((preds == answers).sum()) if len(preds) == len(answers) else -1
ok &= say(raw[0] == len(preds) == len(answers) == int(last["eval_tokens"]) and correct == int(last["eval_correct"]),
          "accuracy recount", f"{len(preds)} predictions dumped, {len(answers)} answers in the files, "
          f"{correct} right by recount, {last['eval_correct']} of {last['eval_tokens']} reported")
sys.exit(0 if ok else 1)
PY
    [ $? = 0 ] || failed=1
    grep "answer accuracy" "$work/learn.out" | sed 's/^/recall_check: /'
fi

# 4. over 2 ranks
tpy=""
for p in python3 /usr/bin/python3; do $p -c 'import torch' >/dev/null 2>&1 && { tpy=$p; break; }; done
if [ "$(nvidia-smi -L | wc -l)" -lt 2 ] || [ -z "$tpy" ]; then
    echo "SKIP recall_check: gradient scale over 2 ranks: skipped: needs 2 GPUs and torchrun"
else
    if [ -z "${PARALLAX_NCCL_LIB:-}" ]; then
        lib=$($tpy -c 'import nvidia.nccl as m, os; print(os.path.join(list(m.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null)
        [ -n "$lib" ] && [ -f "$lib" ] && export PARALLAX_NCCL_LIB=$lib
    fi
    dp() {   # name, then flags: the run over 2 ranks
        local name=$1; shift
        PARALLAX_NCCL=1 $tpy -m torch.distributed.run --standalone --nproc_per_node=2 --no-python "$exe" "${common[@]}" \
            "$@" --out "$work/out_$name" > "$work/$name.out" 2>&1
    }
    if dp dp_dup $(data dup) "${scale[@]}" --total-batch 16384 &&
            [ "$(same "$work/out_one/log.csv")" = "$(same "$work/out_dp_dup/log.csv")" ]; then
        pass "gradient scale over 2 ranks" "rank 1's micro-batch has no answers; the same bits as one micro-batch on one GPU"
    else
        fail "gradient scale over 2 ranks" "$(tail -2 "$work/dp_dup.out" | tr '\n' ' ') $(diff <(same "$work/out_one/log.csv") <(same "$work/out_dp_dup/log.csv") 2>&1 | head -4 | tr '\n' ' ')"
    fi
    # without a mask the ranks' gradients are summed in another order than one GPU adds its micro-batches, so
    # this one compares to a tolerance: a wrong scale (one rank's count) would be off by a factor of 2
    if dp dp_plain $(data plain) "${short[@]}"; then
        $py - "$work/out_plain/log.csv" "$work/out_dp_plain/log.csv" <<'PY' || failed=1
import csv, sys
a, b = ([r for r in csv.DictReader(open(p)) if r["kind"] in ("train", "val")] for p in sys.argv[1:])
def close(x, y, rel):
    return (x == y == "") or abs(float(x) - float(y)) <= rel * max(1.0, abs(float(x)))
bad = [(r["step"], r["kind"]) for r, q in zip(a, b) if not (close(r["loss"], q["loss"], 1e-3) and close(r["grad_norm"], q["grad_norm"], 1e-2))]
ok = len(a) == len(b) == 9 and not bad
print(f"{'PASS' if ok else 'FAIL'} recall_check: no mask over 2 ranks: losses within 1e-3 and norms within 1% of one GPU's "
      f"({len(a)} rows, {len(b)} over 2 ranks; differing: {bad or 'none'})")
sys.exit(0 if ok else 1)
PY
    else
        fail "no mask over 2 ranks" "$(tail -2 "$work/dp_plain.out" | tr '\n' ' ')"
    fi
fi
exit $failed
