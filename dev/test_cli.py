"""CPU tests of train_parallax's command line and input checks: every one happens before any GPU work, so
they run in CI. Each bad input must exit non-zero with a message naming the flag or the file.
  python3 dev/test_cli.py [./train_parallax]
"""
import os
import struct
import subprocess
import sys
import tempfile

from checks import Checks

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = Checks("cli")
check = CHECKS.check

def write_shard(path, tokens, magic=20240520, version=1, count=None, cut=0):
    header = [0] * 256
    header[:3] = [magic, version, len(tokens) if count is None else count]
    data = struct.pack("<256i", *header) + struct.pack(f"<{len(tokens)}H", *tokens)
    with open(path, "wb") as f:
        f.write(data[: len(data) - cut])


def main(argv):
    exe = os.path.abspath(argv[0] if argv else os.path.join(HERE, "..", "train_parallax"))
    if not os.path.exists(exe):
        check("train_parallax is built", False, f"{exe} not found (run make)")
        sys.exit(1)
    with tempfile.TemporaryDirectory() as d:
        good = os.path.join(d, "good.bin")
        write_shard(good, [i % 50000 for i in range(5000)])
        base = ["--train-data", good, "--val-data", good, "--batch", "2", "--seq-len", "64", "--depth", "2",
                "--out", os.path.join(d, "out")]
        write_shard(os.path.join(d, "magic.bin"), [1] * 5000, magic=7)
        write_shard(os.path.join(d, "version.bin"), [1] * 5000, version=3)
        write_shard(os.path.join(d, "short.bin"), [1] * 5000, cut=100)
        write_shard(os.path.join(d, "tiny.bin"), [1] * 10)
        open(os.path.join(d, "empty.bin"), "wb").close()
        cases = [
            (["--bogus", "1"], "--bogus", "unknown flag"),
            (["--batch"], "--batch", "missing value"),
            (["--batch", "x"], "--batch", "not an integer"),
            (["--depth", "0"], "--depth", "depth 0"),
            (["--steps", "-1"], "--steps", "negative steps"),
            (["--attention", "linear"], "--attention", "unknown attention"),
            (["--optimizer", "sgd"], "--optimizer", "unknown optimizer"),
            (["--total-batch", "1000"], "--total-batch", "batch not dividing the total batch"),
            (["--seq-len", "2048"], "--seq-len", "sequence length over the maximum"),
            (["--head-dim", "96"], "--head-dim", "unsupported head dim"),
            (["--width", "4224"], "--width", "width above the norms' 4096"),
            (["--mlp-hidden", "100"], "--mlp-hidden", "MLP hidden size not a multiple of 64"),
            (["--mlp-hidden", "wide"], "--mlp-hidden", "MLP hidden size neither a number nor 'match'"),
            (["--depth", "72"], "--width", "width from --depth above 4096"),
            (["--train-data", os.path.join(d, "none*.bin")], "none*.bin", "no shard matches"),
            (["--train-data", os.path.join(d, "magic.bin")], "magic.bin", "bad magic"),
            (["--train-data", os.path.join(d, "version.bin")], "version.bin", "wrong version"),
            (["--train-data", os.path.join(d, "short.bin")], "short.bin", "size does not match the count"),
            (["--val-data", os.path.join(d, "empty.bin")], "empty.bin", "empty shard"),
            (["--val-data", os.path.join(d, "tiny.bin")], "tiny.bin", "fewer tokens than one batch"),
            (["--resume", "1"], "checkpoint.ptf", "resume without a checkpoint"),
        ]
        for extra, needle, what in cases:
            p = subprocess.run([exe] + base + extra, capture_output=True, text=True, timeout=60)
            msg = (p.stderr.strip().splitlines() or [""])[-1]
            ok = p.returncode != 0 and needle in msg and "CUDA" not in msg
            check(f"refuses {what}", ok, f"exit {p.returncode}: {msg}")
        p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
        flags = ["--train-data", "--val-data", "--attention", "--optimizer", "--depth", "--seq-len", "--batch",
                 "--total-batch", "--steps", "--seed", "--out", "--resume"]
        missing = [f for f in flags if f not in p.stdout]
        check("--help lists the flags of spec section 7", p.returncode == 0 and not missing,
              f"missing: {missing or 'none'}")
    CHECKS.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
