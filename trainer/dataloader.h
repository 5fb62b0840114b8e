// defines: DataLoader, dataloader_open, dataloader_next, dataloader_reset, shard_check_header
// Reads llm.c token shards (spec section 4) in order: batches of B x T inputs and the next-token targets.
// Every shard's header is checked when the loader opens (before any GPU work): missing, empty, bad magic or
// version, or a size that does not match the count is an error naming the shard. Token values are checked
// as batches are read: an id >= 50257 names the shard and the offset. The position (shard, token offset) is
// all the state there is, so a checkpoint can store it and a resumed run continues with the same batches.
#pragma once

#include <glob.h>
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
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) { *err = path + ": cannot open (" + strerror(errno) + ")"; return -1; }
    int header[256];
    size_t got = fread(header, sizeof(int), 256, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    if (got != 256) { *err = path + ": " + std::to_string(size) + " bytes, shorter than the 1024-byte header"; return -1; }
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

// Expands the glob and checks every shard. Returns false with `err` naming the flag and the shard.
static bool dataloader_open(DataLoader* dl, const char* flag, const char* pattern, int B, int T, std::string* err) {
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
        if (n < 0) { *err = std::string(flag) + ": " + why; return false; }
        if (n < (long)B * T + 1) {
            *err = std::string(flag) + ": " + p + ": " + std::to_string(n) + " tokens, fewer than one batch (" +
                   std::to_string((long)B * T + 1) + ")";
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
    FILE* f = fopen(path.c_str(), "rb");
    if (!f || fseek(f, SHARD_HEADER_BYTES + 2 * dl->offset, SEEK_SET) != 0 ||
        fread(dl->buf.data(), 2, need, f) != (size_t)need) {
        fprintf(stderr, "%s: %s: read failed at token %ld\n", dl->flag.c_str(), path.c_str(), dl->offset);
        exit(EXIT_FAILURE);
    }
    fclose(f);
    for (long i = 0; i < need; i++) {
        if (dl->buf[i] >= GPT2_VOCAB) {
            fprintf(stderr, "%s: %s: token %d at offset %ld is >= %d\n", dl->flag.c_str(), path.c_str(),
                    dl->buf[i], dl->offset + i, GPT2_VOCAB);
            exit(EXIT_FAILURE);
        }
    }
    for (long i = 0; i < need - 1; i++) {
        dl->inputs[i] = dl->buf[i];
        dl->targets[i] = dl->buf[i + 1];
    }
    dl->offset += need - 1;
}
