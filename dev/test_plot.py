"""CPU tests of dev/plot_losses.py on small made-up logs and on the committed logs of dev/results/.
  python3 dev/test_plot.py
"""
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from plot_losses import markdown_table, read_log, summary  # noqa: E402
from checks import Checks  # noqa: E402

CHECKS = Checks("plot")
check = CHECKS.check


def write_log(path, losses, val, prose, ms, memory):
    with open(path, "w") as f:
        f.write("step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s\n")
        for i, (l, v, p) in enumerate(zip(losses, val, prose)):
            f.write(f"{i},{i * 1000},val,{v},,,,\n{i},{i * 1000},valprose,{p},,,,\n")
            f.write(f"{i + 1},{(i + 1) * 1000},train,{l},1.0,0.5,{ms},{1000 / (ms / 1e3)}\n")
        f.write(f"{len(losses)},{len(losses) * 1000},gpu_memory_gib,{memory},,,,\n")


def main():
    exe = [sys.executable, os.path.join(HERE, "plot_losses.py")]
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "a.csv"), os.path.join(d, "b.csv")
        write_log(a, [5.0, 4.0, 3.5], [5.5, 4.5, 3.9], [6.0, 5.0, 4.4], 100.0, 12.5)
        write_log(b, [5.1, 4.2, 3.7], [5.6, 4.6, 4.1], [6.1, 5.1, 4.6], 80.0, 11.0)
        png, md = os.path.join(d, "x.png"), os.path.join(d, "x.md")
        p = subprocess.run(exe + [a, b, "--labels", "A,B", "--png", png, "--md", md], capture_output=True, text=True)
        ok = p.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10000
        check("draws a PNG from two logs", ok, f"exit {p.returncode}, {os.path.getsize(png) if os.path.exists(png) else 0} bytes")
        s = summary(read_log(a))
        ok = s["val"] == 3.9 and abs(s["ppl"] - math.exp(3.9)) < 1e-9 and s["prose"] == 4.4 and s["memory"] == 12.5 \
            and abs(s["tokens_per_s"] - 10000.0) < 1e-6
        check("table values are the logs' last validation points", ok, str(s))
        table = open(md).read() if os.path.exists(md) else ""
        check("markdown table has one row per log", table.count("\n| A |") + table.count("\n| B |") == 2,
              table.splitlines()[2] if len(table.splitlines()) > 2 else table)
        bad = os.path.join(d, "bad.csv")
        open(bad, "w").write("hello,world\n1,2\n")
        p = subprocess.run(exe + [bad, "--png", png], capture_output=True, text=True)
        check("a file that is not a log is refused, naming it", p.returncode != 0 and "bad.csv" in p.stderr,
              p.stderr.strip())
    # the committed training results: their table.md must be what the logs give (benchmark folders hold
    # no training logs and are skipped)
    res = os.path.join(HERE, "results")
    for run in sorted(os.listdir(res)) if os.path.isdir(res) else []:
        folder = os.path.join(res, run)
        if not os.path.isdir(folder):   # the index README.md and run_lib.sh
            continue
        logs = sorted(f for f in os.listdir(folder) if f.endswith(".csv"))
        if not logs:
            continue
        labels = [f[:-4].replace("_", " ") for f in logs]
        want = markdown_table(labels, [read_log(os.path.join(folder, f)) for f in logs])
        got = open(os.path.join(folder, "table.md")).read() if os.path.exists(os.path.join(folder, "table.md")) else ""
        check(f"dev/results/{run}/table.md matches its logs", got == want, f"{len(logs)} logs")
    CHECKS.exit()


if __name__ == "__main__":
    main()
