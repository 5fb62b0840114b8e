"""Plots any set of train_parallax logs (OUT/log.csv) and writes a markdown table.

  python3 dev/plot_losses.py out/a/log.csv out/b/log.csv [--labels A,B] [--png losses.png] [--md table.md]

The figure (PNG, matplotlib with MPLBACKEND=Agg) has four panels: training and validation loss against
tokens and against wall time (the summed step times); clean-prose validation loss is dashed. The table: final validation loss, its perplexity,
final clean-prose validation loss, mean tokens/s (steps after the first) and GPU memory, one row per log.
Works on Debian's python3-matplotlib; needs no torch.
"""
import argparse
import csv
import math
import os
import sys


def read_log(path):
    """{'train': [(step, tokens, loss, ms, tokens_per_s)], 'val': [(step, tokens, loss)], 'valprose': [...],
    'memory': GiB or None}. A file that is not a train_parallax log is an error naming it."""
    out = {"train": [], "val": [], "valprose": [], "memory": None}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})")
    need = {"step", "tokens", "kind", "loss", "ms", "tokens_per_s"}
    if not rows or not need <= set(rows[0].keys()):
        raise ValueError(f"{path}: not a train_parallax log.csv (expected columns {sorted(need)})")
    for r in rows:
        kind, step, tokens, loss = r["kind"], int(r["step"]), int(r["tokens"]), float(r["loss"])
        if kind == "train":
            out["train"].append((step, tokens, loss, float(r["ms"]), float(r["tokens_per_s"])))
        elif kind in ("val", "valprose"):
            out[kind].append((step, tokens, loss))
        elif kind == "gpu_memory_gib":
            out["memory"] = loss
    if not out["train"] and not out["val"]:
        raise ValueError(f"{path}: holds no training or validation rows")
    return out


def wall_seconds(log):
    """Seconds of training at each step: the running sum of the step times."""
    t, acc = {0: 0.0}, 0.0
    for step, _, _, ms, _ in log["train"]:
        acc += ms / 1e3
        t[step] = acc
    return t


def summary(log):
    val = log["val"][-1][2] if log["val"] else float("nan")
    prose = log["valprose"][-1][2] if log["valprose"] else float("nan")
    tps = [x[4] for x in log["train"][1:]] or [x[4] for x in log["train"]]
    return {"val": val, "ppl": math.exp(val) if val == val else float("nan"), "prose": prose,
            "tokens_per_s": sum(tps) / len(tps) if tps else float("nan"),
            "tokens": log["train"][-1][1] if log["train"] else 0, "memory": log["memory"]}


def markdown_table(labels, logs):
    lines = ["| run | tokens | final val loss | val perplexity | clean-prose val loss | tokens/s | GPU memory |",
             "|---|---|---|---|---|---|---|"]
    for label, log in zip(labels, logs):
        s = summary(log)
        mem = f"{s['memory']:.1f} GiB" if s["memory"] is not None else "-"
        lines.append(f"| {label} | {s['tokens'] / 1e6:.1f} M | {s['val']:.4f} | {s['ppl']:.1f} | {s['prose']:.4f} | "
                     f"{s['tokens_per_s']:,.0f} | {mem} |")
    return "\n".join(lines) + "\n"


def plot(labels, logs, png):
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    for label, log in zip(labels, logs):
        wall = wall_seconds(log)
        tr, va = log["train"], log["val"]
        line, = ax[0, 0].plot([x[1] / 1e6 for x in tr], [x[2] for x in tr], lw=1, label=label)
        ax[0, 1].plot([wall.get(x[0], 0.0) for x in tr], [x[2] for x in tr], lw=1, color=line.get_color(), label=label)
        ax[1, 0].plot([x[1] / 1e6 for x in va], [x[2] for x in va], "o-", color=line.get_color(), label=label)
        ax[1, 1].plot([wall.get(x[0], 0.0) for x in va], [x[2] for x in va], "o-", color=line.get_color(), label=label)
        pv = log["valprose"]
        if pv:  # the clean-prose validation set, dashed
            ax[1, 0].plot([x[1] / 1e6 for x in pv], [x[2] for x in pv], "s--", color=line.get_color(), ms=4)
            ax[1, 1].plot([wall.get(x[0], 0.0) for x in pv], [x[2] for x in pv], "s--", color=line.get_color(), ms=4)
    titles = [["training loss", "training loss"], ["validation loss (dashed: clean prose)"] * 2]
    xlabels = ["tokens (M)", "training time (s)"]
    for i in range(2):
        for j in range(2):
            ax[i, j].set_title(titles[i][j])
            ax[i, j].set_xlabel(xlabels[j])
            ax[i, j].set_ylabel("loss")
            ax[i, j].grid(alpha=0.3)
    ax[0, 0].legend(fontsize=8)  # one legend: every panel uses the same colours
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="log.csv files")
    ap.add_argument("--labels", default="", help="comma-separated labels (default: each log's folder name)")
    ap.add_argument("--png", default="losses.png")
    ap.add_argument("--md", default="", help="also write the table to this file")
    a = ap.parse_args(argv)
    labels = a.labels.split(",") if a.labels else [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in a.logs]
    if len(labels) != len(a.logs):
        ap.error(f"--labels: {len(labels)} labels for {len(a.logs)} logs")
    try:
        logs = [read_log(p) for p in a.logs]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    plot(labels, logs, a.png)
    table = markdown_table(labels, logs)
    if a.md:
        with open(a.md, "w") as f:
            f.write(table)
    print(table, end="")
    print(f"wrote {a.png}" + (f" and {a.md}" if a.md else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
