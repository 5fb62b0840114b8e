"""CPU tests of the data tools: tokenizer against an independent implementation (js-tiktoken under node) and
the heap BPE against the plain merge loop, round trips, the decode file, shards and their corrupt cases (the
same verdicts as train_parallax's), text-folder import, extractors, the content split and its overlap measure,
the built manifest, the command-line errors of tokenizer.py and dev/load_checkpoint.py.
One line per check: PASS, FAIL or SKIP, the name, what was measured. Runs in CI.
  python3 data/test_data.py [TRAINER]     TRAINER: the train_parallax binary the shard rules are compared
                                          with (default ./train_parallax)
"""
import contextlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import extract as ex  # noqa: E402
import eval_format  # noqa: E402
import overlap  # noqa: E402
import shards  # noqa: E402
from build_corpus import VAL_PERCENT, apt_download, assign_splits, split_of  # noqa: E402
import tokenizer  # noqa: E402
from tokenizer import EOT, LONG_WORD, Tokenizer  # noqa: E402

failures = 0
TEST_TEXT = ("Hello world! It's a test: we'll see, they've gone, I'm here, you'd know, it'll do.\n"
             "Unicode letters: naïve café Ærøskøbing Straße ünïcödé ÀÉÎÕÜ; digits 0123456789, ½ ², "
             "Arabic-Indic ٣٤٥ and fullwidth １２３.\n"
             "Emoji: 🙂🚀👩‍👩‍👧‍👦 🇫🇷 ✔️. CJK: 日本語のテキスト, 中文文本, 한국어 텍스트.\n"
             "Runs of spaces:     five, then\ttab\t\ttwo tabs,\n\n\nthree newlines,   \n trailing   \r\n"
             "Code: for (int i = 0; i < n; i++) { x[i] += 2.5e-3; } // done\n"
             "<|endoftext|> is plain text here. 'quoted' \"double\" — em-dash … ellipsis.   ")


def skip(name, reason):
    print(f"SKIP data: {name}: skipped: {reason}", flush=True)


def check(name, ok, detail):
    global failures
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'} data: {name}: {detail}", flush=True)


def js_tiktoken_encode(text):
    """Token ids from js-tiktoken's gpt2 encoding (installed with npm into data/cache/node once)."""
    node_dir = os.path.join(HERE, "cache", "node")
    if not os.path.isdir(os.path.join(node_dir, "node_modules", "js-tiktoken")):
        os.makedirs(node_dir, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", node_dir,
                        "js-tiktoken@1.0.21"], check=True, capture_output=True)
    script = os.path.join(node_dir, "encode.js")  # beside node_modules, so require() finds it
    with open(script, "w") as f:
        f.write("const {getEncoding} = require('js-tiktoken'); const e = getEncoding('gpt2');\n"
                "// special-token text is ordinary text here, as in our encoder\n"
                "process.stdout.write(JSON.stringify(Array.from(e.encode(require('fs').readFileSync(0, 'utf8'), [], []))));\n")
    p = subprocess.run(["node", script], input=text.encode(), capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode()[-300:])
    return json.loads(p.stdout)


def check_against_js_tiktoken(ours):
    name = "token ids equal js-tiktoken's gpt2 on the test text"
    if shutil.which("node") is None or shutil.which("npm") is None:
        skip(name, "no node/npm on this machine (CI has them)")
        return
    try:
        theirs = js_tiktoken_encode(TEST_TEXT)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        check(name, False, f"js-tiktoken unavailable: {e}")
        return
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    check(name, ours == theirs,
          f"{len(ours)} vs {len(theirs)} tokens" + (f", first difference at {first}" if first is not None else ""))


def plain_bpe(tok, word):
    """The plain merge loop on any length (tok.bpe hands long words to the heap BPE)."""
    saved = tokenizer.LONG_WORD
    tokenizer.LONG_WORD = 1 << 30
    try:
        return tok.bpe(word)
    finally:
        tokenizer.LONG_WORD = saved


def test_tokenizer(tok):
    ours = tok.encode(TEST_TEXT)
    check_against_js_tiktoken(ours)
    check("decode(encode(text)) == text", tok.decode(ours) == TEST_TEXT, f"{len(TEST_TEXT)} characters")
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"data: tokenizer tests seed {seed}")
    rng = random.Random(seed)
    bad = 0
    for _ in range(200):  # fresh random strings from a mixed alphabet
        s = "".join(rng.choice("ab Z9 \n\t'sé日🙂.,-_ ") for _ in range(rng.randint(0, 60)))
        bad += tok.decode(tok.encode(s)) != s
    check("round trip on 200 random strings", bad == 0, f"{bad} failed")
    words = ["".join(rng.choice(rng.choice(["ab", "aab", "etaoin shrdlu", "0123", "xé日🙂"])) for _ in
                     range(rng.randint(LONG_WORD + 1, 400))) for _ in range(200)]
    bad = 0
    for w in words:  # the heap BPE against the plain merge loop, on words past LONG_WORD
        mapped = "".join(tok.byte_encoder[b] for b in w.encode("utf-8"))
        bad += [tok.encoder[p] for p in tok.bpe_long(mapped)] != plain_bpe(tok, mapped)
    check("heap BPE equals the plain merge loop on 200 long random words", bad == 0, f"{bad} differ")
    check("known ids: 'Hello world' -> 15496 995", tok.encode("Hello world") == [15496, 995], str(tok.encode("Hello world")))


def test_decoder_file(tok):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tok.bin")
        tok.write_decoder(path)
        data = open(path, "rb").read()
        header = struct.unpack_from("<256i", data)
        table, pos = [], 1024
        while pos < len(data):
            n = data[pos]
            table.append(data[pos + 1:pos + 1 + n])
            pos += 1 + n
        ids = tok.encode(TEST_TEXT)
        text = b"".join(table[i] for i in ids).decode("utf-8")
        ok = header[:4] == (20240328, 2, 50257, EOT) and len(table) == 50257 and text == TEST_TEXT
        check("llm.c decode file: header, 50257 entries, decodes the test text", ok,
              f"header {header[:4]}, {len(table)} entries")


def test_shards():
    with tempfile.TemporaryDirectory() as d:
        good = os.path.join(d, "good.bin")
        toks = np.random.randint(0, 50257, size=1000).astype(np.uint16)
        shards.write_shard(good, toks)
        back = shards.read_tokens(good)
        check("shard round trip", np.array_equal(back, toks) and os.path.getsize(good) == 1024 + 2000,
              f"{len(back)} tokens, {os.path.getsize(good)} bytes")
        raw = open(good, "rb").read()
        big = bytearray(raw)
        struct.pack_into("<H", big, 1024 + 2 * 17, 50300)
        cases = {
            "bad magic": (struct.pack("<i", 12345) + raw[4:], "bad magic"),
            "wrong version": (raw[:4] + struct.pack("<i", 7) + raw[8:], "version 7"),
            "truncated": (raw[:-10], "truncated"),
            "token >= 50257": (bytes(big), "position 17"),
            "empty file": (b"", "shorter than"),
        }
        for what, (data, reason) in cases.items():
            path = os.path.join(d, what.replace(" ", "_") + ".bin")
            open(path, "wb").write(data)
            try:
                shards.read_tokens(path)
                check(f"corrupt shard refused: {what}", False, "read without error")
            except shards.ShardError as e:
                check(f"corrupt shard refused: {what}", path in str(e) and reason in str(e), str(e))
        try:
            shards.read_tokens(os.path.join(d, "missing.bin"))
            check("missing shard refused", False, "read without error")
        except shards.ShardError as e:
            check("missing shard refused", "missing.bin" in str(e), str(e))


def run_tool(args, timeout=120):
    """A tool's exit status and its stderr (no traceback may be in it)."""
    p = subprocess.run([sys.executable] + args, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace").strip()


def one_line_error(rc, err, needle, after_progress=False):
    """exit 2, no traceback, and one line of error that names the input (needle): all of stderr, or its last
    line for a tool that prints progress lines first."""
    lines = err.splitlines()
    return rc == 2 and "Traceback" not in err and len(lines) >= 1 and needle in lines[-1] and \
        (after_progress or len(lines) == 1)


def test_txt_to_shards(tok):
    exe = [os.path.join(HERE, "txt_to_shards.py")]
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "src"), os.path.join(d, "out")
        os.makedirs(src)
        os.makedirs(out)
        for i in range(3):
            open(os.path.join(src, f"doc{i}.txt"), "w").write(f"Document number {i}. " * 20)
        stale = [os.path.join(out, n) for n in ("train_003.bin", "val_001.bin")]
        kept = [os.path.join(out, n) for n in ("train_3.bin", "trainx_001.bin", "notes.txt")]
        for p in stale + kept:
            open(p, "wb").write(b"x")
        rc, so, err = run_tool(exe + [src, out, "--val-every", "3", "--min-tokens", "50"])
        ok = rc == 0 and len(shards.read_tokens(os.path.join(out, "train_000.bin"))) > 0 \
            and len(shards.read_tokens(os.path.join(out, "val_000.bin"))) > 0
        check("text folder to shards", ok, so.strip().replace("\n", "; ") or err)
        gone = [p for p in stale if not os.path.exists(p)]
        left = [p for p in kept if os.path.exists(p)]
        check("stale train_NNN/val_NNN shards of an earlier run removed, other names kept",
              len(gone) == len(stale) and len(left) == len(kept), f"removed {len(gone)} of {len(stale)}, "
              f"kept {len(left)} of {len(kept)}")
        out2 = os.path.join(d, "out2")
        rc, _, err = run_tool(exe + [src, out2, "--min-tokens", "50"])  # 3 files, every 100th to validation
        last = err.splitlines()[-1] if err else ""
        check("no empty validation shard: too few files for --val-every is refused, nothing written",
              one_line_error(rc, err, "--val-every", True) and not os.path.exists(out2), f"exit {rc}: {last}")
        rc, _, err = run_tool(exe + [src, out2])  # about 250 tokens, under the default batch of 32769
        last = err.splitlines()[-1] if err else ""
        check("a split under one default batch is refused, nothing written",
              one_line_error(rc, err, "--min-tokens", True) and not os.path.exists(out2), f"exit {rc}: {last}")
        open(os.path.join(src, "bad.txt"), "wb").write(b"text\xff\xfe more")
        rc, _, err = run_tool(exe + [src, os.path.join(d, "out3")])
        check("a non-UTF-8 text file is refused, naming it", rc == 2 and "bad.txt" in err, err)

    # a 400k-letter word without spaces: the heap BPE, with progress lines (the plain loop took 263 s)
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(400_000))
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "src"), os.path.join(d, "out")
        os.makedirs(src)
        open(os.path.join(src, "long.txt"), "w").write(word)
        t0 = time.time()
        rc, _, err = run_tool(exe + [src, out, "--val-every", "0", "--min-tokens", "100"], timeout=300)
        dt = time.time() - t0
        back = tok.decode(shards.read_tokens(os.path.join(out, "train_000.bin"))[1:].tolist()) if rc == 0 else ""
        check(f"a 400k-letter word (seed {seed}) takes seconds, with progress output, and round-trips",
              rc == 0 and dt < 60 and "tokenized 1/1 files" in err and back == word, f"exit {rc}, {dt:.1f} s")


def test_write_split():
    """Shard layout rules with small shards: every shard at least min_tokens, nothing lost or reordered,
    stale shards of the prefix removed, a split too small refused before anything is written."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    saved = shards.SHARD_TOKENS
    shards.SHARD_TOKENS = 1000
    try:
        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stderr(io.StringIO()):  # its "removed" lines
            bad = 0
            for _ in range(50):
                docs = [rng.integers(0, 50257, rng.integers(1, 700)).astype(np.uint16) for _ in range(rng.integers(1, 12))]
                if sum(map(len, docs)) < 129:
                    continue
                paths = shards.write_split(d, "train", docs, min_tokens=129)
                got = [shards.read_tokens(p) for p in paths]
                bad += not (np.array_equal(np.concatenate(got), np.concatenate(docs)) and min(map(len, got)) >= 129
                            and sorted(os.listdir(d)) == sorted(os.path.basename(p) for p in paths))
            check(f"write_split: no shard under min_tokens, tokens kept in order, stale shards gone (seed {seed})",
                  bad == 0, f"{bad} of 50 random layouts wrong")
            before = sorted(os.listdir(d))
            try:
                shards.write_split(d, "val", [np.zeros(100, np.uint16)], min_tokens=129)
                check("write_split refuses a split under min_tokens", False, "written")
            except shards.ShardError as e:
                check("write_split refuses a split under min_tokens", sorted(os.listdir(d)) == before, str(e))
    finally:
        shards.SHARD_TOKENS = saved


def test_tokenizer_cli():
    """Bad input to tokenizer.py is a one-line error naming it, exit 2, no traceback."""
    exe = [os.path.join(HERE, "tokenizer.py")]
    cases = [(["decode", "50257"], "50257", "decode of id 50257 (one past the vocabulary)"),
             (["decode", "-1"], "-1", "decode of a negative id"),
             (["decode", "12x"], "12x", "decode of a non-integer"),
             (["encode", b"ab\xffcd"], "0xff", "encode of text that is not UTF-8"),
             (["write-decoder", "/nonexistent-dir/tok.bin"], "/nonexistent-dir/tok.bin", "write-decoder to a missing folder")]
    for args, needle, what in cases:
        rc, _, err = run_tool(exe + args)
        check(f"tokenizer.py refuses {what}", one_line_error(rc, err, needle), f"exit {rc}: {err}")


def test_load_checkpoint_cli():
    """dev/load_checkpoint.py on files that are not whole checkpoints: one-line error naming the file, exit 2.
    The checkpoint is written with the reference tensor-file writer (the trainer's layout, dev/README.md)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        skip("load_checkpoint.py refuses incomplete checkpoints", "no torch in this python3")
        return
    sys.path.insert(0, os.path.join(HERE, "..", "dev"))
    import tensorfile
    from model_ref import Config, param_table
    cfg = Config(variant="softmax", depth=1, width=64)
    tensors = [(f"{k}.{n}", np.zeros(shape, np.float32)) for k in ("param", "muon_buf", "adam_m", "adam_v")
               for n, shape in param_table(cfg)]
    meta = {"kind": "checkpoint", "variant": "softmax", "depth": 1, "width": 64, "head_dim": 64, "vocab": 50257,
            "step": 3}
    exe = os.path.join(HERE, "..", "dev", "load_checkpoint.py")
    with tempfile.TemporaryDirectory() as d:
        whole = os.path.join(d, "whole.ptf")
        tensorfile.write(whole, meta, tensors)
        rc, so, err = run_tool([exe, whole])
        check("load_checkpoint.py reads a whole checkpoint", rc == 0 and "softmax d1" in so, f"exit {rc}: {so.strip() or err}")
        data = open(whole, "rb").read()
        files = {"truncated": data[: len(data) // 2], "cut in its header": data[:30]}
        for what, blob in files.items():
            open(os.path.join(d, what.replace(" ", "_") + ".ptf"), "wb").write(blob)
        tensorfile.write(os.path.join(d, "missing_tensor.ptf"), meta, tensors[:-1])
        tensorfile.write(os.path.join(d, "missing_key.ptf"), {k: v for k, v in meta.items() if k != "width"}, tensors)
        tensorfile.write(os.path.join(d, "bad_depth.ptf"), dict(meta, depth="abc"), tensors)
        tensorfile.write(os.path.join(d, "wrong_shape.ptf"), dict(meta, width=128, head_dim=64), tensors)
        good_shard = os.path.join(d, "good.bin")
        shards.write_shard(good_shard, np.arange(100) % 50257)
        cases = [([os.path.join(d, "truncated.ptf")], "truncated.ptf", "a truncated checkpoint"),
                 ([os.path.join(d, "cut_in_its_header.ptf")], "cut_in_its_header.ptf", "a file cut in its header"),
                 ([os.path.join(d, "missing_tensor.ptf")], "adam_v.lm_head_w", "a checkpoint missing a tensor"),
                 ([os.path.join(d, "missing_key.ptf")], "width", "a checkpoint missing a metadata key"),
                 ([os.path.join(d, "bad_depth.ptf")], "depth", "a checkpoint with depth 'abc'"),
                 ([os.path.join(d, "wrong_shape.ptf")], "wrong_shape.ptf", "tensors that do not match the metadata"),
                 ([os.path.join(d, "none.ptf")], "none.ptf", "a missing file"),
                 ([d], d, "a directory"),
                 ([whole, "--shard", os.path.join(d, "none.bin")], "none.bin", "a missing --shard"),
                 ([whole, "--shard", good_shard, "--tokens", "500"], "good.bin", "a --shard shorter than --tokens")]
        for args, needle, what in cases:
            rc, _, err = run_tool([exe] + args)
            check(f"load_checkpoint.py refuses {what}", one_line_error(rc, err, needle), f"exit {rc}: {err}")


def bad_shards(d):
    """(name, path) of shards each breaking one rule of trainer/dataloader.h, and two good ones."""
    base = list(np.arange(5000) % 50000)
    def write(name, tokens, magic=20240520, version=1, count=None, cut=0, extra=b""):
        header = [0] * 256
        header[:3] = [magic, version, len(tokens) if count is None else count]
        blob = struct.pack("<256i", *header) + struct.pack(f"<{len(tokens)}H", *tokens) + extra
        path = os.path.join(d, name + ".bin")
        open(path, "wb").write(blob[: len(blob) - cut])
        return path
    top = base[:]
    top[4999] = 50256  # the largest id there is
    cases = {
        "good": (write("good", base), True),
        "good, id 50256": (write("good_top", top), True),
        "bad magic": (write("magic", base, magic=7), False),
        "wrong version": (write("version", base, version=2), False),
        "truncated": (write("truncated", base, cut=3), False),
        "bytes past the count": (write("extra", base, extra=b"\0\0"), False),
        "negative count": (write("negative", base, count=-5), False),
        "0 tokens": (write("zero", []), False),
        "header cut short": (write("short_header", [], cut=24), False),
        "empty file": (write("empty", [], cut=1024), False),
        "token id 50257": (write("id50257", base[:17] + [50257] + base[18:]), False),
        "token id 65535": (write("id65535", base[:4000] + [65535] + base[4001:]), False),
    }
    os.makedirs(os.path.join(d, "folder.bin"))
    cases["a directory"] = (os.path.join(d, "folder.bin"), False)
    return cases


def trainer_verdict(exe, shard, val, d):
    """True if train_parallax accepts the shard as --train-data: it got past its input checks (to GPU start;
    on a GPU it trains 0 steps), False if it refused it, naming the file."""
    p = subprocess.run([exe, "--train-data", shard, "--val-data", val, "--batch", "2", "--seq-len", "64",
                        "--depth", "2", "--steps", "0", "--sample-every", "0", "--out", os.path.join(d, "out")],
                       capture_output=True, text=True, timeout=300)
    last = (p.stderr.strip().splitlines() or [""])[-1]
    refused = p.returncode != 0 and shard in last
    return (not refused), f"exit {p.returncode}: {last[-150:]}"


def test_shard_rules(exe):
    """shards.py check and the trainer refuse the same shards (one rule set: trainer/dataloader.h's), and
    check skips the tokenizer and last-word files that 'data/shards/*.bin' takes in."""
    tool = [os.path.join(HERE, "shards.py"), "check"]
    with tempfile.TemporaryDirectory() as d:
        cases = bad_shards(d)
        val = os.path.join(d, "val_good.bin")
        shards.write_shard(val, np.arange(3000) % 50000)
        for what, (path, good) in cases.items():
            rc, _, err = run_tool(tool + [path])
            py_ok = rc == 0
            check(f"shards.py check {'accepts' if good else 'refuses'} a shard: {what}",
                  py_ok == good and (good or one_line_error(rc, err, path)), f"exit {rc}: {err[-150:]}")
            if not os.path.exists(exe):
                skip(f"trainer agrees with shards.py check: {what}", f"{exe} not built (make train_parallax)")
                continue
            tr_ok, detail = trainer_verdict(exe, path, val, d)
            check(f"trainer agrees with shards.py check: {what}", tr_ok == py_ok,
                  f"python {'accepts' if py_ok else 'refuses'}, trainer {'accepts' if tr_ok else 'refuses'} ({detail})")
    with tempfile.TemporaryDirectory() as d:
        Tokenizer().write_decoder(os.path.join(d, "gpt2_tokenizer.bin"))
        eval_format.write_evalfile(os.path.join(d, "lastword.bin"), [(0, [1, 2, 3], [[4, 5]])])   # as make data
        shards.write_shard(os.path.join(d, "train_000.bin"), np.arange(40000) % 50000)
        rc, so, err = run_tool(tool + [os.path.join(d, "*.bin")])
        check("shards.py check 'DIR/*.bin' skips the tokenizer and evaluation files by their magic",
              rc == 0 and "gpt2_tokenizer.bin: skipped" in so and "lastword.bin: skipped" in so
              and "train_000.bin: ok, 40000 tokens" in so and "40000 tokens in 1 shards" in so,
              f"exit {rc}: {so.strip().splitlines()[-1] if so.strip() else err}")


def brute_overlap(train, val, n):
    """Reference: the windows of each stream as tuples, counted by plain set membership."""
    seen = {tuple(t[i:i + n]) for t in train for i in range(len(t) - n + 1)}
    windows = [tuple(v[i:i + n]) for v in val for i in range(len(v) - n + 1)]
    return len(windows), sum(w in seen for w in windows)


def test_content_split():
    """The content split on made-up documents: a candidate that copies 32 tokens of training goes to
    training, 31 tokens does not; a candidate quoting a moved one follows it; two candidates quoting only
    each other stay together in validation. Then the overlap measure against plain set membership."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    W = overlap.WINDOW
    docs = [rng.integers(0, 50257, 300).astype(np.uint16) for _ in range(12)]
    def plant(dst, src, n, at=100):
        docs[dst][at:at + n] = docs[src][50:50 + n]
    plant(6, 0, W)       # candidate 6 copies a window of training document 0
    plant(7, 1, W - 1)   # candidate 7 copies one token less than a window
    plant(8, 6, W, 200)  # candidate 8 quotes candidate 6, which moves
    plant(9, 10, W + 5)  # candidates 9 and 10 quote each other only
    val, moved = overlap.content_split(docs, [6, 7, 8, 9, 10, 11])
    check(f"content split: copies of training move, quoting groups stay whole (seed {seed})",
          sorted(val) == [7, 9, 10, 11] and sorted(moved) == [6, 8], f"val {sorted(val)}, moved {sorted(moved)}")
    train = [np.concatenate([docs[i] for i in range(12) if i not in val])]
    vals = [np.concatenate([docs[i] for i in val])]
    m = overlap.overlap(train, vals)
    windows, found = brute_overlap(train, vals, W)
    check("content split leaves no window of a validation document in training", m["in_train"] == found
          and found <= 3 * (W - 1) and m["windows"] == windows, f"{m['in_train']} of {m['windows']} "
          f"(reference {found} of {windows}; only windows across the {len(val) - 1} joins may match)")
    bad = 0
    for _ in range(20):  # small alphabets and short windows make many real matches
        streams = [rng.integers(0, 3, rng.integers(0, 200)).astype(np.uint16) for _ in range(5)]
        n = int(rng.integers(1, 9))
        m = overlap.overlap(streams[:3], streams[3:], n)
        bad += (m["windows"], m["in_train"]) != brute_overlap(streams[:3], streams[3:], n)
    check("overlap count equals plain set membership on 20 random cases", bad == 0, f"{bad} differ")


def test_assign_splits():
    """build_corpus's split on made-up documents: name proposes, content decides; clean prose is left alone."""
    rng = np.random.default_rng(7)
    names = [f"src/doc{i}" for i in range(400)]
    val_names = [n for n in names if split_of("src", "prose", n) == "val"][:2]
    train_names = [n for n in names if split_of("src", "prose", n) == "train"][:3]
    docs = [("src", "prose", n, "") for n in train_names + val_names] + [("austen", "prose", "austen/persuasion", "")]
    tokens = [rng.integers(0, 50257, 200).astype(np.uint16) for _ in docs]
    tokens[3][10:10 + overlap.WINDOW] = tokens[0][40:40 + overlap.WINDOW]  # first candidate copies training
    tokens[5][10:10 + overlap.WINDOW] = tokens[1][40:40 + overlap.WINDOW]  # so does the clean-prose document
    sp, moved = assign_splits(docs, tokens)
    check("build_corpus split: a copying candidate goes to training, clean prose stays apart",
          sp == ["train"] * 4 + ["val", "valprose"] and moved == [val_names[0]], f"{sp}, moved {moved}")


def test_built_manifest():
    """The built corpus (when data/shards exists): validation's measured 32-token overlap with training is
    in the manifest, below the limit, and the manifest describes the shards that are there."""
    path = os.path.join(HERE, "shards", "manifest.json")
    if not os.path.exists(path):
        skip("built split: validation overlap below 0.1%", "no data/shards (make data builds it)")
        return
    with open(path) as f:
        man = json.load(f)
    leak = man.get("overlap", {}).get("val")
    if leak is None:
        check("built split: validation overlap below 0.1%", False,
              f"{path} has no measured overlap: built by an older build_corpus.py (make data rebuilds it)")
        return
    val = man["splits"]["val"]
    counts = [len(shards.read_tokens(os.path.join(HERE, "shards", s))) for s in val["shards"]]
    check("built split: validation overlap below 0.1%", leak["fraction"] < 0.001 and leak["windows"] > 0,
          f"{leak['in_train']} of {leak['windows']} windows ({100 * leak['fraction']:.4f}%)")
    check("built split: validation holds at least 300k tokens, as the manifest says",
          sum(counts) == val["tokens"] >= 300_000, f"{sum(counts):,} tokens in {len(counts)} shards")


def test_extractors():
    osis = ('<verse osisID="Gen.1.1"/>In the <note type="x">a note</note>beginning<title>T</title> God '
            '&amp; <w lemma="x">created</w>')
    got = ex.osis_to_text(osis)
    check("OSIS: notes and titles dropped, tags stripped", got == "In the beginning God & created", repr(got))
    rst = "Title\n=====\n\nSome :ref:`text <target>` and ``code``.\n\n.. code-block:: c\n\n   int x;\n\nAfter."
    got = ex.rst_to_text(rst)
    check("RST: headings, roles, code blocks", got == "Title\n\nSome text and code.\n\nAfter.", repr(got))
    pod = "=head1 NAME\n\nperlfoo - B<bold> and C<code> L<perlfunc/open>\n\n=cut\n\nsub x {}\n"
    got = ex.pod_to_text(pod)
    check("POD: commands, formatting codes, code after =cut", got == "NAME\n\nperlfoo - bold and code perlfunc/open",
          repr(got))
    md = "# Head\n\nA [link](http://x) and **bold** <b>tag</b>.\n\n[ref]: http://y\n"
    got = ex.markdown_to_text(md)
    check("Markdown: links, emphasis, tags", got == "Head\n\nA link and bold tag.", repr(got))
    brown = "\n\tThe/at jury/nn said/vbd ,/, ``/`` it/pps was/bedz good/jj ''/'' ./.\n"
    got = ex.brown_to_text(brown)
    check("Brown: word/tag to text", got == 'The jury said, "it was good".', repr(got))
    page = ("<html><head><title>x</title><script>var a;</script></head><body><div class='navheader'>Prev</div>"
            "<h1>Title</h1><p>One &amp; two.</p></body></html>")
    got = ex.html_to_text(page)
    check("HTML: body text, navigation and scripts dropped", got == "Title\n\nOne & two.", repr(got))
    check("dictd base64 numbers", ex.b64num("B") == 1 and ex.b64num("BA") == 64, "B=1, BA=64")


def test_split():
    same = {split_of(src, "bible", f"{src}/Ruth/007") for src in ("kjv", "web", "tdavid", "mhcc")}
    check("a held-out Bible book is validation in all four texts", same == {"val"}, str(same))
    check("Persuasion is the clean-prose validation set", split_of("austen", "prose", "austen/persuasion")
          == "valprose", "austen/persuasion")
    names = [f"src/doc{i}" for i in range(20000)]
    frac = sum(split_of("src", "prose", n) == "val" for n in names) / len(names)
    want = VAL_PERCENT / 100  # 20000 draws: the binomial spread is under 0.1 of this
    check(f"hash split proposes about {VAL_PERCENT}% for validation", abs(frac - want) < 0.3 * want, f"{frac:.4f}")


def test_fetch_errors():
    """A pinned version that is not served falls back to the served one (the build warns); a package
    that does not exist is an error naming it. Needs Debian's package lists (CI has them; the GPU machine,
    with no network, does not)."""
    p = subprocess.run(["apt-cache", "policy", "dict-devil"], capture_output=True, text=True) \
        if shutil.which("apt-cache") else None
    if p is None or "Candidate: (none)" in p.stdout or "Candidate:" not in p.stdout:
        skip("apt fetch: version drift and missing packages", "no Debian package lists on this machine")
        return
    with tempfile.TemporaryDirectory() as d:
        try:
            path, got = apt_download("dict-devil", "0.0-0", d)
            check("apt fetch: a pinned version not served falls back to the served one", got != "0.0-0"
                  and os.path.exists(path), f"got {got}")
        except RuntimeError as e:
            check("apt fetch: a pinned version not served falls back to the served one", False, str(e))
        try:
            apt_download("no-such-package-parallax", "1.0", d)
            check("apt fetch: a missing package is an error naming it", False, "no error")
        except RuntimeError as e:
            check("apt fetch: a missing package is an error naming it", "no-such-package-parallax" in str(e), str(e))


def main(argv):
    trainer = os.path.abspath(argv[0] if argv else os.path.join(HERE, "..", "train_parallax"))
    tok = Tokenizer()
    test_tokenizer(tok)
    test_tokenizer_cli()
    test_decoder_file(tok)
    test_shards()
    test_txt_to_shards(tok)
    test_write_split()
    test_extractors()
    test_split()
    test_content_split()
    test_assign_splits()
    test_built_manifest()
    test_shard_rules(trainer)
    test_load_checkpoint_cli()
    test_fetch_errors()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
