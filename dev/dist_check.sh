#!/usr/bin/env bash
# dist_check: the NCCL path at world size 1 gives the single-GPU run's bits. Trains a short d12 on a made-up
# shard twice, plainly and under `torchrun --nproc_per_node=1 --no-python` (which goes through the whole NCCL
# path: dlopen, the communicator, the bucketed all-reduces on their own stream, the loss sums, the ZeRO-1
# parameter broadcast, the checkpoint gather), then checks that the logged losses and the final checkpoints
# (weights and optimizer state) are the same bits. Needs a GPU, NCCL and torchrun; prints SKIP without them.
#   bash dev/dist_check.sh [./train_parallax]          DIST_CHECK_DEPTH=2 for a smaller model
# NCCL: PARALLAX_NCCL_LIB if set, else the pip package of the python3 that has torch (nvidia-nccl-cu1x).
set -u
cd "$(dirname "$0")/.."
exe=${1:-./train_parallax}
depth=${DIST_CHECK_DEPTH:-12}
if ! nvidia-smi -L >/dev/null 2>&1; then echo "SKIP dist_check: NCCL path at world size 1: skipped: no GPU"; exit 0; fi
if [ ! -x "$exe" ]; then echo "FAIL dist_check: $exe is not built (make train_parallax)"; exit 1; fi
py=""
for p in python3 /usr/bin/python3; do $p -c 'import torch' >/dev/null 2>&1 && { py=$p; break; }; done
if [ -z "$py" ]; then echo "SKIP dist_check: NCCL path at world size 1: skipped: no python3 with torch (torchrun)"; exit 0; fi
if [ -z "${PARALLAX_NCCL_LIB:-}" ]; then
    lib=$($py -c 'import nvidia.nccl as m, os; print(os.path.join(list(m.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null)
    if [ -n "$lib" ] && [ -f "$lib" ]; then export PARALLAX_NCCL_LIB=$lib; fi
fi
echo "dist_check: NCCL ${PARALLAX_NCCL_LIB:-from the search path of the dynamic loader}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seed=$RANDOM
echo "dist_check: shard seed $seed"
# made-up shards of random tokens (the llm.c format): 300k for training, 60k for validation (the trainer
# refuses one file in both)
$py - "$work" "$seed" <<'PY'
import random, struct, sys
rng = random.Random(int(sys.argv[2]))
for name, n in (("train.bin", 300000), ("val.bin", 60000)):
    with open(f"{sys.argv[1]}/{name}", "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
        f.write(struct.pack(f"<{n}H", *(rng.randrange(50257) for _ in range(n))))
PY
# one checkpoint, at the last step: checkpoint_000006.ptf
flags=(--train-data "$work/train.bin" --val-data "$work/val.bin" --prose-val-data "" --depth "$depth"
       --batch 8 --seq-len 512 --total-batch 16384 --steps 6 --warmup 2 --val-every 3 --val-batches 3
       --sample-every 0 --checkpoint-every 6)
fail=0
"$exe" "${flags[@]}" --out "$work/plain" > "$work/plain.out" 2>&1 || { echo "FAIL dist_check: the plain run failed:"; tail -5 "$work/plain.out"; exit 1; }
PARALLAX_NCCL=1 $py -m torch.distributed.run --standalone --nproc_per_node=1 --no-python "$exe" "${flags[@]}" \
    --out "$work/nccl" > "$work/nccl.out" 2>&1 || { echo "FAIL dist_check: the torchrun run failed:"; tail -5 "$work/nccl.out"; exit 1; }
grep -q "data parallel: 1 ranks (torchrun)" "$work/nccl.out" && ok=1 || ok=0
line=$(grep "data parallel" "$work/nccl.out" | head -1)
[ $ok = 1 ] && echo "PASS dist_check: torchrun run took the NCCL path: ${line# }" || { echo "FAIL dist_check: torchrun run did not take the NCCL path"; fail=1; }
losses() { grep -E ',(train|val),' "$1" | cut -d, -f1-6; }
if [ -n "$(losses "$work/plain/log.csv")" ] && [ "$(losses "$work/plain/log.csv")" = "$(losses "$work/nccl/log.csv")" ]; then
    echo "PASS dist_check: d$depth losses, lr and grad norms of 6 steps and 3 validations equal (log.csv)"
else
    echo "FAIL dist_check: the logs differ:"; diff <(losses "$work/plain/log.csv") <(losses "$work/nccl/log.csv") | head -10; fail=1
fi
if [ -f "$work/plain/checkpoint_000006.ptf" ] && cmp -s "$work/plain/checkpoint_000006.ptf" "$work/nccl/checkpoint_000006.ptf"; then
    echo "PASS dist_check: final checkpoints (weights, Muon and AdamW state) are the same bytes"
else
    echo "FAIL dist_check: final checkpoints differ or are missing: $(ls "$work/plain" "$work/nccl" | tr '\n' ' ')"; fail=1
fi
grep "^step     6/6" "$work/plain.out" "$work/nccl.out" | sed 's/^/dist_check: /'
exit $fail
