"""Verbatim overlap between token streams, by windows of WINDOW tokens: what keeps the validation split honest.

A window is hashed (a 64-bit polynomial of its tokens); a validation window whose hash is among the training
windows' is then compared token by token with the training window that has that hash, so a hash collision
never counts as overlap.
  content_split(docs, candidates)  moves every candidate validation document that shares a window with the
                                   training documents to training, until none does
  overlap(train, val)              the fraction of validation windows found verbatim in training
"""
import numpy as np

WINDOW = 32
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd, so the hash is a bijection of the last token for fixed others


def window_hashes(tokens, n=WINDOW):
    """Hash of every window tokens[i:i + n], i = 0 .. len - n (empty when the stream is shorter than n)."""
    t = np.asarray(tokens).astype(np.uint64) + np.uint64(1)
    m = len(t) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    h = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):  # arithmetic mod 2^64 on purpose
        for j in range(n):
            h = h * _MULT + t[j:j + m]
    return h


def _in_sorted(keys, sorted_keys):
    """Boolean mask: which keys occur in the sorted array sorted_keys."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == keys


def _doc_hashes(docs, ids):
    """(hashes, owner): the windows of each listed document, and which document each window came from."""
    hs = [window_hashes(docs[i]) for i in ids]
    owner = np.repeat(np.asarray(ids, np.int64), [len(h) for h in hs])
    return (np.concatenate(hs) if hs else np.zeros(0, np.uint64)), owner


def content_split(docs, candidates):
    """docs: token arrays; candidates: indices proposed for validation. Returns (val, moved): the candidates
    that share no WINDOW-token window with any training document (so a group of documents that quote each
    other ends wholly on one side), and those moved to training. Moving a document can expose another, so
    this repeats until nothing moves. A hash collision can only move a document too many."""
    cand = set(candidates)
    train_ids = [i for i in range(len(docs)) if i not in cand]
    val_ids = sorted(cand)
    val_h, val_owner = _doc_hashes(docs, val_ids)
    new_train, _ = _doc_hashes(docs, train_ids)
    moved = []
    while len(val_ids) and len(new_train):
        hit = _in_sorted(val_h, np.unique(new_train))
        out = set(np.unique(val_owner[hit]).tolist())
        if not out:
            break
        moved += sorted(out)
        keep = ~np.isin(val_owner, list(out))
        val_h, val_owner = val_h[keep], val_owner[keep]
        val_ids = [i for i in val_ids if i not in out]
        new_train, _ = _doc_hashes(docs, sorted(out))  # only these can expose more
    return val_ids, moved


def overlap(train_streams, val_streams, n=WINDOW):
    """Of all n-token windows inside each validation stream (a shard: the trainer's windows never cross
    shards), how many occur verbatim inside a training stream. Returns a dict for the manifest."""
    hs, where = [], []
    for s, t in enumerate(train_streams):
        h = window_hashes(t, n)
        u, first = np.unique(h, return_index=True)
        hs.append(u)
        where.append(np.stack([np.full(len(u), s, np.int64), first.astype(np.int64)], 1))
    if hs:
        train_h, idx = np.unique(np.concatenate(hs), return_index=True)
        train_at = np.concatenate(where)[idx]  # (stream, offset) of one window with each hash
    else:
        train_h, train_at = np.zeros(0, np.uint64), np.zeros((0, 2), np.int64)
    windows = found = 0
    for v in val_streams:
        h = window_hashes(v, n)
        windows += len(h)
        for i in np.nonzero(_in_sorted(h, train_h))[0]:
            s, o = train_at[np.searchsorted(train_h, h[i])]
            found += bool(np.array_equal(v[i:i + n], train_streams[s][o:o + n]))
    return {"window": n, "windows": int(windows), "in_train": int(found),
            "fraction": found / windows if windows else 0.0}
