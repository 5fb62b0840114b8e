"""Loads a train_parallax checkpoint (OUT/checkpoint.ptf) into PyTorch: the weights as the reference model's
parameter dict (dev/model_ref.py), the optimizer state alongside. The layout is the reference tensor file
(dev/README.md): param.<name>, muon_buf.<name>, adam_m.<name>, adam_v.<name>, and the run in the metadata.

  python3 dev/load_checkpoint.py out/checkpoint.ptf                       # what is in it
  python3 dev/load_checkpoint.py out/checkpoint.ptf --shard data/shards/val_000.bin --tokens 1024
        # the reference model's loss on the first tokens of a shard, to compare with the trainer's
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensorfile  # noqa: E402
from model_ref import Config, forward, param_table  # noqa: E402


def load_checkpoint(path):
    """Returns (cfg, params, state, meta): params name -> float32 tensor; state[kind][name] for kind in
    muon_buf, adam_m, adam_v."""
    meta, t = tensorfile.read(path)
    if meta.get("kind") != "checkpoint":
        raise ValueError(f"{path}: not a train_parallax checkpoint (kind={meta.get('kind')})")
    cfg = Config(variant=meta["variant"], depth=int(meta["depth"]), width=int(meta["width"]),
                 head_dim=int(meta["head_dim"]), vocab=int(meta["vocab"]), mlp_hidden=int(meta.get("mlp_hidden", 0)))
    params = {n: torch.from_numpy(t["param." + n].copy()) for n, _ in param_table(cfg)}
    state = {k: {n: torch.from_numpy(t[f"{k}.{n}"].copy()) for n, _ in param_table(cfg)}
             for k in ("muon_buf", "adam_m", "adam_v")}
    return cfg, params, state, meta


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--shard", help="a token shard: report the loss on its first --tokens tokens")
    ap.add_argument("--tokens", type=int, default=1024)
    a = ap.parse_args(argv)
    cfg, params, _, meta = load_checkpoint(a.checkpoint)
    print(f"{a.checkpoint}: {cfg.variant} d{cfg.depth} C={cfg.width} D={cfg.head_dim}, step {meta.get('step')}, "
          f"{sum(p.numel() for p in params.values()) / 1e6:.1f} M parameters")
    if a.shard:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
        from shards import read_tokens
        tok = torch.from_numpy(read_tokens(a.shard)[: a.tokens + 1].astype(np.int64))
        with torch.no_grad():
            _, loss = forward(cfg, params, tok[:-1].unsqueeze(0), tok[1:].unsqueeze(0))
        print(f"reference loss on the first {a.tokens} tokens of {a.shard}: {loss.item():.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
