// defines: logits_argmax
// The predicted token of each row of logits, for accuracies (recall tasks, last-word tests): the first
// column holding the row's largest logit among the first V of Vp, as torch.argmax picks it, so that a tie
// (at the spec's init every logit is 0) counts as column 0 and never as "every target right".
//   logits  bf16 (N, Vp)   (as the forward leaves them when the cross-entropy ran with scale 0)
//   out     int (N)
// One block of ARGMAX_BLOCK threads per row; NaN logits are passed over (a NaN row gives column 0).
#pragma once

#define ARGMAX_BLOCK 256

// (v, i) beats (w, j) when it is larger, or equal and earlier
__device__ __forceinline__ void argmax_merge(float* v, int* i, float w, int j) {
    if (w > *v || (w == *v && j < *i)) { *v = w; *i = j; }
}

__global__ void __launch_bounds__(ARGMAX_BLOCK) logits_argmax_kernel(const bf16* logits, int* out, int V, int Vp) {
    __shared__ float best_v[ARGMAX_BLOCK / 32];
    __shared__ int best_i[ARGMAX_BLOCK / 32];
    const bf16* x = logits + (size_t)blockIdx.x * Vp;
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int c = threadIdx.x; c < V; c += ARGMAX_BLOCK) argmax_merge(&v, &i, __bfloat162float(x[c]), c);
    for (int o = 16; o > 0; o >>= 1)
        argmax_merge(&v, &i, __shfl_xor_sync(0xffffffff, v, o), __shfl_xor_sync(0xffffffff, i, o));
    if (threadIdx.x % 32 == 0) { best_v[threadIdx.x / 32] = v; best_i[threadIdx.x / 32] = i; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_BLOCK / 32; w++) argmax_merge(&v, &i, best_v[w], best_i[w]);
        out[blockIdx.x] = i < V ? i : 0;   // every logit NaN: column 0
    }
}

static void logits_argmax(const bf16* logits, int* out, int N, int V, int Vp, cudaStream_t stream) {
    if (N == 0) return;
    logits_argmax_kernel<<<N, ARGMAX_BLOCK, 0, stream>>>(logits, out, V, Vp);
    cudaCheckLaunch();
}
