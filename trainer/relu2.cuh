// defines: relu2_forward, relu2_backward
// The MLP activation relu(u)^2 (spec section 2), elementwise on bf16 (N, 4C), fp32 arithmetic.
//   forward   a = relu(u)^2
//   backward  du = da * 2 relu(u)     (written over da)
// Eight elements (16 bytes) per thread: n must be a multiple of 8 (it is N * 4C with C a multiple of 128),
// pointers 16-byte aligned.
#pragma once

#include "cuda_common.h"

__global__ void relu2_forward_kernel(bf16* a, const bf16* u, size_t n8) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return;
    uint4 uv = ((const uint4*)u)[i], av;
    const bf16* ue = (const bf16*)&uv;
    bf16* ae = (bf16*)&av;
    for (int k = 0; k < 8; k++) {
        float x = fmaxf(__bfloat162float(ue[k]), 0.0f);
        ae[k] = __float2bfloat16(x * x);
    }
    ((uint4*)a)[i] = av;
}

__global__ void relu2_backward_kernel(bf16* da, const bf16* u, size_t n8) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return;
    uint4 uv = ((const uint4*)u)[i], dv = ((const uint4*)da)[i];
    const bf16* ue = (const bf16*)&uv;
    bf16* de = (bf16*)&dv;
    for (int k = 0; k < 8; k++) {
        float x = fmaxf(__bfloat162float(ue[k]), 0.0f);
        de[k] = __float2bfloat16(__bfloat162float(de[k]) * 2.0f * x);
    }
    ((uint4*)da)[i] = dv;
}

static void relu2_check_size(size_t n) {
    if (n % 8) { fprintf(stderr, "relu2: %zu elements, not a multiple of 8\n", n); exit(EXIT_FAILURE); }
}

static void relu2_forward(bf16* a, const bf16* u, size_t n, cudaStream_t stream) {
    relu2_check_size(n);
    relu2_forward_kernel<<<(unsigned)((n / 8 + 255) / 256), 256, 0, stream>>>(a, u, n / 8);
    cudaCheckLaunch();
}

static void relu2_backward(bf16* da, const bf16* u, size_t n, cudaStream_t stream) {
    relu2_check_size(n);
    relu2_backward_kernel<<<(unsigned)((n / 8 + 255) / 256), 256, 0, stream>>>(da, u, n / 8);
    cudaCheckLaunch();
}
