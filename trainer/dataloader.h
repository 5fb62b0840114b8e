// defines: DataLoader, dataloader_open, dataloader_next, dataloader_reset, shard_check_header
// Reads llm.c token shards (spec section 4) in order: batches of B x T inputs and the next-token targets.
// Every shard is checked when the loader opens (before any GPU work): missing, not a regular file, empty,
// bad magic or version, a size that does not match the count, or a token id >= 50257 is an error naming the
// shard (and the token's position). The position (shard, token offset) is all the state there is, so a
// checkpoint can store it and a resumed run continues with the same batches.
// Validation reads the same shards through a window plan instead (val_plan): every token scored once.
#pragma once

#include <glob.h>
#include <sys/stat.h>
#include <cerrno>
#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_BYTES 1024
#define GPT2_VOCAB 50257

struct DataLoader {
    std::string flag;                  // the flag the glob came from, for error messages
    std::vector<std::string> paths;
    std::vector<long> counts;          // tokens per shard
    int B, T;
    int shard;                         // current shard
    long offset;                       // token offset of the next batch in it
    std::vector<uint16_t> buf;         // B*T + 1 tokens
    std::vector<int> inputs, targets;  // B*T each
};

// Checks one shard's header; returns its token count, or -1 with `err` set.
static long shard_check_header(const std::string& path, std::string* err) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) { *err = path + ": cannot open (" + strerror(errno) + ")"; return -1; }
    if (S_ISDIR(st.st_mode)) { *err = path + ": is a directory, not a token shard"; return -1; }
    if (!S_ISREG(st.st_mode)) { *err = path + ": not a regular file"; return -1; }
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) { *err = path + ": cannot open (" + strerror(errno) + ")"; return -1; }
    int header[256];
    size_t got = fread(header, sizeof(int), 256, f);
    fclose(f);
    long size = (long)st.st_size;
    if (got != 256) { *err = path + ": " + std::to_string(size) + " bytes, shorter than the 1024-byte header"; return -1; }
    if (header[0] == 20261219) {   // LOSS_MASK_MAGIC: a glob that also matched the masks beside the shards
        *err = path + ": is a loss mask (trainer/loss_mask.h), not a token shard: end the glob in .bin";
        return -1;
    }
    if (header[0] != SHARD_MAGIC) { *err = path + ": bad magic " + std::to_string(header[0]) + " (not an llm.c token shard)"; return -1; }
    if (header[1] != SHARD_VERSION) { *err = path + ": version " + std::to_string(header[1]) + " (expected 1)"; return -1; }
    long count = header[2];
    if (size != SHARD_HEADER_BYTES + 2 * count) {
        *err = path + ": " + std::to_string(size) + " bytes but the header says " + std::to_string(count) +
               " tokens: truncated or corrupt";
        return -1;
    }
    if (count == 0) { *err = path + ": holds no tokens"; return -1; }
    return count;
}

// Reads n tokens of a shard from token offset `offset`; false when the read fails.
static bool shard_read(const std::string& path, long offset, long n, uint16_t* out) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return false;
    bool ok = fseek(f, SHARD_HEADER_BYTES + 2 * offset, SEEK_SET) == 0 && fread(out, 2, n, f) == (size_t)n;
    fclose(f);
    return ok;
}

// Every token id of a shard must be < 50257 (spec 4): scanned at open, in chunks, so a bad shard is refused
// before the run rather than hours into it.
static bool shard_check_tokens(const std::string& path, long count, std::string* err) {
    const long CHUNK = 1 << 20;
    std::vector<uint16_t> buf((size_t)std::min(count, CHUNK));
    for (long at = 0; at < count; at += CHUNK) {
        long n = std::min(CHUNK, count - at);
        if (!shard_read(path, at, n, buf.data())) { *err = path + ": read failed at token " + std::to_string(at); return false; }
        for (long i = 0; i < n; i++) {
            if (buf[i] >= GPT2_VOCAB) {
                *err = path + ": token id " + std::to_string(buf[i]) + " at position " + std::to_string(at + i) +
                       " is >= " + std::to_string(GPT2_VOCAB) + " (not a GPT-2 token shard)";
                return false;
            }
        }
    }
    return true;
}

// Expands the glob and checks every shard (header and tokens); each must hold at least min_tokens.
// Returns false with `err` naming the flag and the shard.
static bool dataloader_open_min(DataLoader* dl, const char* flag, const char* pattern, int B, int T,
                                long min_tokens, const char* min_what, std::string* err) {
    dl->flag = flag;
    dl->B = B;
    dl->T = T;
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc != 0 || g.gl_pathc == 0) {
        if (rc == 0) globfree(&g);
        *err = std::string(flag) + " " + pattern + ": no file matches";
        return false;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) dl->paths.push_back(g.gl_pathv[i]);
    globfree(&g);
    for (const std::string& p : dl->paths) {
        std::string why;
        long n = shard_check_header(p, &why);
        if (n < 0 || !shard_check_tokens(p, n, &why)) { *err = std::string(flag) + ": " + why; return false; }
        if (n < min_tokens) {
            *err = std::string(flag) + ": " + p + ": " + std::to_string(n) + " tokens, fewer than " + min_what +
                   " (" + std::to_string(min_tokens) + ")";
            return false;
        }
        dl->counts.push_back(n);
    }
    dl->buf.resize((size_t)B * T + 1);
    dl->inputs.resize((size_t)B * T);
    dl->targets.resize((size_t)B * T);
    dl->shard = 0;
    dl->offset = 0;
    return true;
}

// Training data: every shard holds at least one batch of B x T + 1 tokens.
static bool dataloader_open(DataLoader* dl, const char* flag, const char* pattern, int B, int T, std::string* err) {
    return dataloader_open_min(dl, flag, pattern, B, T, (long)B * T + 1, "one batch of --batch x --seq-len + 1", err);
}

static long dataloader_total_tokens(const DataLoader* dl) {
    long n = 0;
    for (long c : dl->counts) n += c;
    return n;
}

static void dataloader_reset(DataLoader* dl) { dl->shard = 0; dl->offset = 0; }

// Fills inputs/targets with the next batch; moves to the next shard (and back to the first: a new epoch)
// when the current one has too few tokens left. Exits with a message naming the shard on a bad token.
static void dataloader_next(DataLoader* dl) {
    long need = (long)dl->B * dl->T + 1;
    if (dl->offset + need > dl->counts[dl->shard]) {
        dl->shard = (dl->shard + 1) % (int)dl->paths.size();
        dl->offset = 0;
    }
    const std::string& path = dl->paths[dl->shard];
    if (!shard_read(path, dl->offset, need, dl->buf.data())) {
        fprintf(stderr, "%s: %s: read failed at token %ld\n", dl->flag.c_str(), path.c_str(), dl->offset);
        exit(EXIT_FAILURE);
    }
    for (long i = 0; i < need - 1; i++) {
        dl->inputs[i] = dl->buf[i];
        dl->targets[i] = dl->buf[i + 1];
    }
    dl->offset += need - 1;
}

// ---------------------------------------------------------------------------------------------------------
// Validation windows. A window is T + 1 consecutive tokens of one shard (T inputs, T targets); it scores its
// targets from position first_scored on. Per shard: windows at 0, T, 2T, ... score all T targets; when
// (count - 1) is not a multiple of T, one more window ends at the shard's last token and scores only the
// targets no earlier window scored. So every token but each shard's first is scored exactly once, whatever
// --batch is (the plan does not depend on it), and nothing wraps.

struct ValWindow {
    int shard;
    long start;         // token offset of the window's first input
    int first_scored;   // targets [first_scored, T) count
};

// Needs every count >= T + 1 (valset_open checks it).
static std::vector<ValWindow> val_plan(const std::vector<long>& counts, int T) {
    std::vector<ValWindow> plan;
    for (int s = 0; s < (int)counts.size(); s++) {
        long targets = counts[s] - 1, full = targets / T, rest = targets % T;
        for (long w = 0; w < full; w++) plan.push_back({s, w * T, 0});
        if (rest) plan.push_back({s, targets - T, (int)(T - rest)});
    }
    return plan;
}

struct ValSet {
    DataLoader files;                 // the shards, and the B x T input and target buffers
    std::vector<ValWindow> windows;   // the plan; evaluate takes a range of it
    long tokens;                      // tokens scored by the whole plan
};

// tokens scored by windows [w0, w1)
static long valset_tokens(const ValSet* vs, size_t w0, size_t w1) {
    long n = 0;
    for (size_t w = w0; w < w1; w++) n += vs->files.T - vs->windows[w].first_scored;
    return n;
}

static bool valset_open(ValSet* vs, const char* flag, const char* pattern, int B, int T, std::string* err) {
    if (!dataloader_open_min(&vs->files, flag, pattern, B, T, (long)T + 1, "one window of --seq-len + 1", err))
        return false;
    vs->windows = val_plan(vs->files.counts, T);
    vs->tokens = valset_tokens(vs, 0, vs->windows.size());
    return true;
}

// Fills the B rows of inputs/targets with windows [w0, min(w0 + B, w1)); rows past w1 repeat window w0 and
// score nothing (the batch keeps its shape, so the GEMMs keep their tuned plans). first_scored[b] says where
// row b's scored targets start (T: none). Exits naming the shard if a read fails.
static void valset_batch(ValSet* vs, size_t w0, size_t w1, std::vector<int>* first_scored) {
    DataLoader* dl = &vs->files;
    int T = dl->T;
    first_scored->assign(dl->B, T);
    for (int b = 0; b < dl->B; b++) {
        size_t w = w0 + b < w1 ? w0 + b : w0;
        const ValWindow& win = vs->windows[w];
        if (!shard_read(dl->paths[win.shard], win.start, T + 1, dl->buf.data())) {
            fprintf(stderr, "%s: %s: read failed at token %ld\n", dl->flag.c_str(), dl->paths[win.shard].c_str(), win.start);
            exit(EXIT_FAILURE);
        }
        for (int t = 0; t < T; t++) {
            dl->inputs[(size_t)b * T + t] = dl->buf[t];
            dl->targets[(size_t)b * T + t] = dl->buf[t + 1];
        }
        if (w0 + b < w1) (*first_scored)[b] = win.first_scored;
    }
}
