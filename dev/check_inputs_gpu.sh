#!/usr/bin/env bash
# The input checks that need a GPU (issue 16), on synthetic shards: one PASS/FAIL line each.
#   bash dev/check_inputs_gpu.sh [./train_parallax] [./test_parallax]        (about a minute on an H100)
# 1. validation scores every token of the set once (the step line and log.csv say how many) for --batch 32,
#    16 and 7 (at the spec's init the logits are 0, so the loss itself is ln V at any batch and proves nothing)
# 2. a run that cannot fit is refused before allocation, exit 2, naming what it needs and what is free
# 3. the memory estimate printed at start is within 1.5 GiB of the memory in use at the end (d12, 2 steps)
# 4. test_parallax FAILs (not skips) when nvidia-smi sees a GPU that CUDA cannot (CUDA_VISIBLE_DEVICES=)
set -u
exe=$(realpath "${1:-./train_parallax}")
tp=$(realpath "${2:-./test_parallax}")
py=/usr/bin/python3
[ -x "$py" ] || py=python3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
report() {   # report OK NAME DETAIL
    if [ "$1" = 1 ]; then echo "PASS gpu-inputs: $2: $3"; else echo "FAIL gpu-inputs: $2: $3"; fails=$((fails + 1)); fi
}

# random GPT-2 ids; two validation shards whose target counts are not multiples of 1024
"$py" - "$dir" <<'EOF'
import random, struct, sys
d = sys.argv[1]
seed = random.randrange(1 << 30)
print(f"shards from random seed {seed}")
rng = random.Random(seed)
def write(name, n):
    toks = [rng.randrange(50257) for _ in range(n)]
    with open(f"{d}/{name}", "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)) + struct.pack(f"<{n}H", *toks))
write("train_000.bin", 300000)
write("val_000.bin", 50001 + 333)
write("val_001.bin", 20000)
EOF
want=$(( (50001 + 333 - 1) + (20000 - 1) ))
data=(--train-data "$dir/train_*.bin" --val-data "$dir/val_*.bin" --prose-val-data "" --sample-every 0
      --checkpoint-every 0)

# 1. validation at step 0 (the init), three micro-batch sizes
for b in 32 16 7; do
    out="$dir/val_b$b"
    line=$("$exe" "${data[@]}" --depth 2 --steps 0 --batch "$b" --total-batch $((b * 1024)) --out "$out" 2>&1 |
           grep '^step .* val loss')
    got=$(echo "$line" | sed -n 's/.*val loss \([0-9.]*\) (\([0-9]*\) tokens).*/\2/p')
    logged=$(awk -F, '$3 == "val" { print $9 }' "$out/log.csv" 2>/dev/null)
    report "$([ "$got" = "$want" ] && [ "$logged" = "$want" ] && echo 1)" \
        "validation at --batch $b scores every token once" "step line $got, log.csv $logged, the set's $want ($line)"
done
# 2. a model that fits no GPU of today (d48: about 370 GiB)
msg=$("$exe" "${data[@]}" --depth 48 --steps 1 --out "$dir/big" 2>&1)
rc=$?
report "$([ $rc = 2 ] && echo "$msg" | grep -q 'needs .* GiB .* GiB free' && ! echo "$msg" | grep -q 'CUDA error' && echo 1)" \
    "a run that cannot fit is refused before allocation" "exit $rc: $(echo "$msg" | tail -1)"

# 3. the estimate against the peak (every buffer is allocated up front)
log=$("$exe" "${data[@]}" --depth 12 --steps 2 --val-every 0 --out "$dir/d12" 2>&1)
est=$(echo "$log" | sed -n 's/.* \([0-9.]*\) GiB estimated in all.*/\1/p')
used=$(echo "$log" | sed -n 's/.*GPU memory in use \([0-9.]*\) GiB.*/\1/p')
close=$("$py" -c "import sys; print(int(abs(float(sys.argv[1]) - float(sys.argv[2])) <= 1.5))" "${est:-0}" "${used:-99}" 2>/dev/null)
report "${close:-0}" "the d12 memory estimate is within 1.5 GiB of the memory in use" "estimate ${est:-?} GiB, in use ${used:-?} GiB"

# 4. a GPU that nvidia-smi lists but CUDA cannot use
msg=$(CUDA_VISIBLE_DEVICES= "$tp" 2>&1)
rc=$?
report "$([ $rc = 1 ] && echo "$msg" | grep -q '^FAIL test_parallax: nvidia-smi -L lists' && echo 1)" \
    "test_parallax fails when CUDA sees no GPU but nvidia-smi does" "exit $rc: $(echo "$msg" | tail -1)"

echo "gpu-inputs: $fails failed"
[ "$fails" = 0 ]
