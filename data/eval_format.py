"""Multiple-choice evaluation files in llm.c's layout (its dev/data/data_common.py write_evalfile), so a
HellaSwag file made for llm.c loads here unchanged and ours load there:
  header: 256 int32 (magic 20240522, version 1, number of examples, longest example in bytes)
  per example, uint16 little-endian: 65535 (start), bytes of the example (these fields included), example
  index, label, number of completions, then the context (count, tokens) and each completion (count, tokens)
HellaSwag has 4 completions per example; the last-word test (data/lastword.py) uses the same layout with 1
completion, the target word, and label 0. read_evalfile checks every field and names the file on a refusal.
"""
import os

import numpy as np

MAGIC, VERSION = 20240522, 1
HEADER_INTS = 256
START = 65535
VOCAB = 50257


class EvalFileError(ValueError):
    pass


def write_evalfile(path, examples):
    """examples: list of (label, context tokens, list of completion token lists)."""
    if len(examples) >= 1 << 16:
        raise EvalFileError(f"{path}: {len(examples)} examples, the layout holds at most 65535")
    stream, longest = [], 0
    for idx, (label, ctx, ends) in enumerate(examples):
        ex = [START, 0, idx, label, len(ends), len(ctx)] + list(ctx)
        for e in ends:
            ex += [len(e)] + list(e)
        if not 0 <= label < len(ends):
            raise EvalFileError(f"{path}: example {idx}: label {label} of {len(ends)} completions")
        ex[1] = 2 * len(ex)
        if ex[1] >= 1 << 16:
            raise EvalFileError(f"{path}: example {idx} is {ex[1]} bytes, the layout holds at most 65535")
        longest = max(longest, ex[1])
        stream += ex
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:4] = [MAGIC, VERSION, len(examples), longest]
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(header.tobytes())
            f.write(np.array(stream, dtype="<u2").tobytes())
        os.replace(path + ".tmp", path)
    except OSError as e:
        raise EvalFileError(f"{path}: cannot write ({e.strerror})")


def read_evalfile(path, completions=None):
    """Returns a list of (label, context, [completion, ...]) with every field checked (the trainer's reader,
    trainer/eval_file.h, refuses the same files). completions: the count every example must have."""
    def bad(why):
        raise EvalFileError(f"{path}: {why}")
    raw = open(path, "rb").read()
    if len(raw) < 4 * HEADER_INTS:
        bad(f"{len(raw)} bytes, shorter than the {4 * HEADER_INTS}-byte header")
    h = np.frombuffer(raw[:4 * HEADER_INTS], dtype="<i4")
    if h[0] != MAGIC:
        bad(f"magic {h[0]}, expected {MAGIC} (llm.c's evaluation file)")
    if h[1] != VERSION:
        bad(f"version {h[1]}, expected {VERSION}")
    body = raw[4 * HEADER_INTS:]
    if len(body) % 2:
        bad("odd number of bytes after the header")
    s = np.frombuffer(body, dtype="<u2").astype(np.int64)
    out, pos = [], 0
    for idx in range(int(h[2])):
        if pos + 6 > len(s):
            bad(f"example {idx}: cut short (the header says {h[2]} examples)")
        start, nbytes, _, label, nc = s[pos:pos + 5]
        if start != START:
            bad(f"example {idx}: no start marker {START}")
        end = pos + nbytes // 2
        if nbytes % 2 or nbytes > h[3] or end > len(s):
            bad(f"example {idx}: {nbytes} bytes, beyond the file or the header's longest ({h[3]})")
        if nc < 1 or (completions is not None and nc != completions):
            bad(f"example {idx}: {nc} completions, expected {completions or 'at least 1'}")
        if label >= nc:
            bad(f"example {idx}: label {label} out of range (0 to {nc - 1})")
        parts, p = [], pos + 5
        for k in range(nc + 1):
            n = s[p] if p < end else -1
            if n < 0 or p + 1 + n > end or n == 0:   # an empty context leaves an ending's first token unscored
                bad(f"example {idx}: part {k} runs past the example's {nbytes} bytes or is empty")
            parts.append(s[p + 1:p + 1 + n].tolist())
            p += 1 + n
        if p != end:
            bad(f"example {idx}: {2 * (end - p)} bytes left over after its completions")
        if any(t >= VOCAB for part in parts for t in part):
            bad(f"example {idx}: a token >= {VOCAB}")
        out.append((int(label), parts[0], parts[1:]))
        pos = end
    if pos != len(s):
        bad(f"{2 * (len(s) - pos)} bytes after the last of {h[2]} examples")
    return out
