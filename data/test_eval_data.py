"""CPU tests of the downstream evaluation data: the last-word builder (data/lastword.py) and the evaluation
file reader (data/eval_format.py, llm.c's HellaSwag layout) on small files made here. With a trainer binary
as argument, also its --hellaswag / --lastword refusals, before any GPU work (--dry-run).
  python3 data/test_eval_data.py [./train_parallax]
One line per check: PASS, FAIL or SKIP. Runs in CI.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "dev"))
import eval_format as ef  # noqa: E402
import lastword  # noqa: E402
import shards  # noqa: E402
from checks import Checks  # noqa: E402
from tokenizer import EOT, Tokenizer  # noqa: E402

PROSE = ("Anne walked to the window and looked out. The rain had stopped at last. Her sister was still asleep "
         "upstairs. Nobody had called since the morning. She thought of the letter again. "
         "It was a long road to Bath. The horses were tired. Mr. Elliot spoke of the weather, and then of the "
         "house. Lady Russell listened politely. Everyone agreed it had been a very pleasant evening. "
         "The end came quickly. A B C. They ate. It was an odd day. Then, at last, she smiled at him.")


def test_lastword(c, tok, tmp):
    docs = [PROSE, PROSE.replace("Anne", "Mary")]
    toks = []
    for d in docs:
        toks += [EOT] + tok.encode(d)
    shard = os.path.join(tmp, "valprose_000.bin")
    shards.write_shard(shard, np.array(toks, dtype=np.uint16))
    outs = []
    for k in range(2):
        out = os.path.join(tmp, f"lastword{k}.bin")
        r = subprocess.run([sys.executable, os.path.join(HERE, "lastword.py"), "--shards", shard, "--out", out],
                           capture_output=True, text=True)
        outs.append(open(out, "rb").read() if r.returncode == 0 else b"")
    c.check("lastword deterministic", outs[0] and outs[0] == outs[1], f"two builds, {len(outs[0])} bytes each, identical")
    ex = ef.read_evalfile(os.path.join(tmp, "lastword0.bin"), 1)
    want = [w for d in docs for _, w in lastword.passages(d)]
    got = [tok.decode(e[0]) for _, _, e in ex]
    c.check("lastword targets", got == [" " + w for w in want] and want[:3] == ["again", "politely", "day"],
            f"{len(ex)} passages, targets {got}: the last word of every {lastword.SENTENCES}th sentence")
    ok = True
    for (label, ctx, (end,)), w in zip(ex, want):
        text = tok.decode(ctx[1:])
        full = tok.decode(ctx[1:] + end)
        # the context stops just before ' word'; passage text = context + ' ' + word + the final punctuation
        ok &= label == 0 and ctx[0] == EOT and full == text + " " + w and not text.endswith(w) and full in "\n".join(docs)
    c.check("lastword contexts", ok and len(ex) == len(want), "each context is the passage up to its target, "
            "never the target itself, starts with <|endoftext|>, and is text of the shard")
    short = [w for _, w in lastword.passages("One. Two. Three. Four. It was so.")]
    c.check("lastword short words dropped", short == [], f"a final word of 2 letters gives no passage: {short}")


def example(label=1, ctx=(10, 11, 12), ends=((20,), (21, 22), (23,), (24, 25, 26))):
    return (label, list(ctx), [list(e) for e in ends])


def corrupt(path, fn):
    raw = bytearray(open(path, "rb").read())
    fn(raw)
    open(path, "wb").write(bytes(raw))


def refusal(c, name, path, fn, want, completions=4):
    ef.write_evalfile(path, [example(), example(label=3)])
    corrupt(path, fn)
    try:
        ef.read_evalfile(path, completions)
        c.check(f"reader refuses {name}", False, "accepted")
    except ef.EvalFileError as e:
        c.check(f"reader refuses {name}", str(e).startswith(path) and want in str(e), str(e))


def set_u16(raw, i, v):   # uint16 i of the stream after the header
    o = 4 * ef.HEADER_INTS + 2 * i
    raw[o:o + 2] = int(v).to_bytes(2, "little")


def test_reader(c, tmp):
    path = os.path.join(tmp, "hs.bin")
    exs = [example(), example(label=3, ctx=range(300)), example(label=0)]
    ef.write_evalfile(path, exs)
    got = ef.read_evalfile(path, 4)
    c.check("reader good file", got == [(l, list(x), [list(e) for e in es]) for l, x, es in exs],
            f"{len(got)} examples read back as written")
    refusal(c, "truncated file", path, lambda r: r.__delitem__(slice(len(r) - 4, None)), "beyond the file")
    refusal(c, "bad magic", path, lambda r: r.__setitem__(slice(0, 4), (1234).to_bytes(4, "little")), "magic 1234")
    refusal(c, "label out of range", path, lambda r: set_u16(r, 3, 4), "label 4 out of range")
    refusal(c, "too-long example", path, lambda r: set_u16(r, 1, 60000), "60000 bytes")
    refusal(c, "wrong completion count", path, lambda r: None, "expected 1", completions=1)
    ef.write_evalfile(path, [example(), example(ctx=())])
    try:
        ef.read_evalfile(path, 4)
        c.check("reader refuses an empty context", False, "accepted")
    except ef.EvalFileError as e:
        c.check("reader refuses an empty context", "example 1: part 0" in str(e), str(e))
    try:
        ef.write_evalfile(path, [example(ctx=range(40000))])
        c.check("writer refuses an example over 64 KiB", False, "written")
    except ef.EvalFileError as e:
        c.check("writer refuses an example over 64 KiB", "65535" in str(e), str(e))
    unwritable = os.path.join(tmp, "no_such_dir", "x.bin")
    try:
        ef.write_evalfile(unwritable, [example()])
        c.check("writer names a file it cannot write", False, "written")
    except ef.EvalFileError as e:
        c.check("writer names a file it cannot write", str(e).startswith(unwritable) and "cannot write" in str(e), str(e))


def test_trainer(c, binary, tmp):
    """The trainer's reader refuses the same files with the flag and the file named, before any GPU work."""
    path = os.path.join(tmp, "hs_bad.bin")
    ef.write_evalfile(path, [example(), example()])
    corrupt(path, lambda r: set_u16(r, 3, 7))
    data = []
    for name in ("train", "val"):
        data.append(os.path.join(tmp, f"{name}_000.bin"))
        shards.write_shard(data[-1], np.random.default_rng(1).integers(0, 50257, 20000))
    flags = ["--train-data", data[0], "--val-data", data[1], "--prose-val-data", "", "--batch", "4", "--seq-len", "64",
             "--total-batch", "256", "--dry-run", "1", "--out", os.path.join(tmp, "out")]
    good = os.path.join(tmp, "hs_good.bin")
    ef.write_evalfile(good, [example(), example(label=3)])
    r = subprocess.run([binary, "--hellaswag", good, "--lastword", ""] + flags, capture_output=True, text=True)
    c.check("trainer reads a good --hellaswag file", r.returncode == 0 and "--hellaswag " + good + ": 2 examples" in r.stdout,
            f"exit {r.returncode}: {(r.stdout + r.stderr).strip()[-200:]}")
    for flag in ("--hellaswag", "--lastword"):
        r = subprocess.run([binary, flag, path] + flags, capture_output=True, text=True)
        c.check(f"trainer refuses a bad {flag} file", r.returncode == 2 and flag in r.stderr and path in r.stderr,
                f"exit {r.returncode}: {r.stderr.strip()[-200:]}")
    # an empty context (its ending's first token has nothing to be predicted from) and an ending longer than
    # --seq-len 64 (a row would cut the ending itself): refused, the example named
    empty, long_end = os.path.join(tmp, "hs_empty.bin"), os.path.join(tmp, "hs_long.bin")
    ef.write_evalfile(empty, [example(), example(ctx=())])
    ef.write_evalfile(long_end, [example(), example(ends=((1,), (2,), list(range(100, 165)), (4,)))])
    for name, bad, want in (("a directory", tmp, "read failed"), ("an empty context", empty, "example 1: part 0"),
                            ("an ending longer than --seq-len", long_end, "example 1: ending 2 is 65 tokens, longer than --seq-len 64")):
        r = subprocess.run([binary, "--hellaswag", bad, "--lastword", ""] + flags, capture_output=True, text=True)
        c.check(f"trainer refuses {name}", r.returncode == 2 and bad in r.stderr and want in r.stderr,
                f"exit {r.returncode}: {r.stderr.strip()[-200:]}")


def main():
    c = Checks("eval-data")
    tok = Tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        test_lastword(c, tok, tmp)
        test_reader(c, tmp)
        if len(sys.argv) > 1:
            test_trainer(c, sys.argv[1], tmp)
    c.exit()


if __name__ == "__main__":
    main()
