// Version 1 of the Parallax attention kernels (spec section 1): one thread per row, fp32, no tensor cores.
// The plainest correct version: the teaching baseline of the kernel study, and a second implementation that
// test_parallax checks alongside the tensor-core kernels of parallax_kernels.cuh (same layout, same
// arguments; launchers named *_rowwise). The softmax variant is the probe compiled out (PROBE = false).
//
// Layout, shared by every kernel here:
//   q, k, v, r   bf16, element (b, t, h, d) at [(b*T + t)*stride + h*D + d]; stride is the token stride,
//                n*C when they sit packed in the qkvr GEMM output (n = 4, or 3 for softmax)
//   o, vbar, dO  bf16 (B, T, H, D) contiguous, i.e. (B, T, C): o feeds the W_o GEMM directly
//   lse, tbar      fp32 (B, H, T): lse = logsumexp_j s_ij (= m + log d1), tbar_i = sum_j p_ij t_ij
//   dq, dk, dv, dr  bf16 with the same token stride as the inputs (they fill the packed dqkvr buffer)
// All accumulation is fp32. c = 1/sqrt(D) scales q.k only.
//
#pragma once

#include "../../parallax_kernels.cuh"   // AttentionForwardParams, AttentionBackwardParams, attention_dispatch

// ---------------------------------------------------------------------------------------------------------
// forward: one thread per query row (b, h, i), the streaming recurrence of the spec over keys j <= i
//   m_new = max(m, s); a = exp(m - m_new); w = exp(s - m_new); d1 = a d1 + w; O1 = a O1 + w v_j
//   (probe) t = r_i.k_j; d2 = a d2 + w t; O2 = a O2 + w t v_j
//   end: vbar = O1/d1; tbar = d2/d1; o = vbar (1 + tbar) - O2/d1
// grid: ceil(B*H*T / 128) blocks of 128 threads.
template <int D, bool PROBE>
__global__ void attention_forward_rowwise_kernel(bf16* o, bf16* vbar, float* lse, float* tbar,
                                                 const bf16* q, const bf16* r, const bf16* k, const bf16* v,
                                                 int B, int T, int H, int stride) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= B * H * T) return;
    int i = row % T, h = (row / T) % H, b = row / (T * H);
    const float c = rsqrtf((float)D);
    const bf16* qi = q + (size_t)(b * T + i) * stride + h * D;
    const bf16* ri = r + (size_t)(b * T + i) * stride + h * D;
    float qf[D], rf[D], O1[D], O2[D];
    for (int d = 0; d < D; d++) {
        qf[d] = __bfloat162float(qi[d]) * c;
        rf[d] = PROBE ? __bfloat162float(ri[d]) : 0.0f;
        O1[d] = 0.0f;
        O2[d] = 0.0f;
    }
    float m = -INFINITY, d1 = 0.0f, d2 = 0.0f;
    for (int j = 0; j <= i; j++) {
        const bf16* kj = k + (size_t)(b * T + j) * stride + h * D;
        const bf16* vj = v + (size_t)(b * T + j) * stride + h * D;
        float s = 0.0f, t = 0.0f;
        for (int d = 0; d < D; d++) {
            float kd = __bfloat162float(kj[d]);
            s += qf[d] * kd;
            if (PROBE) t += rf[d] * kd;
        }
        float m_new = fmaxf(m, s);
        float a = expf(m - m_new);  // exp(-inf) = 0 on the first key
        float w = expf(s - m_new);
        d1 = a * d1 + w;
        if (PROBE) d2 = a * d2 + w * t;
        for (int d = 0; d < D; d++) {
            float vd = __bfloat162float(vj[d]);
            O1[d] = a * O1[d] + w * vd;
            if (PROBE) O2[d] = a * O2[d] + w * t * vd;
        }
        m = m_new;
    }
    float inv = 1.0f / d1;
    float tb = d2 * inv;
    size_t out = (size_t)(b * T + i) * H * D + h * D;
    for (int d = 0; d < D; d++) {
        float vb = O1[d] * inv;
        vbar[out + d] = __float2bfloat16(vb);
        o[out + d] = __float2bfloat16(PROBE ? vb * (1.0f + tb) - O2[d] * inv : vb);
    }
    lse[row] = m + logf(d1);
    tbar[row] = tb;
}

// ---------------------------------------------------------------------------------------------------------
// backward, step 1: the two per-row dots Tg_i = g_i.o_i and B_i = g_i.vbar_i (fp32, (B, H, T)).
template <int D>
__global__ void attention_rowdots_rowwise_kernel(float* Tg, float* gvbar, const bf16* dO, const bf16* o,
                                                  const bf16* vbar, int B, int T, int H) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= B * H * T) return;
    int i = row % T, h = (row / T) % H, b = row / (T * H);
    size_t off = (size_t)(b * T + i) * H * D + h * D;
    float tg = 0.0f, bv = 0.0f;
    for (int d = 0; d < D; d++) {
        float g = __bfloat162float(dO[off + d]);
        tg += g * __bfloat162float(o[off + d]);
        bv += g * __bfloat162float(vbar[off + d]);
    }
    Tg[row] = tg;
    gvbar[row] = bv;
}

// The per-pair quantities of the backward, shared by the two kernels below:
//   p = exp(c q.k - L_i), t = r.k, A = g.v
//   dS = p [(A - Tg) + (tbar - t)(A - B)],  dT = -p (A - B),  weight = p (1 + tbar - t)
struct PairGradRowwise { float dS, dT, weight; };

__device__ __forceinline__ PairGradRowwise pair_grad_rowwise(float s, float t, float A, float lse_i, float tbi, float Tgi, float gvb,
                                              bool probe) {
    float p = expf(s - lse_i);
    PairGradRowwise pg;
    if (probe) {
        pg.dS = p * ((A - Tgi) + (tbi - t) * (A - gvb));
        pg.dT = -p * (A - gvb);
        pg.weight = p * (1.0f + tbi - t);
    } else {
        pg.dS = p * (A - Tgi);
        pg.dT = 0.0f;
        pg.weight = p;
    }
    return pg;
}

// step 2: one thread per query row i: dq_i = c sum_j dS_ij k_j, dr_i = sum_j dT_ij k_j (j <= i).
template <int D, bool PROBE>
__global__ void attention_backward_dq_rowwise_kernel(bf16* dq, bf16* dr, const bf16* dO, const bf16* q,
                                                     const bf16* r, const bf16* k, const bf16* v, const float* lse,
                                                     const float* tbar, const float* Tg, const float* gvbar,
                                                     int B, int T, int H, int stride) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= B * H * T) return;
    int i = row % T, h = (row / T) % H, b = row / (T * H);
    const float c = rsqrtf((float)D);
    size_t in = (size_t)(b * T + i) * stride + h * D;
    size_t go = (size_t)(b * T + i) * H * D + h * D;
    float qf[D], rf[D], gf[D], dqf[D], drf[D];
    for (int d = 0; d < D; d++) {
        qf[d] = __bfloat162float(q[in + d]) * c;
        rf[d] = PROBE ? __bfloat162float(r[in + d]) : 0.0f;
        gf[d] = __bfloat162float(dO[go + d]);
        dqf[d] = 0.0f;
        drf[d] = 0.0f;
    }
    float lse_i = lse[row], tbi = PROBE ? tbar[row] : 0.0f, Tgi = Tg[row], gvb = PROBE ? gvbar[row] : 0.0f;
    for (int j = 0; j <= i; j++) {
        const bf16* kj = k + (size_t)(b * T + j) * stride + h * D;
        const bf16* vj = v + (size_t)(b * T + j) * stride + h * D;
        float s = 0.0f, t = 0.0f, A = 0.0f;
        for (int d = 0; d < D; d++) {
            float kd = __bfloat162float(kj[d]);
            s += qf[d] * kd;
            if (PROBE) t += rf[d] * kd;
            A += gf[d] * __bfloat162float(vj[d]);
        }
        PairGradRowwise pg = pair_grad_rowwise(s, t, A, lse_i, tbi, Tgi, gvb, PROBE);
        for (int d = 0; d < D; d++) {
            float kd = __bfloat162float(kj[d]);
            dqf[d] += pg.dS * kd;
            if (PROBE) drf[d] += pg.dT * kd;
        }
    }
    for (int d = 0; d < D; d++) {
        dq[in + d] = __float2bfloat16(c * dqf[d]);
        if (PROBE) dr[in + d] = __float2bfloat16(drf[d]);
    }
}

// step 3: one thread per key row j: dk_j = c sum_i dS_ij q_i + sum_i dT_ij r_i,
//         dv_j = sum_i p_ij (1 + tbar_i - t_ij) g_i  (i >= j).
template <int D, bool PROBE>
__global__ void attention_backward_dkv_rowwise_kernel(bf16* dk, bf16* dv, const bf16* dO, const bf16* q,
                                                      const bf16* r, const bf16* k, const bf16* v, const float* lse,
                                                      const float* tbar, const float* Tg, const float* gvbar,
                                                      int B, int T, int H, int stride) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= B * H * T) return;
    int j = row % T, h = (row / T) % H, b = row / (T * H);
    const float c = rsqrtf((float)D);
    size_t in = (size_t)(b * T + j) * stride + h * D;
    float kf[D], vf[D], dkf[D], dvf[D];
    for (int d = 0; d < D; d++) {
        kf[d] = __bfloat162float(k[in + d]);
        vf[d] = __bfloat162float(v[in + d]);
        dkf[d] = 0.0f;
        dvf[d] = 0.0f;
    }
    for (int i = j; i < T; i++) {
        const bf16* qi = q + (size_t)(b * T + i) * stride + h * D;
        const bf16* ri = r + (size_t)(b * T + i) * stride + h * D;
        const bf16* gi = dO + (size_t)(b * T + i) * H * D + h * D;
        int ri_row = (b * H + h) * T + i;
        float s = 0.0f, t = 0.0f, A = 0.0f;
        for (int d = 0; d < D; d++) {
            s += __bfloat162float(qi[d]) * kf[d];
            if (PROBE) t += __bfloat162float(ri[d]) * kf[d];
            A += __bfloat162float(gi[d]) * vf[d];
        }
        PairGradRowwise pg = pair_grad_rowwise(s * c, t, A, lse[ri_row], PROBE ? tbar[ri_row] : 0.0f, Tg[ri_row],
                                PROBE ? gvbar[ri_row] : 0.0f, PROBE);
        for (int d = 0; d < D; d++) {
            dkf[d] += c * pg.dS * __bfloat162float(qi[d]);
            if (PROBE) dkf[d] += pg.dT * __bfloat162float(ri[d]);
            dvf[d] += pg.weight * __bfloat162float(gi[d]);
        }
    }
    for (int d = 0; d < D; d++) {
        dk[in + d] = __float2bfloat16(dkf[d]);
        dv[in + d] = __float2bfloat16(dvf[d]);
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers: the params structs of parallax_kernels.cuh to kernel arguments.

template <int D, bool PROBE>
static void attention_forward_rowwise_launch(const AttentionForwardParams& p, cudaStream_t stream) {
    const AttentionShape& s = p.shape;
    const int block = 128;
    attention_forward_rowwise_kernel<D, PROBE><<<ceil_div(s.batch * s.heads * s.seq_len, block), block, 0, stream>>>(
        p.saved.o, p.saved.vbar, p.saved.lse, p.saved.tbar, p.q, p.r, p.k, p.v, s.batch, s.seq_len, s.heads,
        p.stride);
    cudaCheckLaunch();
}

static void attention_forward_rowwise(const AttentionForwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.shape, "attention_forward_rowwise", [&](auto inst) {
        attention_forward_rowwise_launch<decltype(inst)::head_dim, decltype(inst)::probe>(p, stream);
    });
}

template <int D, bool PROBE>
static void attention_backward_rowwise_launch(const AttentionBackwardParams& p, cudaStream_t stream) {
    const AttentionForwardParams& f = p.fwd;
    const AttentionShape& s = f.shape;
    const int block = 128, B = s.batch, T = s.seq_len, H = s.heads;
    int grid = ceil_div(B * H * T, block);
    attention_rowdots_rowwise_kernel<D><<<grid, block, 0, stream>>>(p.Tg, p.gvbar, p.dO, f.saved.o, f.saved.vbar, B,
                                                                    T, H);
    cudaCheckLaunch();
    attention_backward_dq_rowwise_kernel<D, PROBE><<<grid, block, 0, stream>>>(
        p.dq, p.dr, p.dO, f.q, f.r, f.k, f.v, f.saved.lse, f.saved.tbar, p.Tg, p.gvbar, B, T, H, f.stride);
    cudaCheckLaunch();
    attention_backward_dkv_rowwise_kernel<D, PROBE><<<grid, block, 0, stream>>>(
        p.dk, p.dv, p.dO, f.q, f.r, f.k, f.v, f.saved.lse, f.saved.tbar, p.Tg, p.gvbar, B, T, H, f.stride);
    cudaCheckLaunch();
}

static void attention_backward_rowwise(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.fwd.shape, "attention_backward_rowwise", [&](auto inst) {
        attention_backward_rowwise_launch<decltype(inst)::head_dim, decltype(inst)::probe>(p, stream);
    });
}
