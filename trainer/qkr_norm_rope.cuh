// The per-head rmsnorm with a learned gain, then RoPE, of q, k and r (spec section 2). v passes untouched.
//   raw   bf16 (N, n*C): the qkvr GEMM output, [q | k | v | r], head h of each at columns h*D .. h*D+D-1
//   out   bf16 (N, n*C): q, k, r normalized, scaled by their gain and rotated (v columns are not written:
//         attention reads v from `raw`)
//   gains fp32 D-vectors of this layer: q_gain, k_gain, r_gain (NULL for the softmax variant)
//   rope  fp32 (T, D/2, 2): cos, sin of position * 10000^(-2i/D), half-split pairs (i, i + D/2)
// Forward:  y = x rstd, rstd = (mean_D(x^2) + 1e-6)^(-1/2);  n = y g;  out = [n1 cos - n2 sin, n1 sin + n2 cos]
// Backward: dn = rotate(dout, -angle);  dg += dn y;  dy = dn g;  dx = rstd (dy - y mean(dy y))
// One warp per (token, head, projection); lane l handles the pairs i = l, l + 32, ... < D/2. The gain
// gradient is summed per block in a fixed order, then over blocks in a fixed order: deterministic.
#pragma once

#include "cuda_common.h"
#include "rmsnorm.cuh"

#define QKR_MAX_PAIRS 2   // D <= 128

// which column block of the packed buffer each normalized projection sits in: q 0, k 1, r 3
__device__ __forceinline__ int qkr_column(int j) { return j == 2 ? 3 : j; }

struct QKRGains { const float* g[3]; };   // q, k, r gains of one layer
struct QKRGainGrads { float* g[3]; };

__global__ void qkr_norm_rope_forward_kernel(bf16* out, const bf16* raw, QKRGains gains, const float* rope,
                                             int N, int T, int H, int D, int n_proj) {
    int warp = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    int n_norm = n_proj == 4 ? 3 : 2;
    if (warp >= N * H * n_norm) return;
    int j = warp % n_norm, h = (warp / n_norm) % H, tok = warp / (n_norm * H);
    int C = H * D, half = D / 2, pos = tok % T;
    size_t base = (size_t)tok * n_proj * C + qkr_column(j) * C + h * D;
    float x1[QKR_MAX_PAIRS], x2[QKR_MAX_PAIRS];
    float ss = 0.0f;
    for (int p = 0; p < QKR_MAX_PAIRS; p++) {
        int i = lane + 32 * p;
        x1[p] = i < half ? __bfloat162float(raw[base + i]) : 0.0f;
        x2[p] = i < half ? __bfloat162float(raw[base + half + i]) : 0.0f;
        ss += x1[p] * x1[p] + x2[p] * x2[p];
    }
    float s = rsqrtf(warp_sum(ss) / D + RMSNORM_EPS);
    const float* g = gains.g[j];
    for (int p = 0; p < QKR_MAX_PAIRS; p++) {
        int i = lane + 32 * p;
        if (i >= half) break;
        float c = rope[(pos * half + i) * 2], sn = rope[(pos * half + i) * 2 + 1];
        float n1 = x1[p] * s * g[i], n2 = x2[p] * s * g[half + i];
        out[base + i] = __float2bfloat16(n1 * c - n2 * sn);
        out[base + half + i] = __float2bfloat16(n1 * sn + n2 * c);
    }
}

// dqkvr: on entry the gradient wrt `out` (from attention), on exit the gradient wrt `raw` (in place; the v
// columns are left as they are). dgain_partial: (gridDim.x, 3, D) per-block sums, reduced below.
__global__ void qkr_norm_rope_backward_kernel(bf16* dqkvr, float* dgain_partial, const bf16* raw, QKRGains gains,
                                              const float* rope, int N, int T, int H, int D, int n_proj) {
    extern __shared__ float smem[];  // (warps, 3, D)
    int n_norm = n_proj == 4 ? 3 : 2;
    int warps = blockDim.x / 32, w = threadIdx.x / 32, lane = threadIdx.x % 32;
    int C = H * D, half = D / 2;
    float* acc = smem + w * 3 * D;
    for (int i = lane; i < 3 * D; i += 32) acc[i] = 0.0f;
    int rows = N * H * n_norm;
    for (int row = blockIdx.x * warps + w; row < rows; row += gridDim.x * warps) {
        int j = row % n_norm, h = (row / n_norm) % H, tok = row / (n_norm * H), pos = tok % T;
        size_t base = (size_t)tok * n_proj * C + qkr_column(j) * C + h * D;
        const float* g = gains.g[j];
        float y1[QKR_MAX_PAIRS], y2[QKR_MAX_PAIRS], dy1[QKR_MAX_PAIRS], dy2[QKR_MAX_PAIRS];
        float ss = 0.0f;
        for (int p = 0; p < QKR_MAX_PAIRS; p++) {
            int i = lane + 32 * p;
            y1[p] = i < half ? __bfloat162float(raw[base + i]) : 0.0f;
            y2[p] = i < half ? __bfloat162float(raw[base + half + i]) : 0.0f;
            ss += y1[p] * y1[p] + y2[p] * y2[p];
        }
        float s = rsqrtf(warp_sum(ss) / D + RMSNORM_EPS);
        float dot = 0.0f;
        for (int p = 0; p < QKR_MAX_PAIRS; p++) {
            int i = lane + 32 * p;
            dy1[p] = dy2[p] = 0.0f;
            if (i >= half) continue;
            y1[p] *= s;
            y2[p] *= s;
            float c = rope[(pos * half + i) * 2], sn = rope[(pos * half + i) * 2 + 1];
            float d1 = __bfloat162float(dqkvr[base + i]), d2 = __bfloat162float(dqkvr[base + half + i]);
            float dn1 = d1 * c + d2 * sn, dn2 = -d1 * sn + d2 * c;
            acc[j * D + i] += dn1 * y1[p];
            acc[j * D + half + i] += dn2 * y2[p];
            dy1[p] = dn1 * g[i];
            dy2[p] = dn2 * g[half + i];
            dot += dy1[p] * y1[p] + dy2[p] * y2[p];
        }
        float mean = warp_sum(dot) / D;
        for (int p = 0; p < QKR_MAX_PAIRS; p++) {
            int i = lane + 32 * p;
            if (i >= half) break;
            dqkvr[base + i] = __float2bfloat16(s * (dy1[p] - y1[p] * mean));
            dqkvr[base + half + i] = __float2bfloat16(s * (dy2[p] - y2[p] * mean));
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 3 * D; i += blockDim.x) {
        float sum = 0.0f;
        for (int k = 0; k < warps; k++) sum += smem[k * 3 * D + i];
        dgain_partial[(size_t)blockIdx.x * 3 * D + i] = sum;
    }
}

// dgain_j[i] += sum over blocks of partial[block][j][i], in block order; one thread per (j, i).
__global__ void qkr_gain_reduce_kernel(QKRGainGrads dgains, const float* partial, int blocks, int n_norm, int D) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_norm * D) return;
    float sum = 0.0f;
    for (int b = 0; b < blocks; b++) sum += partial[(size_t)b * 3 * D + t];
    dgains.g[t / D][t % D] += sum;
}

#define QKR_BACKWARD_BLOCKS 264   // 2 per SM on an H200; also the size of the partials scratch

static void qkr_norm_rope_forward(bf16* out, const bf16* raw, QKRGains gains, const float* rope, int N, int T,
                                  int H, int D, int n_proj, cudaStream_t stream) {
    const int block = 256;
    int warps = N * H * (n_proj == 4 ? 3 : 2);
    qkr_norm_rope_forward_kernel<<<ceil_div(warps, block / 32), block, 0, stream>>>(out, raw, gains, rope, N, T, H,
                                                                                    D, n_proj);
    cudaCheckLaunch();
}

// dgains: fp32 gradients of this layer's gains (accumulated); scratch: QKR_BACKWARD_BLOCKS * 3 * D floats.
static void qkr_norm_rope_backward(bf16* dqkvr, QKRGainGrads dgains, float* scratch, const bf16* raw, QKRGains gains,
                                   const float* rope, int N, int T, int H, int D, int n_proj, cudaStream_t stream) {
    const int block = 256;
    size_t smem = (block / 32) * 3 * D * sizeof(float);
    qkr_norm_rope_backward_kernel<<<QKR_BACKWARD_BLOCKS, block, smem, stream>>>(dqkvr, scratch, raw, gains, rope, N,
                                                                               T, H, D, n_proj);
    cudaCheckLaunch();
    int n_norm = n_proj == 4 ? 3 : 2;
    qkr_gain_reduce_kernel<<<ceil_div(n_norm * D, 128), 128, 0, stream>>>(dgains, scratch, QKR_BACKWARD_BLOCKS, n_norm, D);
    cudaCheckLaunch();
}
