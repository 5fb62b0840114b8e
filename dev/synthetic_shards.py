"""Synthetic token shards for GPU checks on machines without the corpus (the GPU machine has no internet, so
no `make data`): a learnable stream a model's loss falls on, in the llm.c shard format the trainer reads.
  python3 dev/synthetic_shards.py DIR [--train-tokens N] [--val-tokens N] [--seed S]
writes DIR/train_000.bin and DIR/val_000.bin (the same token map, different noise) and prints the seed.
"""
import argparse
import array
import os
import random
import sys


def write_shard(path, tokens):
    """llm.c shard: 256 int32 header (magic 20240520, version 1, count), then uint16 tokens."""
    header = array.array("i", [0] * 256)
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        header.tofile(f)
        array.array("H", tokens).tofile(f)


def token_chain(n, map_seed, noise_seed):
    """A learnable stream: each token follows from the last by a fixed random map over 2000 ids (drawn from
    map_seed, the same for training and validation), with 10% random tokens and an <|endoftext|> every ~300."""
    rng = random.Random(map_seed)
    nxt = [rng.randrange(2000) for _ in range(2000)]
    noise = random.Random(noise_seed)
    out, t = [], 0
    for _ in range(n):
        r = noise.random()
        t = 50256 if r < 0.003 else noise.randrange(2000) if r < 0.1 else nxt[t % 2000]
        out.append(t)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--train-tokens", type=int, default=2_000_000)
    ap.add_argument("--val-tokens", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    a = ap.parse_args()
    if a.train_tokens < 1 or a.val_tokens < 1:
        sys.exit("synthetic_shards: --train-tokens and --val-tokens must be at least 1")
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    os.makedirs(a.dir, exist_ok=True)
    write_shard(os.path.join(a.dir, "train_000.bin"), token_chain(a.train_tokens, seed, seed + 1))
    write_shard(os.path.join(a.dir, "val_000.bin"), token_chain(a.val_tokens, seed, seed + 2))
    print(f"synthetic_shards: {a.train_tokens} training and {a.val_tokens} validation tokens in {a.dir}, seed {seed}")


if __name__ == "__main__":
    main()
