"""Token shards in the llm.c format (spec section 4), so that shards made by llm.c's or modded-nanogpt's
FineWeb scripts load unchanged: 256 int32 header (magic 20240520, version 1, token count), then the
tokens as uint16. Documents are separated by <|endoftext|> (50256).

  python3 data/shards.py show SHARD [N]     header, checks, and the first N tokens decoded (default 200)
  python3 data/shards.py check GLOB...      checks every shard; exit 2 naming the first bad one

`check` applies the trainer's rules (trainer/dataloader.h): the header (magic, version, a size that matches the
count), at least one token, every id < 50257; test_data.py checks that both refuse the same files. A glob may
take in the files that sit beside the shards, the llm.c tokenizer file (gpt2_tokenizer.bin, magic 20240328)
and llm.c evaluation files (lastword.bin, magic 20240522): they are named and skipped. A shard needs
more tokens than one batch (B x T + 1; 32 x 1024 + 1 at the trainer's defaults): `check` notes the ones
shorter than that, which train only with a smaller --batch or --seq-len.
"""
import glob
import os
import re
import struct
import sys

import numpy as np

MAGIC, VERSION = 20240520, 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VOCAB = 50257
SHARD_TOKENS = 10_000_000
TOKENIZER_MAGIC = 20240328  # the llm.c decode file that sits beside the shards
EVALFILE_MAGIC = 20240522   # llm.c's evaluation files (data/eval_format.py): make data's lastword.bin
# the files of other kinds that a glob like 'data/shards/*.bin' takes in, by their magic
COMPANION_FILES = {TOKENIZER_MAGIC: "the llm.c tokenizer file", EVALFILE_MAGIC: "an llm.c evaluation file"}
DEFAULT_BATCH_TOKENS = 32 * 1024 + 1  # the trainer's default --batch x --seq-len, plus the last target


class ShardError(ValueError):
    pass


def write_shard(path, tokens):
    """Writes to path + '.tmp' and renames, so a crash never leaves a half shard under the real name."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= VOCAB):
        raise ShardError(f"{path}: token ids must be in [0, {VOCAB})")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = [MAGIC, VERSION, tokens.size]
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    os.replace(tmp, path)


def shard_name(prefix, idx):
    return f"{prefix}_{idx:03d}.bin"


def remove_stale(out, prefix, keep):
    """Deletes OUT/PREFIX_NNN.bin files (exactly this naming pattern) that are not in keep: shards of an
    earlier, longer run that a glob like 'OUT/train_*.bin' would still pick up."""
    pattern = re.compile(re.escape(prefix) + r"_\d{3}\.bin")
    keep = {os.path.basename(p) for p in keep}
    for name in sorted(os.listdir(out)):
        if pattern.fullmatch(name) and name not in keep:
            os.remove(os.path.join(out, name))
            print(f"removed {os.path.join(out, name)} (a shard of an earlier run)", file=sys.stderr)


def write_split(out, prefix, arrays, min_tokens=DEFAULT_BATCH_TOKENS):
    """Concatenates token arrays (documents) into OUT/PREFIX_NNN.bin shards of about SHARD_TOKENS each and
    removes that prefix's stale shards; returns the paths. A last piece under min_tokens joins the shard
    before it, since the trainer refuses a shard shorter than one batch; a split under min_tokens in all is
    an error, raised before anything is written."""
    paths, buf, n, pending = [], [], 0, None

    def emit(tokens):
        path = os.path.join(out, shard_name(prefix, len(paths)))
        write_shard(path, tokens)
        paths.append(path)

    for a in arrays:
        buf.append(a)
        n += len(a)
        if n >= SHARD_TOKENS:  # held back one shard, so that a short remainder can still join it
            if pending is not None:
                emit(pending)
            pending, buf, n = np.concatenate(buf), [], 0
    rest = np.concatenate(buf) if buf else np.zeros(0, np.uint16)
    if pending is None and len(rest) < min_tokens:
        raise ShardError(f"{os.path.join(out, prefix + '_*.bin')}: {len(rest)} tokens in all, fewer than "
                         f"{min_tokens} (the trainer needs more tokens in every shard than one batch)")
    if pending is not None and len(rest) < min_tokens:
        pending, rest = np.concatenate([pending, rest]), rest[:0]
    if pending is not None:
        emit(pending)
    if len(rest):
        emit(rest)
    remove_stale(out, prefix, paths)
    return paths


def read_header(path):
    """Checks magic, version and size against the count; returns the token count."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise ShardError(f"{path}: cannot read ({e.strerror})")
    if len(head) < HEADER_BYTES:
        raise ShardError(f"{path}: {size} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, count = struct.unpack_from("<3i", head)
    if magic != MAGIC:
        raise ShardError(f"{path}: bad magic {magic} (expected {MAGIC}: not an llm.c token shard)")
    if version != VERSION:
        raise ShardError(f"{path}: version {version} (expected {VERSION})")
    if size != HEADER_BYTES + 2 * count:
        raise ShardError(f"{path}: {size} bytes but the header says {count} tokens "
                         f"({HEADER_BYTES + 2 * count} bytes): truncated or corrupt")
    if count == 0:
        raise ShardError(f"{path}: holds no tokens")
    return count


def companion_file(path):
    """(magic, what) for the llm.c tokenizer file or an evaluation file, told by the magic (a glob like
    'data/shards/*.bin' takes them in); None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    magic = struct.unpack("<i", head)[0] if len(head) == 4 else None
    return (magic, COMPANION_FILES[magic]) if magic in COMPANION_FILES else None


def read_tokens(path):
    """Header check plus every token < 50257; returns the tokens (uint16)."""
    count = read_header(path)
    tokens = np.fromfile(path, dtype="<u2", offset=HEADER_BYTES, count=count)
    bad = np.nonzero(tokens >= VOCAB)[0]
    if bad.size:
        raise ShardError(f"{path}: token {int(tokens[bad[0]])} at position {int(bad[0])} is >= {VOCAB}")
    return tokens


def expand(patterns):
    paths = []
    for p in patterns:
        hits = sorted(glob.glob(p))
        if not hits:
            raise ShardError(f"{p}: no file matches")
        paths += hits
    return paths


def check(paths):
    """Checks every file by the trainer's rules, skipping the tokenizer and evaluation files; raises ShardError
    at the first bad one, so a clean run means the trainer will take every shard."""
    total, n_shards = 0, 0
    for p in paths:
        other = companion_file(p)
        if other:
            print(f"{p}: skipped: {other[1]} (magic {other[0]}), not a token shard")
            continue
        n = len(read_tokens(p))
        total, n_shards = total + n, n_shards + 1
        note = ""
        if n < DEFAULT_BATCH_TOKENS:
            note = (f" (fewer than the {DEFAULT_BATCH_TOKENS} of one batch at the trainer's defaults: "
                    f"needs --batch x --seq-len < {n})")
        print(f"{p}: ok, {n} tokens{note}")
    if n_shards == 0:
        raise ShardError(f"{' '.join(map(str, paths))}: no token shard among the files")
    print(f"{total} tokens in {n_shards} shards")


def main(argv):
    if len(argv) < 2 or argv[0] not in ("show", "check"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        if argv[0] == "check":
            check(expand(argv[1:]))
            return
        path, n = argv[1], 200
        if len(argv) > 2:
            if not argv[2].isdigit():
                raise ShardError(f"show: the token count must be a non-negative integer, got '{argv[2]}'")
            n = int(argv[2])
        tokens = read_tokens(path)
        docs = int((tokens == 50256).sum())
        print(f"{path}: magic {MAGIC}, version {VERSION}, {len(tokens)} tokens, {docs} <|endoftext|>")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from tokenizer import Tokenizer
        print(Tokenizer().decode(tokens[:n].tolist()))
    except ShardError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
