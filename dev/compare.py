"""make compare: trains every arm (Parallax, softmax, softmax with the MLP widened to Parallax's parameter count)
under every optimizer (Muon, AdamW) for several seeds, on the same data order, then writes the statistics
table and the plot with seed bands. dev/compare.sh calls it with the COMPARE_* variables of the Makefile.

  python3 dev/compare.py [--steps 200 | --time-budget SECONDS] [--seeds "1337 1338 1339"] [--gpus "0 1"]
                         [--arms "parallax softmax softmax_match"] [--optimizers "muon adamw"] [--out out/compare]

Budgets. Equal tokens (default): every run takes --steps steps of the trainer's --total-batch tokens. Equal
time (--time-budget S): each arm-optimizer pair is first timed on a few steps (OUT/calibrate/<arm>_<opt>,
the median step time after the first), and its runs then take steps = S / that time. Each run is thus a
whole run of the trainer's schedule (warmup, then WSD decay to 0 over the last 30% of its own steps), not a
run cut short; the table reports the training time each run really took.

Resumable. Each run lives in OUT/<arm>_<opt>_s<seed>/ with run.json (its trainer flags). A run whose
log.csv is complete is reused as it is; an unfinished one with a checkpoint_<step>.ptf continues with --resume 1
(its log.csv gets the resumed rows appended: rows repeated from the interrupted part count once, the last);
one without a checkpoint starts again. Checkpoints are written every --checkpoint-every steps and deleted
once a run is complete (--keep-checkpoints keeps them). A folder made with other flags is an error, so a
comparison is never mixed from two settings. So a comparison longer than one sitting completes in several:
run the same command again.

Statistics: per arm and optimizer, the mean and the sample standard deviation (n - 1) over seeds of the
final validation loss and clean-prose validation loss; per optimizer and baseline, the Parallax-minus-
baseline gap of the final validation loss paired by seed (mean, standard deviation of the per-seed
differences, and in how many seeds Parallax is lower). --report-only redoes the table and plot from the logs.
"""
import argparse
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from plot_losses import markdown_table, read_log  # noqa: E402

# the trainer flags that make each arm
ARMS = {
    "parallax": ["--attention", "parallax"],
    "softmax": ["--attention", "softmax"],
    "softmax_match": ["--attention", "softmax", "--mlp-hidden", "match"],
}
ARM_LABELS = {"parallax": "Parallax", "softmax": "softmax", "softmax_match": "softmax, MLP 4C + C/2"}
OPTIMIZERS = ("muon", "adamw")


class CompareError(Exception):
    """A failed run (exit status 1) or a user mistake (status 2), reported as one message."""

    def __init__(self, msg, status=1):
        super().__init__(msg)
        self.status = status


# ---------------------------------------------------------------------------------------------------------
# statistics

def mean_sd(xs):
    """Mean and sample standard deviation (n - 1); sd is nan for fewer than two values."""
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def paired_gap(a, b):
    """a, b: {seed: value}. The per-seed differences a - b over the seeds both have: (mean, sd, n, number of
    seeds where a < b)."""
    seeds = sorted(set(a) & set(b))
    d = [a[s] - b[s] for s in seeds]
    m, sd = mean_sd(d)
    return m, sd, len(d), sum(1 for x in d if x < 0)


def read_run_log(path):
    """plot_losses.read_log for a run that may have been killed: a row cut short or glued to the next one by the
    resumed run is dropped rather than refused. ValueError when the file is missing or holds no rows."""
    try:
        return read_log(path)
    except (ValueError, TypeError, KeyError):
        pass
    out = {"train": [], "val": [], "valprose": [], "memory": None}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})")
    for line in lines[1:]:
        c = line.split(",")
        try:
            if len(c) < 8:   # the columns read here; later ones (eval_tokens, eval_correct) may follow
                continue
            step, tokens, kind, loss = int(c[0]), int(c[1]), c[2], float(c[3])
            if kind == "train":
                out["train"].append((step, tokens, loss, float(c[6]), float(c[7])))
            elif kind in ("val", "valprose"):
                out[kind].append((step, tokens, loss))
            elif kind == "gpu_memory_gib":
                out["memory"] = loss
        except ValueError:
            continue
    if not out["train"] and not out["val"]:
        raise ValueError(f"{path}: holds no training or validation rows")
    return out


def end_line(path):
    """Before a resume appends to log.csv: a last row cut short gets its newline, so the next row stays whole."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def dedupe(log):
    """A resumed run repeats the rows between its checkpoint and the interruption: keep the last row of each
    step, in step order."""
    out = dict(log)
    for kind in ("train", "val", "valprose"):
        last = {}
        for row in log[kind]:
            last[row[0]] = row
        out[kind] = [last[s] for s in sorted(last)]
    return out


def run_summary(log):
    """Final validation losses, tokens, the training time (sum of the step times) and mean tokens/s."""
    val = log["val"][-1][2] if log["val"] else float("nan")
    prose = log["valprose"][-1][2] if log["valprose"] else float("nan")
    tps = [x[4] for x in log["train"][1:]] or [x[4] for x in log["train"]]
    return {"val": val, "prose": prose, "tokens": log["train"][-1][1] if log["train"] else 0,
            "seconds": sum(x[3] for x in log["train"]) / 1e3,
            "tokens_per_s": sum(tps) / len(tps) if tps else float("nan")}


def fmt(x, digits=4):
    return "-" if x != x else f"{x:.{digits}f}"


def stats_tables(runs):
    """runs: list of dicts with arm, optimizer, seed, summary. Returns the markdown of the two tables."""
    lines = ["| arm | optimizer | seeds | val loss mean | val sd | clean-prose mean | clean-prose sd | tokens | "
             "training s (mean) | tokens/s (mean) |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in runs:
        groups.setdefault((r["arm"], r["optimizer"]), []).append(r)
    for (arm, opt), rs in groups.items():
        v, vs = mean_sd([r["summary"]["val"] for r in rs])
        p, ps = mean_sd([r["summary"]["prose"] for r in rs])
        tok = mean_sd([r["summary"]["tokens"] for r in rs])[0]
        sec = mean_sd([r["summary"]["seconds"] for r in rs])[0]
        tps = mean_sd([r["summary"]["tokens_per_s"] for r in rs])[0]
        lines.append(f"| {ARM_LABELS.get(arm, arm)} | {opt} | {len(rs)} | {fmt(v)} | {fmt(vs)} | {fmt(p)} | {fmt(ps)} | "
                     f"{tok / 1e6:.1f} M | {sec:.1f} | {tps:,.0f} |")
    gap = ["| optimizer | Parallax minus | gap in val loss (mean) | sd of the gap | seeds | Parallax lower in |",
           "|---|---|---|---|---|---|"]
    for opt in dict.fromkeys(r["optimizer"] for r in runs):
        par = {r["seed"]: r["summary"]["val"] for r in runs if r["arm"] == "parallax" and r["optimizer"] == opt}
        for arm in dict.fromkeys(r["arm"] for r in runs):
            if arm == "parallax" or not par:
                continue
            base = {r["seed"]: r["summary"]["val"] for r in runs if r["arm"] == arm and r["optimizer"] == opt}
            m, sd, n, lower = paired_gap(par, base)
            if n:
                gap.append(f"| {opt} | {ARM_LABELS.get(arm, arm)} | {m:+.4f} | {fmt(sd)} | {n} | {lower} of {n} |")
    return "\n".join(lines) + "\n", "\n".join(gap) + "\n"


def band(series):
    """series: one list of (x, y) per seed. On the x positions every seed has (same steps), the mean x, the
    mean y and its sd."""
    common = set.intersection(*[set(range(len(s))) for s in series]) if series else set()
    xs, ms, sds = [], [], []
    for i in sorted(common):
        x = [s[i][0] for s in series]
        y = [s[i][1] for s in series]
        m, sd = mean_sd(y)
        xs.append(sum(x) / len(x))
        ms.append(m)
        sds.append(0.0 if sd != sd else sd)
    return xs, ms, sds


def plot_bands(runs, png):
    """Validation and training loss against tokens and against training time: per arm and optimizer the
    mean over seeds, and a band of one standard deviation."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 2, figsize=(13, 8))
    groups = {}
    for r in runs:
        groups.setdefault((r["arm"], r["optimizer"]), []).append(r["log"])
    for (arm, opt), logs in groups.items():
        label = f"{ARM_LABELS.get(arm, arm)}, {opt} ({len(logs)} seeds)"
        color = None
        for row, kind, y_of in ((0, "val", 2), (1, "train", 2)):
            walls = []
            for log in logs:
                t, acc = {0: 0.0}, 0.0
                for x in log["train"]:
                    acc += x[3] / 1e3
                    t[x[0]] = acc
                walls.append(t)
            for col in (0, 1):
                series = []
                for log, wall in zip(logs, walls):
                    xs = [x[1] / 1e6 if col == 0 else wall.get(x[0], 0.0) for x in log[kind]]
                    series.append(list(zip(xs, [x[y_of] for x in log[kind]])))
                xs, ms, sds = band(series)
                style = "o-" if kind == "val" else "-"
                line, = ax[row, col].plot(xs, ms, style, lw=1, ms=3, color=color, label=label)
                color = line.get_color()
                ax[row, col].fill_between(xs, [m - s for m, s in zip(ms, sds)], [m + s for m, s in zip(ms, sds)],
                                          color=color, alpha=0.2, lw=0)
    for row, what in ((0, "validation loss"), (1, "training loss")):
        for col, xl in ((0, "tokens (M)"), (1, "training time (s)")):
            ax[row, col].set_title(f"{what}: mean over seeds, band = 1 sd")
            ax[row, col].set_xlabel(xl)
            ax[row, col].set_ylabel("loss")
            ax[row, col].grid(alpha=0.3)
    ax[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# runs: what to train, and the state of each one on disk

def run_dir(out, arm, opt, seed):
    return os.path.join(out, f"{arm}_{opt}_s{seed}")


def log_complete(path, steps):
    """True when log.csv holds a finished run of `steps` steps: the trainer writes the gpu_memory_gib row last,
    after the final validation."""
    try:
        log = dedupe(read_run_log(path))
    except ValueError:
        return False
    return (log["memory"] is not None and bool(log["train"]) and log["train"][-1][0] == steps
            and bool(log["val"]) and log["val"][-1][0] == steps)


def checkpoint_files(d):
    """The trainer's checkpoints in d: checkpoint_<step>.ptf, and the .ptf.tmp of a write that was killed."""
    return sorted(glob.glob(os.path.join(glob.escape(d), "checkpoint_*.ptf*")))


def remove_checkpoints(d):
    for path in checkpoint_files(d):
        os.remove(path)


def run_state(d, args, steps):
    """'done' (reuse the log), 'resume' (continue from its newest checkpoint) or 'fresh'. A folder made with other
    trainer flags is a CompareError."""
    meta = os.path.join(d, "run.json")
    if os.path.exists(meta):
        with open(meta) as f:
            had = json.load(f).get("args")
        if had != args:
            raise CompareError(f"{d}: made with other flags ({' '.join(had or [])}), this comparison has "
                               f"({' '.join(args)}); remove the folder or choose another --out", 2)
    elif os.path.exists(os.path.join(d, "log.csv")):
        raise CompareError(f"{d}: has a log.csv but no run.json (an older comparison); remove the folder or choose "
                           "another --out", 2)
    if log_complete(os.path.join(d, "log.csv"), steps):
        return "done"
    if any(p.endswith(".ptf") for p in checkpoint_files(d)):
        return "resume"
    return "fresh"


def trainer_args(arm, opt, seed, steps, extra):
    return ARMS[arm] + ["--optimizer", opt, "--seed", str(seed), "--steps", str(steps), "--sample-every", "0"] + extra


def train(trainer, args, d, gpu, resume, env):
    """One trainer process, its printout appended to d/train.out; returns the exit status."""
    os.makedirs(d, exist_ok=True)
    cmd = [trainer] + args + ["--out", d] + (["--resume", "1"] if resume else [])
    e = dict(env)
    if gpu != "-":
        e["CUDA_VISIBLE_DEVICES"] = gpu
    with open(os.path.join(d, "train.out"), "a" if resume else "w") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=e).returncode


def last_lines(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def run_lanes(jobs, gpus, say):
    """jobs: callables job(gpu) -> None or an error message. GPU i takes jobs i, i + n, ... in turn, the GPUs
    at the same time; after a failure no lane starts another job. Returns the error messages."""
    errors, lock = [], threading.Lock()

    def lane(i):
        for j in range(i, len(jobs), len(gpus)):
            with lock:
                if errors:
                    return
            msg = jobs[j](gpus[i])
            if msg:
                with lock:
                    errors.append(msg)
                    say(msg, err=True)

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(len(gpus))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def say_fn():
    lock = threading.Lock()

    def say(msg, err=False):
        with lock:
            print(msg, file=sys.stderr if err else sys.stdout, flush=True)
    return say


def calibrate(a, say):
    """Equal-time mode: {(arm, opt): steps}, each from the median step time of a short run (after its first
    step, which includes the GEMM tuning). Kept in OUT/calibrate/<arm>_<opt>/steps.json and reused."""
    result, jobs = {}, []
    for arm in a.arms:
        for opt in a.optimizers:
            d = os.path.join(a.out, "calibrate", f"{arm}_{opt}")
            # after the user's flags, so that they win: the step time does not depend on the warmup, and the
            # trainer refuses a warmup longer than the run
            args = trainer_args(arm, opt, a.seeds[0], a.calibrate_steps, ["--checkpoint-every", "0"] + a.flags
                                + ["--val-every", "0", "--warmup", "0"])
            saved = os.path.join(d, "steps.json")

            def job(gpu, arm=arm, opt=opt, d=d, args=args, saved=saved):
                if os.path.exists(saved):
                    with open(saved) as f:
                        s = json.load(f)
                    if s.get("args") == args and s.get("budget_s") == a.time_budget:
                        result[(arm, opt)] = s["steps"]
                        return None
                say(f"== {'GPU ' + gpu + ': ' if gpu != '-' else ''}timing {arm}, {opt} ({a.calibrate_steps} steps) -> {d}")
                rc = train(a.trainer, args, d, gpu, False, os.environ)
                remove_checkpoints(d)
                try:
                    ms = sorted(x[3] for x in dedupe(read_run_log(os.path.join(d, "log.csv")))["train"][1:])
                except ValueError:
                    ms = []
                if rc or not ms:
                    return (f"compare: the timing run in {d} failed (status {rc}); its last lines:\n"
                            + last_lines(os.path.join(d, "train.out")))
                med = ms[len(ms) // 2] if len(ms) % 2 else 0.5 * (ms[len(ms) // 2 - 1] + ms[len(ms) // 2])
                steps = max(1, int(a.time_budget * 1e3 / med))
                with open(saved, "w") as f:
                    json.dump({"args": args, "budget_s": a.time_budget, "median_ms": med, "steps": steps}, f)
                say(f"   {arm}, {opt}: {med:.1f} ms per step -> {steps} steps in {a.time_budget:g} s")
                result[(arm, opt)] = steps
                return None
            jobs.append(job)
    errors = run_lanes(jobs, a.gpus, say)
    if errors:
        raise CompareError("a timing run failed")
    return result


def plan(a, steps_of):
    """Every run: (arm, opt, seed, dir, trainer args, steps), seed-major so that a partial comparison has whole
    seeds."""
    runs = []
    for seed in a.seeds:
        for arm in a.arms:
            for opt in a.optimizers:
                steps = steps_of[(arm, opt)]
                extra = ["--checkpoint-every", str(a.checkpoint_every)] + a.flags
                runs.append({"arm": arm, "optimizer": opt, "seed": seed, "dir": run_dir(a.out, arm, opt, seed),
                             "args": trainer_args(arm, opt, seed, steps, extra), "steps": steps})
    return runs


def train_all(a, runs, say):
    states = [run_state(r["dir"], r["args"], r["steps"]) for r in runs]   # every folder checked before any run

    def make_job(r, state):
        def job(gpu):
            d, where = r["dir"], f"GPU {gpu}: " if gpu != "-" else ""
            what = f"{r['arm']}, {r['optimizer']}, seed {r['seed']}"
            if state == "done":
                say(f"== {where}{what}: reused {d}/log.csv")
                if not a.keep_checkpoints:   # left by a comparison stopped just after the run
                    remove_checkpoints(d)
                return None
            say(f"== {where}{what} -> {d}" + (" (resumed from its checkpoint)" if state == "resume" else ""))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "run.json"), "w") as f:
                json.dump({"args": r["args"], "steps": r["steps"]}, f)
            if state == "resume":
                end_line(os.path.join(d, "log.csv"))
            rc = train(a.trainer, r["args"], d, gpu, state == "resume", os.environ)
            if rc != 0 or not log_complete(os.path.join(d, "log.csv"), r["steps"]):
                return (f"compare: the run in {d} failed (status {rc}); run the comparison again to resume it; "
                        f"its last lines:\n" + last_lines(os.path.join(d, "train.out")))
            if not a.keep_checkpoints:
                remove_checkpoints(d)
            return None
        return job

    errors = run_lanes([make_job(r, s) for r, s in zip(runs, states)], a.gpus, say)
    if errors:
        raise CompareError(f"{len(errors)} run(s) failed; the finished ones are kept")


def report(a, runs, say):
    """The per-run table, the statistics, the plot: OUT/table.md and OUT/losses.png."""
    have = []
    for r in runs:
        path = os.path.join(r["dir"], "log.csv")
        if not log_complete(path, r["steps"]):
            raise CompareError(f"{path}: not a finished run (run the comparison to finish it)")
        log = dedupe(read_run_log(path))
        have.append(dict(r, log=log, summary=run_summary(log)))
    budget = (f"equal time: {a.time_budget:g} s of training per run (steps from each arm's measured step time)"
              if a.time_budget else f"equal tokens: {runs[0]['steps']} steps per run")
    per_arm, gaps = stats_tables(have)
    labels = [f"{r['arm']} {r['optimizer']} s{r['seed']}" for r in have]
    text = (f"Budget: {budget}; seeds {' '.join(str(s) for s in a.seeds)}.\n\n" + per_arm + "\n"
            "Parallax minus baseline, final validation loss, paired by seed (negative: Parallax lower):\n\n" + gaps
            + "\nEvery run:\n\n" + markdown_table(labels, [r["log"] for r in have]))
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(text)
    plot_bands(have, os.path.join(a.out, "losses.png"))
    say(text + f"wrote {os.path.join(a.out, 'table.md')} and {os.path.join(a.out, 'losses.png')}")


# ---------------------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="steps per run, equal-tokens mode (default 200)")
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds of training per run: equal-time mode")
    ap.add_argument("--calibrate-steps", type=int, default=8, help="steps of each equal-time timing run (default 8)")
    ap.add_argument("--seeds", default="1337 1338 1339", help="seeds of the init (default '1337 1338 1339')")
    ap.add_argument("--arms", default=" ".join(ARMS), help=f"among {', '.join(ARMS)} (default all)")
    ap.add_argument("--optimizers", default=" ".join(OPTIMIZERS), help="muon and/or adamw (default both)")
    ap.add_argument("--gpus", default="-", help="GPU numbers, one run per GPU at a time ('-': the visible one)")
    ap.add_argument("--out", default="out/compare")
    ap.add_argument("--trainer", default="./train_parallax")
    ap.add_argument("--checkpoint-every", type=int, default=50, help="checkpoint interval of each run (default 50)")
    ap.add_argument("--keep-checkpoints", action="store_true", help="keep finished runs' checkpoints")
    ap.add_argument("--flags", default="", help="more trainer flags for every run, e.g. '--batch 16'")
    ap.add_argument("--report-only", action="store_true", help="only the table and the plot, from finished logs")
    a = ap.parse_args(argv)
    try:
        a.seeds = [int(s) for s in a.seeds.split()]
    except ValueError:
        ap.error(f"--seeds: expected integers, got '{a.seeds}'")
    a.arms, a.optimizers, a.gpus = a.arms.split(), a.optimizers.split(), a.gpus.split() or ["-"]
    bad = [x for x in a.arms if x not in ARMS] or None
    if bad or not a.arms:
        ap.error(f"--arms: unknown arm {bad} (choose among {', '.join(ARMS)})")
    bad = [x for x in a.optimizers if x not in OPTIMIZERS] or None
    if bad or not a.optimizers:
        ap.error(f"--optimizers: unknown optimizer {bad} (muon, adamw)")
    if not a.seeds or len(set(a.seeds)) != len(a.seeds):
        ap.error(f"--seeds: need distinct seeds, got '{' '.join(map(str, a.seeds))}'")
    if a.steps < 1:
        ap.error(f"--steps: must be at least 1, got {a.steps}")
    if a.time_budget < 0 or a.time_budget != a.time_budget:
        ap.error(f"--time-budget: must be a positive number of seconds, got {a.time_budget}")
    if a.calibrate_steps < 3:
        ap.error(f"--calibrate-steps: at least 3 (the first step is not timed), got {a.calibrate_steps}")
    if a.checkpoint_every < 0:
        ap.error(f"--checkpoint-every: must not be negative, got {a.checkpoint_every}")
    try:
        a.flags = shlex.split(a.flags)
    except ValueError as e:
        ap.error(f"--flags: {e}")
    if "--val-every" in a.flags and a.flags.index("--val-every") + 1 < len(a.flags) and \
            a.flags[a.flags.index("--val-every") + 1] == "0":
        ap.error("--flags: --val-every 0 leaves no validation loss to compare")
    owned = {"--attention", "--optimizer", "--seed", "--steps", "--out", "--resume", "--checkpoint-every"}
    clash = sorted(owned & set(a.flags))
    if clash:
        ap.error(f"--flags: {', '.join(clash)} are set by the comparison itself")
    return a


def exit_on_error(prog, work):
    """Runs work(); a CompareError or an OSError ends the program with one line on stderr and its status."""
    try:
        work()
    except CompareError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(e.status)
    except OSError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(1)


def main(argv):
    a = parse_args(argv)
    say = say_fn()

    def work():
        if a.time_budget:
            steps_of = calibrate(a, say) if not a.report_only else {
                (arm, opt): json.load(open(os.path.join(a.out, "calibrate", f"{arm}_{opt}", "steps.json")))["steps"]
                for arm in a.arms for opt in a.optimizers}
        else:
            steps_of = {(arm, opt): a.steps for arm in a.arms for opt in a.optimizers}
        runs = plan(a, steps_of)
        if not a.report_only:
            train_all(a, runs, say)
        report(a, runs, say)
    exit_on_error("compare", work)


if __name__ == "__main__":
    main(sys.argv[1:])
