// defines: embedding_forward, embedding_backward, tokens_by_value
// Token embedding (spec section 2): x = wte[token], fp32 rows of C (the residual stream is fp32).
//   forward   x (N, C) = wte[idx[n]]
//   backward  dwte[tok] += sum of dx[n] over the positions n holding tok
// The backward is deterministic: the host groups positions by token (tokens_by_value below), and the blocks
// of one distinct token sum its rows in a fixed order, so no two tokens' blocks touch the same row. In real
// text a few tokens fill thousands of positions (",", " the"): those groups go first, and each thread keeps
// EMB_ACC independent partial sums, so the longest group does not leave the GPU waiting on one block.
#pragma once

#include <algorithm>
#include <vector>
#include "cuda_common.h"

__global__ void embedding_forward_kernel(float* x, const float* wte, const int* idx, int N, int C) {
    int n = blockIdx.x;
    const float4* src = (const float4*)(wte + (size_t)idx[n] * C);
    float4* dst = (float4*)(x + (size_t)n * C);
    for (int i = threadIdx.x; i < C / 4; i += blockDim.x) dst[i] = src[i];
}

#define EMB_BLOCK 128      // columns per block in the backward
#define EMB_ACC 8          // partial sums per thread in the backward
#define EMB_SLICES 8       // threads per column for the groups of EMB_BIG_GROUP positions or more
#define EMB_BIG_GROUP 256

// tokens (n_unique), start (n_unique + 1), positions (N): the positions of tokens[u] are
// positions[start[u] .. start[u+1]). grid (groups, ceil(C / EMB_BLOCK)), block (EMB_BLOCK, slices): column i per
// thread row; slice s takes the runs of EMB_ACC positions k = EMB_ACC (s + slices m) + a, position k into
// partial sum a; each thread adds its partial sums in order, then slice 0 adds the slices in order.
__global__ void embedding_backward_kernel(float* dwte, const float* dx, const int* tokens, const int* start,
                                          const int* positions, int C) {
    __shared__ float slice_sum[EMB_SLICES][EMB_BLOCK];
    int u = blockIdx.x, i = blockIdx.y * blockDim.x + threadIdx.x, s = threadIdx.y, slices = blockDim.y;
    int first = start[u], n = start[u + 1] - first;
    float acc[EMB_ACC] = {};
    if (i < C) {
        int k = s * EMB_ACC;
        for (; k + EMB_ACC <= n; k += slices * EMB_ACC)
            for (int a = 0; a < EMB_ACC; a++) acc[a] += dx[(size_t)positions[first + k + a] * C + i];
        for (int a = 0; k + a < n && a < EMB_ACC; a++) acc[a] += dx[(size_t)positions[first + k + a] * C + i];
    }
    float sum = 0.0f;
    for (int a = 0; a < EMB_ACC; a++) sum += acc[a];
    if (slices > 1) {
        slice_sum[s][threadIdx.x] = sum;
        __syncthreads();
        if (s > 0) return;
        for (int t = 1; t < slices; t++) sum += slice_sum[t][threadIdx.x];
    }
    if (i < C) dwte[(size_t)tokens[u] * C + i] += sum;
}

// Host side: the grouping the backward needs, written as one int array [tokens | start | positions]
// (sizes n_unique, n_unique + 1, N), the most frequent tokens first (ties by token id), each token's
// positions in increasing order. Returns n_unique.
static int tokens_by_value(std::vector<int>* out, const int* idx, int N) {
    std::vector<int> count_of(N > 0 ? *std::max_element(idx, idx + N) + 1 : 0, 0);
    for (int i = 0; i < N; i++) count_of[idx[i]]++;
    std::vector<int> order(N);
    for (int i = 0; i < N; i++) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        int ta = idx[a], tb = idx[b];
        return count_of[ta] != count_of[tb] ? count_of[ta] > count_of[tb] : ta < tb;
    });
    std::vector<int> tokens, start;
    for (int i = 0; i < N; i++) {
        if (i == 0 || idx[order[i]] != idx[order[i - 1]]) { tokens.push_back(idx[order[i]]); start.push_back(i); }
    }
    start.push_back(N);
    out->clear();
    out->insert(out->end(), tokens.begin(), tokens.end());
    out->insert(out->end(), start.begin(), start.end());
    out->insert(out->end(), order.begin(), order.end());
    return (int)tokens.size();
}

static void embedding_forward(float* x, const float* wte, const int* idx, int N, int C, cudaStream_t stream) {
    embedding_forward_kernel<<<N, 128, 0, stream>>>(x, wte, idx, N, C);
    cudaCheckLaunch();
}

// groups: device copy of tokens_by_value's array; counts: the host's copy of it (its start part says how
// long each group is). The groups of EMB_BIG_GROUP positions or more, which tokens_by_value puts first, run
// EMB_SLICES threads per column, so that the longest group (in real text, thousands of positions for one
// token) is not one thread's chain of loads; the rest run one thread per column.
static void embedding_backward(float* dwte, const float* dx, const int* groups, const std::vector<int>& host_groups,
                               int n_unique, int C, cudaStream_t stream) {
    const int block = EMB_BLOCK;
    const int* start = host_groups.data() + n_unique;
    int n_big = 0;
    while (n_big < n_unique && start[n_big + 1] - start[n_big] >= EMB_BIG_GROUP) n_big++;
    const int* tokens = groups;
    const int* starts = groups + n_unique;
    const int* positions = groups + 2 * n_unique + 1;
    if (n_big > 0) {
        embedding_backward_kernel<<<dim3(n_big, ceil_div(C, block)), dim3(block, EMB_SLICES), 0, stream>>>(
            dwte, dx, tokens, starts, positions, C);
        cudaCheckLaunch();
    }
    if (n_big < n_unique) {
        embedding_backward_kernel<<<dim3(n_unique - n_big, ceil_div(C, block)), dim3(block, 1), 0, stream>>>(
            dwte, dx, tokens + n_big, starts + n_big, positions, C);
        cudaCheckLaunch();
    }
}
