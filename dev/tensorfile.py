"""The reference tensor file (.ptf): a small header, string metadata, and a table of named tensors.
The layout is documented in dev/README.md; trainer/tensor_file.h reads it on the C++ side.

All integers little-endian.
  header   4 bytes magic "PTF1", uint32 version (1), uint32 n_meta, uint32 n_tensors
  meta     n_meta times: uint32 key length, key bytes, uint32 value length, value bytes (UTF-8)
  table    n_tensors times: uint32 name length, name bytes, uint32 dtype (0 float32, 1 int32),
           uint32 ndim, ndim x int64 dims, uint64 offset (from the file start, a multiple of 64),
           uint64 nbytes
  data     each tensor's elements, row-major (C order), at its offset
"""
import struct

import numpy as np

MAGIC = b"PTF1"
VERSION = 1
DTYPES = {0: np.float32, 1: np.int32}
CODES = {np.dtype(np.float32): 0, np.dtype(np.int32): 1}
ALIGN = 64


def _as_array(t):
    if hasattr(t, "detach"):  # a torch tensor
        t = t.detach().cpu()
        t = t.float() if t.is_floating_point() else t.int()
        return t.contiguous().numpy()
    a = np.ascontiguousarray(t)
    return a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int32)


def write(path, meta, tensors):
    """meta: dict str -> str; tensors: list of (name, array or torch tensor). Written to path + '.tmp'
    and renamed, so a crash never leaves a half-written file under the real name."""
    import os
    arrays = [(name, _as_array(t)) for name, t in tensors]
    names = [n for n, _ in arrays]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate tensor names")
    head = bytearray(MAGIC + struct.pack("<III", VERSION, len(meta), len(arrays)))
    for k, v in meta.items():
        kb, vb = str(k).encode(), str(v).encode()
        head += struct.pack("<I", len(kb)) + kb + struct.pack("<I", len(vb)) + vb
    table_size = sum(4 + len(n.encode()) + 8 + 8 * a.ndim + 16 for n, a in arrays)
    offset = (len(head) + table_size + ALIGN - 1) // ALIGN * ALIGN
    entries, offsets = bytearray(), []
    for name, a in arrays:
        nb = name.encode()
        entries += struct.pack("<I", len(nb)) + nb + struct.pack("<II", CODES[a.dtype], a.ndim)
        entries += struct.pack(f"<{a.ndim}q", *a.shape) + struct.pack("<QQ", offset, a.nbytes)
        offsets.append(offset)
        offset = (offset + a.nbytes + ALIGN - 1) // ALIGN * ALIGN
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head + entries)
        for (name, a), off in zip(arrays, offsets):
            f.seek(off)
            f.write(a.tobytes())
    os.replace(tmp, path)


def read(path):
    """Returns (meta dict, dict name -> numpy array). Raises ValueError naming the file and the reason."""
    with open(path, "rb") as f:
        data = f.read()

    def take(fmt, pos):
        n = struct.calcsize(fmt)
        if pos + n > len(data):
            raise ValueError(f"{path}: truncated at byte {pos}")
        return struct.unpack_from(fmt, data, pos), pos + n

    if data[:4] != MAGIC:
        raise ValueError(f"{path}: bad magic {data[:4]!r} (expected {MAGIC!r})")
    (version, n_meta, n_tensors), pos = take("<III", 4)
    if version != VERSION:
        raise ValueError(f"{path}: version {version}, this reader knows {VERSION}")

    def take_str(pos):
        (n,), pos = take("<I", pos)
        if pos + n > len(data):
            raise ValueError(f"{path}: truncated at byte {pos}")
        return data[pos:pos + n].decode(), pos + n

    meta = {}
    for _ in range(n_meta):
        k, pos = take_str(pos)
        meta[k], pos = take_str(pos)
    tensors = {}
    for _ in range(n_tensors):
        name, pos = take_str(pos)
        (code, ndim), pos = take("<II", pos)
        shape, pos = take(f"<{ndim}q", pos)
        (off, nbytes), pos = take("<QQ", pos)
        if code not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has unknown dtype code {code}")
        dt = np.dtype(DTYPES[code])
        if nbytes != dt.itemsize * int(np.prod(shape)) or off + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} size does not match its shape or the file")
        tensors[name] = np.frombuffer(data, dtype=dt, count=int(np.prod(shape)), offset=off).reshape(shape)
    return meta, tensors
