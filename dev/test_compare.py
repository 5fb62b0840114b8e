"""CPU tests of make compare (dev/compare.sh, dev/compare.py) with a stand-in for the trainer: the statistics
against Python's statistics module, every arm, optimizer and seed trained with its own flags, runs spread
over COMPARE_GPUS one at a time per GPU, the table's means, standard deviations and paired gaps against the
logs, the plot; resuming: a finished run is reused, an interrupted one continues from its checkpoint and its
log counts each step once, a folder made with other flags is refused; the equal-time mode's steps from each
arm's step time; a failed run named.
  python3 dev/test_compare.py
"""
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checks  # noqa: E402
from checks import Checks  # noqa: E402
from compare import band, dedupe, end_line, mean_sd, paired_gap, read_run_log  # noqa: E402
from plot_losses import read_log  # noqa: E402

CHECKS = Checks("compare")
check = CHECKS.check

# The stand-in: a log.csv like the trainer's (appended on --resume 1, from the step in its checkpoint), a
# checkpoint every --checkpoint-every steps and at the end; step time and loss depend on the arm. It notes
# every start in FAKE_TIMES, can be told to fail (FAKE_FAIL=<attention>_<optimizer>) or to die after a given
# step of one run (FAKE_CRASH=<run folder name>:<step>, not when resumed).
FAKE_TRAINER = r'''#!/usr/bin/env python3
import glob, json, os, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out, gpu = args["--out"], os.environ.get("CUDA_VISIBLE_DEVICES", "")
arm = args["--attention"] + ("_match" if args.get("--mlp-hidden") == "match" else "")
resume = args.get("--resume") == "1"
if os.environ.get("FAKE_FAIL") == args["--attention"] + "_" + args["--optimizer"]:
    print("fake trainer: failing as asked", file=sys.stderr)
    sys.exit(1)
steps, every = int(args["--steps"]), int(args.get("--checkpoint-every", "0"))
if int(args.get("--warmup", "20")) > steps:   # as the trainer does
    print("fake trainer: --warmup: longer than --steps", file=sys.stderr)
    sys.exit(2)
val_every = int(args.get("--val-every", "50"))
# checkpoints as the trainer names them, checkpoint_<step>.ptf; a resume takes the newest
start = json.load(open(sorted(glob.glob(os.path.join(out, "checkpoint_*.ptf")))[-1]))["step"] if resume else 0
crash = os.environ.get("FAKE_CRASH", ":").split(":")
crash_at = int(crash[1]) if crash[0] == os.path.basename(out) and not resume else -1
t0 = time.time()
time.sleep(0.3)
ms = {"parallax": 20.0, "softmax": 10.0, "softmax_match": 11.0}[arm]
base = {"parallax": 3.70, "softmax": 3.80, "softmax_match": 3.78}[arm] + (2.0 if args["--optimizer"] == "adamw" else 0.0)
base += 0.013 * (int(args["--seed"]) % 5) + (0.02 if arm == "parallax" and int(args["--seed"]) % 2 else 0.0)
os.makedirs(out, exist_ok=True)
with open(os.environ["FAKE_TIMES"], "a") as f:
    f.write(f"{gpu} {t0} {os.path.basename(out)} {int(resume)} {start} {steps}\n")
log = open(os.path.join(out, "log.csv"), "a" if resume else "w")
if not resume:
    log.write("step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s\n")
for step in range(start, steps + 1):
    if val_every and (step % val_every == 0 or step == steps) and not (resume and step == start):
        log.write(f"{step},{step * 1000},val,{base + 1.0 / (step + 1)},,,,\n")
    if step > start and (step == steps or (every and step % every == 0)):
        json.dump({"step": step}, open(os.path.join(out, f"checkpoint_{step:06d}.ptf"), "w"))
    if step == steps:
        break
    log.write(f"{step + 1},{(step + 1) * 1000},train,{base + 1.0 / (step + 1)},1.0,0.5,{ms},{1000 / (ms / 1e3)}\n")
    log.flush()
    if step + 1 == crash_at:
        print("fake trainer: dying as asked", file=sys.stderr)
        sys.exit(1)
log.write(f"{steps},{steps * 1000},gpu_memory_gib,1.0,,,,\n")
with open(os.environ["FAKE_TIMES"], "a") as f:
    f.write(f"end {time.time()} {os.path.basename(out)}\n")
print(f"step {steps:>5} | val loss {base:.4f}")
'''

ARMS = ("parallax", "softmax", "softmax_match")


def run_compare(d, seeds="1 2", gpus="0 1", steps="5", **extra):
    fake = os.path.join(d, "fake_trainer.py")
    if not os.path.exists(fake):
        with open(fake, "w") as f:
            f.write(FAKE_TRAINER.replace("#!/usr/bin/env python3", "#!" + sys.executable))
        os.chmod(fake, 0o755)
    env = dict(os.environ, COMPARE_TRAINER=fake, COMPARE_SEEDS=seeds, COMPARE_STEPS=steps,
               COMPARE_OUT=os.path.join(d, "out"), PLOT_PYTHON=sys.executable, FAKE_TIMES=os.path.join(d, "times.txt"),
               MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="7", COMPARE_CHECKPOINT_EVERY="2",
               COMPARE_FLAGS="--warmup 2")
    env.pop("COMPARE_GPUS", None)
    if gpus:
        env["COMPARE_GPUS"] = gpus
    env.update(extra)
    return subprocess.run(["bash", os.path.join(HERE, "compare.sh")], env=env, capture_output=True, text=True)


def starts(d):
    """Every start of the stand-in: (gpu, time, run, resumed, start step, steps); and the end times per run."""
    path = os.path.join(d, "times.txt")
    rows = [line.split() for line in open(path)] if os.path.exists(path) else []
    begun = [(g, float(t), r, r2 == "1", int(s), int(n)) for g, t, r, r2, s, n in (x for x in rows if x[0] != "end")]
    ended = {r: float(t) for _, t, r in (x for x in rows if x[0] == "end")}
    return begun, ended


def final_val(path):
    try:
        return dedupe(read_log(path))["val"][-1][2]
    except ValueError:
        return float("nan")


def table_rows(d):
    return checks.table_rows(os.path.join(d, "out", "table.md"))


def test_statistics():
    seed = random.randrange(1 << 30)
    print(f"test_compare: random seed {seed}")
    rng = random.Random(seed)
    xs = [rng.gauss(3.7, 0.05) for _ in range(rng.randint(2, 9))]
    m, sd = mean_sd(xs)
    check("mean and sd equal statistics.mean and statistics.stdev (n - 1)",
          abs(m - statistics.mean(xs)) < 1e-12 and abs(sd - statistics.stdev(xs)) < 1e-12,
          f"n {len(xs)}: {m:.6f} +- {sd:.6f}")
    m1, sd1 = mean_sd([xs[0]])
    check("one value: the mean, and no sd", m1 == xs[0] and sd1 != sd1, f"{m1:.4f}, sd {sd1}")
    a = {s: rng.gauss(3.7, 0.05) for s in range(6)}
    b = {s: rng.gauss(3.8, 0.05) for s in range(1, 8)}
    g, gsd, n, lower = paired_gap(a, b)
    diffs = [a[s] - b[s] for s in range(1, 6)]
    check("paired gap: mean and sd of the per-seed differences over the seeds both arms have",
          n == 5 and abs(g - statistics.mean(diffs)) < 1e-12 and abs(gsd - statistics.stdev(diffs)) < 1e-12
          and lower == sum(x < 0 for x in diffs), f"{g:+.4f} +- {gsd:.4f} over {n} seeds, lower in {lower}")
    series = [[(i, rng.random()) for i in range(k)] for k in (5, 4, 6)]
    xs_, ms, sds = band(series)
    ok = len(xs_) == 4 and all(abs(ms[i] - statistics.mean(s[i][1] for s in series)) < 1e-12
                               and abs(sds[i] - statistics.stdev(s[i][1] for s in series)) < 1e-12 for i in range(4))
    check("band: mean and sd at each position every seed has", ok, f"{len(xs_)} positions")
    log = {"train": [(1, 10, 5.0, 1, 1), (2, 20, 4.0, 1, 1), (2, 20, 4.5, 1, 1), (3, 30, 3.0, 1, 1)],
           "val": [(0, 0, 9.0), (2, 20, 4.2), (2, 20, 4.4)], "valprose": [], "memory": 1.0}
    dd = dedupe(log)
    check("a resumed log: each step once, the last row of it", [x[0] for x in dd["train"]] == [1, 2, 3]
          and dd["train"][1][2] == 4.5 and dd["val"][-1][2] == 4.4, str([x[:3] for x in dd["train"]]))


def test_killed_log(d):
    """A trainer killed mid-row, then resumed: end_line closes the cut row, the reader drops it."""
    path = os.path.join(d, "log.csv")
    with open(path, "w") as f:
        f.write("step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s\n0,0,val,9.5,,,,\n"
                "1,1000,train,9.0,1.0,0.5,10.0,100000\n2,2000,train,8.")
    end_line(path)
    with open(path, "a") as f:
        f.write("2,2000,train,8.5,1.0,0.5,10.0,100000\n3,3000,train,8.0,1.0,0.5,10.0,100000\n"
                "3,3000,val,8.2,,,,\n3,3000,gpu_memory_gib,1.0,,,,\n")
    log = dedupe(read_run_log(path))
    check("a log cut mid-row and resumed: the cut row dropped, every whole row read",
          [(x[0], x[2]) for x in log["train"]] == [(1, 9.0), (2, 8.5), (3, 8.0)] and log["val"][-1][2] == 8.2
          and log["memory"] == 1.0, str([(x[0], x[2]) for x in log["train"]]))


def test_full(d):
    p = run_compare(d)
    check("make compare runs to the end with a stand-in trainer", p.returncode == 0,
          f"exit {p.returncode} {p.stderr.strip()[-300:]}")
    out = os.path.join(d, "out")
    runs = [f"{a}_{o}_s{s}" for s in (1, 2) for a in ARMS for o in ("muon", "adamw")]
    have = [r for r in runs if all(os.path.exists(os.path.join(out, r, f)) for f in ("log.csv", "train.out", "run.json"))]
    check("every arm, optimizer and seed has its log.csv, train.out and run.json", len(have) == 12, f"{len(have)} of 12")
    flags = {r: json.load(open(os.path.join(out, r, "run.json")))["args"] for r in have}
    ok = all(("--mlp-hidden" in f) == r.startswith("softmax_match") and f[f.index("--seed") + 1] == r.rsplit("_s", 1)[1]
             for r, f in flags.items())
    check("each run has its arm's flags (--mlp-hidden match only for softmax_match) and its seed", ok,
          " ".join(flags.get("softmax_match_muon_s1", [])))
    begun, ended = starts(d)
    spans = {g: sorted((t, ended.get(r, t)) for g, t, r, *_ in begun if g == g0) for g0 in ("0", "1") for g in [g0]}
    check("the runs are spread over the two GPUs, six each", [len(spans["0"]), len(spans["1"])] == [6, 6],
          str({g: len(v) for g, v in spans.items()}))
    serial = all(x[1] <= y[0] for v in spans.values() for x, y in zip(v, v[1:]))
    check("one run at a time on each GPU", serial, "runs of one GPU do not overlap" if serial else str(spans))
    together = any(a0 < b1 and a1 < b0 for a0, b0 in spans["0"] for a1, b1 in spans["1"])
    check("the two GPUs work at the same time", together, "a run on GPU 0 overlaps one on GPU 1")
    ck = [r for r in runs if glob.glob(os.path.join(out, r, "checkpoint_*.ptf"))]
    check("finished runs' checkpoints are deleted", not ck, f"left: {ck or 'none'}")
    rows = table_rows(d)
    vals = {r: final_val(os.path.join(out, r, "log.csv")) for r in runs}
    worst, n_arm = 0.0, 0
    for row in rows:
        for arm, label in (("parallax", "Parallax"), ("softmax", "softmax"), ("softmax_match", "softmax, MLP 4C + C/2")):
            if len(row) == 10 and row[0] == label and row[1] in ("muon", "adamw"):
                xs = [vals[f"{arm}_{row[1]}_s{s}"] for s in (1, 2)]
                worst = max(worst, abs(float(row[3]) - statistics.mean(xs)), abs(float(row[4]) - statistics.stdev(xs)))
                n_arm += 1
    check("per arm and optimizer: mean and sd over seeds of the final val loss, as the logs give",
          n_arm == 6 and worst < 1e-4, f"{n_arm} rows, worst difference {worst:.1e}")
    worst, n_gap = 0.0, 0
    for row in rows:
        if len(row) == 6 and row[0] in ("muon", "adamw") and row[1] != "Parallax minus":
            arm = "softmax" if row[1] == "softmax" else "softmax_match"
            diffs = [vals[f"parallax_{row[0]}_s{s}"] - vals[f"{arm}_{row[0]}_s{s}"] for s in (1, 2)]
            worst = max(worst, abs(float(row[2]) - statistics.mean(diffs)), abs(float(row[3]) - statistics.stdev(diffs)))
            ok_lower = row[5] == f"{sum(x < 0 for x in diffs)} of 2"
            worst = worst if ok_lower else 1.0
            n_gap += 1
    check("per optimizer and baseline: the Parallax-minus-baseline gap paired by seed, mean and sd, as the logs give",
          n_gap == 4 and worst < 1e-4, f"{n_gap} rows, worst difference {worst:.1e}")
    per_run = [r for r in rows if len(r) == 7 and (r[0].endswith(" s1") or r[0].endswith(" s2"))]
    png = os.path.join(out, "losses.png")
    check("the table has a row per run, the plot exists", len(per_run) == 12 and os.path.exists(png)
          and os.path.getsize(png) > 10000, f"{len(per_run)} rows")
    return vals


def test_resume(d):
    p = run_compare(d, FAKE_CRASH="softmax_adamw_s2:3")
    check("an interrupted run stops the comparison, naming it", p.returncode == 1 and "softmax_adamw_s2" in p.stderr
          and "dying as asked" in p.stderr, (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[0])
    out = os.path.join(d, "out")
    before, _ = starts(d)
    p = run_compare(d)
    after, _ = starts(d)
    new = after[len(before):]
    done_first = {r for _, _, r, _, _, _ in before} - {"softmax_adamw_s2"}
    rerun = [r for _, _, r, _, _, _ in new if r in done_first]
    resumed = [(r, res, s) for _, _, r, res, s, _ in new if r == "softmax_adamw_s2"]
    check("run again: it completes, and the finished runs are reused, not trained again", p.returncode == 0 and not rerun
          and "reused" in p.stdout, f"exit {p.returncode}, {len(new)} starts, trained again: {rerun or 'none'}")
    check("the interrupted run resumes from its checkpoint (step 2 of 5)", resumed == [("softmax_adamw_s2", True, 2)],
          str(resumed))
    log = read_log(os.path.join(out, "softmax_adamw_s2", "log.csv"))
    dd = dedupe(log)
    check("its log has the repeated step once: steps 1..5 in the table's reading",
          len(log["train"]) == 6 and [x[0] for x in dd["train"]] == [1, 2, 3, 4, 5], f"{len(log['train'])} rows written")
    rows = [r for r in table_rows(d) if len(r) == 7 and r[0] == "softmax adamw s2"]
    check("the table covers the resumed run", len(rows) == 1 and rows[0][1] == "0.0 M", str(rows))
    p = run_compare(d, steps="6")
    check("a folder made with other flags is refused, naming it", p.returncode == 2 and "made with other flags" in p.stderr
          and "_s1" in p.stderr, (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[0][:160])


def test_equal_time(d):
    # a warmup longer than the 8 timing steps: the timing runs must still run (the trainer refuses warmup > steps)
    timed = dict(seeds="1", gpus="", COMPARE_TIME="0.2", COMPARE_ARMS="parallax softmax", COMPARE_OPTIMIZERS="muon",
                 COMPARE_FLAGS="--warmup 9")
    p = run_compare(d, **timed)
    out = os.path.join(d, "out")
    steps = {}
    for arm in ("parallax", "softmax"):
        path = os.path.join(out, f"{arm}_muon_s1", "run.json")
        steps[arm] = json.load(open(path))["steps"] if os.path.exists(path) else None
    # the stand-in's step times are 20 and 10 ms: the budget over each, read back from the timing runs' logs
    want = {}
    for arm in ("parallax", "softmax"):
        path = os.path.join(out, "calibrate", f"{arm}_muon", "log.csv")
        try:
            want[arm] = int(0.2 * 1e3 / statistics.median(x[3] for x in read_log(path)["train"][1:]))
        except (ValueError, statistics.StatisticsError):
            want[arm] = None
    check("equal time: each arm's steps = budget / its median step time (timing runs despite --warmup 9)",
          p.returncode == 0 and steps == want and None not in steps.values()
          and steps["softmax"] > steps["parallax"], f"exit {p.returncode}, steps {steps}, from the timing logs {want}")
    seconds = [r[8] for r in table_rows(d) if len(r) == 10 and r[1] == "muon"]
    check("the table gives each arm's training time", seconds == ["0.2", "0.2"], str(seconds))
    begun, _ = starts(d)
    p = run_compare(d, **timed)
    again, _ = starts(d)
    check("run again: the timing runs and the runs are reused", p.returncode == 0 and len(again) == len(begun),
          f"{len(again) - len(begun)} new starts")


def main():
    test_statistics()
    with tempfile.TemporaryDirectory() as d:
        test_killed_log(d)
    with tempfile.TemporaryDirectory() as d:
        test_full(d)
    with tempfile.TemporaryDirectory() as d:
        test_resume(d)
    with tempfile.TemporaryDirectory() as d:
        test_equal_time(d)
    with tempfile.TemporaryDirectory() as d:
        p = run_compare(d, gpus="", seeds="1", COMPARE_ARMS="parallax softmax")
        begun, _ = starts(d)
        ok = p.returncode == 0 and len(begun) == 4 and all(g == "7" for g, *_ in begun)
        check("without COMPARE_GPUS: the runs in turn on the GPU that CUDA_VISIBLE_DEVICES gives", ok,
              f"exit {p.returncode}, GPUs seen {[g for g, *_ in begun]}")
    with tempfile.TemporaryDirectory() as d:
        p = run_compare(d, FAKE_FAIL="softmax_adamw")
        ok = p.returncode == 1 and "softmax_adamw_s" in p.stderr and "failing as asked" in p.stderr
        check("a failed run stops the comparison, naming the run and showing its last lines", ok,
              (p.stderr.strip().splitlines() or [f"exit {p.returncode}, no message"])[0])
    with tempfile.TemporaryDirectory() as d:
        bad = [({"COMPARE_ARMS": "parallax linear"}, "--arms"), ({"COMPARE_SEEDS": "1 x"}, "--seeds"),
               ({"COMPARE_FLAGS": "--seed 3"}, "--flags"), ({"COMPARE_FLAGS": "--val-every 0"}, "--flags"), ({"COMPARE_OPTIMIZERS": "sgd"}, "--optimizers")]
        for extra, needle in bad:
            p = run_compare(d, **extra)
            msg = (p.stderr.strip().splitlines() or [""])[-1]
            check(f"refuses a bad {needle}", p.returncode == 2 and needle in msg and not os.path.exists(
                os.path.join(d, "times.txt")), f"exit {p.returncode}: {msg}")
    CHECKS.exit()


if __name__ == "__main__":
    main()
