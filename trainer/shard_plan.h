// ZeRO-1's plan: which rank updates (and keeps optimizer state for) which part of each parameter tensor.
//   Muon tensors: whole matrices (Newton-Schulz needs all of one). All Muon matrices of the model in table
//     order (84 at d12) are cut into world contiguous runs of about equal Newton-Schulz cost: matrix j goes
//     to rank floor(world (S_j + c_j / 2) / S), S_j the cost of the matrices before it, S of all, so each
//     rank's part of a stacked tensor is one contiguous batch of matrices.
//   AdamW tensors: rank r takes elements [n r / world, n (r + 1) / world) of each.
// After the update every rank's part is broadcast from its owner (an all-gather of uneven parts).
// Host-only; tested on the CPU (dev/test_dist.cpp) for world sizes 1, 2, 3, 4, 8.
#pragma once

#include <cstdint>
#include <vector>

struct PlanTensor {
    size_t numel;
    int muon_count;        // matrices in the stacked tensor
    long rows, cols;       // of each
    bool muon;             // true: Muon (whole matrices); false: AdamW (element slices)
};

struct Range {
    size_t begin, end;     // elements of a tensor, [begin, end)
    size_t size() const { return end - begin; }
};

struct ShardPlan {
    int world, rank;
    std::vector<PlanTensor> tensors;
    std::vector<std::vector<Range>> own;   // own[t][r]: the part of tensor t that rank r updates
    std::vector<size_t> state_off;         // this rank: where own[t][rank] starts in its Muon or AdamW state
    size_t muon_state, adam_state;         // this rank's state sizes in elements (per buffer)
};

// Newton-Schulz cost of one rows x cols matrix, in multiply-adds per iteration: with k = min, n = max,
// the Gram matrix k k n, its square k^3, the product with X k k n
static uint64_t muon_cost(long rows, long cols) {
    uint64_t k = (uint64_t)(rows < cols ? rows : cols), n = (uint64_t)(rows < cols ? cols : rows);
    return k * k * (2 * n + k);
}

// the Muon matrices' owners: walks the matrices in order, moving to the next rank once a matrix's cost
// midpoint passes that rank's start (r S / world)
static void plan_muon(ShardPlan* p) {
    unsigned __int128 total = 0, before = 0;
    for (const PlanTensor& t : p->tensors)
        if (t.muon) total += (unsigned __int128)t.muon_count * muon_cost(t.rows, t.cols);
    int owner = 0;
    for (size_t i = 0; i < p->tensors.size(); i++) {
        const PlanTensor& t = p->tensors[i];
        if (!t.muon) continue;
        size_t mat = (size_t)t.rows * t.cols;
        uint64_t c = muon_cost(t.rows, t.cols);
        std::vector<int> first(p->world + 1, t.muon_count);   // first matrix of each rank in this tensor
        for (int j = 0; j < t.muon_count; j++) {
            unsigned __int128 mid2 = 2 * before + c;          // twice the cost midpoint
            while (owner + 1 < p->world && mid2 * p->world >= 2 * total * (owner + 1)) owner++;
            for (int r = owner; r >= 0 && first[r] > j; r--) first[r] = j;
            before += c;
        }
        for (int r = 0; r < p->world; r++) p->own[i][r] = {first[r] * mat, first[r + 1] * mat};
    }
}

static ShardPlan shard_plan_make(const std::vector<PlanTensor>& tensors, int world, int rank) {
    ShardPlan p;
    p.world = world;
    p.rank = rank;
    p.tensors = tensors;
    p.own.assign(tensors.size(), std::vector<Range>(world, Range{0, 0}));
    plan_muon(&p);
    for (size_t i = 0; i < tensors.size(); i++) {
        if (tensors[i].muon) continue;
        size_t n = tensors[i].numel;
        for (int r = 0; r < world; r++) p.own[i][r] = {n * r / world, n * (r + 1) / world};
    }
    p.muon_state = p.adam_state = 0;
    p.state_off.assign(tensors.size(), 0);
    for (size_t i = 0; i < tensors.size(); i++) {
        size_t* total = tensors[i].muon ? &p.muon_state : &p.adam_state;
        p.state_off[i] = *total;
        *total += p.own[i][rank].size();
    }
    return p;
}
