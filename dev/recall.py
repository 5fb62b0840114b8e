"""make recall: Parallax and softmax attention, each under Muon and AdamW, trained on the three MAD-style
recall tasks of data/recall_tasks.py (in-context recall, noisy recall, selective copying) with small models,
scored by the answer accuracy of the final validation (the trainer's loss mask: answers only), and printed as
a table next to the paper's numbers (arXiv 2605.29157, MAD; Parallax vs softmax).

  python3 dev/recall.py [--steps 1000 | --long] [--seeds "1337"] [--gpus "0 1"] [--out out/recall]

Budget. Default: 1000 steps of 64 examples (8192 tokens at --seq-len 128, 16384 at 256) per run, d2 with
width 256 (4 heads of 64), 12 runs (3 tasks x 2 attentions x 2 optimizers), one seed: about 4 minutes on one
H100, data included (an estimate, ~7 ms per step of 8192 tokens and ~3 s per start; table.md states the
seconds of training). --long: 8000 steps, seeds 1337 1338 1339, a checkpoint every 2000 steps (about 45
minutes on one H100 by the same estimate; --gpus spreads the runs). The data is MAD's baseline (12800
training and 1280 validation examples per task, from --data-seed), written once to OUT/data/<task>_s<seed>/
and reused.

Runs are dev/compare.py's: each in OUT/<task>/<arm>_<optimizer>_s<seed>/ with run.json (its trainer flags); a
finished log.csv is reused, a folder made with other flags is an error, an unfinished run continues from its
checkpoint (--checkpoint-every; none by default, the runs are short: it starts again), and a finished run's
checkpoints are deleted. --report-only redoes the table (OUT/table.md) from the logs.
"""
import argparse
import csv
import os
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "data"))
from compare import (ARMS as COMPARE_ARMS, CompareError, dedupe, exit_on_error, fmt, mean_sd,  # noqa: E402
                     read_run_log, run_dir, run_summary, say_fn, trainer_args, train_all)

TASKS = ("recall", "noisy_recall", "selective_copy")
TASK_LABELS = {"recall": "in-context recall", "noisy_recall": "noisy recall", "selective_copy": "selective copying"}
# the paper's MAD accuracies: (Parallax, softmax)
PAPER = {"recall": (0.951, 0.803), "noisy_recall": (0.937, 0.861), "selective_copy": (0.988, 0.950)}
ARMS = ("parallax", "softmax")
OPTIMIZERS = ("muon", "adamw")
ARM_LABELS = {"parallax": "Parallax", "softmax": "softmax"}
SEQ_LEN = {"recall": 128, "noisy_recall": 128, "selective_copy": 256}
BATCH = 64   # examples per step, one micro-batch


def data_dir(out, task, seed):
    return os.path.join(out, "data", f"{task}_s{seed}")


def make_data(out, task, seed, say):
    """The task's shards and masks, written unless a finished copy is there (the stamp is written last)."""
    import recall_tasks
    d = data_dir(out, task, seed)
    stamp = os.path.join(d, "done")
    if os.path.exists(stamp):
        return d
    done = recall_tasks.write_task(task, d, 12800, 1280, seed)
    with open(stamp, "w") as f:
        f.write(repr(done) + "\n")
    say(f"== data: {task}, seed {seed}: {done['train'][2]} training and {done['val'][2]} validation answers -> {d}")
    return d


def task_flags(d, task, a):
    """The trainer flags of a task's runs: its data, one example per window, a small model."""
    T = SEQ_LEN[task]
    return ["--train-data", os.path.join(d, "train_*.bin"), "--val-data", os.path.join(d, "val_*.bin"),
            "--prose-val-data", "", "--seq-len", str(T), "--batch", str(BATCH), "--total-batch", str(BATCH * T),
            "--depth", str(a.depth), "--width", str(a.width), "--head-dim", "64", "--val-every", str(a.val_every),
            "--checkpoint-every", str(a.checkpoint_every)] + a.flags


def plan(a):
    """Every run: task, arm, optimizer, seed, dir, trainer args, steps; seed-major."""
    runs = []
    for seed in a.seeds:
        for task in a.tasks:
            d = data_dir(a.out, task, a.data_seed)
            for arm in ARMS:
                for opt in a.optimizers:
                    runs.append({"task": task, "arm": arm, "optimizer": opt, "seed": seed, "steps": a.steps,
                                 "dir": run_dir(os.path.join(a.out, task), arm, opt, seed),
                                 "args": trainer_args(arm, opt, seed, a.steps, task_flags(d, task, a))})
    return runs


def final_accuracy(path):
    """(correct, scored) of the last validation row of a trainer log.csv (eval_correct, eval_tokens)."""
    last = None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("kind") == "val" and row.get("eval_correct"):
                last = (int(row["eval_correct"]), int(row["eval_tokens"]))
    if last is None:
        raise CompareError(f"{path}: no validation row with an answer count (eval_correct)")
    return last


def accuracy_table(results, seeds):
    """results: {(task, arm, opt): [accuracy per seed]}. The markdown table: one row per task, the paper's two
    numbers, then each arm and optimizer (mean over seeds, and the sd with several)."""
    cols = [(arm, opt) for opt in OPTIMIZERS for arm in ARMS if any(k[1:] == (arm, opt) for k in results)]
    head = ["task", "paper Parallax", "paper softmax"] + [f"{ARM_LABELS[arm]}, {opt}" for arm, opt in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in TASKS:
        if not any(k[0] == task for k in results):
            continue
        cells = [TASK_LABELS[task], f"{PAPER[task][0]:.3f}", f"{PAPER[task][1]:.3f}"]
        for arm, opt in cols:
            m, sd = mean_sd(results.get((task, arm, opt), []))
            cells.append(fmt(m, 3) + (f" ± {fmt(sd, 3)}" if len(results.get((task, arm, opt), [])) > 1 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    n = len(seeds)
    note = (f"Answer accuracy of the final validation (argmax = answer, over every answer token of the 1280 "
            f"validation examples); {'mean ± sd over ' + str(n) + ' seeds' if n > 1 else 'one seed'}. The paper's "
            "numbers are MAD's (its own models and budgets), for reference.\n")
    return "\n".join(lines) + "\n\n" + note


def report(a, runs, say):
    results, seconds = {}, 0.0
    for r in runs:
        path = os.path.join(r["dir"], "log.csv")
        correct, scored = final_accuracy(path)
        results.setdefault((r["task"], r["arm"], r["optimizer"]), []).append(correct / scored if scored else float("nan"))
        seconds += run_summary(dedupe(read_run_log(path)))["seconds"]
    text = (f"Budget: {a.steps} steps of {BATCH} examples per run, d{a.depth} width {a.width}; seeds "
            f"{' '.join(map(str, a.seeds))}; data seed {a.data_seed}; {seconds:.0f} s of training steps in all "
            f"(starts and validations not counted).\n\n" + accuracy_table(results, a.seeds))
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(text)
    say(text + f"wrote {os.path.join(a.out, 'table.md')}")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000, help="steps per run (default 1000: ~4 minutes on one H100)")
    ap.add_argument("--long", action="store_true",
                    help="the longer budget: 8000 steps, seeds 1337 1338 1339, a checkpoint every 2000 steps")
    ap.add_argument("--checkpoint-every", type=int, default=0, help="checkpoint interval (default 0: none)")
    ap.add_argument("--seeds", default="1337", help="seeds of the init (default '1337')")
    ap.add_argument("--tasks", default=" ".join(TASKS), help=f"among {', '.join(TASKS)} (default all)")
    ap.add_argument("--optimizers", default=" ".join(OPTIMIZERS), help="muon and/or adamw (default both)")
    ap.add_argument("--data-seed", type=int, default=1234, help="seed of the generated data (default 1234)")
    ap.add_argument("--depth", type=int, default=2, help="layers (default 2)")
    ap.add_argument("--width", type=int, default=256, help="model width (default 256)")
    ap.add_argument("--val-every", type=int, default=250, help="validation interval (default 250)")
    ap.add_argument("--gpus", default="-", help="GPU numbers, one run per GPU at a time ('-': the visible one)")
    ap.add_argument("--out", default="out/recall")
    ap.add_argument("--trainer", default="./train_parallax")
    ap.add_argument("--flags", default="", help="more trainer flags for every run, e.g. '--muon-lr 0.03'")
    ap.add_argument("--report-only", action="store_true", help="only the table, from finished logs")
    a = ap.parse_args(argv)
    if a.long:
        a.steps, a.seeds, a.checkpoint_every = 8000, "1337 1338 1339", 2000
    try:
        a.seeds = [int(s) for s in a.seeds.split()]
    except ValueError:
        ap.error(f"--seeds: expected integers, got '{a.seeds}'")
    a.tasks, a.optimizers, a.gpus = a.tasks.split(), a.optimizers.split(), a.gpus.split() or ["-"]
    try:
        a.flags = shlex.split(a.flags)
    except ValueError as e:
        ap.error(f"--flags: {e}")
    if not a.tasks or any(t not in TASKS for t in a.tasks):
        ap.error(f"--tasks: choose among {', '.join(TASKS)}")
    if not a.optimizers or any(o not in OPTIMIZERS for o in a.optimizers):
        ap.error("--optimizers: muon and/or adamw")
    if not a.seeds or len(set(a.seeds)) != len(a.seeds):
        ap.error("--seeds: need distinct seeds")
    if a.steps < 1 or a.val_every < 1 or a.checkpoint_every < 0:
        ap.error("--steps and --val-every must be at least 1, --checkpoint-every at least 0")
    a.keep_checkpoints = False   # what compare.train_all reads
    assert all(arm in COMPARE_ARMS for arm in ARMS)
    return a


def main(argv):
    a = parse_args(argv)
    say = say_fn()

    def work():
        os.makedirs(a.out, exist_ok=True)
        if not a.report_only:
            for task in a.tasks:
                make_data(a.out, task, a.data_seed, say)
        runs = plan(a)
        if not a.report_only:
            train_all(a, runs, say)
        report(a, runs, say)
    exit_on_error("recall", work)


if __name__ == "__main__":
    main(sys.argv[1:])
