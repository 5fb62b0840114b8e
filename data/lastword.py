"""A LAMBADA-style last-word test built offline from the clean-prose validation split (valprose_*.bin,
held out of training by data/build_corpus.py): passages of SENTENCES consecutive sentences whose final
sentence ends in a word of at least MIN_LETTERS letters; the target is that word (its tokens, ' word'),
the context everything before it, after an <|endoftext|>. Deterministic: the shards decide every passage.
Written in llm.c's evaluation layout (data/eval_format.py) with one completion per example, label 0.
  python3 data/lastword.py [--shards GLOB] [--out FILE]
The trainer reports accuracy (every target token the greedy choice) and perplexity, defined as
exp(mean over passages of the target word's summed token loss): a per-word perplexity, as LAMBADA's.
"""
import argparse
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eval_format import EvalFileError, write_evalfile  # noqa: E402
from shards import read_tokens  # noqa: E402
from tokenizer import EOT, Tokenizer  # noqa: E402

SENTENCES = 5      # per passage: 4 of context and the one whose last word is the target
MIN_LETTERS = 3    # a target shorter than this is mostly a function word
MAX_TOKENS = 256   # a longer passage is dropped (the trainer left-truncates to --seq-len as well)
SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)")
LAST_WORD = re.compile(r" ([A-Za-z]+)[.!?][\"')\]]*$")


def documents(tokens):
    """The texts between <|endoftext|> tokens."""
    cuts = [i for i, t in enumerate(tokens) if t == EOT] + [len(tokens)]
    return [tokens[a + 1:b] for a, b in zip(cuts, cuts[1:]) if b > a + 1]


def passages(text):
    """(context, word) of each group of SENTENCES sentences, in order, groups not overlapping."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    start = 0
    for k in range(SENTENCES - 1, len(ends), SENTENCES):
        piece = text[start:ends[k]].strip()
        start = ends[k]
        m = LAST_WORD.search(piece)
        if m and len(m.group(1)) >= MIN_LETTERS:
            yield piece[:m.start()], m.group(1)


def build(tokens, tok):
    """Examples (label 0, context tokens, [target tokens]) from the tokens of the prose shards."""
    out = []
    for doc in documents(tokens):
        for ctx, word in passages(tok.decode(doc)):
            c, w = tok.encode(ctx), tok.encode(" " + word)
            # the pieces must tokenize as the whole does, so the target is what the model sees in running text
            if c + w != tok.encode(ctx + " " + word) or len(c) + len(w) + 1 > MAX_TOKENS:
                continue
            out.append((0, [EOT] + c, [w]))
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", default=os.path.join(HERE, "shards", "valprose_*.bin"))
    ap.add_argument("--out", default=os.path.join(HERE, "shards", "lastword.bin"))
    a = ap.parse_args(argv)
    paths = sorted(glob.glob(a.shards))
    if not paths:
        sys.exit(f"error: --shards {a.shards}: no file matches (make data builds valprose_*.bin)")
    tokens = [int(t) for p in paths for t in read_tokens(p)]
    examples = build(tokens, Tokenizer())
    if not examples:
        sys.exit(f"error: --shards {a.shards}: no passage found")
    try:
        write_evalfile(a.out, examples)
    except EvalFileError as e:
        sys.exit(f"error: {e}")
    print(f"{a.out}: {len(examples)} passages from {len(paths)} shard(s)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
