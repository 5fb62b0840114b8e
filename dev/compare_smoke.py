"""GPU smoke test of make compare with the real trainer, on a tiny budget (about 3 minutes on one H100): a
2-layer model (C = 128) on synthetic shards (a noisy token chain the model can learn), made here.
  python3 dev/compare_smoke.py [./train_parallax]        (dev/compare_smoke.sh builds the trainer first)
Checks, as PASS / FAIL lines (SKIP "no GPU" without one):
  - the whole comparison (3 arms x Muon, AdamW x 3 seeds) completes; the table has every run, the 6 arms with a
    standard deviation, the 4 paired gaps; every run's validation loss fell;
  - softmax with --mlp-hidden match has the parameters of Parallax less the r gain, as dev/model_ref.py counts;
  - a second invocation reuses every run;
  - a run killed mid-way and resumed by the comparison gives the losses of the same run uninterrupted, bit for
    bit (every training step after the checkpoint and the final validation);
  - equal time: each arm's steps come from its timed step time, and its runs' step time is that time +-20%.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checks  # noqa: E402
from checks import Checks  # noqa: E402
from compare import dedupe  # noqa: E402
from plot_losses import read_log  # noqa: E402
from synthetic_shards import token_chain, write_shard  # noqa: E402

CHECKS = Checks("compare_smoke")
check = CHECKS.check
DEPTH, WIDTH, HEAD_DIM = 2, 128, 64


def compare(out, trainer, data, extra, env=None, more_flags=""):
    """The compare.py command line for the smoke model (more_flags: trainer flags that override these)."""
    flags = (f"--train-data {data}/train_000.bin --val-data {data}/val_000.bin --prose-val-data '' --depth {DEPTH} "
             f"--width {WIDTH} --batch 8 --seq-len 256 --total-batch 8192 --warmup 5 --val-every 10 --val-batches 4 "
             + more_flags)
    cmd = [sys.executable, os.path.join(HERE, "compare.py"), "--out", out, "--trainer", trainer, "--flags", flags] + extra
    return cmd, dict(os.environ, MPLBACKEND="Agg", **(env or {}))


def table_rows(out):
    return checks.table_rows(os.path.join(out, "table.md"))


def params_of(train_out):
    """The parameter count and MLP hidden size the trainer prints."""
    for line in open(train_out):
        if line.strip().startswith("MLP hidden"):
            w = line.replace(",", " ").split()
            return int(w[3]), int(w[2])   # "MLP hidden F, N parameters"
    return None, None


def test_full(d, trainer, data):
    out = os.path.join(d, "full")
    cmd, env = compare(out, trainer, data, ["--steps", "40", "--seeds", "1 2 3", "--checkpoint-every", "0"])
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    check("the comparison (3 arms x 2 optimizers x 3 seeds, 40 steps each) completes", p.returncode == 0,
          f"exit {p.returncode} in {time.time() - t0:.0f} s {p.stderr.strip()[-400:]}")
    rows = table_rows(out)
    per_run = [r for r in rows if len(r) == 7 and r[0][-3:] in (" s1", " s2", " s3")]
    per_arm = [r for r in rows if len(r) == 10 and r[1] in ("muon", "adamw")]
    gaps = [r for r in rows if len(r) == 6 and r[0] in ("muon", "adamw")]
    check("the table: 18 runs, 6 arms with mean and sd, 4 paired gaps",
          len(per_run) == 18 and len(per_arm) == 6 and all(r[4] != "-" for r in per_arm) and len(gaps) == 4,
          f"{len(per_run)} runs, {len(per_arm)} arms, {len(gaps)} gaps")
    fell = []
    for arm in ("parallax", "softmax", "softmax_match"):
        for opt in ("muon", "adamw"):
            for s in (1, 2, 3):
                path = os.path.join(out, f"{arm}_{opt}_s{s}", "log.csv")
                if os.path.exists(path):
                    v = dedupe(read_log(path))["val"]
                    fell.append(v[-1][2] < v[0][2])
    check("every run's validation loss fell", len(fell) == 18 and all(fell), f"{sum(fell)} of {len(fell)}")
    par, par_f = params_of(os.path.join(out, "parallax_muon_s1", "train.out"))
    mat, mat_f = params_of(os.path.join(out, "softmax_match_muon_s1", "train.out"))
    try:
        from model_ref import Config, param_table
        ref = {}
        for name, variant, f in (("parallax", "parallax", 0), ("match", "softmax", 4 * WIDTH + WIDTH // 2)):
            cfg = Config(variant=variant, depth=DEPTH, width=WIDTH, head_dim=HEAD_DIM, mlp_hidden=f)
            n = 0
            for _, shape in param_table(cfg):
                k = 1
                for x in shape:
                    k *= x
                n += k
            ref[name] = (n, cfg.hidden)
        check("softmax --mlp-hidden match: the reference's parameter count and F = 4C + C/2; Parallax's less the r gain",
              (par, par_f) == ref["parallax"] and (mat, mat_f) == ref["match"] and par - mat == DEPTH * HEAD_DIM,
              f"Parallax {par} (F {par_f}), matched softmax {mat} (F {mat_f}); reference {ref}")
    except ImportError:
        CHECKS.skip("softmax --mlp-hidden match parameter count against dev/model_ref.py", "no torch in this python")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    check("a second invocation reuses all 18 runs", p.returncode == 0 and p.stdout.count("reused") == 18,
          f"exit {p.returncode}, {p.stdout.count('reused')} reused")


def test_resume(d, trainer, data):
    """One run of 60 steps (checkpoints every 10) killed after step 12, then resumed by the comparison. Steps
    of 32 micro-batches, so that the kill lands mid-run."""
    one = ["--steps", "60", "--seeds", "1", "--arms", "softmax_match", "--optimizers", "muon", "--checkpoint-every", "10"]
    ref_out, cut_out = os.path.join(d, "straight"), os.path.join(d, "cut")
    cmd, env = compare(ref_out, trainer, data, one, more_flags="--total-batch 65536")
    straight = subprocess.run(cmd, env=env, capture_output=True, text=True).returncode
    cmd, env = compare(cut_out, trainer, data, one, more_flags="--total-batch 65536")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = os.path.join(cut_out, "softmax_match_muon_s1", "log.csv")
    killed_at = None
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        try:
            steps = [x[0] for x in read_log(log)["train"]]
        except ValueError:
            steps = []
        if steps and steps[-1] >= 12:
            os.killpg(proc.pid, signal.SIGKILL)   # the comparison and its trainer: the group started above
            killed_at = steps[-1]
            break
        time.sleep(0.02)
    proc.wait()
    if killed_at is None or killed_at >= 60:
        check("a run killed mid-way", False, f"not caught mid-way (straight run exit {straight}); the steps are too fast")
        return
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    a = dedupe(read_log(os.path.join(ref_out, "softmax_match_muon_s1", "log.csv")))
    b = dedupe(read_log(log))
    same_train = [x[2] for x in a["train"]] == [x[2] for x in b["train"]] and len(a["train"]) == 60
    same_val = [x[2] for x in a["val"]] == [x[2] for x in b["val"]]
    check(f"killed at step {killed_at}, resumed by the comparison: every loss equals the uninterrupted run's, bit for bit",
          straight == 0 and p.returncode == 0 and "resumed" in p.stdout and same_train and same_val,
          f"exits {straight} / {p.returncode}; final val {a['val'][-1][2] if a['val'] else '-'} / "
          f"{b['val'][-1][2] if b['val'] else '-'}; train losses equal: {same_train}")


def test_equal_time(d, trainer, data):
    out = os.path.join(d, "time")
    cmd, env = compare(out, trainer, data, ["--time-budget", "4", "--seeds", "1", "--arms", "parallax softmax",
                                           "--optimizers", "muon", "--checkpoint-every", "0"], more_flags="--val-every 200")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    detail, ok = [], p.returncode == 0
    for arm in ("parallax", "softmax"):
        try:
            cal = json.load(open(os.path.join(out, "calibrate", f"{arm}_muon", "steps.json")))
            run = json.load(open(os.path.join(out, f"{arm}_muon_s1", "run.json")))
            ms = sorted(x[3] for x in dedupe(read_log(os.path.join(out, f"{arm}_muon_s1", "log.csv")))["train"][1:])
        except (OSError, ValueError) as e:
            ok, detail = False, detail + [f"{arm}: {e}"]
            continue
        med = ms[len(ms) // 2]
        ok = ok and run["steps"] == cal["steps"] == int(4e3 / cal["median_ms"]) and abs(med / cal["median_ms"] - 1) < 0.2
        detail.append(f"{arm}: timed {cal['median_ms']:.2f} ms -> {run['steps']} steps, ran at {med:.2f} ms")
    check("equal time (4 s): steps = budget / timed step time, and the runs step at that time +-20%", ok,
          f"exit {p.returncode}; " + "; ".join(detail))


def main(argv):
    trainer = os.path.abspath(argv[0] if argv else os.path.join(HERE, "..", "train_parallax"))
    if not has_gpu():
        CHECKS.skip("make compare on the GPU", "no GPU")
        CHECKS.exit()
    seed = 20261206
    print(f"compare_smoke: data seed {seed}, trainer {trainer}")
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        os.makedirs(data)
        write_shard(os.path.join(data, "train_000.bin"), token_chain(2_000_000, seed, seed + 1))
        write_shard(os.path.join(data, "val_000.bin"), token_chain(100_000, seed, seed + 2))
        test_full(d, trainer, data)
        test_resume(d, trainer, data)
        test_equal_time(d, trainer, data)
    CHECKS.exit()


def has_gpu():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    except OSError:
        return False


if __name__ == "__main__":
    main(sys.argv[1:])
