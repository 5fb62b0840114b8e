"""The trainer's downstream scores recomputed in PyTorch from a checkpoint: the last-word test and HellaSwag
(llm.c's evaluation files, data/eval_format.py), row by row as trainer/eval_file.h builds them (the last T + 1
tokens of context + ending; the loss over the ending's tokens; correct = every ending token the first largest
logit). With --compare, checks the trainer's OUT/<test>_<step>.csv row by row; prints PASS/FAIL lines.
  python3 dev/downstream_ref.py CHECKPOINT --seq-len T [--lastword FILE [--compare-lastword CSV]]
                                [--hellaswag FILE [--compare-hellaswag CSV]] [--device cuda]
Tolerances come from bf16 itself, not typed-in numbers: each row is scored three times, in fp32, with the
weights rounded to bf16 (what the trainer's forward reads), and wholly in bf16 (weights and activations: a
forward less exact than the trainer's, which accumulates in fp32). A row's loss may differ from the trainer's
by 4x the largest of those two differences and of the set's median bf16 difference per token times the row's
tokens (so that a row whose bf16 runs agree by chance is not held tighter than the set), plus one bf16
rounding (2^-8 relative) of the loss. A decision (correct, the chosen ending) may differ only where the
reference's own margin is inside that tolerance (last-word: the bf16 weights flip it, or a top-2 logit gap
under two bf16 roundings; HellaSwag: two endings' mean losses closer than their tolerances).
"""
import argparse
import csv
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "data"))
from eval_format import read_evalfile  # noqa: E402
from load_checkpoint import load_checkpoint  # noqa: E402
from model_ref import forward  # noqa: E402

BF16_EPS = 2.0 ** -8


def row_tokens(ctx, end, T):
    """(inputs, targets, first scored position) of one row, before padding: as eval_row."""
    seq = (ctx + end)[-(T + 1):]
    return seq[:-1], seq[1:], len(seq) - 1 - len(end)


@torch.no_grad()
def score_row(cfg, params, ctx, end, T, device):
    """(summed loss, tokens, correct, smallest relative top-2 logit margin over the ending) in float64."""
    x, y, first = row_tokens(ctx, end, T)
    idx = torch.tensor([x], device=device)
    logits, _ = forward(cfg, params, idx, torch.zeros_like(idx))
    lg = logits[0, first:, :cfg.vocab].double()
    tgt = torch.tensor(y[first:], device=device)
    loss = -torch.log_softmax(lg, -1).gather(1, tgt[:, None]).sum().item()
    top = lg.max(-1).values
    pred = (lg == top[:, None]).int().argmax(-1)   # the first largest, as trainer/argmax.cuh
    two = lg.topk(2, -1).values
    rel = (two[:, 0] - two[:, 1]) / two[:, 0].abs().clamp(min=1.0)
    return loss, len(end), bool((pred == tgt).all()), rel.min().item()


def score_set(cfg, params, es, T, device):
    """One dict per row: the fp32 loss, tokens, correct, margin, and the row's bf16 tolerance."""
    weights16 = {k: v.bfloat16().float() for k, v in params.items()}   # bf16 weights, fp32 arithmetic
    all16 = {k: v.bfloat16() for k, v in params.items()}                # bf16 weights and activations
    rows = []
    for label, ctx, ends in es:
        for end in ends:
            a = score_row(cfg, params, ctx, end, T, device)
            b = score_row(cfg, weights16, ctx, end, T, device)
            c = score_row(cfg, all16, ctx, end, T, device)
            rows.append({"loss": a[0], "tokens": a[1], "correct": a[2], "margin": a[3], "label": label,
                         "flip16": a[2] != b[2], "diff16": max(abs(a[0] - b[0]), abs(a[0] - c[0]))})
    per_token = sorted(r["diff16"] / r["tokens"] for r in rows)
    median = per_token[len(per_token) // 2] if rows else 0.0
    for r in rows:
        r["tol"] = 4 * max(r["diff16"], median * r["tokens"]) + BF16_EPS * abs(r["loss"]) + 1e-4
    return rows


def predictions(rows, nc):
    return [min(range(nc), key=lambda k: rows[i + k]["loss"] / rows[i + k]["tokens"]) for i in range(0, len(rows), nc)]


def compare(name, rows, nc, path):
    got = list(csv.DictReader(open(path)))
    ok = len(got) == len(rows)
    print(f"{'PASS' if ok else 'FAIL'} downstream_ref: {name}: {len(got)} trainer rows, {len(rows)} reference rows")
    if not ok:
        return False
    bad_loss = [i for i, (g, r) in enumerate(zip(got, rows))
                if int(g["tokens"]) != r["tokens"] or abs(float(g["loss"]) - r["loss"]) > r["tol"]]
    worst = max(abs(float(g["loss"]) - r["loss"]) / r["tol"] for g, r in zip(got, rows))
    print(f"{'PASS' if not bad_loss else 'FAIL'} downstream_ref: {name} row losses within bf16 tolerance: "
          f"{len(bad_loss)} outside, worst |diff| / tol {worst:.3f}{'; rows ' + str(bad_loss[:10]) if bad_loss else ''}")
    excused, wrong = 0, []
    if nc == 1:
        for i, (g, r) in enumerate(zip(got, rows)):
            if (g["correct"] == "1") != r["correct"]:
                near = r["flip16"] or r["margin"] < 2 * BF16_EPS   # the trainer's logits are bf16
                excused += near
                if not near:
                    wrong.append(i)
    else:
        pred = predictions(rows, nc)
        for e, p in enumerate(pred):
            tp = int(got[e * nc]["pred"])
            if tp != p:
                m = [rows[e * nc + k]["loss"] / rows[e * nc + k]["tokens"] for k in range(nc)]
                t = [rows[e * nc + k]["tol"] / rows[e * nc + k]["tokens"] for k in range(nc)]
                near = abs(m[tp] - m[p]) <= t[tp] + t[p]
                excused += near
                if not near:
                    wrong.append(e)
    print(f"{'PASS' if not wrong else 'FAIL'} downstream_ref: {name} decisions agree: {len(wrong)} differ outside "
          f"the tolerance{' ' + str(wrong[:10]) if wrong else ''}, {excused} inside it (a near tie)")
    return not bad_loss and not wrong


def summary(name, rows, nc):
    if nc == 1:
        acc = sum(r["correct"] for r in rows) / len(rows)
        ppl = math.exp(sum(r["loss"] for r in rows) / len(rows))
        print(f"downstream_ref: {name}: acc {acc:.4f}, per-word ppl {ppl:.2f} ({len(rows)} passages)")
    else:
        pred = predictions(rows, nc)
        acc = sum(p == rows[i * nc]["label"] for i, p in enumerate(pred)) / len(pred)
        print(f"downstream_ref: {name}: acc_norm {acc:.4f} ({len(pred)} examples)")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--lastword", default="")
    ap.add_argument("--hellaswag", default="")
    ap.add_argument("--compare-lastword", default="")
    ap.add_argument("--compare-hellaswag", default="")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg, params, _, _ = load_checkpoint(a.checkpoint)
    params = {k: v.to(a.device) for k, v in params.items()}
    ok = True
    for name, path, nc, cmp in (("lastword", a.lastword, 1, a.compare_lastword),
                                ("hellaswag", a.hellaswag, 4, a.compare_hellaswag)):
        if not path:
            continue
        rows = score_set(cfg, params, read_evalfile(path, nc), a.seq_len, a.device)
        summary(name, rows, nc)
        if cmp:
            ok &= compare(name, rows, nc, cmp)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
