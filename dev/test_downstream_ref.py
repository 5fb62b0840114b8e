"""CPU test of dev/downstream_ref.py on a tiny random model (d1, C = 128): its row scores against a direct
computation (the whole sequence's logits, log-softmax by hand), the row layout (context cut from the left
at T), and --compare: PASS on the scores themselves, FAIL on a moved loss and on a flipped decision.
One line per check: PASS or FAIL. Runs in CI (torch on the CPU)."""
import contextlib
import csv
import io
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "data"))
import downstream_ref as dr  # noqa: E402
import tensorfile  # noqa: E402
from checks import Checks  # noqa: E402
from eval_format import write_evalfile  # noqa: E402
from model_ref import Config, init_params, param_table  # noqa: E402


def tiny_checkpoint(path):
    cfg = Config(variant="parallax", depth=1, width=128, head_dim=64)
    params = init_params(cfg, 7, zero_init_too=True)
    meta = {"kind": "checkpoint", "variant": "parallax", "depth": "1", "width": "128", "head_dim": "64",
            "mlp_hidden": "512", "vocab": "50257", "padded_vocab": "50304"}
    tensors = {}
    for name, _ in param_table(cfg):
        for k in ("param", "muon_buf", "adam_m", "adam_v"):
            tensors[f"{k}.{name}"] = params[name] if k == "param" else torch.zeros_like(params[name])
    tensorfile.write(path, meta, list(tensors.items()))
    return cfg, params


def write_csv(path, rows, nc, pred=None):
    pred = pred or dr.predictions(rows, nc)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["example", "ending", "label", "loss", "tokens", "correct", "pred"])
        for i, r in enumerate(rows):
            w.writerow([i // nc, i % nc, r["label"], f"{r['loss']:.6f}", r["tokens"], int(r["correct"]), pred[i // nc]])


def quiet_compare(*args):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        ok = dr.compare(*args)
    return ok, out.getvalue().strip().replace("\n", " | ")


def main():
    c = Checks("downstream_ref")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ck = os.path.join(tmp, "checkpoint_000001.ptf")
        cfg, params = tiny_checkpoint(ck)
        T = 16
        ctx, end = list(range(100, 120)), [5, 6, 7]
        x, y, first = dr.row_tokens(ctx, end, T)
        c.check("row layout", len(x) == T and x[0] == 106 and y[first:] == end and first == T - 3,
                f"a 23-token row cut to T = {T}: inputs from token 106, the ending at positions {first}..{T - 1}")
        loss, n, correct, _ = dr.score_row(cfg, params, ctx, end, T, "cpu")
        logits, _ = dr.forward(cfg, params, torch.tensor([x]), torch.zeros(1, T, dtype=torch.long))
        lp = torch.log_softmax(logits[0, :, :cfg.vocab].double(), -1)
        want = -sum(lp[first + i, end[i]].item() for i in range(3))
        c.check("row loss", abs(loss - want) < 1e-9 and n == 3, f"{loss:.6f} vs {want:.6f} by hand")
        hs = os.path.join(tmp, "hs.bin")
        write_evalfile(hs, [(1, [11, 12, 13], [[20], [21, 22], [23], [24, 25]]), (3, [30] * 5, [[1], [2], [3], [4]])])
        es = dr.read_evalfile(hs, 4)
        rows = dr.score_set(cfg, params, es, T, "cpu")
        out = os.path.join(tmp, "hellaswag_000001.csv")
        write_csv(out, rows, 4)
        ok, msg = quiet_compare("hellaswag", rows, 4, out)
        c.check("compare passes its own scores", ok, msg)
        moved = [dict(r) for r in rows]
        moved[2]["loss"] += 10 * rows[2]["tol"] + 1.0
        write_csv(out, moved, 4)
        ok, msg = quiet_compare("hellaswag", rows, 4, out)
        c.check("compare fails a moved loss", not ok and "FAIL" in msg, msg)
        pred = dr.predictions(rows, 4)
        means = [r["loss"] / r["tokens"] for r in rows[:4]]   # the first example's four endings
        other = max(range(4), key=lambda k: means[k])   # the worst ending: far from a near tie
        write_csv(out, rows, 4, [other] + pred[1:])
        ok, msg = quiet_compare("hellaswag", rows, 4, out)
        c.check("compare fails a flipped decision", other != pred[0] and not ok and "decisions agree: 1 differ" in msg, msg)
    c.exit()


if __name__ == "__main__":
    main()
