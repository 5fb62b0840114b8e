"""CPU tests of train_parallax's command line and input checks: every one happens before any GPU work, so
they run in CI. Each bad input must exit 2 with a message naming the flag or the file, print no crash, and
stop before GPU start; each valid command (several that a default used to break) must pass every check:
`--dry-run 1` stops right before the GPU, so these run the same on a machine with one.
  python3 dev/test_cli.py [./train_parallax]
"""
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile

from checks import Checks

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = Checks("cli")
check = CHECKS.check
CRASH_SIGNS = ("Traceback", "terminate called", "Segmentation", "bad_alloc", "CUDA error", "core dumped")


def write_shard(path, tokens, magic=20240520, version=1, count=None, cut=0):
    header = [0] * 256
    header[:3] = [magic, version, len(tokens) if count is None else count]
    data = struct.pack("<256i", *header) + struct.pack(f"<{len(tokens)}H", *tokens)
    with open(path, "wb") as f:
        f.write(data[: len(data) - cut])


def write_empty_ptf(path):
    """A well-formed tensor file with no metadata and no tensors (a checkpoint missing every key)."""
    with open(path, "wb") as f:
        f.write(b"PTF1" + struct.pack("<3I", 1, 0, 0))


def gpu_visible():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(exe, args, cwd=None):
    return subprocess.run([exe] + args, capture_output=True, text=True, timeout=120, cwd=cwd)


def check_refused(exe, args, needles, what, cwd=None):
    p = run(exe, args, cwd)
    msg = (p.stderr.strip().splitlines() or [""])[-1]
    needles = [needles] if isinstance(needles, str) else needles
    crashed = [s for s in CRASH_SIGNS if s in p.stderr]
    ok = (p.returncode == 2 and all(n in msg for n in needles) and not crashed and
          "no CUDA GPU" not in p.stderr and "dry run" not in p.stdout)
    check(f"refuses {what}", ok, f"exit {p.returncode}: {msg}")


def check_accepted(exe, args, what, want_stdout=(), cwd=None):
    p = run(exe, args + ["--dry-run", "1"], cwd)
    missing = [w for w in want_stdout if w not in p.stdout]
    ok = p.returncode == 0 and "dry run: every check passed" in p.stdout and not missing
    last = (p.stdout.strip().splitlines() or [""])[-1] if p.returncode == 0 else p.stderr.strip()
    check(f"accepts {what}", ok, f"exit {p.returncode}: {last}" + (f"; missing {missing}" if missing else ""))
    return p


def dry_run_val_tokens(stdout):
    for line in stdout.splitlines():
        if line.startswith("dry run:"):
            return int(line.split("validation ")[1].split(" tokens")[0])
    return None


def main(argv):
    exe = os.path.abspath(argv[0] if argv else os.path.join(HERE, "..", "train_parallax"))
    if not os.path.exists(exe):
        check("train_parallax is built", False, f"{exe} not found (run make)")
        sys.exit(1)
    with tempfile.TemporaryDirectory() as d:
        def path(name):
            return os.path.join(d, name)
        good, val = path("good.bin"), path("val.bin")
        write_shard(good, [i % 50000 for i in range(5000)])
        val_count = 3000
        write_shard(val, [(7 * i) % 50257 for i in range(val_count)])
        out = path("out")
        base = ["--train-data", good, "--val-data", val, "--prose-val-data", "", "--batch", "2", "--seq-len", "64",
                "--depth", "2", "--out", out]
        write_shard(path("magic.bin"), [1] * 5000, magic=7)
        write_shard(path("version.bin"), [1] * 5000, version=3)
        write_shard(path("short.bin"), [1] * 5000, cut=100)
        write_shard(path("tiny.bin"), [1] * 10)
        write_shard(path("small.bin"), [1] * 100)      # under one batch (2 x 64 + 1), over one window (65)
        write_shard(path("badtok.bin"), [1] * 1234 + [50257] + [1] * 4000)
        write_shard(path("badval.bin"), [1] * 2000 + [65535] + [1] * 999)
        open(path("empty.bin"), "wb").close()
        os.mkdir(path("dir.bin"))
        os.mkdir(path("sub"))
        write_shard(path("sub/train_000.bin"), [2] * 5000)
        write_shard(path("sub/val_000.bin"), [3] * 5000)
        a_file = path("a_file")
        open(a_file, "w").close()
        # OUT directories holding something the run would have to overwrite
        ckdir_out, logdir_out, garbage_out, nokey_out = path("o1"), path("o2"), path("o3"), path("o4")
        os.makedirs(os.path.join(ckdir_out, "checkpoint.ptf"))
        os.makedirs(os.path.join(logdir_out, "log.csv"))
        os.mkdir(garbage_out)
        with open(os.path.join(garbage_out, "checkpoint.ptf"), "wb") as f:
            f.write(b"not a tensor file at all")
        os.mkdir(nokey_out)
        write_empty_ptf(os.path.join(nokey_out, "checkpoint.ptf"))
        cases = [
            # flags, one at a time
            (["--bogus", "1"], "--bogus", "unknown flag"),
            (["stray"], "stray", "an argument that is not a flag"),
            (["--batch"], "--batch", "missing value"),
            (["--batch", "x"], "--batch", "not an integer"),
            (["--batch", "0"], "--batch", "batch 0"),
            (["--batch", "99999999999999999999"], "--batch", "an integer that overflows"),
            (["--depth", "0"], "--depth", "depth 0"),
            (["--steps", "-1"], "--steps", "negative steps"),
            (["--steps", "1e3"], "--steps", "steps in float notation"),
            (["--attention", "linear"], "--attention", "unknown attention"),
            (["--optimizer", "sgd"], "--optimizer", "unknown optimizer"),
            (["--schedule", "linear"], "--schedule", "unknown schedule"),
            (["--total-batch", "0"], "--total-batch", "total batch 0"),
            (["--seq-len", "0"], "--seq-len", "sequence length 0"),
            (["--max-seq-len", "0"], "--max-seq-len", "max sequence length 0"),
            (["--head-dim", "96"], "--head-dim", "unsupported head dim"),
            (["--width", "4224"], "--width", "width above the norms' 4096"),
            (["--decay-frac", "1.5"], "--decay-frac", "decay fraction above 1"),
            (["--muon-lr", "abc"], "--muon-lr", "learning rate not a number"),
            (["--embed-lr", "-1"], "--embed-lr", "negative learning rate"),
            (["--grad-clip", "nan"], "--grad-clip", "clip NaN"),
            (["--seed", "-5"], "--seed", "negative seed"),
            (["--val-every", "-1"], "--val-every", "negative validation interval"),
            (["--val-batches", "-1"], "--val-batches", "negative validation batches"),
            (["--sample-tokens", "0"], "--sample-tokens", "zero sample tokens"),
            (["--checkpoint-every", "x"], "--checkpoint-every", "checkpoint interval not an integer"),
            (["--resume", "2"], "--resume", "resume 2"),
            (["--dry-run", "yes"], "--dry-run", "dry run not 0 or 1"),
            (["--out", ""], "--out", "empty --out"),
            # relations between flags
            (["--total-batch", "1000"], ["--total-batch", "nearest valid"], "batch not dividing the total batch"),
            (["--batch", "24"], ["--batch", "16 or 32"], "a batch not dividing the default step, with the nearest"),
            (["--seq-len", "96"], ["--seq-len", "64 or 128"], "a seq-len not dividing the default step, with the nearest"),
            (["--total-batch", "1099511627776"], ["--total-batch", "micro-batches"], "a micro-step count over the cap"),
            (["--seq-len", "2048", "--max-seq-len", "1024"], "--seq-len", "sequence length over the given maximum"),
            (["--width", "192"], "--width", "width not a multiple of 128"),
            (["--head-dim", "128", "--width", "200"], "--width", "width not a multiple of the head dim"),
            (["--depth", "72"], "--width", "width from --depth above 4096"),
            (["--warmup", "30", "--steps", "10"], "--warmup", "a given warmup longer than the steps"),
            # data files
            (["--train-data", path("none*.bin")], "none*.bin", "no shard matches"),
            (["--train-data", path("magic.bin")], "magic.bin", "bad magic"),
            (["--train-data", path("version.bin")], "version.bin", "wrong version"),
            (["--train-data", path("short.bin")], "short.bin", "size does not match the count"),
            (["--train-data", path("tiny.bin")], "tiny.bin", "a training shard under one batch"),
            (["--train-data", path("dir.bin")], ["dir.bin", "directory"], "a directory as a training shard"),
            (["--train-data", path("badtok.bin")], ["badtok.bin", "position 1234"], "a token id 50257, at open"),
            (["--steps", "1", "--train-data", path("magic.bin")], "magic.bin", "a bad shard with --steps 1 (the shard, not the warmup)"),
            (["--batch", "24", "--train-data", path("magic.bin")], "magic.bin", "a bad shard before a flag relation"),
            (["--val-data", path("empty.bin")], "empty.bin", "empty shard"),
            (["--val-data", path("tiny.bin")], "tiny.bin", "a validation shard under one window"),
            (["--val-data", path("dir.bin")], ["dir.bin", "directory"], "a directory as a validation shard"),
            (["--val-data", path("badval.bin")], ["badval.bin", "position 2000"], "a token id 65535 in validation"),
            (["--prose-val-data", path("badval.bin")], "badval.bin", "a bad token in the prose validation set"),
            (["--val-data", good], ["--val-data", "good.bin", "--train-data"], "the training shard as validation"),
            (["--train-data", path("sub/*_000.bin"), "--val-data", path("sub/val_*.bin")], "val_000.bin",
             "a glob overlap between training and validation"),
            # OUT and the checkpoint
            (["--out", a_file], ["--out", "a_file"], "--out naming a file"),
            (["--out", os.path.join(a_file, "sub")], ["--out", "a_file"], "--out under a file"),
            (["--out", "/proc/no_such_dir"], ["--out", "cannot create"], "an --out that cannot be created, even by root"),
            (["--out", logdir_out], ["--out", "log.csv"], "OUT/log.csv a directory"),
            (["--out", ckdir_out], ["--out", "checkpoint.ptf"], "OUT/checkpoint.ptf a directory"),
            (["--resume", "1"], "checkpoint.ptf", "resume without a checkpoint"),
            (["--resume", "1", "--out", garbage_out], ["checkpoint.ptf", "bad magic"], "resume from a file that is not one"),
            (["--resume", "1", "--out", nokey_out], [os.path.basename(exe) + ": ", "checkpoint.ptf", "no metadata key"],
             "resume from a checkpoint missing its metadata, with the program's name"),
        ]
        for extra, needles, what in cases:
            check_refused(exe, base + extra, needles, what)
        n_bad = len(cases)
        ro = path("readonly")
        os.mkdir(ro)
        os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
        if os.geteuid() == 0:
            CHECKS.skip("refuses an --out that is not writable", "running as root, which may write anywhere")
        else:
            check_refused(exe, base + ["--out", ro], ["--out", "not writable"], "an --out that is not writable")
            check_refused(exe, base + ["--out", os.path.join(ro, "x")], ["--out", "cannot create"],
                          "an --out that cannot be created")
            n_bad += 2
        os.chmod(ro, stat.S_IRWXU)
        check("at least 40 bad inputs tried", n_bad >= 40, f"{n_bad}")

        # valid commands, several of which a default used to break
        check_accepted(exe, base + ["--steps", "10"], "--steps 10 (the default warmup 20 is lowered, with a note)",
                       ["--warmup 20 (the default) lowered to --steps 10"])
        check_accepted(exe, base + ["--steps", "1"], "--steps 1")
        check_accepted(exe, base + ["--steps", "0"], "--steps 0")
        check_accepted(exe, base + ["--depth", "3"], "--depth 3 (width 192 rounded up to 256, with a note)",
                       ["rounded up to 256", "d3 (C=256)"])
        check_accepted(exe, base + ["--seq-len", "2048"], "--seq-len 2048 (the RoPE table follows it)")
        check_accepted(exe, base + ["--val-data", path("small.bin")],
                       "a validation shard under one batch but over one window")
        check_accepted(exe, base + ["--val-batches", "1000"], "--val-batches over the set (every window once, a note)",
                       ["using them all once"])
        nested = path("n1/n2/n3")
        check_accepted(exe, base + ["--out", nested], "a nested --out, made with its parents")
        check("the nested --out exists", os.path.isdir(nested), nested)
        hostile = "x'; touch pwned; '"
        check_accepted(exe, base + ["--out", hostile], "an --out with quotes and a shell command in it", cwd=d)
        check("that --out is one directory of that name, and no command ran",
              os.path.isdir(path(hostile)) and not os.path.exists(path("pwned")), str(sorted(os.listdir(d))))

        # validation covers every token but the first once, whatever --batch is
        want = val_count - 1
        got = {}
        for b in (1, 2, 4, 32):
            p = run(exe, base + ["--batch", str(b), "--total-batch", str(32 * 64), "--dry-run", "1"])
            got[b] = dry_run_val_tokens(p.stdout) if p.returncode == 0 else p.stderr.strip()
        check("validation scores every token of the set once, for --batch 1, 2, 4, 32",
              all(v == want for v in got.values()), f"{got}, the shard's {val_count} tokens less its first")

        if gpu_visible():
            CHECKS.skip("a valid command reaches GPU start", "a GPU is present (the run would train)")
        else:
            p = run(exe, base + ["--steps", "10"])
            check("a valid command reaches GPU start (no GPU here)", p.returncode == 1 and "no CUDA GPU" in p.stderr,
                  f"exit {p.returncode}: {p.stderr.strip()[-200:]}")

        p = run(exe, ["--help"])
        flags = ["--train-data", "--val-data", "--attention", "--optimizer", "--depth", "--seq-len", "--batch",
                 "--total-batch", "--steps", "--seed", "--out", "--resume", "--dry-run"]
        missing = [f for f in flags if f not in p.stdout]
        check("--help lists the flags of spec section 7", p.returncode == 0 and not missing,
              f"missing: {missing or 'none'}")
        check("--help states the step rule", "B x T must divide N" in p.stdout, "'B x T must divide N'")
        shutil.rmtree(path(hostile), ignore_errors=True)
    CHECKS.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
