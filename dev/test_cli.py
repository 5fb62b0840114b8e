"""CPU tests of train_parallax's command line and input checks: every one happens before any GPU work, so
they run in CI. Each bad input must exit non-zero with a message naming the flag or the file.
  python3 dev/test_cli.py [./train_parallax]
"""
import os
import re
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
    """The run got past every resume check: it stopped at GPU start (no GPU) or at the tensor load (GPU)."""
    err = p.stderr
    return p.returncode != 0 and "other settings" not in err and ("GPU" in err or "param." in err)


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
                                                       "--val-data", shards[0], "--sample-every", "0"]
    position = {"kind": "checkpoint", "step": "10", "train_shard": "1", "train_offset": "128", "adam_t": "9",
                "loss_window": "", "norm_window": ""}
    counter = [0]

    def run(files, extra=("--resume", "1"), log=None):
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

    # 2. the same settings stored: past every check; log.csv keeps the header and the rows up to step 10
    full = dict(position, **settings)
    rows = ["10,2560,train,5.1,1,0.5,1,1\n", "10,2560,val,5.2,,,,\n", "11,2816,train,5.0,1,0.5,1,1\n",
            "30,7680,gpu_memory_gib,1.5,,,,\n"]
    header = "step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s\n"
    p, out = run({"checkpoint_000010.ptf": full}, log=header + "".join(rows) + "12,3072,tra")
    with open(os.path.join(out, "log.csv")) as f:
        kept = f.read()
    want = header + "".join(r for r in rows if int(r.split(",")[0]) <= 10 and ",gpu_memory_gib," not in r)
    check("resume: a checkpoint with the same settings gets past every check", past_the_checks(p),
          f"exit {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1]}")
    check("resume: log.csv rows after the checkpoint's step (and a cut line, the memory row) dropped", kept == want,
          f"{kept.count(chr(10))} lines kept, {want.count(chr(10))} expected")

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
    for files, what in [({"checkpoint_000020.ptf": (dict(full, step="20"), 100)}, "only a cut-short checkpoint"),
                        ({"checkpoint_000030.ptf": None}, "a directory as the checkpoint")]:
        p, _ = run(files)
        msg = (p.stderr.strip().splitlines() or [""])[-1]
        check(f"resume: refuses {what}", p.returncode == 2 and "no complete checkpoint" in msg, f"exit {p.returncode}: {msg}")

    # 6. a fresh run refuses an OUT holding checkpoints; the new flags refuse bad values
    p, _ = run({"checkpoint_000010.ptf": full}, extra=())
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
            (["--depth", "72"], "--width", "width from --depth above 4096"),
            (["--train-data", os.path.join(d, "none*.bin")], "none*.bin", "no shard matches"),
            (["--train-data", os.path.join(d, "magic.bin")], "magic.bin", "bad magic"),
            (["--train-data", os.path.join(d, "version.bin")], "version.bin", "wrong version"),
            (["--train-data", os.path.join(d, "short.bin")], "short.bin", "size does not match the count"),
            (["--val-data", os.path.join(d, "empty.bin")], "empty.bin", "empty shard"),
            (["--val-data", os.path.join(d, "tiny.bin")], "tiny.bin", "fewer tokens than one batch"),
            (["--resume", "1"], "checkpoint_<step>.ptf", "resume without a checkpoint"),
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
        resume_cases(exe, d)
    CHECKS.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
