"""CPU tests of the recall tasks (issue 19): the generators of data/recall_tasks.py (deterministic per seed, the
mask covers exactly the answers, each answer follows from its example, noisy recall's noise, selective
copying, one example per window), the trainer's loss-mask reader through the binary (a good mask counted, bad
ones refused naming the file, before any GPU work) and dev/recall.py's table from made-up logs.
  python3 dev/test_recall.py [./train_parallax]
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "data"))
from checks import Checks, table_cells  # noqa: E402
import recall_tasks as rt  # noqa: E402

CHECKS = Checks("recall")
check = CHECKS.check


def examples(task, n, seed):
    """n examples of the training split, as (symbols, answer flags) per example."""
    toks, mask = rt.generate(task, n, seed, "train")
    T = rt.TASKS[task]["seq_len"]
    return [([x - rt.BASE for x in toks[i * T:(i + 1) * T]], mask[i * T:(i + 1) * T]) for i in range(n)], toks, mask


def recall_answers(ex):
    """The answer flags a recall example must have: a value whose key was seen earlier in the example."""
    seen, want = set(), []
    for i in range(0, len(ex), 2):
        k = ex[i]
        if k >= 16:   # a noise pair
            want += [0, 0]
            continue
        want += [0, int(k in seen)]
        seen.add(k)
    return want


def test_generators():
    seed = random.randrange(1 << 30)
    for task in rt.TASKS:
        a, b = rt.generate(task, 50, seed, "train"), rt.generate(task, 50, seed, "train")
        c, v = rt.generate(task, 50, seed + 1, "train"), rt.generate(task, 50, seed, "val")
        check(f"{task}: deterministic per seed; another seed or split differs", a == b and a[0] != c[0] and a[0] != v[0],
              f"seed {seed}")
        T = rt.TASKS[task]["seq_len"]
        toks, mask = a
        ids = set(toks[:-1])
        check(f"{task}: n x seq_len + 1 tokens, the last <|endoftext|>, symbols in GPT-2 ids 32..63",
              len(toks) == len(mask) == 50 * T + 1 and toks[-1] == rt.EOT and mask[-1] == 0 and min(ids) >= 32 and max(ids) < 64,
              f"{len(toks)} tokens, ids {min(ids)}..{max(ids)}")

    for task in ("recall", "noisy_recall"):
        exs, _, _ = examples(task, 200, seed)
        bad_mask = sum(m != recall_answers(x) for x, m in exs)
        check(f"{task}: the mask is exactly the values of keys seen before", bad_mask == 0, f"{bad_mask} of 200 examples differ")
        wrong = 0
        for x, m in exs:   # every answer is the value last paired with its key, earlier in the example
            for i in range(1, len(x), 2):
                if m[i]:
                    earlier = [x[j + 1] for j in range(0, i - 1, 2) if x[j] == x[i - 1]]
                    wrong += not earlier or earlier[-1] != x[i]
        check(f"{task}: each answer is recoverable from its context (the key's earlier value)", wrong == 0,
              f"{wrong} answers not")
        last_ok = sum(m[-1] == 1 and m[-2] == 0 for x, m in exs)
        check(f"{task}: the last pair asks a seen key", last_ok == 200, f"{last_ok} of 200")
        noise = [sum(x[i] >= 16 for i in range(0, len(x) - 2, 2)) for x, _ in exs]
        pairs = 200 * (rt.TASKS[task]["seq_len"] // 2 - 1)
        frac = sum(noise) / pairs
        if task == "recall":
            check("recall: no noise", frac == 0, f"noise pairs {sum(noise)}")
        else:
            both = sum((x[i] >= 16) == (x[i + 1] >= 16) for x, _ in exs for i in range(0, len(x), 2))
            masked_noise = sum(m[i] for x, m in exs for i in range(len(x)) if x[i] >= 16)
            check("noisy_recall: ~20% of the pairs are noise (two noise symbols 16..31), never an answer",
                  0.17 < frac < 0.23 and both == 200 * len(exs[0][0]) // 2 and masked_noise == 0 and
                  max(x for e, _ in exs for x in e) <= 31, f"noise fraction {frac:.3f}, {masked_noise} noise answers")

    exs, _, _ = examples("selective_copy", 200, seed)
    bad = 0
    for x, m in exs:
        go = x.index(15)
        data = [t for t in x[:go] if t != 14]
        bad += not (go == 256 - 17 and x[go + 1:] == data and len(data) == 16 and m == [0] * 240 + [1] * 16
                    and max(data) < 14)
    check("selective_copy: 16 data tokens among blanks, the copy token, then the same 16 in order as the answers",
          bad == 0, f"{bad} of 200 examples wrong")
    spread = len({tuple(i for i, t in enumerate(x[:239]) if t != 14) for x, _ in exs})
    check("selective_copy: the data tokens sit at random places", spread == 200, f"{spread} distinct layouts of 200")

    # the trainer's windows: inputs [kT, kT + T), targets one later, so window k scores example k's answers only
    for task in rt.TASKS:
        T = rt.TASKS[task]["seq_len"]
        exs, toks, mask = examples(task, 20, seed)
        straddle = sum(mask[k * T + 1:(k + 1) * T + 1] != exs[k][1][1:] + [0] for k in range(20))
        check(f"{task}: each --seq-len {T} window's targets hold one example's answers (none of the next)",
              straddle == 0 and all(x[1][0] == 0 for x in exs), f"{straddle} windows straddle")


def write_mask(path, flags, magic=rt.MASK_MAGIC, count=None, example_len=128, cut=0):
    header = [0] * 256
    header[:4] = [magic, 1, len(flags) if count is None else count, example_len]
    data = struct.pack("<256i", *header) + bytes(flags)
    with open(path, "wb") as f:
        f.write(data[: len(data) - cut])


def test_trainer(exe, d):
    """The trainer reads the masks at open: a good one counted, every bad one refused with exit 2 naming it."""
    good = os.path.join(d, "good")
    done = rt.write_task("recall", good, 64, 16, 7)
    base = ["--val-data", os.path.join(good, "val_*.bin"), "--prose-val-data", "", "--seq-len", "128", "--batch", "8",
            "--total-batch", "1024", "--depth", "2", "--out", os.path.join(d, "out")]
    p = subprocess.run([exe, "--train-data", os.path.join(good, "train_*.bin")] + base + ["--dry-run", "1"],
                       capture_output=True, text=True, timeout=60)
    want = [f"loss mask: --train-data: {done['train'][2]} of {done['train'][1]} tokens are answers",
            f"loss mask: --val-data: {done['val'][2]} of {done['val'][1]} tokens are answers"]
    check("trainer: a good mask is read, its answers counted", p.returncode == 0 and all(w in p.stdout for w in want),
          f"exit {p.returncode}: {[ln for ln in p.stdout.splitlines() if 'loss mask' in ln] or p.stderr.strip()}")

    import shutil
    cases = []

    def case(name, what, make):
        sub = os.path.join(d, name)
        shutil.copytree(good, sub)
        needle = make(sub)
        cases.append((sub, needle, what))

    n = done["train"][1]
    case("count", "a mask whose count disagrees with its shard",
         lambda s: (write_mask(os.path.join(s, "train_000.mask"), [0] * (n - 1)), "train_000.mask")[1])
    case("magic", "a mask with a bad magic",
         lambda s: (write_mask(os.path.join(s, "train_000.mask"), [0] * n, magic=1234), "train_000.mask: bad magic")[1])
    case("size", "a mask cut short",
         lambda s: (write_mask(os.path.join(s, "train_000.mask"), [0] * n, cut=10), "train_000.mask: ")[1])
    case("byte", "a mask byte other than 0 or 1",
         lambda s: (write_mask(os.path.join(s, "train_000.mask"), [0] * 500 + [2] + [0] * (n - 501)), "at token 500")[1])
    case("length", "a mask cut for another --seq-len",
         lambda s: (write_mask(os.path.join(s, "train_000.mask"), [0] * n, example_len=256), "--seq-len is 128")[1])

    def second_shard(s):
        shutil.copy(os.path.join(s, "train_000.bin"), os.path.join(s, "train_001.bin"))
        return "train_001.mask: missing"
    case("missing", "a second shard without its mask", second_shard)

    def first_bare(s):   # the mask of a later shard only: not silently ignored
        shutil.copy(os.path.join(s, "train_000.bin"), os.path.join(s, "train_001.bin"))
        os.rename(os.path.join(s, "train_000.mask"), os.path.join(s, "train_001.mask"))
        return "train_000.mask: missing"
    case("first_missing", "a first shard without its mask (a later one has one)", first_bare)
    for sub, needle, what in cases:
        p = subprocess.run([exe, "--train-data", os.path.join(sub, "train_*.bin")] + base, capture_output=True,
                           text=True, timeout=60)
        msg = (p.stderr.strip().splitlines() or [""])[-1]
        ok = p.returncode == 2 and needle in msg and sub in msg and "no CUDA GPU" not in p.stderr
        check(f"trainer refuses {what}, naming the file, before any GPU work", ok, f"exit {p.returncode}: {msg}")
    # the masks are part of the run's settings: a checkpoint without them is refused with the key named
    import numpy as np
    import tensorfile
    out = os.path.join(d, "resume_out")
    os.makedirs(out)
    tensorfile.write(os.path.join(out, "checkpoint_000010.ptf"), {"kind": "checkpoint", "step": "10"},
                     [("param.wte", np.zeros((4, 4), np.float32))])
    p = subprocess.run([exe, "--train-data", os.path.join(good, "train_*.bin")] + base[:-1] + [out, "--resume", "1"],
                       capture_output=True, text=True, timeout=60)
    want = f"train_file_answers.0: checkpoint (missing), this run {done['train'][2]}"
    check("trainer: the masks' answer counts are resume settings", p.returncode == 2 and want in p.stderr,
          f"exit {p.returncode}: {[ln for ln in p.stderr.splitlines() if 'answers' in ln] or p.stderr.strip()[-160:]}")
    p = subprocess.run([exe, "--train-data", os.path.join(good, "train_*")] + base, capture_output=True, text=True,
                       timeout=60)
    msg = (p.stderr.strip().splitlines() or [""])[-1]
    check("trainer refuses a shard glob that takes in the masks, with the hint", p.returncode == 2 and
          "train_000.mask: is a loss mask" in msg and ".bin" in msg, f"exit {p.returncode}: {msg}")


def test_table(d):
    """dev/recall.py's table from made-up logs: the final validation's answer accuracy per run, the mean over
    seeds, the paper's numbers beside."""
    import recall
    a = recall.parse_args(["--out", d, "--seeds", "1 2", "--tasks", "recall selective_copy"])
    runs = recall.plan(a)
    acc = {}
    rng = random.Random(5)
    header = "step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s,eval_tokens,eval_correct\n"
    for r in runs:
        os.makedirs(r["dir"], exist_ok=True)
        scored = 1000 + rng.randrange(100)
        correct = rng.randrange(scored)
        acc.setdefault((r["task"], r["arm"], r["optimizer"]), []).append(correct / scored)
        with open(os.path.join(r["dir"], "log.csv"), "w") as f:
            f.write(header + f"0,0,val,5.0,,,,,{scored},3\n1,8192,train,4.0,1.0,0.5,5.0,1000000,,\n"
                    f"{a.steps},{a.steps * 8192},val,1.0,,,,,{scored},{correct}\n")
    recall.report(a, runs, lambda *x, **k: None)
    rows = [table_cells(ln) for ln in open(os.path.join(d, "table.md"))
            if ln.startswith("| ")]
    head, body = rows[0], rows[1:]
    bad = []
    for row in body:
        task = next(t for t, lab in recall.TASK_LABELS.items() if lab == row[0])
        if row[1:3] != [f"{x:.3f}" for x in recall.PAPER[task]]:
            bad.append(f"{task}: paper {row[1:3]}")
        for col, cell in zip(head[3:], row[3:]):
            arm, opt = col.split(", ")
            m, sd = recall.mean_sd(acc[(task, arm.lower(), opt)])
            if cell != f"{m:.3f} ± {sd:.3f}":
                bad.append(f"{task} {col}: {cell} vs {m:.3f} ± {sd:.3f}")
    check("recall table: one row per task, the paper's numbers, each arm's mean ± sd over seeds from the logs",
          len(body) == 2 and len(head) == 7 and not bad, f"{len(body)} rows, {len(head)} columns; {bad[:3] or 'all equal'}")
    os.remove(os.path.join(runs[0]["dir"], "log.csv"))
    try:
        recall.report(a, runs, lambda *x, **k: None)
        check("recall table: a run without its log is an error naming it", False, "no error")
    except (recall.CompareError, OSError) as e:
        check("recall table: a run without its log is an error naming it", runs[0]["dir"] in str(e), str(e)[:120])


# a stand-in for the trainer: a finished log.csv whose final accuracy encodes the run, and one line per start
FAKE_TRAINER = r'''#!/usr/bin/env python3
import json, os, sys
a = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out, steps = a["--out"], int(a["--steps"])
os.makedirs(out, exist_ok=True)
with open(os.environ["FAKE_STARTS"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
right = {"parallax": 90, "softmax": 80}[a["--attention"]] + (5 if a["--optimizer"] == "muon" else 0)
with open(os.path.join(out, "log.csv"), "w") as f:
    f.write("step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s,eval_tokens,eval_correct\n")
    f.write(f"{steps},1,train,1.0,1,1,5.0,100,,\n{steps},1,val,1.0,,,,,100,{right}\n{steps},1,gpu_memory_gib,1.0,,,,,,\n")
'''


def test_make_recall(d):
    """dev/recall.py end to end with the stand-in: data written once per task, every task x arm x optimizer run
    with its task's data and --seq-len, finished runs reused, the table from their logs."""
    fake, starts = os.path.join(d, "fake.py"), os.path.join(d, "starts.txt")
    with open(fake, "w") as f:
        f.write(FAKE_TRAINER.replace("#!/usr/bin/env python3", "#!" + sys.executable))
    os.chmod(fake, 0o755)
    env = dict(os.environ, FAKE_STARTS=starts)
    cmd = [sys.executable, os.path.join(HERE, "recall.py"), "--trainer", fake, "--out", os.path.join(d, "out"),
           "--steps", "10"]
    p1 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    runs = [json.loads(ln) for ln in open(starts)] if os.path.exists(starts) else []
    runs = [dict(zip(r[0::2], r[1::2])) for r in runs]
    want = {(t, arm, opt) for t in ("recall", "noisy_recall", "selective_copy") for arm in ("parallax", "softmax")
            for opt in ("muon", "adamw")}
    got = {(os.path.basename(os.path.dirname(r["--train-data"])).rsplit("_s", 1)[0], r["--attention"], r["--optimizer"])
           for r in runs}
    seq = all(r["--seq-len"] == ("256" if "selective_copy" in r["--train-data"] else "128") and
              r["--total-batch"] == str(64 * int(r["--seq-len"])) and r["--depth"] == "2" for r in runs)
    check("make recall: 12 runs, each task x arm x optimizer once with its data and --seq-len",
          p1.returncode == 0 and len(runs) == 12 and got == want and seq, f"exit {p1.returncode}, {len(runs)} runs, "
          f"flags right: {seq}; {p1.stderr.strip()[-200:]}")
    p2 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    again = sum(1 for _ in open(starts)) - len(runs)
    check("make recall: a second run reuses every finished log and the data", p2.returncode == 0 and again == 0 and
          p2.stdout.count("reused") == 12 and "== data" not in p2.stdout, f"{again} runs started again")
    row = [ln for ln in p2.stdout.splitlines() if ln.startswith("| noisy recall")]
    check("make recall: the table holds each run's accuracy beside the paper's",
          row == ["| noisy recall | 0.937 | 0.861 | 0.950 | 0.850 | 0.900 | 0.800 |"], f"{row}")


def main(argv):
    exe = os.path.abspath(argv[0] if argv else os.path.join(HERE, "..", "train_parallax"))
    test_generators()
    with tempfile.TemporaryDirectory() as d:
        if os.path.exists(exe):
            test_trainer(exe, d)
        else:
            check("train_parallax is built", False, f"{exe} not found (run make)")
        test_table(os.path.join(d, "table"))
        test_make_recall(d)
    CHECKS.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
