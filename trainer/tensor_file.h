// defines: TensorFile, RefTensor, tensor_file_read, TensorToWrite, tensor_file_write
// Reader of the reference tensor files (.ptf) that dev/export_reference.py writes.
// Layout (dev/README.md): magic "PTF1", uint32 version 1, uint32 n_meta, uint32 n_tensors; n_meta
// (key, value) strings, each a uint32 length and bytes; per tensor a uint32-length name, uint32 dtype
// (0 float32, 1 int32), uint32 ndim, int64 dims[ndim], uint64 offset, uint64 nbytes; then the data.
// The whole file is read into memory once; tensors point into it. Errors name the program
// (program_invocation_short_name, glibc) and the file.
#pragma once

#include <sys/stat.h>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

struct RefTensor {
    std::string name;
    int dtype;                  // 0 float32, 1 int32
    std::vector<int64_t> shape;
    const void* data;
    int64_t numel;
    const float* f32() const { return (const float*)data; }
    const int32_t* i32() const { return (const int32_t*)data; }
};

struct TensorFile {
    std::string path;
    std::vector<char> bytes;
    std::vector<std::pair<std::string, std::string>> meta;
    std::vector<RefTensor> tensors;

    const RefTensor* find(const std::string& name) const {
        for (const RefTensor& t : tensors) if (t.name == name) return &t;
        return NULL;
    }
    // A tensor that must exist; a missing one names the file and the tensor.
    const RefTensor& get(const std::string& name) const {
        const RefTensor* t = find(name);
        if (!t) {
            fprintf(stderr, "%s: %s: no tensor named '%s'\n", program_invocation_short_name, path.c_str(), name.c_str());
            exit(EXIT_FAILURE);
        }
        return *t;
    }
    std::string meta_value(const std::string& key) const {
        for (auto& kv : meta) if (kv.first == key) return kv.second;
        fprintf(stderr, "%s: %s: no metadata key '%s' (not written by this program, or damaged)\n",
                program_invocation_short_name, path.c_str(), key.c_str());
        exit(2);
    }
};

// Returns false and fills `err` (naming the file and the reason) when the file is missing or malformed.
static bool tensor_file_read(TensorFile* tf, const char* path, std::string* err) {
    tf->path = path;
    struct stat st;
    if (stat(path, &st) != 0) { *err = std::string(path) + ": cannot open (" + strerror(errno) + ")"; return false; }
    if (S_ISDIR(st.st_mode)) { *err = std::string(path) + ": is a directory, not a tensor file"; return false; }
    if (!S_ISREG(st.st_mode)) { *err = std::string(path) + ": not a regular file"; return false; }
    FILE* f = fopen(path, "rb");
    if (!f) { *err = std::string(path) + ": cannot open (" + strerror(errno) + ")"; return false; }
    long size = (long)st.st_size;
    tf->bytes.resize(size > 0 ? size : 0);
    size_t got = size > 0 ? fread(tf->bytes.data(), 1, size, f) : 0;
    fclose(f);
    if ((long)got != size) { *err = std::string(path) + ": short read"; return false; }

    size_t pos = 0;
    const char* base = tf->bytes.data();
    auto need = [&](size_t n) { return pos + n <= tf->bytes.size(); };
    auto u32 = [&](uint32_t* v) { if (!need(4)) return false; memcpy(v, base + pos, 4); pos += 4; return true; };
    auto u64 = [&](uint64_t* v) { if (!need(8)) return false; memcpy(v, base + pos, 8); pos += 8; return true; };
    auto str = [&](std::string* s) {
        uint32_t n;
        if (!u32(&n) || !need(n)) return false;
        s->assign(base + pos, n); pos += n; return true;
    };
    auto fail = [&](const std::string& why) { *err = std::string(path) + ": " + why; return false; };

    if (!need(16) || memcmp(base, "PTF1", 4) != 0) return fail("bad magic (not a reference tensor file)");
    pos = 4;
    uint32_t version, n_meta, n_tensors;
    u32(&version); u32(&n_meta); u32(&n_tensors);
    if (version != 1) return fail("version " + std::to_string(version) + ", this reader knows 1");
    for (uint32_t i = 0; i < n_meta; i++) {
        std::string k, v;
        if (!str(&k) || !str(&v)) return fail("truncated metadata");
        tf->meta.push_back({k, v});
    }
    for (uint32_t i = 0; i < n_tensors; i++) {
        RefTensor t;
        uint32_t dtype, ndim;
        uint64_t off, nbytes;
        if (!str(&t.name) || !u32(&dtype) || !u32(&ndim)) return fail("truncated tensor table");
        if (dtype > 1) return fail("tensor " + t.name + " has unknown dtype " + std::to_string(dtype));
        t.dtype = (int)dtype;
        // every product and sum is bounded by the file size before it is formed: nothing wraps
        uint64_t size_left = tf->bytes.size(), numel = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint64_t dim;
            if (!u64(&dim)) return fail("truncated tensor table");
            if (dim > size_left || (dim && numel > size_left / dim))
                return fail("tensor " + t.name + ": shape larger than the file (corrupt?)");
            t.shape.push_back((int64_t)dim);
            numel *= dim;
        }
        t.numel = (int64_t)numel;
        if (!u64(&off) || !u64(&nbytes)) return fail("truncated tensor table");
        if (numel > size_left / 4 || nbytes != numel * 4 || off > size_left || nbytes > size_left - off)
            return fail("tensor " + t.name + ": size does not match its shape or the file (truncated?)");
        t.data = base + off;
        tf->tensors.push_back(t);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------------------
// Writer of the same layout (checkpoints use it too). Tensors are float32 or int32 host arrays; the file is
// written to path + ".tmp" and renamed, so a crash never leaves a half-written file under the real name.

struct TensorToWrite {
    std::string name;
    int dtype;                   // 0 float32, 1 int32
    std::vector<int64_t> shape;
    const void* data;
};

static bool tensor_file_write(const char* path, const std::vector<std::pair<std::string, std::string>>& meta,
                              const std::vector<TensorToWrite>& tensors, std::string* err) {
    std::vector<char> head;
    auto put = [&](const void* p, size_t n) { head.insert(head.end(), (const char*)p, (const char*)p + n); };
    auto put_u32 = [&](uint32_t v) { put(&v, 4); };
    auto put_str = [&](const std::string& s) { put_u32((uint32_t)s.size()); put(s.data(), s.size()); };
    put("PTF1", 4);
    put_u32(1);
    put_u32((uint32_t)meta.size());
    put_u32((uint32_t)tensors.size());
    for (auto& kv : meta) { put_str(kv.first); put_str(kv.second); }
    size_t table = 0;
    for (auto& t : tensors) table += 4 + t.name.size() + 8 + 8 * t.shape.size() + 16;
    uint64_t offset = (head.size() + table + 63) / 64 * 64;
    std::vector<uint64_t> offsets, sizes;
    for (auto& t : tensors) {
        uint64_t n = 4;
        for (int64_t d : t.shape) n *= (uint64_t)d;
        put_str(t.name);
        put_u32((uint32_t)t.dtype);
        put_u32((uint32_t)t.shape.size());
        for (int64_t d : t.shape) put(&d, 8);
        put(&offset, 8);
        put(&n, 8);
        offsets.push_back(offset);
        sizes.push_back(n);
        offset = (offset + n + 63) / 64 * 64;
    }
    std::string tmp = std::string(path) + ".tmp";
    FILE* f = fopen(tmp.c_str(), "wb");
    if (!f) { *err = tmp + ": cannot write (" + strerror(errno) + ")"; return false; }
    bool ok = fwrite(head.data(), 1, head.size(), f) == head.size();
    static const char zeros[64] = {0};
    uint64_t pos = head.size();
    for (size_t i = 0; ok && i < tensors.size(); i++) {
        ok = fwrite(zeros, 1, offsets[i] - pos, f) == offsets[i] - pos &&
             fwrite(tensors[i].data, 1, sizes[i], f) == sizes[i];
        pos = offsets[i] + sizes[i];
    }
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp.c_str(), path) != 0) {
        *err = std::string(path) + ": write failed (" + strerror(errno) + ")";
        remove(tmp.c_str());
        return false;
    }
    return true;
}
