"""Token shards in the llm.c format (spec section 4), so that shards made by llm.c's or modded-nanogpt's
FineWeb scripts load unchanged: 256 int32 header (magic 20240520, version 1, token count), then the
tokens as uint16. Documents are separated by <|endoftext|> (50256).

  python3 data/shards.py show SHARD [N]     header, checks, and the first N tokens decoded (default 200)
  python3 data/shards.py check GLOB...      checks every shard; exit 1 naming the first bad one
"""
import glob
import os
import struct
import sys

import numpy as np

MAGIC, VERSION = 20240520, 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VOCAB = 50257
SHARD_TOKENS = 10_000_000


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


def write_split(out, prefix, arrays):
    """Concatenates token arrays (documents) into OUT/PREFIX_NNN.bin shards of about SHARD_TOKENS each;
    returns the paths. An empty split still gets one (empty) shard."""
    paths, buf, n, idx = [], [], 0, 0

    def flush():
        nonlocal buf, n, idx
        path = os.path.join(out, f"{prefix}_{idx:03d}.bin")
        write_shard(path, np.concatenate(buf) if buf else np.zeros(0, np.uint16))
        paths.append(path)
        buf, n, idx = [], 0, idx + 1

    for a in arrays:
        buf.append(a)
        n += len(a)
        if n >= SHARD_TOKENS:
            flush()
    if buf or not paths:
        flush()
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
    return count


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


def main(argv):
    if len(argv) < 2 or argv[0] not in ("show", "check"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        if argv[0] == "check":
            total = 0
            for p in expand(argv[1:]):
                n = len(read_tokens(p))
                total += n
                print(f"{p}: ok, {n} tokens")
            print(f"{total} tokens in all")
            return
        path, n = argv[1], int(argv[2]) if len(argv) > 2 else 200
        tokens = read_tokens(path)
        docs = int((tokens == 50256).sum())
        print(f"{path}: magic {MAGIC}, version {VERSION}, {len(tokens)} tokens, {docs} <|endoftext|>")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from tokenizer import Tokenizer
        print(Tokenizer().decode(tokens[:n].tolist()))
    except ShardError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
