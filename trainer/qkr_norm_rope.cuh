// defines: qkr_norm_rope_forward, qkr_norm_rope_backward, QKRGains, QKRGainGrads
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
// The forward runs one row chunk (8 pairs) per thread over the whole grid; the backward one wave of blocks
// whose threads loop over rows, each adding its share of the gain gradient into its own shared-memory sums.
// Those are added per block, then over blocks, each in a fixed order: deterministic. (A backward with one row
// chunk per thread and shuffle sums per warp measured 0.227 ms for 32768 tokens x 12 heads x 3 projections,
// slower than this loop's 0.189 ms at 2 blocks per SM.)
#pragma once

#include "cuda_common.h"
#include "rmsnorm.cuh"
#include "async_copy.cuh"

#define QKR_PAIRS 8     // rotation pairs per thread
#define QKR_BLOCK 256   // threads per block, both directions

// which column block of the packed buffer each normalized projection sits in: q 0, k 1, r 3
__device__ __forceinline__ int qkr_column(int j) { return j == 2 ? 3 : j; }

struct QKRGains { const float* g[3]; };   // q, k, r gains of one layer
struct QKRGainGrads { float* g[3]; };

// gains j, picked with selects: indexing the kernel-parameter array by a run-time j would copy it to local memory
__device__ __forceinline__ const float* qkr_gain(QKRGains gains, int j) {
    return j == 0 ? gains.g[0] : j == 1 ? gains.g[1] : gains.g[2];
}

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

// grid (qkr_forward_blocks, projections), QKR_BLOCK threads
__global__ void __launch_bounds__(QKR_BLOCK) qkr_norm_rope_forward_kernel(bf16* out, const bf16* raw, QKRGains gains, const float* rope,
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
    const float* g = qkr_gain(gains, j);
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

// blocks per projection of the forward: one thread per row chunk of 8 pairs
static int qkr_forward_blocks(int N, int H, int D) {
    return (int)(((long long)N * H * (D / (2 * QKR_PAIRS)) + QKR_BLOCK - 1) / QKR_BLOCK);
}
// blocks per projection of the backward: one wave of QKR_BACKWARD_WAVE blocks over all projections (132 SMs x
// 4 blocks of <= 64 registers), whose threads loop over the rows. A fixed number, so the gain gradient's sums
// run in the same order on every GPU.
#define QKR_BACKWARD_WAVE 528
static int qkr_backward_blocks(int n_norm) { return QKR_BACKWARD_WAVE / n_norm; }
// the backward's scratch: one gain-gradient partial (3 D-vectors) per block, for 2 or 3 projections
static size_t qkr_backward_scratch_floats(int D) { return (size_t)qkr_backward_blocks(2) * 3 * D; }

// issues the copies of one row chunk of the backward's inputs into this thread's slots: raw's two halves
// (y1, y2) and dqkvr's (d1, d2); zeros when the chunk is past the last row
__device__ __forceinline__ void qkr_stage(uint4 (*slot)[QKR_BLOCK], const bf16* raw, const bf16* dqkvr, bool valid,
                                          size_t base, int i0, int half) {
    int n = valid ? 16 : 0;
    const bf16* r = valid ? raw + base + i0 : raw;   // zero-fill copies still need a valid address
    const bf16* d = valid ? dqkvr + base + i0 : dqkvr;
    cp_async16(&slot[0][threadIdx.x], r, n);
    cp_async16(&slot[1][threadIdx.x], r + half, n);
    cp_async16(&slot[2][threadIdx.x], d, n);
    cp_async16(&slot[3][threadIdx.x], d + half, n);
}

// dqkvr: on entry the gradient wrt `out` (from attention), on exit the gradient wrt `raw` (in place; the v
// columns are left as they are). dgain_partial: (blocks, 3, D) per-block sums of dn y, reduced below.
// grid (qkr_backward_blocks, projections), QKR_BLOCK threads; each thread loops over rows with a fixed stride
// (so its 8 pairs are the same elements of every row it takes) and adds its dn y into its own 16 floats of
// shared memory, which keeps the registers within 4 blocks per SM; its inputs arrive by cp.async one
// iteration ahead, into its own slots (no barrier), so two row chunks per thread are in flight.
__global__ void __launch_bounds__(QKR_BLOCK, 4) qkr_norm_rope_backward_kernel(bf16* dqkvr, float* dgain_partial,
        const bf16* raw, QKRGains gains, const float* rope, int N, int T, int H, int D, int n_proj) {
    __shared__ float4 acc[2 * QKR_PAIRS / 4][QKR_BLOCK];   // thread th's 16 sums: acc[0..3][th] (no bank conflicts)
    __shared__ uint4 stage[2][4][QKR_BLOCK];   // two row chunks of y1, y2, d1, d2 per thread (48 KB with acc)
    int j = blockIdx.y, half = D / 2, tpr = D / (2 * QKR_PAIRS);
    for (int k = 0; k < 2 * QKR_PAIRS / 4; k++) acc[k][threadIdx.x] = make_float4(0, 0, 0, 0);
    const float* g = qkr_gain(gains, j);
    long long stride = (long long)gridDim.x * blockDim.x, rows_threads = (long long)N * H * tpr;
    // every lane of a warp runs the same number of iterations (the shuffles need all 32)
    long long first = (long long)blockIdx.x * blockDim.x + (threadIdx.x / 32) * 32;
    int lane = threadIdx.x % 32;
    // each iteration copies the next row chunk into the other stage while it works on this one
    size_t nbase = 0;
    int npos = 0, ni0 = 0;
    bool nvalid = qkr_locate(&nbase, &npos, &ni0, first + lane, j, N, T, H, D, n_proj);
    qkr_stage(stage[0], raw, dqkvr, nvalid, nbase, ni0, half);
    cp_async_commit();
    int b = 0;
    for (long long t0 = first; t0 < rows_threads; t0 += stride, b ^= 1) {
        size_t base = nbase;
        int pos = npos, i0 = ni0;
        bool valid = nvalid;
        nvalid = qkr_locate(&nbase, &npos, &ni0, t0 + stride + lane, j, N, T, H, D, n_proj);
        qkr_stage(stage[b ^ 1], raw, dqkvr, nvalid, nbase, ni0, half);
        cp_async_commit();
        cp_async_wait<1>();   // this thread's copies of this iteration's chunk have landed
        float y1[QKR_PAIRS], y2[QKR_PAIRS], d1[QKR_PAIRS], d2[QKR_PAIRS];
        bf16x8_to_float(y1, stage[b][0][threadIdx.x]);
        bf16x8_to_float(y2, stage[b][1][threadIdx.x]);
        bf16x8_to_float(d1, stage[b][2][threadIdx.x]);
        bf16x8_to_float(d2, stage[b][3][threadIdx.x]);
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
                if (k % 4 == 3) {   // dn y into the shared sums, 4 at a time
                    float4 p = acc[k / 4][threadIdx.x], q = acc[2 + k / 4][threadIdx.x];
                    p.x += d1[k - 3] * y1[k - 3]; p.y += d1[k - 2] * y1[k - 2]; p.z += d1[k - 1] * y1[k - 1];
                    p.w += dn1 * y1[k];
                    q.x += d2[k - 3] * y2[k - 3]; q.y += d2[k - 2] * y2[k - 2]; q.z += d2[k - 1] * y2[k - 1];
                    q.w += dn2 * y2[k];
                    acc[k / 4][threadIdx.x] = p;
                    acc[2 + k / 4][threadIdx.x] = q;
                }
                d1[k] = dn1;   // d holds dn until the sums above have read it ...
                d2[k] = dn2;
            }
            for (int k = 0; k < QKR_PAIRS; k++) {
                d1[k] *= g[i0 + k];   // ... then dy = dn g
                d2[k] *= g[half + i0 + k];
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
    cp_async_wait<0>();   // the last prefetch (past the rows: zero fills) before the thread is done
    __syncthreads();
    // element e of the D-vector: lane slot q = (e % half) / 8 of every row group, in thread order
    const float* sums = (const float*)acc;   // float index: (k / 4) * 4 QKR_BLOCK + 4 th + k % 4
    for (int e = threadIdx.x; e < D; e += blockDim.x) {
        int i = e % half, q = i / QKR_PAIRS, k = i % QKR_PAIRS + (e >= half ? QKR_PAIRS : 0);
        float sum = 0.0f;
        for (int th = q; th < QKR_BLOCK; th += tpr) sum += sums[(k / 4) * 4 * QKR_BLOCK + 4 * th + k % 4];
        dgain_partial[((size_t)blockIdx.x * 3 + j) * D + e] = sum;
    }
}

// dgain_j[e] += sum over blocks of partial[block][j][e], in block order; one thread per (j, e).
__global__ void qkr_gain_reduce_kernel(QKRGainGrads dgains, const float* partial, int blocks, int n_norm, int D) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_norm * D) return;
    float sum = 0.0f;
    for (int b = 0; b < blocks; b++) sum += partial[(size_t)b * 3 * D + t];
    int j = t / D;
    float* dg = j == 0 ? dgains.g[0] : j == 1 ? dgains.g[1] : dgains.g[2];
    dg[t % D] += sum;
}

static void qkr_norm_rope_forward(bf16* out, const bf16* raw, QKRGains gains, const float* rope, int N, int T,
                                  int H, int D, int n_proj, cudaStream_t stream) {
    dim3 grid(qkr_forward_blocks(N, H, D), n_proj == 4 ? 3 : 2);
    qkr_norm_rope_forward_kernel<<<grid, QKR_BLOCK, 0, stream>>>(out, raw, gains, rope, N, T, H, D, n_proj);
    cudaCheckLaunch();
}

// dgains: fp32 gradients of this layer's gains (accumulated); scratch: qkr_backward_scratch_floats(D).
static void qkr_norm_rope_backward(bf16* dqkvr, QKRGainGrads dgains, float* scratch, const bf16* raw, QKRGains gains,
                                   const float* rope, int N, int T, int H, int D, int n_proj, cudaStream_t stream) {
    int n_norm = n_proj == 4 ? 3 : 2, blocks = qkr_backward_blocks(n_norm);
    qkr_norm_rope_backward_kernel<<<dim3(blocks, n_norm), QKR_BLOCK, 0, stream>>>(dqkvr, scratch, raw, gains, rope, N, T,
                                                                                 H, D, n_proj);
    cudaCheckLaunch();
    qkr_gain_reduce_kernel<<<ceil_div(n_norm * D, 128), 128, 0, stream>>>(dgains, scratch, blocks, n_norm, D);
    cudaCheckLaunch();
}
