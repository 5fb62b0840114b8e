"""CPU tests of train_parallax's command line and input checks: every one happens before any GPU work, so
they run in CI. Each bad input must exit 2 with a message naming the flag or the file, print no crash, and
stop before GPU start; each valid command (several that a default used to break) must pass every check:
`--dry-run 1` stops right before the GPU, so these run the same on a machine with one.
  python3 dev/test_cli.py [./train_parallax]
"""
import os
import re
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

# ---------------------------------------------------------------------------------------------------------
# --resume against fake checkpoints (dev/tensorfile.py): the metadata is checked before any GPU work, so a
# refusal must come with exit 2 and name each setting with both values; a checkpoint that matches must get
# past every check (to GPU start here, to the tensor load on a GPU host).

def f32(x):
    """A float as the trainer stores it: rounded to float32, 9 significant digits."""
    return "%.9g" % struct.unpack("<f", struct.pack("<f", float(x)))[0]


def listed(stderr):
    """key -> (checkpoint value, this run's value) from the lines '  key: checkpoint A, this run B'."""
    out = {}
    for line in stderr.splitlines():
        m = re.match(r"  (\S+): checkpoint (.*), this run (.*)$", line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3))
    return out


def past_the_checks(p):
    """A --dry-run 1 got past every check."""
    return p.returncode == 0 and "dry run: every check passed" in p.stdout


def resume_cases(exe, d):
    try:
        import tensorfile
    except ImportError as e:
        CHECKS.skip("resume checks", f"dev/tensorfile.py needs numpy ({e})")
        return
    import numpy as np
    tr = os.path.join(d, "resume_train")
    os.makedirs(tr)
    shards = [os.path.join(tr, "train_000.bin"), os.path.join(tr, "train_001.bin")]
    sizes = [3000, 4000]
    for path, n in zip(shards, sizes):
        write_shard(path, [i % 50000 for i in range(n)])
    held_out = os.path.join(d, "resume_val.bin")
    write_shard(held_out, [(3 * i) % 50000 for i in range(2000)])
    flags = {"--attention": "softmax", "--optimizer": "adamw", "--depth": "2", "--width": "256", "--head-dim": "128",
             "--seq-len": "32", "--max-seq-len": "512", "--batch": "4", "--total-batch": "256", "--steps": "30",
             "--warmup": "3", "--schedule": "cosine", "--decay-frac": "0.25", "--seed": "4242", "--adam-lr": "0.0015",
             "--grad-clip": "0.5", "--skip-outliers": "4.5"}
    # what the checkpoint must say for these flags and shards (the names the trainer's message uses)
    expect = {"variant": "softmax", "optimizer": "adamw", "depth": "2", "width": "256", "head_dim": "128",
              "seq_len": "32", "batch": "4", "total_batch": "256", "steps": "30", "warmup": "3",
              "schedule": "cosine", "decay_frac": f32(0.25), "seed": "4242", "adam_lr": f32(0.0015),
              "grad_clip": f32(0.5), "skip_outliers": f32(4.5), "train_files": "2"}
    for i, (path, n) in enumerate(zip(shards, sizes)):
        expect[f"train_file.{i}"], expect[f"train_file_tokens.{i}"] = path, str(n)
    args = [a for kv in flags.items() for a in kv] + ["--train-data", os.path.join(tr, "train_*.bin"),
                                                       "--val-data", held_out, "--prose-val-data", "",
                                                       "--sample-every", "0"]
    position = {"kind": "checkpoint", "step": "10", "train_shard": "1", "train_offset": "128", "adam_t": "9",
                "loss_window": "", "norm_window": ""}
    counter = [0]

    def run(files, extra=("--resume", "1", "--dry-run", "1"), log=None):
        """files: {name: meta dict, or (meta, cut bytes), or None for a directory} in a fresh OUT."""
        counter[0] += 1
        out = os.path.join(d, f"resume_out{counter[0]}")
        os.makedirs(out)
        for name, meta in files.items():
            path = os.path.join(out, name)
            if meta is None:
                os.makedirs(path)
                continue
            cut = 0
            if isinstance(meta, tuple):
                meta, cut = meta
            tensorfile.write(path, meta, [("param.wte", np.zeros((64, 64), np.float32))] if cut else [])
            if cut:
                os.truncate(path, os.path.getsize(path) - cut)
        if log is not None:
            with open(os.path.join(out, "log.csv"), "w") as f:
                f.write(log)
        p = subprocess.run([exe] + args + ["--out", out] + list(extra), capture_output=True, text=True, timeout=60)
        return p, out

    # 1. a checkpoint without settings: every setting is named missing, with this run's value
    p, _ = run({"checkpoint_000010.ptf": position})
    got = listed(p.stderr)
    wrong = {k: got.get(k) for k, v in expect.items() if got.get(k) != ("(missing)", v)}
    check("resume: every missing setting named with this run's value", p.returncode == 2 and not wrong and
          len(got) >= len(expect), f"exit {p.returncode}, {len(got)} settings listed, wrong or absent: {wrong or 'none'}")
    settings = {k: v[1] for k, v in got.items()}

    # 2. the same settings stored: past every check (a dry run leaves log.csv alone); a real start keeps the
    # header and the rows up to step 10 (it stops at GPU start here, at the tensor load on a GPU host)
    full = dict(position, **settings)
    rows = ["10,2560,train,5.1,1,0.5,1,1,\n", "10,2560,val,5.2,,,,,300\n", "11,2816,train,5.0,1,0.5,1,1,\n",
            "30,7680,gpu_memory_gib,1.5,,,,,\n"]
    header = "step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s,eval_tokens\n"
    log = header + "".join(rows) + "12,3072,tra"
    p, out = run({"checkpoint_000010.ptf": full}, log=log)
    with open(os.path.join(out, "log.csv")) as f:
        untouched = f.read() == log
    check("resume: a checkpoint with the same settings gets past every check", past_the_checks(p) and untouched,
          f"exit {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1]}; log.csv untouched: {untouched}")
    p, out = run({"checkpoint_000010.ptf": full}, extra=("--resume", "1"), log=log)
    with open(os.path.join(out, "log.csv")) as f:
        kept = f.read()
    want = header + "".join(r for r in rows if int(r.split(",")[0]) <= 10 and ",gpu_memory_gib," not in r)
    check("resume: log.csv rows after the checkpoint's step (and a cut line, the memory row) dropped",
          kept == want and "other settings" not in p.stderr,
          f"{kept.count(chr(10))} lines kept, {want.count(chr(10))} expected; exit {p.returncode}")

    # 3. other settings: each one named with both values, nothing else
    changed = {"depth": "4", "steps": "40", "adam_lr": f32(0.002), "train_file_tokens.1": "4001",
               "train_file.2": os.path.join(tr, "train_002.bin")}
    p, _ = run({"checkpoint_000010.ptf": dict(full, **changed)})
    got = listed(p.stderr)
    want = {k: (v, expect.get(k, "(none)")) for k, v in changed.items()}
    check("resume: each mismatched setting named with both values", p.returncode == 2 and got == want,
          f"exit {p.returncode}, listed {got}")

    # 4. a bad position or kind: a clear error naming the key
    bad = [({"step": "abc"}, "step is 'abc'"), ({"step": "-3"}, "step is '-3'"), ({"step": "31"}, "step is '31'"),
           ({"step": "12"}, "file name says 10"), ({"train_shard": "2"}, "train_shard is '2'"),
           ({"train_offset": "x"}, "train_offset is 'x'"), ({"train_offset": "4001"}, "train_offset is '4001'"),
           ({"adam_t": None}, "'adam_t' is missing"), ({"step": None}, "'step' is missing"),
           ({"loss_window": "1 x"}, "loss_window"), ({"kind": "reference"}, "not a train_parallax checkpoint")]
    for change, needle in bad:
        meta = {k: v for k, v in dict(full, **change).items() if v is not None}
        p, _ = run({"checkpoint_000010.ptf": meta})
        msg = (p.stderr.strip().splitlines() or [""])[-1]
        check(f"resume: refuses {change}", p.returncode == 2 and needle in msg and "checkpoint_000010.ptf" in msg,
              f"exit {p.returncode}: {msg}")

    # 5. the newest complete checkpoint is resumed: a newer one cut short is passed over, with a note
    p, _ = run({"checkpoint_000010.ptf": full, "checkpoint_000020.ptf": (dict(full, step="20"), 100)})
    check("resume: passes over a checkpoint cut short, resumes the one before",
          past_the_checks(p) and "passing over" in p.stdout and "checkpoint_000020.ptf" in p.stdout,
          f"exit {p.returncode}: {p.stdout.strip().splitlines()[-1:]} {(p.stderr.strip().splitlines() or [''])[-1]}")
    # a directory under a checkpoint's name is refused earlier, by the --out check (make_out_dir), naming it
    for files, what, needle in [({"checkpoint_000020.ptf": (dict(full, step="20"), 100)}, "only a cut-short checkpoint",
                                 "no complete checkpoint"),
                                ({"checkpoint_000030.ptf": None}, "a directory as the checkpoint", "not a regular file")]:
        p, _ = run(files)
        msg = (p.stderr.strip().splitlines() or [""])[-1]
        check(f"resume: refuses {what}", p.returncode == 2 and needle in msg and "checkpoint_0000" in msg,
              f"exit {p.returncode}: {msg}")

    # 6. a fresh run refuses an OUT holding checkpoints; the new flags refuse bad values
    p, _ = run({"checkpoint_000010.ptf": full}, extra=("--dry-run", "1"))
    msg = (p.stderr.strip().splitlines() or [""])[-1]
    check("fresh run refuses an OUT with checkpoints", p.returncode == 2 and "--out" in msg and "--resume 1" in msg,
          f"exit {p.returncode}: {msg}")
    for flag, value in [("--keep-last", "-1"), ("--keep-last", "x"), ("--skip-outliers", "-2"),
                        ("--skip-outliers", "nan")]:
        p = subprocess.run([exe] + args + ["--out", os.path.join(d, "o"), flag, value], capture_output=True,
                           text=True, timeout=60)
        msg = (p.stderr.strip().splitlines() or [""])[-1]
        check(f"refuses {flag} {value}", p.returncode == 2 and flag in msg, f"exit {p.returncode}: {msg}")

    # 7. --help states one checkpoint's size for the flags before it (reference: dev/model_ref.py's table)
    p = subprocess.run([exe] + args + ["--help"], capture_output=True, text=True, timeout=60)
    m = re.search(r"one checkpoint is ([0-9.]+) GiB", p.stdout)
    try:
        from model_ref import Config, param_table
    except ImportError as e:
        CHECKS.skip("--help states the checkpoint size", f"dev/model_ref.py needs torch ({e})")
        return
    cfg = Config(variant="softmax", depth=2, width=256, head_dim=128)
    n = sum(int(np.prod(shape)) for _, shape in param_table(cfg))
    check("--help states the checkpoint size", m and m.group(1) == "%.2f" % (16 * n / 2**30) and "--keep-last" in p.stdout,
          f"help says {m.group(1) if m else None} GiB, 16 bytes x {n} parameters = {16 * n / 2**30:.4f} GiB")


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
        os.makedirs(os.path.join(ckdir_out, "checkpoint_000100.ptf"))
        os.makedirs(os.path.join(logdir_out, "log.csv"))
        os.mkdir(garbage_out)
        with open(os.path.join(garbage_out, "checkpoint_000010.ptf"), "wb") as f:
            f.write(b"not a tensor file at all")
        os.mkdir(nokey_out)
        write_empty_ptf(os.path.join(nokey_out, "checkpoint_000010.ptf"))
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
            (["--mlp-hidden", "100"], "--mlp-hidden", "MLP hidden size not a multiple of 64"),
            (["--mlp-hidden", "wide"], "--mlp-hidden", "MLP hidden size neither a number nor 'match'"),
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
            (["--prose-val-data", path("nope_*.bin")], ["--prose-val-data", "nope_*.bin", "no file matches"],
             "a named clean-prose set that matches nothing (the default may be absent, a named one not)"),
            (["--lastword", path("nope.bin")], ["--lastword", "nope.bin", "cannot open"],
             "a named last-word file that does not exist"),
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
            (["--out", ckdir_out], ["--out", "checkpoint_000100.ptf", "not a regular file"], "OUT/checkpoint_<step>.ptf a directory"),
            (["--resume", "1"], "checkpoint_<step>.ptf", "resume without a checkpoint"),
            (["--resume", "1", "--out", garbage_out], ["checkpoint_000010.ptf", "bad magic"], "resume from a file that is not one"),
            (["--resume", "1", "--out", nokey_out], [os.path.basename(exe) + ": ", "checkpoint_000010.ptf", "metadata key 'kind' is missing"],
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
        resume_cases(exe, d)
    CHECKS.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
