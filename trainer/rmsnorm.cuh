// rmsnorm without a weight (spec section 2): h = x / sqrt(mean(x^2) + 1e-6), over rows of C.
//   forward   x fp32 (N, C) -> h bf16 (N, C) and rstd fp32 (N)
//   backward  dh fp32 (N, C), x, rstd -> dx += rstd (dh - y mean(dh y)), y = x rstd   (dx fp32, accumulated),
//             and the new dx rounded to bf16 into dx_bf16 unless it is NULL (the next GEMMs' operand, so no
//             separate conversion pass reads dx again)
// One warp per row, fp32 throughout; C must be a multiple of 128 (float4 loads per lane).
#pragma once

#include "cuda_common.h"

#define RMSNORM_EPS 1e-6f

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__global__ void rmsnorm_forward_kernel(bf16* h, float* rstd, const float* x, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const float4* xr = (const float4*)(x + (size_t)row * C);
    float ss = 0.0f;
    for (int i = lane; i < C / 4; i += 32) {
        float4 v = xr[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    float s = rsqrtf(warp_sum(ss) / C + RMSNORM_EPS);
    uint2* hr = (uint2*)(h + (size_t)row * C);   // 4 bf16 per 8-byte store
    for (int i = lane; i < C / 4; i += 32) {
        float4 v = xr[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x * s, v.y * s), hi = __floats2bfloat162_rn(v.z * s, v.w * s);
        hr[i] = make_uint2(*(uint32_t*)&lo, *(uint32_t*)&hi);
    }
    if (lane == 0) rstd[row] = s;
}

__global__ void rmsnorm_backward_kernel(float* dx, bf16* dx_bf16, const float* dh, const float* x, const float* rstd,
                                        int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const float4* xr = (const float4*)(x + (size_t)row * C);
    const float4* dr = (const float4*)(dh + (size_t)row * C);
    float4* dxr = (float4*)(dx + (size_t)row * C);
    float s = rstd[row];
    float dot = 0.0f;  // sum(dh * x)
    for (int i = lane; i < C / 4; i += 32) {
        float4 v = xr[i], g = dr[i];
        dot += v.x * g.x + v.y * g.y + v.z * g.z + v.w * g.w;
    }
    // mean(dh y) = s * sum(dh x) / C; dx = s dh - s * y * mean(dh y) = s dh - s^3 x sum(dh x) / C
    float k = s * s * s * warp_sum(dot) / C;
    for (int i = lane; i < C / 4; i += 32) {
        float4 v = xr[i], g = dr[i], o = dxr[i];
        o.x += s * g.x - k * v.x;
        o.y += s * g.y - k * v.y;
        o.z += s * g.z - k * v.z;
        o.w += s * g.w - k * v.w;
        dxr[i] = o;
        if (dx_bf16) {
            __nv_bfloat162 lo = __floats2bfloat162_rn(o.x, o.y), hi = __floats2bfloat162_rn(o.z, o.w);
            ((uint2*)(dx_bf16 + (size_t)row * C))[i] = make_uint2(*(uint32_t*)&lo, *(uint32_t*)&hi);
        }
    }
}

static void rmsnorm_forward(bf16* h, float* rstd, const float* x, int N, int C, cudaStream_t stream) {
    const int block = 256;
    rmsnorm_forward_kernel<<<ceil_div(N, block / 32), block, 0, stream>>>(h, rstd, x, N, C);
    cudaCheckLaunch();
}

static void rmsnorm_backward(float* dx, bf16* dx_bf16, const float* dh, const float* x, const float* rstd, int N,
                             int C, cudaStream_t stream) {
    const int block = 256;
    rmsnorm_backward_kernel<<<ceil_div(N, block / 32), block, 0, stream>>>(dx, dx_bf16, dh, x, rstd, N, C);
    cudaCheckLaunch();
}
