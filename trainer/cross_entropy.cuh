// Fused cross-entropy over the first V of Vp logit columns (spec section 2), forward and backward at once.
//   logits   bf16 (N, Vp); on exit it holds dlogits = scale * (softmax - onehot(target)) for columns < V
//            and 0 for the padding columns
//   losses   fp32 (N): -log softmax(logits[:V])[target]
//   targets  int (N)
// scale = 1 / (tokens in the whole batch), so that micro-steps add up to the mean; scale = 0 (evaluation)
// leaves the logits as they are. One block per row, 8 logits per 16-byte access (Vp must be a multiple of 8,
// V <= Vp); fp32 max / sum, two passes over the row (the second one rereads it, mostly from L2). Each pass
// issues CE_UNROLL loads per thread before it waits on any: more bytes in flight per SM.
#pragma once

#include <cfloat>
#include "cuda_common.h"

#define CE_BLOCK 512
#define CE_UNROLL 4

// the chunks c0 + u CE_BLOCK (u < CE_UNROLL, below n8) of a row, all loads issued before any is used
__device__ __forceinline__ void ce_load_chunks(uint4* v, const uint4* lr8, int c0, int n8) {
    for (int u = 0; u < CE_UNROLL; u++)
        if (c0 + u * CE_BLOCK < n8) v[u] = lr8[c0 + u * CE_BLOCK];
}

// online max m and sum s of exp over the logits of one chunk of 8 (only its first n are in the vocabulary);
// s is rescaled only when the chunk raises the max; a NaN logit makes s NaN
__device__ __forceinline__ void ce_chunk_stats(uint4 v, int n, float& m, float& s) {
    const bf16* e = (const bf16*)&v;
    float cm = -FLT_MAX;
    for (int k = 0; k < 8; k++)
        if (k < n) cm = fmaxf(cm, __bfloat162float(e[k]));
    if (cm > m) {
        s *= __expf(m - cm);
        m = cm;
    }
    for (int k = 0; k < 8; k++)
        if (k < n) s += __expf(__bfloat162float(e[k]) - m);
}

// the gradient of one chunk of 8 logits from column c8: scale (softmax - onehot(t)), 0 past V
__device__ __forceinline__ uint4 ce_chunk_grad(uint4 v, int c8, int V, int t, float lse, float scale) {
    bf16* e = (bf16*)&v;
    for (int k = 0; k < 8; k++) {
        int i = c8 + k;
        float g = 0.0f;
        if (i < V) g = scale * (__expf(__bfloat162float(e[k]) - lse) - (i == t ? 1.0f : 0.0f));
        e[k] = __float2bfloat16(g);
    }
    return v;
}

__global__ void __launch_bounds__(CE_BLOCK) cross_entropy_kernel(bf16* logits, float* losses, const int* targets,
                                                                int V, int Vp, float scale) {
    int row = blockIdx.x, n8 = Vp / 8;
    bf16* lr = logits + (size_t)row * Vp;
    uint4* lr8 = (uint4*)lr;   // 8 logits per 16-byte access
    int warps = blockDim.x / 32, w = threadIdx.x / 32, lane = threadIdx.x % 32;
    float m = -FLT_MAX, s = 0.0f;
    for (int c0 = threadIdx.x; c0 < n8; c0 += CE_UNROLL * CE_BLOCK) {
        uint4 v[CE_UNROLL];
        ce_load_chunks(v, lr8, c0, n8);
        for (int u = 0; u < CE_UNROLL; u++) {
            int c = c0 + u * CE_BLOCK;
            if (c < n8) ce_chunk_stats(v[u], V - 8 * c, m, s);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffff, m, o), s2 = __shfl_xor_sync(0xffffffff, s, o);
        float mn = fmaxf(m, m2);
        s = s * __expf(m - mn) + s2 * __expf(m2 - mn);
        m = mn;
    }
    __shared__ float ms[32], ss[32];
    if (lane == 0) { ms[w] = m; ss[w] = s; }
    __syncthreads();
    m = -FLT_MAX; s = 0.0f;
    for (int k = 0; k < warps; k++) {  // every thread combines the warps in the same order
        float mn = fmaxf(m, ms[k]);
        s = s * __expf(m - mn) + ss[k] * __expf(ms[k] - mn);
        m = mn;
    }
    float lse = m + logf(s);
    int t = targets[row];
    float xt = __bfloat162float(lr[t]);
    __syncthreads();   // every thread has read lr[t] before anyone overwrites it
    if (threadIdx.x == 0) losses[row] = lse - xt;
    if (scale == 0.0f) return;
    // second pass: the gradient over the logits, 8 at a time
    for (int c0 = threadIdx.x; c0 < n8; c0 += CE_UNROLL * CE_BLOCK) {
        uint4 v[CE_UNROLL];
        ce_load_chunks(v, lr8, c0, n8);
        for (int u = 0; u < CE_UNROLL; u++) {
            int c = c0 + u * CE_BLOCK;
            if (c < n8) lr8[c] = ce_chunk_grad(v[u], 8 * c, V, t, lse, scale);
        }
    }
}

static void cross_entropy_forward_backward(bf16* logits, float* losses, const int* targets, int N, int V, int Vp,
                                           float scale, cudaStream_t stream) {
    if (Vp % 8 || V > Vp) {
        fprintf(stderr, "cross_entropy: padded vocabulary %d must be a multiple of 8 and >= %d\n", Vp, V);
        exit(EXIT_FAILURE);
    }
    cross_entropy_kernel<<<N, CE_BLOCK, 0, stream>>>(logits, losses, targets, V, Vp, scale);
    cudaCheckLaunch();
}
