"""Synthetic recall tasks in the form of the MAD benchmark (Poli et al. 2024, "Mechanistic Design and Scaling of
Hybrid Architectures"; github.com/athms/mad-lab), generated deterministically from a seed, written as token
shards the trainer reads plus a loss mask that marks the answer tokens.

  python3 data/recall_tasks.py --task recall DIR [--train-examples 12800] [--val-examples 1280] [--seed S]

writes DIR/train_000.bin, DIR/train_000.mask, DIR/val_000.bin, DIR/val_000.mask and prints the seed. The tasks,
with MAD's baseline settings (symbols are GPT-2 ids 32..63, which decode as A..Z [ \\ ] ^ _ `):
  recall          in-context associative recall, 128 tokens: 64 key-value pairs (keys from 8 symbols, values
                  from 8 others, one value per key within an example); the answers are the values of keys seen
                  before in the example (MAD's multi-query form); the last pair repeats a seen key.
  noisy_recall    the same with 16 noise symbols: each pair but the last is two noise tokens with probability
                  0.2 (one pair is always a real one); noise is never an answer.
  selective_copy  256 tokens: 16 data tokens (14 symbols) scattered among 223 blanks, a copy token, then the 16
                  data tokens in order; those 16 are the answers.
Differences from MAD: the model trains on the answers only (MAD trains on every next token and tests on the
answers), and selective copying is next-token prediction, so after the copy token the model sees the answers
it has given so far (MAD feeds blanks there).

Layout. Every example is exactly SEQ_LEN tokens (128 or 256: the trainer's --seq-len), examples back to back,
then one <|endoftext|>: a shard of n examples holds n x SEQ_LEN + 1 tokens, so the trainer's windows (SEQ_LEN
inputs and the SEQ_LEN next tokens, at offsets 0, SEQ_LEN, 2 SEQ_LEN, ...) hold one example each, in training
and in validation, and no example straddles two windows.

The loss mask (SHARD.mask beside SHARD.bin; trainer/loss_mask.h reads it): a 256 int32 header (magic 20261219,
version 1, the shard's token count, the example length SEQ_LEN), then one uint8 per token of the shard: 1 when
the token is an answer (its prediction is scored), else 0.
"""
import argparse
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shards import HEADER_INTS, write_shard  # noqa: E402

MASK_MAGIC, MASK_VERSION = 20261219, 1
BASE = 32          # GPT-2 id of symbol 0 ('A')
EOT = 50256

# MAD's baseline settings of each task
TASKS = {
    "recall": {"seq_len": 128, "keys": 8, "values": 8, "noise": 0, "frac_noise": 0.0},
    "noisy_recall": {"seq_len": 128, "keys": 8, "values": 8, "noise": 16, "frac_noise": 0.2},
    "selective_copy": {"seq_len": 256, "symbols": 14, "copy": 16},
}


def recall_example(rng, seq_len, keys, values, noise, frac_noise):
    """(tokens, answers) in symbols: seq_len // 2 pairs, the last one a seen key with its value. A pair is
    noise with probability frac_noise, except one chosen pair and the last."""
    n_pairs = seq_len // 2
    real = rng.randrange(n_pairs - 1)
    kv, toks, ans = {}, [], []
    for i in range(n_pairs - 1):
        if frac_noise > 0 and i != real and rng.random() < frac_noise:
            toks += [keys + values + rng.randrange(noise) for _ in range(2)]
            ans += [0, 0]
            continue
        k = rng.randrange(keys)
        seen = k in kv
        if not seen:
            kv[k] = keys + rng.randrange(values)
        toks += [k, kv[k]]
        ans += [0, int(seen)]
    k = rng.choice(sorted(kv))
    return toks + [k, kv[k]], ans + [0, 1]


def selective_copy_example(rng, seq_len, symbols, copy):
    """(tokens, answers) in symbols: `copy` data tokens among blanks (symbol `symbols`), the copy token
    (symbols + 1), then the data tokens again, as the answers."""
    blank, go = symbols, symbols + 1
    data = [rng.randrange(symbols) for _ in range(copy)]
    n_blank = seq_len - 2 * copy - 1
    slots = sorted(rng.sample(range(n_blank + copy), copy))   # where the data tokens sit among the blanks
    body = [blank] * (n_blank + copy)
    for s, d in zip(slots, data):
        body[s] = d
    return body + [go] + data, [0] * (n_blank + copy + 1) + [1] * copy


def example(task, rng):
    cfg = dict(TASKS[task])
    if task == "selective_copy":
        return selective_copy_example(rng, **cfg)
    return recall_example(rng, **cfg)


def generate(task, n, seed, split):
    """n examples of one split as GPT-2 ids and the answer mask, each a list of n x seq_len + 1 (the last token
    <|endoftext|>, not an answer). The split's examples come from their own stream of the seed."""
    rng = random.Random(f"{task}:{split}:{seed}")   # a str seed hashes the same in every Python 3
    toks, mask = [], []
    for _ in range(n):
        t, a = example(task, rng)
        toks += [BASE + x for x in t]
        mask += a
    return toks + [EOT], mask + [0]


def mask_path(shard):
    """SHARD.bin -> SHARD.mask (another name: .mask appended), as trainer/loss_mask.h finds it."""
    return (shard[:-4] if shard.endswith(".bin") else shard) + ".mask"


def write_mask(path, mask, example_len):
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:4] = [MASK_MAGIC, MASK_VERSION, len(mask), example_len]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(mask, dtype=np.uint8).tobytes())
    os.replace(tmp, path)


def write_task(task, out, train_examples, val_examples, seed):
    """The two splits' shards and masks in OUT; returns {split: (examples, tokens, answers)}."""
    os.makedirs(out, exist_ok=True)
    done = {}
    for split, n in (("train", train_examples), ("val", val_examples)):
        toks, mask = generate(task, n, seed, split)
        shard = os.path.join(out, f"{split}_000.bin")
        write_shard(shard, toks)
        write_mask(mask_path(shard), mask, TASKS[task]["seq_len"])
        done[split] = (n, len(toks), sum(mask))
    return done


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--train-examples", type=int, default=12800, help="MAD's 12800 (default)")
    ap.add_argument("--val-examples", type=int, default=1280, help="MAD's 1280 (default)")
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    a = ap.parse_args(argv)
    if a.train_examples < 1 or a.val_examples < 1:
        ap.error("--train-examples and --val-examples must be at least 1")
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    done = write_task(a.task, a.out, a.train_examples, a.val_examples, seed)
    parts = [f"{split} {n} examples, {t} tokens, {k} answers" for split, (n, t, k) in done.items()]
    print(f"recall_tasks: {a.task} seed {seed}, --seq-len {TASKS[a.task]['seq_len']}: {'; '.join(parts)} in {a.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
