"""Plain text out of each source format of spec section 5. Every extractor takes the folder a package was
unpacked into and yields documents as (name, text); names are stable across machines (the validation split
hashes them). Markup is stripped, paragraphs are kept (separated by a blank line).
"""
import glob
import gzip
import html
import html.parser
import os
import re
import struct
import zlib


def read_text(path):
    """A text file, gzip'd or not, decoded as UTF-8 (undecodable bytes replaced)."""
    opener = gzip.open if path.endswith(".gz") or path.endswith(".dz") else open
    try:
        with opener(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read text ({e})")


def tidy(text):
    """Collapse runs of spaces inside lines and of blank lines between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = re.sub(r"[ \u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def rel(path, root):
    return os.path.relpath(path, root).replace(os.sep, "/")


# ---------------------------------------------------------------------------------------------------------
# SWORD zText / zCom modules: .bzs/.czs = one (offset, compressed size, size) record of 12 bytes per zlib
# block; .bzv = (block, offset, size) of 10 bytes per verse (uint32, uint32, uint16), .czv 12 bytes (uint32 x3).
# Verse text is OSIS XML; <note> and <title> are dropped.

OSIS_DROP = re.compile(r"<(note|title)\b[^>]*?(?<!/)>.*?</\1>", re.S)
TAG = re.compile(r"<[^>]*>")


def osis_to_text(xml):
    xml = OSIS_DROP.sub("", xml)
    xml = re.sub(r"<(lb|p|/p|div)\b[^>]*>", "\n", xml)
    return html.unescape(TAG.sub("", xml))


def sword_verses(folder, testament, block_ext, verse_ext):
    """Yields (block number, verse text) in index order for one testament of a module."""
    base = os.path.join(folder, testament)
    if not os.path.exists(base + "." + block_ext) or os.path.getsize(base + "." + block_ext) == 0:
        return
    with open(base + "." + block_ext, "rb") as f:
        bzs = f.read()
    with open(base + "." + verse_ext, "rb") as f:
        bzv = f.read()
    with open(base + "." + block_ext[:2] + "z", "rb") as f:
        bzz = f.read()
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
    rec, fmt = (10, "<IIH") if verse_ext == "bzv" else (12, "<III")
    cache, seen = {}, set()
    for i in range(0, len(bzv) - rec + 1, rec):
        b, off, size = struct.unpack_from(fmt, bzv, i)
        if size == 0 or b >= len(blocks) or (b, off) in seen:
            continue  # commentaries link every verse of a passage to one entry: keep it once
        seen.add((b, off))
        if b not in cache:
            cache.clear()
            start, csize, _ = blocks[b]
            try:
                cache[b] = zlib.decompress(bzz[start:start + csize])
            except zlib.error as e:
                raise ValueError(f"{base}.{block_ext[:2]}z: block {b} does not decompress ({e})")
        yield b, cache[b][off:off + size].decode("utf-8", errors="replace")


def sword_books(root, module_glob, block_ext, verse_ext):
    """One document per (testament, block); BOOK-blocked modules have one book per block. The book's
    OSIS id (Gen, Matt, ...) is read from its first verse when present: the Bible split uses it."""
    folders = glob.glob(os.path.join(root, module_glob))
    if not folders:
        raise ValueError(f"{os.path.join(root, module_glob)}: module folder not found")
    for testament in ("ot", "nt"):
        current, parts, book = None, [], None
        for b, xml in sword_verses(folders[0], testament, block_ext, verse_ext):
            if b != current:
                if parts:
                    yield book, tidy("\n".join(parts))
                current, parts = b, []
                m = re.search(r'osisID="([1-4]?[A-Za-z]+)', xml)
                book = m.group(1) if m else f"{testament}{b:03d}"
            t = osis_to_text(xml).strip()
            if t:
                parts.append(t)
        if parts:
            yield book, tidy("\n".join(parts))


# ---------------------------------------------------------------------------------------------------------
# R lazy-load database (janeaustenr): Rdata.rdx and each Rdata.rdb record are a 4-byte big-endian length
# and a zlib stream of an R XDR serialization. A minimal reader of the types these files use.

class RReader:
    def __init__(self, data):
        self.d, self.p, self.refs = data, 0, []

    def int(self):
        v = struct.unpack_from(">i", self.d, self.p)[0]
        self.p += 4
        return v

    def obj(self):
        flags = self.int()
        typ, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if typ in (254, 242, 253):          # NULL, empty env, base env
            return None
        if typ == 255:                       # reference to an earlier symbol
            return self.refs[(flags >> 8) - 1]
        if typ == 1:                         # symbol: a CHARSXP follows
            s = self.obj()
            self.refs.append(s)
            return s
        if typ == 9:                         # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.d[self.p:self.p + n].decode("utf-8", errors="replace")
            self.p += n
            return s
        if typ == 2:                         # pairlist: (attr) (tag) car cdr
            attr = self.obj() if has_attr else None
            tag = self.obj() if has_tag else None
            car = self.obj()
            rest = self.obj()
            return [(tag, car)] + (rest or [])
        if typ in (10, 13, 14, 16, 19):      # logical, integer, double, character, list
            n = self.int()
            if typ in (10, 13):
                v = list(struct.unpack_from(f">{n}i", self.d, self.p))
                self.p += 4 * n
            elif typ == 14:
                v = list(struct.unpack_from(f">{n}d", self.d, self.p))
                self.p += 8 * n
            else:
                v = [self.obj() for _ in range(n)]
            attrs = dict(self.obj()) if has_attr else {}
            if "names" in attrs and typ == 19:
                return dict(zip(attrs["names"], v))
            return v
        raise ValueError(f"R serialization type {typ} is not supported")

    @staticmethod
    def unserialize(data):
        if data[:2] != b"X\n":
            raise ValueError("not an R XDR serialization")
        r = RReader(data)
        r.p = 2
        version = r.int()
        r.int(), r.int()                     # writer's and minimal reader's R versions
        if version == 3:
            n_enc = r.int()                  # native encoding name
            r.p += n_enc
        return r.obj()


def rdata_objects(rdb_path):
    """{name: value} of every object in an R lazy-load database (path of the .rdb; .rdx beside it)."""
    with gzip.open(rdb_path[:-1] + "x", "rb") as f:   # the index is a gzip'd serialization
        index = RReader.unserialize(f.read())
    with open(rdb_path, "rb") as f:
        rdb = f.read()
    out = {}
    for name, (off, size) in index["variables"].items():
        n = struct.unpack_from(">I", rdb, off)[0]      # each record: big-endian length, zlib stream
        data = zlib.decompress(rdb[off + 4:off + size])
        if len(data) != n:
            raise ValueError(f"{rdb_path}: record {name} has {len(data)} bytes, expected {n}")
        out[name] = RReader.unserialize(data)
    return out


def austen_books(root):
    """One document per novel; lines rejoined into paragraphs (a blank line ends one)."""
    paths = glob.glob(os.path.join(root, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"))
    if not paths:
        raise ValueError(f"{root}: janeaustenr's data/Rdata.rdb not found")
    for name, lines in sorted(rdata_objects(paths[0]).items()):
        if not isinstance(lines, list) or not lines or not isinstance(lines[0], (str, type(None))):
            continue
        paras, cur = [], []
        for line in lines:
            line = (line or "").strip()
            if line:
                cur.append(line)
            elif cur:
                paras.append(" ".join(cur))
                cur = []
        if cur:
            paras.append(" ".join(cur))
        yield name, "\n\n".join(paras)


# ---------------------------------------------------------------------------------------------------------
# dictd .dict.dz (gzip): entries at (offset, length) in the .index (base64 numbers). Documents are runs of
# about 200 consecutive entries, so that the validation split takes whole stretches.

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64num(s):
    n = 0
    for ch in s:
        n = n * 64 + B64.index(ch)
    return n


def dictd_entries(root, name, per_doc=200):
    index = glob.glob(os.path.join(root, f"usr/share/dictd/{name}.index"))
    if not index:
        raise ValueError(f"{root}: usr/share/dictd/{name}.index not found")
    data = read_text(index[0][:-6] + ".dict.dz").encode("utf-8")
    entries = []
    for line in read_text(index[0]).splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        entries.append((b64num(parts[1]), b64num(parts[2])))
    entries.sort()
    seen = set()
    docs, cur = [], []
    for off, size in entries:
        if off in seen:
            continue
        seen.add(off)
        cur.append(data[off:off + size].decode("utf-8", errors="replace"))
        if len(cur) == per_doc:
            docs.append(cur)
            cur = []
    if cur:
        docs.append(cur)
    for i, d in enumerate(docs):
        yield f"{name}/{i:05d}", tidy("\n\n".join(TAG.sub("", e) for e in d))


# ---------------------------------------------------------------------------------------------------------
# WordNet: data.{noun,verb,adj,adv} lines "offset lexfile pos n_words word lexid ... | gloss".

def wordnet_glosses(root, per_doc=500):
    for pos in ("noun", "verb", "adj", "adv"):
        path = os.path.join(root, "usr/share/wordnet/data." + pos)
        if not os.path.exists(path):
            raise ValueError(f"{path}: not found")
        lines = []
        for line in read_text(path).splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            head, gloss = line.split("|", 1)
            f = head.split()
            n = int(f[3], 16)
            words = [f[4 + 2 * i].replace("_", " ") for i in range(n)]
            lines.append(f"{', '.join(words)} ({pos}): {gloss.strip()}")
        for i in range(0, len(lines), per_doc):
            yield f"wordnet/{pos}/{i // per_doc:04d}", "\n".join(lines[i:i + per_doc])


# ---------------------------------------------------------------------------------------------------------
# HTML: text of the page body, paragraphs and headings on their own lines; scripts, styles and navigation
# dropped.

class _HTMLText(html.parser.HTMLParser):
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "tr", "dt", "dd", "table",
             "blockquote", "section", "ul", "ol", "dl", "hr"}
    SKIP = {"script", "style", "head", "title"}
    NAV = re.compile(r"nav|sphinxsidebar|related|footer|header", re.I)

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip, self.stack = [], 0, []

    def handle_starttag(self, tag, attrs):
        cls = " ".join(v or "" for k, v in attrs if k in ("class", "id", "role"))
        skipping = int(tag in self.SKIP or tag == "nav" or (tag in ("div", "table") and bool(self.NAV.search(cls))))
        if tag in ("br", "hr", "img", "meta", "link", "input"):
            self.out.append("\n")
            return
        self.stack.append(skipping)
        self.skip += skipping
        if tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("br", "hr", "img", "meta", "link", "input") or not self.stack:
            return
        self.skip -= self.stack.pop()
        if tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def html_to_text(text):
    p = _HTMLText()
    p.feed(text)
    p.close()
    return tidy("".join(p.out))


# ---------------------------------------------------------------------------------------------------------
# reStructuredText: directives, comments, heading underlines and role markup stripped.

def rst_to_text(text):
    out, skip_indent = [], None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if stripped == "" or indent > skip_indent:
                continue
            skip_indent = None
        if stripped.startswith(".. "):
            directive = stripped[3:].split("::")[0]
            if "::" in stripped and directive.strip() in ("note", "warning", "tip", "important", "attention"):
                out.append(stripped.split("::", 1)[1].strip())
                continue
            skip_indent = indent  # comments, code blocks, tables, toctrees and their bodies
            continue
        if stripped and len(set(stripped)) == 1 and stripped[0] in "=-~^*#+\"'`:." and len(stripped) > 2:
            continue  # heading underline / overline
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r":[a-zA-Z:]+:`([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)   # :role:`text <target>`
    text = re.sub(r"`([^`<]+?)(?:\s*<[^>]*>)?`_{1,2}", r"\1", text)        # `link <url>`_
    text = text.replace("``", "").replace("**", "")
    return tidy(text)


# ---------------------------------------------------------------------------------------------------------
# POD (perl-doc): command paragraphs dropped except headings and items, formatting codes unwrapped.

POD_CODE = re.compile(r"[A-Z]<<+\s(.*?)\s>>+|[A-Z]<([^<>]*)>")


def pod_to_text(text):
    out, in_pod = [], True
    for para in re.split(r"\n\s*\n", text):
        s = para.strip()
        if s.startswith("=cut"):
            in_pod = False
            continue
        if s.startswith("=pod") or s.startswith("=head") or s.startswith("=item"):
            in_pod = True
            s = s.split(None, 1)[1] if len(s.split(None, 1)) > 1 else ""
        elif s.startswith("="):
            in_pod = True
            continue
        if not in_pod or not s:
            continue
        for _ in range(3):  # nested codes, inside out
            s = POD_CODE.sub(lambda m: (m.group(1) or m.group(2) or "").split("|")[0], s)
        out.append(s.replace("E<gt>", ">").replace("E<lt>", "<"))
    return tidy("\n\n".join(out))


# ---------------------------------------------------------------------------------------------------------
# Markdown: links and emphasis unwrapped, heading marks and HTML tags dropped.

def markdown_to_text(text):
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)                 # images
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)             # [text](url)
    text = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r"\1", text)            # [text][ref]
    text = re.sub(r"^\s*\[[^\]]+\]:.*$", "", text, flags=re.M)       # reference definitions
    text = re.sub(r"^#{1,6}\s*", "", text, flags=re.M)
    text = re.sub(r"(\*\*|__)(.*?)\1", r"\2", text)
    text = TAG.sub("", text)
    return tidy(html.unescape(text))


# ---------------------------------------------------------------------------------------------------------
# Brown corpus: "word/tag" tokens; words rejoined with English spacing.

def brown_to_text(text):
    paras = []
    for para in re.split(r"\n\s*\n", text):
        words = [tok.rsplit("/", 1)[0] for tok in para.split() if "/" in tok]
        if not words:
            continue
        s = " ".join(words).replace("`` ", '"').replace(" ''", '"')
        s = re.sub(r" ([.,;:!?')])", r"\1", s).replace("( ", "(")
        paras.append(s)
    return "\n\n".join(paras)


# ---------------------------------------------------------------------------------------------------------
# fortune files: entries separated by a line holding "%"

def fortunes_to_text(text):
    return "\n\n".join(tidy(e) for e in text.split("\n%\n") if e.strip())
