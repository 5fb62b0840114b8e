// The MLP activation relu(u)^2 (spec section 2), elementwise on bf16 (N, 4C), fp32 arithmetic.
//   forward   a = relu(u)^2
//   backward  du = da * 2 relu(u)     (written over da)
#pragma once

#include "cuda_common.h"

__global__ void relu2_forward_kernel(bf16* a, const bf16* u, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = fmaxf(__bfloat162float(u[i]), 0.0f);
    a[i] = __float2bfloat16(x * x);
}

__global__ void relu2_backward_kernel(bf16* da, const bf16* u, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = fmaxf(__bfloat162float(u[i]), 0.0f);
    da[i] = __float2bfloat16(__bfloat162float(da[i]) * 2.0f * x);
}

static void relu2_forward(bf16* a, const bf16* u, size_t n, cudaStream_t stream) {
    relu2_forward_kernel<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(a, u, n);
    cudaCheckLaunch();
}

static void relu2_backward(bf16* da, const bf16* u, size_t n, cudaStream_t stream) {
    relu2_backward_kernel<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(da, u, n);
    cudaCheckLaunch();
}
