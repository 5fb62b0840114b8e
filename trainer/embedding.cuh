// Token embedding (spec section 2): x = wte[token], fp32 rows of C (the residual stream is fp32).
//   forward   x (N, C) = wte[idx[n]]
//   backward  dwte[tok] += sum of dx[n] over the positions n holding tok
// The backward is deterministic: the host groups positions by token (tokens_by_value below), and one block
// per distinct token sums its rows in position order, so no two blocks touch the same row.
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

// tokens (n_unique), start (n_unique + 1), positions (N): the positions of tokens[u] are
// positions[start[u] .. start[u+1]).
__global__ void embedding_backward_kernel(float* dwte, const float* dx, const int* tokens, const int* start,
                                          const int* positions, int C) {
    int u = blockIdx.x;
    float* dst = dwte + (size_t)tokens[u] * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float sum = 0.0f;
        for (int p = start[u]; p < start[u + 1]; p++) sum += dx[(size_t)positions[p] * C + i];
        dst[i] += sum;
    }
}

// Host side: the grouping the backward needs, written as one int array [tokens | start | positions]
// (sizes n_unique, n_unique + 1, N). Returns n_unique.
static int tokens_by_value(std::vector<int>* out, const int* idx, int N) {
    std::vector<int> order(N);
    for (int i = 0; i < N; i++) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return idx[a] < idx[b]; });
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

// groups: device copy of tokens_by_value's array.
static void embedding_backward(float* dwte, const float* dx, const int* groups, int n_unique, int C,
                               cudaStream_t stream) {
    embedding_backward_kernel<<<n_unique, 256, 0, stream>>>(dwte, dx, groups, groups + n_unique,
                                                            groups + 2 * n_unique + 1, C);
    cudaCheckLaunch();
}
