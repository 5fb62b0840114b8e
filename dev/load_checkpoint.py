"""Loads a train_parallax checkpoint (OUT/checkpoint.ptf) into PyTorch: the weights as the reference model's
parameter dict (dev/model_ref.py), the optimizer state alongside. The layout is the reference tensor file
(dev/README.md): param.<name>, muon_buf.<name>, adam_m.<name>, adam_v.<name>, and the run in the metadata.

  python3 dev/load_checkpoint.py out/checkpoint.ptf                       # what is in it
  python3 dev/load_checkpoint.py out/checkpoint.ptf --shard data/shards/val_000.bin --tokens 1024
        # the reference model's loss on the first tokens of a shard, to compare with the trainer's
"""
import argparse
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensorfile  # noqa: E402
from model_ref import Config, forward, param_table  # noqa: E402


def config_of(path, meta):
    """The model config from the metadata; a missing or malformed key is a ValueError naming it."""
    def get(key, kind):
        if key not in meta:
            raise ValueError(f"{path}: metadata has no '{key}' (incomplete checkpoint)")
        try:
            return kind(meta[key])
        except ValueError:
            raise ValueError(f"{path}: metadata {key}='{meta[key]}' is not an integer")
    variant = get("variant", str)
    if variant not in ("parallax", "softmax"):
        raise ValueError(f"{path}: metadata variant='{variant}' (expected parallax or softmax)")
    dims = {k: get(k, int) for k in ("depth", "width", "head_dim", "vocab")}
    bad = [k for k, v in dims.items() if v <= 0]
    if bad or dims["width"] % dims["head_dim"]:
        raise ValueError(f"{path}: metadata {dims} is not a model shape")
    if "mlp_hidden" in meta:  # written by trainers with --mlp-hidden; 0 = the default 4C
        hidden = get("mlp_hidden", int)
        if hidden < 0:
            raise ValueError(f"{path}: metadata mlp_hidden={hidden} is negative")
        dims["mlp_hidden"] = hidden
    return Config(variant=variant, **dims)


def tensor_of(path, t, name, shape):
    """One tensor of the checkpoint as float32, checked against the parameter table's shape."""
    if name not in t:
        raise ValueError(f"{path}: no tensor '{name}' (incomplete checkpoint)")
    if tuple(t[name].shape) != tuple(shape):
        raise ValueError(f"{path}: tensor '{name}' has shape {tuple(t[name].shape)}, the model needs {tuple(shape)}")
    return torch.from_numpy(t[name].astype(np.float32))


def load_checkpoint(path):
    """Returns (cfg, params, state, meta): params name -> float32 tensor; state[kind][name] for kind in
    muon_buf, adam_m, adam_v. A file that is not a whole checkpoint is a ValueError naming it and the reason."""
    try:
        meta, t = tensorfile.read(path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})")
    except (struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: corrupt tensor file ({e})")
    if meta.get("kind") != "checkpoint":
        raise ValueError(f"{path}: not a train_parallax checkpoint (kind={meta.get('kind')})")
    cfg = config_of(path, meta)
    table = param_table(cfg)
    params = {n: tensor_of(path, t, "param." + n, shape) for n, shape in table}
    state = {k: {n: tensor_of(path, t, f"{k}.{n}", shape) for n, shape in table}
             for k in ("muon_buf", "adam_m", "adam_v")}
    return cfg, params, state, meta


def shard_tokens(path, n):
    """The first n + 1 tokens of a shard (inputs and targets); errors name the shard."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
    from shards import ShardError, read_tokens
    try:
        tokens = read_tokens(path)
    except ShardError as e:
        raise ValueError(f"--shard {e}")
    if len(tokens) < n + 1:
        raise ValueError(f"--shard {path}: {len(tokens)} tokens, fewer than --tokens {n} + 1")
    return torch.from_numpy(tokens[: n + 1].astype(np.int64))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--shard", help="a token shard: report the loss on its first --tokens tokens")
    ap.add_argument("--tokens", type=int, default=1024)
    a = ap.parse_args(argv)
    if not 1 <= a.tokens <= 65536:
        ap.error(f"--tokens: must be in 1..65536, got {a.tokens}")
    cfg, params, _, meta = load_checkpoint(a.checkpoint)
    print(f"{a.checkpoint}: {cfg.variant} d{cfg.depth} C={cfg.width} D={cfg.head_dim}, step {meta.get('step')}, "
          f"{sum(p.numel() for p in params.values()) / 1e6:.1f} M parameters")
    if a.shard:
        tok = shard_tokens(a.shard, a.tokens)
        with torch.no_grad():
            _, loss = forward(cfg, params, tok[:-1].unsqueeze(0), tok[1:].unsqueeze(0))
        print(f"reference loss on the first {a.tokens} tokens of {a.shard}: {loss.item():.4f}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ValueError as e:
        print(f"load_checkpoint.py: {e}", file=sys.stderr)
        sys.exit(2)
