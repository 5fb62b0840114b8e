# Shared by the run.sh of each folder here. A run.sh repeats the commands that wrote its folder's logs; it
# was reconstructed from the folder's README and the logs' own lines, because the device calls' scripts
# were not kept in git. Run it from the root of a checkout of the commit its header names, on the machine
# it names:  bash /path/to/dev/results/FOLDER/run.sh OUT
set -euo pipefail
if [ ! -f train_parallax.cu ]; then
    echo "run.sh: run it from the repository root (a checkout of the commit named in its header)" >&2
    exit 2
fi
if [ $# -ne 1 ]; then
    echo "usage: bash $0 OUT   (OUT: a folder for the logs; the committed ones stay as they are)" >&2
    exit 2
fi
out=$1
mkdir -p "$out"

# logged LOG TAG CMD...: CMD's output into LOG, then the line "TAG rc N" that the committed logs end with
logged() {
    local log=$1 tag=$2 rc=0
    shift 2
    "$@" >"$log" 2>&1 || rc=$?
    echo "${tag:+$tag }rc $rc" >>"$log"
}

# train_short LOG ATTENTION [FLAGS...]: the sessions' trainer timing run on the first training shard
train_short() {
    local log=$1 attention=$2
    shift 2
    logged "$log" "" ./train_parallax --attention "$attention" --train-data data/shards/train_000.bin \
        --val-data data/shards/val_000.bin --total-batch 262144 --steps 20 --warmup 2 --val-every 0 \
        --sample-every 0 --checkpoint-every 0 --out "/tmp/run_$attention" "$@"
}

# clocks_during LOG CMD...: the GPU's SM clock and power every CLOCK_MS (500) ms while CMD runs
clocks_during() {
    local log=$1
    shift
    nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader -lms "${CLOCK_MS:-500}" >"$log" &
    local pid=$!
    "$@"
    kill "$pid" 2>/dev/null || true   # nvidia-smi has stopped early before
}

# unpack_bins: the carried out/bins13.tar.xz (every binary of `make all`) unpacked once per machine (later
# calls on a warm machine keep the files), then `make -t` on every call: the sources copied in may be newer
# than the binaries kept, and nothing is to be rebuilt on the device
unpack_bins() {
    if [ -f out/bins13.tar.xz ] && [ ! -f out/.bins13 ]; then
        xz -dc out/bins13.tar.xz | tar xf - && touch out/.bins13
    fi
    make -t all >/dev/null
}
