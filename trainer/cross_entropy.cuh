// Fused cross-entropy over the first V of Vp logit columns (spec section 2), forward and backward at once.
//   logits   bf16 (N, Vp); on exit it holds dlogits = scale * (softmax - onehot(target)) for columns < V
//            and 0 for the padding columns
//   losses   fp32 (N): -log softmax(logits[:V])[target]
//   targets  int (N)
// scale = 1 / (tokens in the whole batch), so that micro-steps add up to the mean; scale = 0 (evaluation)
// leaves the logits as they are. One block per row;
// fp32 max / sum, two passes over the row (the second one rereads it from L2).
#pragma once

#include <cfloat>
#include "cuda_common.h"

__global__ void cross_entropy_kernel(bf16* logits, float* losses, const int* targets, int V, int Vp, float scale) {
    int row = blockIdx.x;
    bf16* lr = logits + (size_t)row * Vp;
    int warps = blockDim.x / 32, w = threadIdx.x / 32, lane = threadIdx.x % 32;
    // online max and sum of exp over columns < V
    float m = -FLT_MAX, s = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {  // one exp per element: rescale only on a new max
        float x = __bfloat162float(lr[i]);
        if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffff, m, o), s2 = __shfl_xor_sync(0xffffffff, s, o);
        float mn = fmaxf(m, m2);
        s = s * expf(m - mn) + s2 * expf(m2 - mn);
        m = mn;
    }
    __shared__ float ms[32], ss[32];
    if (lane == 0) { ms[w] = m; ss[w] = s; }
    __syncthreads();
    m = -FLT_MAX; s = 0.0f;
    for (int k = 0; k < warps; k++) {  // every thread combines the warps in the same order
        float mn = fmaxf(m, ms[k]);
        s = s * expf(m - mn) + ss[k] * expf(ms[k] - mn);
        m = mn;
    }
    float lse = m + logf(s);
    int t = targets[row];
    float xt = __bfloat162float(lr[t]);
    __syncthreads();
    if (threadIdx.x == 0) losses[row] = lse - xt;
    if (scale == 0.0f) return;
    for (int i = threadIdx.x; i < Vp; i += blockDim.x) {
        float g = 0.0f;
        if (i < V) g = scale * (expf(__bfloat162float(lr[i]) - lse) - (i == t ? 1.0f : 0.0f));
        lr[i] = __float2bfloat16(g);
    }
}

static void cross_entropy_forward_backward(bf16* logits, float* losses, const int* targets, int N, int V, int Vp,
                                           float scale, cudaStream_t stream) {
    cross_entropy_kernel<<<N, 512, 0, stream>>>(logits, losses, targets, V, Vp, scale);
    cudaCheckLaunch();
}
