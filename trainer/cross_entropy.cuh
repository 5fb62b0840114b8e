// defines: cross_entropy_forward_backward
// Fused cross-entropy over the first V of Vp logit columns (spec section 2), forward and backward at once.
//   logits   bf16 (N, Vp); on exit it holds dlogits = scale * (softmax - onehot(target)) for columns < V
//            and 0 for the padding columns
//   losses   fp32 (N): -log softmax(logits[:V])[target]
//   targets  int (N); a negative target marks a position outside the loss mask: loss 0 and dlogits 0
// scale = 1 / (tokens in the whole batch), so that micro-steps add up to the mean; scale = 0 (evaluation)
// leaves the logits as they are. One block per row, 8 logits per 16-byte chunk (Vp must be a multiple of 8,
// V <= Vp); fp32 sums.
// The row is copied once into shared memory (cp.async) and three passes read it there: the max (on bf16
// pairs: max is exact in any precision), the sum of exp(x - max), and the gradient. The kernel is bound by
// instruction issue, not memory (32768 x 50304 logits: 2.5-2.6 ms at 2.5 TB/s with ~20 instructions per
// logit before), so each pass keeps per-logit work to a few instructions: bf16 -> fp32 by a shift or a mask,
// exp as one FFMA + MUFU.EX2 with the scale folded into the exponent, and per-element checks only in the one
// chunk that straddles V. Each thread reads back only the chunks it copied itself until the first barrier.
// Shared memory: Vp * 2 bytes, 100.6 KB for GPT-2's vocabulary: two blocks per SM.
#pragma once

#include <cfloat>
#include "async_copy.cuh"

#define CE_BLOCK 512
#define CE_MAX_SMEM (227 * 1024)   // the most dynamic shared memory one block may take (sm_90)
#define CE_LOG2E 1.4426950408889634f

// the block's max of v, returned to every thread; red: 32 floats of shared memory, free on entry
__device__ __forceinline__ float ce_block_max(float v, float* red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    v = -FLT_MAX;
    for (int w = 0; w < CE_BLOCK / 32; w++) v = fmaxf(v, red[w]);
    return v;
}

__global__ void __launch_bounds__(CE_BLOCK, 2) cross_entropy_kernel(bf16* logits, float* losses, const int* targets,
                                                                   int V, int Vp, float scale) {
    extern __shared__ uint4 row8[];   // the row, 8 logits per element
    __shared__ float red_max[32], red_sum[32];
    int row = blockIdx.x, n8 = Vp / 8, full8 = V / 8;   // chunks below full8 lie wholly inside the vocabulary
    uint4* lr8 = (uint4*)(logits + (size_t)row * Vp);
    int t = targets[row];
    if (t < 0) {   // outside the loss mask (the whole block leaves together: t is the row's)
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (scale != 0.0f)
            for (int c = threadIdx.x; c < n8; c += CE_BLOCK) lr8[c] = make_uint4(0, 0, 0, 0);
        return;
    }
    for (int c = threadIdx.x; c < n8; c += CE_BLOCK) cp_async16(&row8[c], &lr8[c], 16);
    cp_async_commit();
    cp_async_wait<0>();   // this thread's chunks have landed
    const bf16* xs = (const bf16*)row8;
    // pass 1: the max, on bf16 pairs (a NaN logit is skipped here and makes the sum NaN below)
    __nv_bfloat162 m2 = __float2bfloat162_rn(-FLT_MAX);
    for (int c = threadIdx.x; c < full8; c += CE_BLOCK) {
        uint4 v = row8[c];
        __nv_bfloat162 a = __hmax2(*(__nv_bfloat162*)&v.x, *(__nv_bfloat162*)&v.y);
        __nv_bfloat162 b = __hmax2(*(__nv_bfloat162*)&v.z, *(__nv_bfloat162*)&v.w);
        m2 = __hmax2(m2, __hmax2(a, b));
    }
    float m = fmaxf(__low2float(m2), __high2float(m2));
    if (full8 * 8 < V && threadIdx.x == full8 % CE_BLOCK)   // the chunk that straddles V is this thread's
        for (int i = full8 * 8; i < V; i++) m = fmaxf(m, __bfloat162float(xs[i]));
    m = ce_block_max(m, red_max);   // its barrier also makes every thread's chunks visible to all
    // pass 2: sum of exp(x - m) = 2^(x log2e - m log2e); two partial sums to halve the dependent adds
    float ml = m * CE_LOG2E, s0 = 0.0f, s1 = 0.0f;
    for (int c = threadIdx.x; c < full8; c += CE_BLOCK) {
        uint4 v = row8[c];
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
        for (int k = 0; k < 4; k++) {
            s0 += fast_exp2(fmaf(bf16_lo(u[k]), CE_LOG2E, -ml));
            s1 += fast_exp2(fmaf(bf16_hi(u[k]), CE_LOG2E, -ml));
        }
    }
    if (full8 * 8 < V && threadIdx.x == full8 % CE_BLOCK)
        for (int i = full8 * 8; i < V; i++) s0 += fast_exp2(fmaf(__bfloat162float(xs[i]), CE_LOG2E, -ml));
    float s = block_sum(s0 + s1, red_sum);   // trainer/cuda_common.h
    float lse = m + logf(s);
    float xt = __bfloat162float(xs[t]);
    if (threadIdx.x == 0) losses[row] = lse - xt;
    if (scale == 0.0f) return;
    // pass 3: dlogits = scale p - scale onehot(t), scale p = 2^(x log2e - (lse log2e - log2 scale)); 0 past V
    float off = lse * CE_LOG2E - log2f(scale);
    for (int c = threadIdx.x; c < n8; c += CE_BLOCK) {
        uint4 v = row8[c];
        uint32_t u[4] = {v.x, v.y, v.z, v.w};
        if (c < full8) {
            for (int k = 0; k < 4; k++) {
                __nv_bfloat162 g = __floats2bfloat162_rn(fast_exp2(fmaf(bf16_lo(u[k]), CE_LOG2E, -off)),
                                                         fast_exp2(fmaf(bf16_hi(u[k]), CE_LOG2E, -off)));
                u[k] = *(uint32_t*)&g;
            }
        } else {   // the straddling chunk and the padding
            bf16* e = (bf16*)u;
            for (int k = 0; k < 8; k++)
                e[k] = __float2bfloat16(8 * c + k < V ? fast_exp2(fmaf(__bfloat162float(e[k]), CE_LOG2E, -off)) : 0.0f);
        }
        lr8[c] = make_uint4(u[0], u[1], u[2], u[3]);
        if (c == t / 8)   // the target's own entry, after its chunk (same thread: stores land in program order)
            logits[(size_t)row * Vp + t] = __float2bfloat16(fast_exp2(fmaf(xt, CE_LOG2E, -off)) - scale);
    }
}

static void cross_entropy_forward_backward(bf16* logits, float* losses, const int* targets, int N, int V, int Vp,
                                           float scale, cudaStream_t stream) {
    size_t smem = (size_t)Vp * sizeof(bf16);
    if (Vp % 8 || V > Vp || smem > CE_MAX_SMEM) {
        fprintf(stderr, "cross_entropy: padded vocabulary %d must be a multiple of 8, >= %d and at most %d (one row "
                "in shared memory)\n", Vp, V, CE_MAX_SMEM / (int)sizeof(bf16));
        exit(EXIT_FAILURE);
    }
    static int smem_set = 0;   // the largest opt-in so far (the attribute holds for later launches)
    if ((int)smem > smem_set) {
        cudaCheck(cudaFuncSetAttribute(cross_entropy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        smem_set = (int)smem;
    }
    cross_entropy_kernel<<<N, CE_BLOCK, smem, stream>>>(logits, losses, targets, V, Vp, scale);
    cudaCheckLaunch();
}
