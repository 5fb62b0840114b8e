// defines: LossMask, loss_mask_open, loss_mask_answers, loss_mask_train, loss_mask_count_ahead, loss_mask_val
// Loss masks: which targets count, for tasks scored on their answers only (data/recall_tasks.py writes them).
// A mask is a companion file beside its shard, SHARD.bin -> SHARD.mask (another name: .mask appended):
//   256 int32 header: magic 20261219, version 1, token count (must equal the shard's), example length (the
//   --seq-len the examples were cut for, so that each window holds one whole example; 0 = any),
//   then one uint8 per token of the shard: 1 = predicting this token is scored, 0 = not.
// A data set uses masks when any of its shards has one; then every shard must, and each is checked at open
// (before any GPU work): a missing one, a bad header, a count or size that disagrees, a byte other than 0 or 1
// is an error naming the mask file. A target outside the mask becomes -1 (the cross-entropy's "not scored").
#pragma once

#include <sys/stat.h>
#include <cstdio>
#include <cstdint>
#include <string>
#include <vector>
#include "dataloader.h"
#include "data_slice.h"   // dataloader_skip

#define LOSS_MASK_MAGIC 20261219
#define LOSS_MASK_VERSION 1

struct LossMask {
    bool on;                          // the set has masks; off: every target counts
    std::vector<std::string> paths;   // one per shard of the set
    std::vector<long> answers;        // scored tokens per shard
    std::vector<uint8_t> buf;
};

static std::string loss_mask_path(const std::string& shard) {
    size_t n = shard.size();
    return (n >= 4 && shard.compare(n - 4, 4, ".bin") == 0 ? shard.substr(0, n - 4) : shard) + ".mask";
}

// reads n mask bytes of the file from token `offset`; false when the read fails
static bool loss_mask_read(const std::string& path, long offset, long n, uint8_t* out) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return false;
    bool ok = fseek(f, SHARD_HEADER_BYTES + offset, SEEK_SET) == 0 && fread(out, 1, n, f) == (size_t)n;
    fclose(f);
    return ok;
}

// One mask file's header and size against its shard's token count and --seq-len; false with `err` naming it.
static bool loss_mask_check_header(const std::string& path, long count, int T, std::string* err) {
    struct stat st;
    int header[256];
    FILE* f = stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? fopen(path.c_str(), "rb") : NULL;
    size_t got = f ? fread(header, sizeof(int), 256, f) : 0;
    if (f) fclose(f);
    std::string why;
    if (!f) why = "cannot open (not a readable regular file)";
    else if (got != 256) why = "shorter than the 1024-byte header";
    else if (header[0] != LOSS_MASK_MAGIC) why = "bad magic " + std::to_string(header[0]) + " (not a loss mask)";
    else if (header[1] != LOSS_MASK_VERSION) why = "version " + std::to_string(header[1]) + " (expected 1)";
    else if (header[2] != count) why = std::to_string(header[2]) + " tokens, its shard has " + std::to_string(count);
    else if ((long)st.st_size != SHARD_HEADER_BYTES + count)
        why = std::to_string((long)st.st_size) + " bytes, the header says " + std::to_string(count) +
              " tokens: truncated or corrupt";
    else if (header[3] != 0 && header[3] != T)
        why = "its examples are " + std::to_string(header[3]) + " tokens long, --seq-len is " + std::to_string(T) +
              " (each window must hold one whole example)";
    if (!why.empty()) *err = path + ": " + why;
    return why.empty();
}

// The answers of a checked mask file (bytes that are 1), read in chunks; -1 with `err` on a byte other than
// 0 or 1 (its token named) or a failed read.
static long loss_mask_count(const std::string& path, long count, std::string* err) {
    const long CHUNK = 1 << 20;
    std::vector<uint8_t> buf((size_t)std::min(count, CHUNK));
    long answers = 0;
    for (long at = 0; at < count; at += CHUNK) {
        long n = std::min(CHUNK, count - at);
        if (!loss_mask_read(path, at, n, buf.data())) { *err = path + ": read failed at token " + std::to_string(at); return -1; }
        for (long i = 0; i < n; i++) {
            if (buf[i] > 1) {
                *err = path + ": byte " + std::to_string(buf[i]) + " at token " + std::to_string(at + i) + " (0 or 1)";
                return -1;
            }
            answers += buf[i];
        }
    }
    return answers;
}

// The masks of the shards of `files` (opened and checked); false with `err` naming the flag and the file.
static bool loss_mask_open(LossMask* mk, const DataLoader& files, std::string* err) {
    mk->on = false;
    struct stat st;
    std::string found;   // the first mask of the set: with one, every shard needs its own
    for (size_t i = 0; i < files.paths.size() && found.empty(); i++)
        if (stat(loss_mask_path(files.paths[i]).c_str(), &st) == 0) found = loss_mask_path(files.paths[i]);
    if (found.empty()) return true;
    for (size_t i = 0; i < files.paths.size(); i++) {
        std::string path = loss_mask_path(files.paths[i]), why;
        if (stat(path.c_str(), &st) != 0) {
            *err = files.flag + ": " + path + ": missing (" + found + " exists: every shard of the set needs its mask)";
            return false;
        }
        long count = files.counts[i];
        long answers = loss_mask_check_header(path, count, files.T, &why) ? loss_mask_count(path, count, &why) : -1;
        if (answers < 0) { *err = files.flag + ": " + why; return false; }
        mk->paths.push_back(path);
        mk->answers.push_back(answers);
    }
    mk->buf.resize((size_t)files.B * files.T);
    mk->on = true;
    return true;
}

static long loss_mask_answers(const LossMask* mk) {
    long n = 0;
    for (long a : mk->answers) n += a;
    return n;
}

// Sets targets[i] = -1 where the mask is 0, for the n targets of shard `shard` that follow token `start`
// (token start + 1 + i); returns how many still count. Exits naming the file if the read fails.
static long loss_mask_apply(LossMask* mk, int shard, long start, long n, int* targets) {
    if (!mk->on) return n;
    if (!loss_mask_read(mk->paths[shard], start + 1, n, mk->buf.data())) {
        fprintf(stderr, "%s: read failed at token %ld\n", mk->paths[shard].c_str(), start + 1);
        exit(EXIT_FAILURE);
    }
    long kept = 0;
    for (long i = 0; i < n; i++) {
        if (!mk->buf[i]) targets[i] = -1;
        kept += mk->buf[i];
    }
    return kept;
}

// The training batch dataloader_next just read (B x T targets from the loader's last window)
static long loss_mask_train(LossMask* mk, DataLoader* dl) {
    long n = (long)dl->B * dl->T;
    return loss_mask_apply(mk, dl->shard, dl->offset - n, n, dl->targets.data());
}

// Scored targets of each of the next n training batches, into out[0..n), without moving the loader: the
// gradient scale of a step (1 / its scored targets) is needed before its first backward. Needs mk->on.
static void loss_mask_count_ahead(LossMask* mk, DataLoader* dl, int n, float* out) {
    int shard = dl->shard;
    long offset = dl->offset, bt = (long)dl->B * dl->T;
    std::vector<int> scratch(bt);
    for (int k = 0; k < n; k++) {
        dataloader_skip(dl, 1);
        out[k] = (float)loss_mask_apply(mk, dl->shard, dl->offset - bt, bt, scratch.data());
    }
    dl->shard = shard;
    dl->offset = offset;
}

// A validation batch of windows [w0, w1) (valset_batch's rows): targets before a row's first_scored, in its
// padding rows, or outside the mask become -1, so the batch's scored targets are those >= 0.
static void loss_mask_val(LossMask* mk, ValSet* vs, size_t w0, size_t w1, const std::vector<int>& first) {
    int T = vs->files.T;
    for (int b = 0; b < vs->files.B; b++) {
        int* tg = vs->files.targets.data() + (size_t)b * T;
        for (int t = 0; t < first[b]; t++) tg[t] = -1;
        if (w0 + b < w1) loss_mask_apply(mk, vs->windows[w0 + b].shard, vs->windows[w0 + b].start, T, tg);
    }
}
