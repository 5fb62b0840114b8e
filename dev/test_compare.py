"""CPU test of dev/compare.sh (make compare) with a stand-in for the trainer: every combination and seed
gets its log and printout, runs are spread over COMPARE_GPUS with one run per GPU at a time and the GPUs
busy together, the plot and the table cover every run, and a failed run stops the comparison naming it.
  python3 dev/test_compare.py
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from checks import Checks  # noqa: E402

CHECKS = Checks("compare")
check = CHECKS.check

# the stand-in: writes a small valid log.csv, notes its GPU and its start and end times, can be told to fail
FAKE_TRAINER = r'''#!/usr/bin/env python3
import os, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out, gpu = args["--out"], os.environ.get("CUDA_VISIBLE_DEVICES", "")
if os.environ.get("FAKE_FAIL") == args["--attention"] + "_" + args["--optimizer"]:
    print("fake trainer: failing as asked", file=sys.stderr)
    sys.exit(1)
start = time.time()
time.sleep(0.4)
base = (3.7 if args["--attention"] == "parallax" else 3.8) + (2.0 if args["--optimizer"] == "adamw" else 0.0)
base += 0.01 * int(args["--seed"])
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "log.csv"), "w") as f:
    f.write("step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s\n")
    for step in range(1, int(args["--steps"]) + 1):
        f.write(f"{step},{step * 1000},train,{base + 1.0 / step},1.0,0.5,10.0,100000\n")
    f.write(f"{args['--steps']},{int(args['--steps']) * 1000},val,{base},,,,\n")
    f.write(f"{args['--steps']},{int(args['--steps']) * 1000},gpu_memory_gib,1.0,,,,\n")
with open(os.environ["FAKE_TIMES"], "a") as f:
    f.write(f"{gpu} {start} {time.time()}\n")
print(f"step {args['--steps']:>5} | val loss {base:.4f}")
'''


def run_compare(d, fail="", gpus="0 1", seeds="1 2"):
    fake = os.path.join(d, "fake_trainer.py")
    with open(fake, "w") as f:
        f.write(FAKE_TRAINER.replace("#!/usr/bin/env python3", "#!" + sys.executable))
    os.chmod(fake, 0o755)
    times = os.path.join(d, "times.txt")
    env = dict(os.environ, COMPARE_TRAINER=fake, COMPARE_SEEDS=seeds, COMPARE_STEPS="5",
               COMPARE_OUT=os.path.join(d, "out"), PLOT_PYTHON=sys.executable, FAKE_TIMES=times, FAKE_FAIL=fail,
               MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="7")
    if gpus:
        env["COMPARE_GPUS"] = gpus
    p = subprocess.run(["bash", os.path.join(HERE, "compare.sh")], env=env, capture_output=True, text=True)
    return p, times


def main():
    with tempfile.TemporaryDirectory() as d:
        p, times = run_compare(d)
        check("make compare runs to the end with a stand-in trainer", p.returncode == 0,
              f"exit {p.returncode} {p.stderr.strip()[-300:]}")
        out = os.path.join(d, "out")
        runs = [f"{a}_{o}_s{s}" for s in (1, 2) for a in ("parallax", "softmax") for o in ("muon", "adamw")]
        have = [r for r in runs if os.path.exists(os.path.join(out, r, "log.csv"))
                and os.path.exists(os.path.join(out, r, "train.out"))]
        check("every combination and seed has its log.csv and train.out", len(have) == 8, f"{len(have)} of 8")
        spans = [line.split() for line in open(times)] if os.path.exists(times) else []
        per_gpu = {g: sorted((float(a), float(b)) for gg, a, b in spans if gg == g) for g in ("0", "1")}
        check("the runs are spread over the two GPUs, four each",
              [len(per_gpu["0"]), len(per_gpu["1"])] == [4, 4], str({g: len(v) for g, v in per_gpu.items()}))
        serial = all(x[1] <= y[0] for v in per_gpu.values() for x, y in zip(v, v[1:]))
        check("one run at a time on each GPU", serial, "runs of one GPU do not overlap" if serial else str(per_gpu))
        together = any(a0 < b1 and a1 < b0 for a0, b0 in per_gpu["0"] for a1, b1 in per_gpu["1"])
        check("the two GPUs work at the same time", together, "a run on GPU 0 overlaps one on GPU 1")
        table = open(os.path.join(out, "table.md")).read() if os.path.exists(os.path.join(out, "table.md")) else ""
        rows = [line for line in table.splitlines() if line.startswith("| ") and ("s1 |" in line or "s2 |" in line)]
        check("the table has a row per run, the plot exists",
              len(rows) == 8 and os.path.getsize(os.path.join(out, "losses.png")) > 10000, f"{len(rows)} rows")
    with tempfile.TemporaryDirectory() as d:
        p, times = run_compare(d, gpus="", seeds="1")
        spans = [line.split() for line in open(times)] if os.path.exists(times) else []
        ok = p.returncode == 0 and len(spans) == 4 and all(g == "7" for g, _, _ in spans)
        check("without COMPARE_GPUS: the four runs in turn on the GPU that CUDA_VISIBLE_DEVICES gives", ok,
              f"exit {p.returncode}, GPUs seen {[g for g, _, _ in spans]}")
    with tempfile.TemporaryDirectory() as d:
        p, _ = run_compare(d, fail="softmax_adamw")
        ok = p.returncode != 0 and "softmax_adamw_s1" in p.stderr and "failing as asked" in p.stderr
        check("a failed run stops the comparison, naming the run and showing its last lines", ok,
              p.stderr.strip().splitlines()[0] if p.stderr.strip() else f"exit {p.returncode}, no message")
    CHECKS.exit()


if __name__ == "__main__":
    main()
