"""Turns a folder of your own .txt files (UTF-8, one document per file) into llm.c token shards.
  python3 data/txt_to_shards.py FOLDER OUT_DIR [--val-every N] [--min-tokens N]
writes OUT_DIR/train_NNN.bin and OUT_DIR/val_000.bin (every Nth file, by sorted name, goes to validation;
default 100; 0 = no validation shard, then give the trainer --val-data of your own) and removes the
train_NNN.bin / val_NNN.bin an earlier run left there. Train with
  --train-data 'OUT_DIR/train_*.bin' --val-data 'OUT_DIR/val_*.bin'
The trainer refuses a shard with fewer tokens than one batch (--batch x --seq-len + 1, 32769 at its
defaults), so every shard written here has at least --min-tokens (default 32769): a short last shard joins
the one before it, and a split with fewer tokens in all is refused before anything is written. For a small
folder pass a smaller --min-tokens and train with --batch B --seq-len T, B x T + 1 <= that.
"""
import argparse
import glob
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from shards import DEFAULT_BATCH_TOKENS, ShardError, remove_stale, write_split  # noqa: E402
from tokenizer import EOT, Tokenizer  # noqa: E402


def read_document(path):
    """UTF-8 text; a file that cannot be read or is not text is an error naming it and the reason."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"{path}: not a text file (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 (byte {e.start}: {e.reason})")


def tokenize_all(texts, paths):
    """One token array per text (each starts with <|endoftext|>), with a progress line every few seconds."""
    tok, out = Tokenizer(), []
    t0 = last = time.time()
    done_bytes, total_bytes = 0, sum(len(t) for t in texts)
    for i, (text, path) in enumerate(zip(texts, paths)):
        out.append(np.array([EOT] + tok.encode(text), dtype=np.uint16))
        done_bytes += len(text)
        now = time.time()
        if now - last > 2 or i == len(texts) - 1:
            print(f"tokenized {i + 1}/{len(texts)} files ({os.path.basename(path)}), "
                  f"{sum(map(len, out)):,} tokens, {100 * done_bytes / max(1, total_bytes):.0f}% of the text, "
                  f"{now - t0:.0f} s", file=sys.stderr, flush=True)
            last = now
    return out


def check_split_sizes(train, val, val_every, n_files, min_tokens):
    """Both splits big enough for the trainer, checked before anything is written."""
    n_train = sum(map(len, train))
    if n_train < min_tokens:
        raise ValueError(f"training: {n_train} tokens, fewer than --min-tokens {min_tokens} (the trainer needs more "
                         f"tokens in a shard than one batch): add text, or pass a smaller --min-tokens and "
                         f"train with --batch x --seq-len below it")
    if not val_every:
        return
    if not val:
        raise ValueError(f"--val-every {val_every}: no validation file among {n_files} (every {val_every}th by "
                         f"sorted name): pass --val-every {max(2, n_files // 10)} or less, or 0 for no validation shard")
    n_val = sum(map(len, val))
    if n_val < min_tokens:
        raise ValueError(f"--val-every {val_every}: the {len(val)} validation files hold {n_val} tokens, fewer than "
                         f"--min-tokens {min_tokens}: pass a smaller --val-every (more files to validation) or "
                         f"--min-tokens, or 0 for no validation shard")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("out")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--min-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    a = ap.parse_args(argv)
    if not os.path.isdir(a.folder):
        ap.error(f"{a.folder}: not a folder")
    if a.val_every < 0:
        ap.error(f"--val-every: must not be negative, got {a.val_every}")
    if a.min_tokens < 2:
        ap.error(f"--min-tokens: must be at least 2 (one input and its target), got {a.min_tokens}")
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        ap.error(f"{a.out}: exists and is not a folder")
    paths = sorted(glob.glob(os.path.join(glob.escape(a.folder), "**", "*.txt"), recursive=True))
    if not paths:
        ap.error(f"{a.folder}: no .txt files")
    texts = [read_document(p) for p in paths]  # every file is checked before anything is written
    tokens = tokenize_all(texts, paths)
    is_val = [a.val_every and i % a.val_every == a.val_every - 1 for i in range(len(paths))]
    train = [t for t, v in zip(tokens, is_val) if not v]
    val = [t for t, v in zip(tokens, is_val) if v]
    check_split_sizes(train, val, a.val_every, len(paths), a.min_tokens)
    os.makedirs(a.out, exist_ok=True)
    for prefix, arrays in (("train", train), ("val", val)):
        if prefix == "val" and not a.val_every:
            remove_stale(a.out, "val", [])
            print("no validation shard (--val-every 0): give the trainer --val-data of your own")
            continue
        for p in write_split(a.out, prefix, arrays, a.min_tokens):
            print(f"wrote {p}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ValueError, ShardError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        sys.exit(2)
