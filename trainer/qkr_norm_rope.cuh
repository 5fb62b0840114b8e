// The per-head rmsnorm with a learned gain, then RoPE, of q, k and r (spec section 2). v passes untouched.
//   raw   bf16 (N, n*C): the qkvr GEMM output, [q | k | v | r], head h of each at columns h*D .. h*D+D-1
//   out   bf16 (N, n*C): q, k, r normalized, scaled by their gain and rotated (v columns are not written:
//         attention reads v from `raw`)
//   gains fp32 D-vectors of this layer: q_gain, k_gain, r_gain (NULL for the softmax variant)
//   rope  fp32 (T, D/2, 2): cos, sin of position * 10000^(-2i/D), half-split pairs (i, i + D/2)
// Forward:  y = x rstd, rstd = (mean_D(x^2) + 1e-6)^(-1/2);  n = y g;  out = [n1 cos - n2 sin, n1 sin + n2 cos]
// Backward: dn = rotate(dout, -angle);  dg += dn y;  dy = dn g;  dx = rstd (dy - y mean(dy y))
// A "row" is one head of one projection of one token (D elements). Each thread takes 8 rotation pairs of a
// row: elements i..i+7 and i+D/2..i+D/2+7, one 16-byte load each; D/16 neighbouring lanes share a row and
// sum over it with shuffles. D must be 64 or 128 (checked by the trainer's flags). Rows are ordered
// (projection, token, head), so a warp reads whole contiguous heads.
// The gain gradient is summed per thread, then per block in a fixed order, then over blocks in a fixed
// order: deterministic.
#pragma once

#include "cuda_common.h"
#include "rmsnorm.cuh"

#define QKR_PAIRS 8               // rotation pairs per thread
#define QKR_BACKWARD_BLOCKS 264   // blocks per projection in the backward; also the size of the partials scratch

// which column block of the packed buffer each normalized projection sits in: q 0, k 1, r 3
__device__ __forceinline__ int qkr_column(int j) { return j == 2 ? 3 : j; }

struct QKRGains { const float* g[3]; };   // q, k, r gains of one layer
struct QKRGainGrads { float* g[3]; };

__device__ __forceinline__ void bf16x8_to_float(float* f, uint4 v) {
    const bf16* e = (const bf16*)&v;
    for (int k = 0; k < 8; k++) f[k] = __bfloat162float(e[k]);
}

__device__ __forceinline__ uint4 float_to_bf16x8(const float* f) {
    uint4 v;
    bf16* e = (bf16*)&v;
    for (int k = 0; k < 8; k++) e[k] = __float2bfloat16(f[k]);
    return v;
}

// sum over the `width` neighbouring lanes that share a row (width a power of two <= 32, groups aligned)
__device__ __forceinline__ float group_sum(float v, int width) {
    for (int o = width / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

// Where thread `t` of projection j works: the row's first element in the packed buffer, its position, and
// the first pair index i0 of its 8 pairs. Returns false past the last row.
__device__ __forceinline__ bool qkr_locate(size_t* base, int* pos, int* i0, long long t, int j, int N, int T, int H,
                                           int D, int n_proj) {
    int tpr = D / (2 * QKR_PAIRS);
    long long row = t / tpr;           // (token, head) of projection j
    if (row >= (long long)N * H) return false;
    int h = (int)(row % H), tok = (int)(row / H);
    *base = (size_t)tok * n_proj * H * D + qkr_column(j) * H * D + h * D;
    *pos = tok % T;
    *i0 = (int)(t % tpr) * QKR_PAIRS;
    return true;
}

// grid (ceil(N H D/16 / block), projections)
__global__ void qkr_norm_rope_forward_kernel(bf16* out, const bf16* raw, QKRGains gains, const float* rope,
                                             int N, int T, int H, int D, int n_proj) {
    int j = blockIdx.y, half = D / 2;
    size_t base;
    int pos, i0;
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    bool valid = qkr_locate(&base, &pos, &i0, t, j, N, T, H, D, n_proj);
    float x1[QKR_PAIRS] = {}, x2[QKR_PAIRS] = {};
    if (valid) {
        bf16x8_to_float(x1, *(const uint4*)(raw + base + i0));
        bf16x8_to_float(x2, *(const uint4*)(raw + base + half + i0));
    }
    float ss = 0.0f;
    for (int k = 0; k < QKR_PAIRS; k++) ss += x1[k] * x1[k] + x2[k] * x2[k];
    float s = rsqrtf(group_sum(ss, D / (2 * QKR_PAIRS)) / D + RMSNORM_EPS);
    if (!valid) return;
    const float* g = gains.g[j];
    const float2* cs = (const float2*)rope + (size_t)pos * half + i0;
    float o1[QKR_PAIRS], o2[QKR_PAIRS];
    for (int k = 0; k < QKR_PAIRS; k++) {
        float2 a = cs[k];
        float n1 = x1[k] * s * g[i0 + k], n2 = x2[k] * s * g[half + i0 + k];
        o1[k] = n1 * a.x - n2 * a.y;
        o2[k] = n1 * a.y + n2 * a.x;
    }
    *(uint4*)(out + base + i0) = float_to_bf16x8(o1);
    *(uint4*)(out + base + half + i0) = float_to_bf16x8(o2);
}

// dqkvr: on entry the gradient wrt `out` (from attention), on exit the gradient wrt `raw` (in place; the v
// columns are left as they are). dgain_partial: (QKR_BACKWARD_BLOCKS, 3, D) per-block sums, reduced below.
// grid (QKR_BACKWARD_BLOCKS, projections); threads loop over rows with a fixed stride, so each keeps the
// gain gradient of its own 16 elements.
__global__ void qkr_norm_rope_backward_kernel(bf16* dqkvr, float* dgain_partial, const bf16* raw, QKRGains gains,
                                              const float* rope, int N, int T, int H, int D, int n_proj) {
    extern __shared__ float smem[];  // (blockDim, 2 * QKR_PAIRS): each thread's gain gradient
    int j = blockIdx.y, half = D / 2, tpr = D / (2 * QKR_PAIRS);
    const float* g = gains.g[j];
    float dg1[QKR_PAIRS] = {}, dg2[QKR_PAIRS] = {};
    long long stride = (long long)gridDim.x * blockDim.x, rows_threads = (long long)N * H * tpr;
    // every lane of a warp runs the same number of iterations (the shuffles need all 32)
    long long first = (long long)blockIdx.x * blockDim.x + (threadIdx.x / 32) * 32;
    for (long long t0 = first; t0 < rows_threads; t0 += stride) {
        size_t base;
        int pos, i0;
        bool valid = qkr_locate(&base, &pos, &i0, t0 + threadIdx.x % 32, j, N, T, H, D, n_proj);
        float y1[QKR_PAIRS] = {}, y2[QKR_PAIRS] = {}, d1[QKR_PAIRS] = {}, d2[QKR_PAIRS] = {};
        if (valid) {
            bf16x8_to_float(y1, *(const uint4*)(raw + base + i0));
            bf16x8_to_float(y2, *(const uint4*)(raw + base + half + i0));
            bf16x8_to_float(d1, *(const uint4*)(dqkvr + base + i0));
            bf16x8_to_float(d2, *(const uint4*)(dqkvr + base + half + i0));
        }
        float ss = 0.0f;
        for (int k = 0; k < QKR_PAIRS; k++) ss += y1[k] * y1[k] + y2[k] * y2[k];
        float s = rsqrtf(group_sum(ss, tpr) / D + RMSNORM_EPS);
        float dot = 0.0f;
        if (valid) {
            const float2* cs = (const float2*)rope + (size_t)pos * half + i0;
            for (int k = 0; k < QKR_PAIRS; k++) {
                float2 a = cs[k];
                float dn1 = d1[k] * a.x + d2[k] * a.y, dn2 = -d1[k] * a.y + d2[k] * a.x;
                y1[k] *= s;
                y2[k] *= s;
                dg1[k] += dn1 * y1[k];
                dg2[k] += dn2 * y2[k];
                d1[k] = dn1 * g[i0 + k];   // d now holds dy = dn g
                d2[k] = dn2 * g[half + i0 + k];
                dot += d1[k] * y1[k] + d2[k] * y2[k];
            }
        }
        float mean = group_sum(dot, tpr) / D;
        if (!valid) continue;
        for (int k = 0; k < QKR_PAIRS; k++) {
            d1[k] = s * (d1[k] - y1[k] * mean);
            d2[k] = s * (d2[k] - y2[k] * mean);
        }
        *(uint4*)(dqkvr + base + i0) = float_to_bf16x8(d1);
        *(uint4*)(dqkvr + base + half + i0) = float_to_bf16x8(d2);
    }
    float* mine = smem + threadIdx.x * 2 * QKR_PAIRS;
    for (int k = 0; k < QKR_PAIRS; k++) { mine[k] = dg1[k]; mine[QKR_PAIRS + k] = dg2[k]; }
    __syncthreads();
    // element e of the D-vector: lane slot q = (e % half) / 8 of every row group, in thread order
    for (int e = threadIdx.x; e < D; e += blockDim.x) {
        int i = e % half, q = i / QKR_PAIRS, k = i % QKR_PAIRS + (e >= half ? QKR_PAIRS : 0);
        float sum = 0.0f;
        for (int th = q; th < blockDim.x; th += tpr) sum += smem[th * 2 * QKR_PAIRS + k];
        dgain_partial[((size_t)blockIdx.x * 3 + j) * D + e] = sum;
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

static void qkr_norm_rope_forward(bf16* out, const bf16* raw, QKRGains gains, const float* rope, int N, int T,
                                  int H, int D, int n_proj, cudaStream_t stream) {
    const int block = 256;
    long long threads = (long long)N * H * (D / (2 * QKR_PAIRS));
    dim3 grid((unsigned)((threads + block - 1) / block), n_proj == 4 ? 3 : 2);
    qkr_norm_rope_forward_kernel<<<grid, block, 0, stream>>>(out, raw, gains, rope, N, T, H, D, n_proj);
    cudaCheckLaunch();
}

// dgains: fp32 gradients of this layer's gains (accumulated); scratch: QKR_BACKWARD_BLOCKS * 3 * D floats.
static void qkr_norm_rope_backward(bf16* dqkvr, QKRGainGrads dgains, float* scratch, const bf16* raw, QKRGains gains,
                                   const float* rope, int N, int T, int H, int D, int n_proj, cudaStream_t stream) {
    const int block = 256;
    int n_norm = n_proj == 4 ? 3 : 2;
    size_t smem = block * 2 * QKR_PAIRS * sizeof(float);
    dim3 grid(QKR_BACKWARD_BLOCKS, n_norm);
    qkr_norm_rope_backward_kernel<<<grid, block, smem, stream>>>(dqkvr, scratch, raw, gains, rope, N, T, H, D, n_proj);
    cudaCheckLaunch();
    qkr_gain_reduce_kernel<<<ceil_div(n_norm * D, 128), 128, 0, stream>>>(dgains, scratch, QKR_BACKWARD_BLOCKS, n_norm, D);
    cudaCheckLaunch();
}
