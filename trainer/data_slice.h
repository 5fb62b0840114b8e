// Each rank's share of the global batch. A step of the single-GPU run reads `accum` micro-batches in order;
// with world ranks, rank r reads micro-batches [r a, (r + 1) a), a = accum / world, and steps over the
// others' without reading them, so every rank's loader ends the step where the single-GPU loader does and the
// N ranks together see exactly the single-GPU tokens. Evaluations split their batches the same way
// (any count: [n r / world, n (r + 1) / world)).
#pragma once

#include <string>
#include "dataloader.h"

struct DataSlice {
    int first, count;   // this rank's micro-batches of a step: [first, first + count) of accum
    int accum;
};

static bool data_slice_make(int accum, int world, int rank, DataSlice* s, std::string* err) {
    if (accum % world) {
        *err = std::to_string(accum) + " micro-batches per step do not split over " + std::to_string(world) +
               " ranks (--total-batch must be a multiple of --batch x --seq-len x world size)";
        return false;
    }
    s->accum = accum;
    s->count = accum / world;
    s->first = rank * s->count;
    return true;
}

// [begin, end) of n evaluation batches for rank r of world
static void split_range(int n, int world, int rank, int* begin, int* end) {
    *begin = (int)((long)n * rank / world);
    *end = (int)((long)n * (rank + 1) / world);
}

// moves the loader past n micro-batches without reading them: the position dataloader_next would leave
static void dataloader_skip(DataLoader* dl, int n) {
    long need = (long)dl->B * dl->T + 1;
    for (int i = 0; i < n; i++) {
        if (dl->offset + need > dl->counts[dl->shard]) {
            dl->shard = (dl->shard + 1) % (int)dl->paths.size();
            dl->offset = 0;
        }
        dl->offset += need - 1;
    }
}
