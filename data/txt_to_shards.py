"""Turns a folder of your own .txt files (UTF-8, one document per file) into llm.c token shards.
  python3 data/txt_to_shards.py FOLDER OUT_DIR [--val-every N]
writes OUT_DIR/train_NNN.bin and OUT_DIR/val_000.bin (every Nth file, by sorted name, goes to validation;
default 100, 0 = none). Train with --train-data 'OUT_DIR/train_*.bin' --val-data 'OUT_DIR/val_*.bin'.
"""
import argparse
import glob
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from shards import write_split  # noqa: E402
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


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("out")
    ap.add_argument("--val-every", type=int, default=100)
    a = ap.parse_args(argv)
    if not os.path.isdir(a.folder):
        ap.error(f"{a.folder}: not a folder")
    if a.val_every < 0:
        ap.error(f"--val-every: must not be negative, got {a.val_every}")
    paths = sorted(glob.glob(os.path.join(a.folder, "**", "*.txt"), recursive=True))
    if not paths:
        ap.error(f"{a.folder}: no .txt files")
    texts = [read_document(p) for p in paths]  # every file is checked before anything is written
    tok = Tokenizer()
    train, val = [], []
    for i, text in enumerate(texts):
        ids = np.array([EOT] + tok.encode(text), dtype=np.uint16)
        (val if a.val_every and i % a.val_every == a.val_every - 1 else train).append(ids)
    os.makedirs(a.out, exist_ok=True)
    for prefix, arrays in (("train", train), ("val", val)):
        for p in write_split(a.out, prefix, arrays):
            print(f"wrote {p}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
