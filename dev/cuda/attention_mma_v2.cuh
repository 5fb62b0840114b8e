// Version 2 of the Parallax attention kernels (kernel study, dev/cuda/NOTES.md): mma.sync m16n8k16,
// FlashAttention-2 style, as the trainer used them until version 3 (parallax_kernels.cuh). What version 3
// changed: here every shared-memory tile is loaded synchronously (global -> registers -> shared, no
// overlap with the tensor-core work), operands that a product needs transposed (V in W V, K in dS K; Q, R,
// dO in the dk/dv pass) get a second, transposed copy written element by element (2-byte stores that
// conflict on the banks), and fragments are read with 32-bit shared loads. Same layout, arguments and
// numerics as version 3 (O2 with U as hi + lo bf16 parts); launchers attention_forward_mma_v2 and
// attention_backward_mma_v2. test_parallax checks it; dev/bench_parallax times it.
#pragma once

#include "../../parallax_kernels.cuh"   // fragment helpers, pair_terms

// The rounding residual of frag_a_from_c: bf16(c - bf16(c)). A product with frag_a_from_c's fragment plus one
// with this one carries c to about 16 significant bits instead of 8 (used for U in O2, see the forward).
__device__ __forceinline__ float bf16_residual(float x) { return x - __bfloat162float(__float2bfloat16_rn(x)); }
__device__ __forceinline__ void frag_a_residual_from_c(uint32_t* a, const float* c0, const float* c1) {
    a[0] = pack_bf16(bf16_residual(c0[0]), bf16_residual(c0[1]));
    a[1] = pack_bf16(bf16_residual(c0[2]), bf16_residual(c0[3]));
    a[2] = pack_bf16(bf16_residual(c1[0]), bf16_residual(c1[1]));
    a[3] = pack_bf16(bf16_residual(c1[2]), bf16_residual(c1[3]));
}

// B fragment (k0..k0+15) x (n0..n0+7) of B = M^T, M stored row-major as M[n][k] with leading dimension ld
__device__ __forceinline__ void frag_b_v2(uint32_t* b, const bf16* m, int ld, int n0, int k0, int g, int t) {
    b[0] = ld32(m + (n0 + g) * ld + k0 + 2 * t);
    b[1] = ld32(m + (n0 + g) * ld + k0 + 2 * t + 8);
}


// Copies `rows` token rows (D wide, from row0 of sequence b, head h) of a strided bf16 tensor into shared
// memory: row-major dst[row][d] (leading dim D + 8) and/or transposed dstT[d][row] (leading dim ROWS + 8).
// Rows past T are zero. 16-byte loads; all threads of the block take part.
template <int D, int ROWS>
__device__ __forceinline__ void load_tile_v2(bf16* dst, bf16* dstT, const bf16* src, int stride, int b, int h, int row0,
                                          int T) {
    constexpr int CHUNKS = D / 8;
    for (int idx = threadIdx.x; idx < ROWS * CHUNKS; idx += blockDim.x) {
        int row = idx / CHUNKS, c8 = (idx % CHUNKS) * 8;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (row0 + row < T) val = *(const uint4*)(src + (size_t)(b * T + row0 + row) * stride + h * D + c8);
        if (dst) *(uint4*)(dst + row * (D + 8) + c8) = val;
        if (dstT) {
            const bf16* e = (const bf16*)&val;
            for (int k = 0; k < 8; k++) dstT[(c8 + k) * (ROWS + 8) + row] = e[k];
        }
    }
}

// Copies ROWS per-row fp32 values (b, h, row0..) into shared memory, zero past T.
template <int ROWS>
__device__ __forceinline__ void load_rows_v2(float* dst, const float* src, int bh, int row0, int T) {
    for (int i = threadIdx.x; i < ROWS; i += blockDim.x) dst[i] = row0 + i < T ? src[(size_t)bh * T + row0 + i] : 0.0f;
}

// ---------------------------------------------------------------------------------------------------------
// forward. grid (ceil(T / 64), B*H), 128 threads: each warp owns 16 query rows and streams over key tiles
// of BK keys (the spec's recurrence, in log2 units: S is pre-multiplied by c log2 e):
//   m_new = max(m, rowmax S); a = 2^(m - m_new); W = 2^(S - m_new); Tt = R K^T; U = W o Tt
//   d1 = a d1 + rowsum W; d2 = a d2 + rowsum U; O1 = a O1 + W V; O2 = a O2 + U V
//   end: vbar = O1/d1; tbar = d2/d1; o = vbar (1 + tbar) - O2/d1; lse = m ln 2 + ln d1
// K goes to shared memory row-major (B operand of Q K^T), V transposed (B operand of W V).

template <int D, bool PROBE>
__global__ void __launch_bounds__(128) attention_forward_v2_kernel(bf16* o, bf16* vbar, float* lse, float* tbar,
                                                                const bf16* q, const bf16* r, const bf16* k,
                                                                const bf16* v, int B, int T, int H, int stride) {
    constexpr int BQ = 64, BK = D == 64 ? 64 : 32, KD = D / 16, NT = BK / 8, ND = D / 8;
    __shared__ __align__(16) bf16 Ks[BK * (D + 8)];
    __shared__ __align__(16) bf16 Vt[D * (BK + 8)];
    int qt = gridDim.x - 1 - blockIdx.x;  // the longest (last) query tiles start first
    int bh = blockIdx.y, b = bh / H, h = bh % H;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int q0 = qt * BQ + warp * 16;
    const float sc = rsqrtf((float)D) * LOG2E;

    // Q (and R) fragments of this warp's 16 rows stay in registers; rows past T read as zero
    uint32_t qa[KD][4], ra[KD][4];
    for (int kk = 0; kk < KD; kk++)
        for (int i = 0; i < 4; i++) {
            int row = q0 + g + (i & 1) * 8, col = kk * 16 + 2 * t + (i >> 1) * 8;
            size_t off = (size_t)(b * T + row) * stride + h * D + col;
            qa[kk][i] = row < T ? ld32(q + off) : 0u;
            ra[kk][i] = (PROBE && row < T) ? ld32(r + off) : 0u;
        }
    float m[2] = {-INFINITY, -INFINITY}, d1[2] = {0.0f, 0.0f}, d2[2] = {0.0f, 0.0f};
    float O1[ND][4], O2[ND][4];
    for (int nd = 0; nd < ND; nd++)
        for (int i = 0; i < 4; i++) O1[nd][i] = O2[nd][i] = 0.0f;

    int kv_end = min(T, (qt + 1) * BQ);  // causal: keys past the tile's last query are never needed
    for (int k0 = 0; k0 < kv_end; k0 += BK) {
        __syncthreads();
        load_tile_v2<D, BK>(Ks, NULL, k, stride, b, h, k0, T);
        load_tile_v2<D, BK>(NULL, Vt, v, stride, b, h, k0, T);
        __syncthreads();
        if (k0 > q0 + 15) continue;  // every key of this tile is after every row of this warp
        float S[NT][4], Tt[NT][4];
        for (int nt = 0; nt < NT; nt++) {
            for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = 0.0f;
            for (int kk = 0; kk < KD; kk++) {
                uint32_t bk[2];
                frag_b_v2(bk, Ks, D + 8, nt * 8, kk * 16, g, t);
                mma_bf16(S[nt], qa[kk], bk);
                if (PROBE) mma_bf16(Tt[nt], ra[kk], bk);
            }
        }
        // scale, mask, row max
        float mx[2] = {-INFINITY, -INFINITY};
        for (int nt = 0; nt < NT; nt++)
            for (int i = 0; i < 4; i++) {
                int key = k0 + nt * 8 + 2 * t + (i & 1), row = q0 + g + (i >> 1) * 8;
                float s = (key <= row && key < T) ? S[nt][i] * sc : -INFINITY;
                S[nt][i] = s;
                mx[i >> 1] = fmaxf(mx[i >> 1], s);
            }
        float a[2], mu[2];
        for (int j = 0; j < 2; j++) {
            float m_new = fmaxf(m[j], quad_max(mx[j]));
            mu[j] = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet (padding rows)
            a[j] = exp2f(m[j] - mu[j]);
            m[j] = m_new;
            d1[j] *= a[j];
            d2[j] *= a[j];
        }
        for (int nd = 0; nd < ND; nd++)
            for (int i = 0; i < 4; i++) {
                O1[nd][i] *= a[i >> 1];
                if (PROBE) O2[nd][i] *= a[i >> 1];
            }
        for (int nt = 0; nt < NT; nt++)
            for (int i = 0; i < 4; i++) {
                float w = exp2f(S[nt][i] - mu[i >> 1]);
                S[nt][i] = w;  // S now holds W
                d1[i >> 1] += w;
                if (PROBE) {
                    Tt[nt][i] *= w;  // Tt now holds U
                    d2[i >> 1] += Tt[nt][i];
                }
            }
        // O2 takes U as hi + lo bf16 parts: o = vbar (1 + tbar) - O2/d1 cancels, and with U in bf16 alone
        // against the fp32 d2 the cancellation left errors of 1e-3 in o (dev/cuda/NOTES.md)
        for (int kk = 0; kk < BK / 16; kk++) {
            uint32_t aw[4], au[4], aul[4];
            frag_a_from_c(aw, S[2 * kk], S[2 * kk + 1]);
            if (PROBE) {
                frag_a_from_c(au, Tt[2 * kk], Tt[2 * kk + 1]);
                frag_a_residual_from_c(aul, Tt[2 * kk], Tt[2 * kk + 1]);
            }
            for (int nd = 0; nd < ND; nd++) {
                uint32_t bv[2];
                frag_b_v2(bv, Vt, BK + 8, nd * 8, kk * 16, g, t);
                mma_bf16(O1[nd], aw, bv);
                if (PROBE) {
                    mma_bf16(O2[nd], au, bv);
                    mma_bf16(O2[nd], aul, bv);
                }
            }
        }
    }
    for (int j = 0; j < 2; j++) {
        d1[j] = quad_sum(d1[j]);
        d2[j] = quad_sum(d2[j]);
    }
    for (int j = 0; j < 2; j++) {
        int row = q0 + g + j * 8;
        if (row >= T) continue;
        float inv = 1.0f / d1[j], tb = PROBE ? d2[j] * inv : 0.0f;
        size_t out = (size_t)(b * T + row) * H * D + h * D;
        for (int nd = 0; nd < ND; nd++) {
            int col = nd * 8 + 2 * t;
            float v0 = O1[nd][2 * j] * inv, v1 = O1[nd][2 * j + 1] * inv;
            *(uint32_t*)(vbar + out + col) = pack_bf16(v0, v1);
            if (PROBE) {
                v0 = v0 * (1.0f + tb) - O2[nd][2 * j] * inv;
                v1 = v1 * (1.0f + tb) - O2[nd][2 * j + 1] * inv;
            }
            *(uint32_t*)(o + out + col) = pack_bf16(v0, v1);
        }
        if (t == 0) {
            lse[(size_t)bh * T + row] = m[j] * LN2 + logf(d1[j]);
            tbar[(size_t)bh * T + row] = tb;
        }
    }
}



// step 2: dq_i = c sum_j dS_ij k_j and dr_i = sum_j dT_ij k_j. grid (ceil(T / 64), B*H), 128 threads; each
// warp owns 16 query rows (Q, R, dO fragments in registers) and streams over key tiles of 32: K row-major
// and V row-major (B operands of Q K^T, R K^T, dO V^T), K transposed (B operand of dS K, dT K).
template <int D, bool PROBE>
__global__ void __launch_bounds__(128) attention_backward_dq_v2_kernel(bf16* dq, bf16* dr, const bf16* dO, const bf16* q,
                                                                    const bf16* r, const bf16* k, const bf16* v,
                                                                    const float* lse, const float* tbar, const float* Tg,
                                                                    const float* gvbar, int B, int T, int H, int stride) {
    constexpr int BQ = 64, BK = 32, KD = D / 16, NT = BK / 8, ND = D / 8;
    __shared__ __align__(16) bf16 Ks[BK * (D + 8)];
    __shared__ __align__(16) bf16 Vs[BK * (D + 8)];
    __shared__ __align__(16) bf16 Kt[D * (BK + 8)];
    int qt = gridDim.x - 1 - blockIdx.x;
    int bh = blockIdx.y, b = bh / H, h = bh % H;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int q0 = qt * BQ + warp * 16;
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    uint32_t qa[KD][4], ra[KD][4], ga[KD][4];
    for (int kk = 0; kk < KD; kk++)
        for (int i = 0; i < 4; i++) {
            int row = q0 + g + (i & 1) * 8, col = kk * 16 + 2 * t + (i >> 1) * 8;
            size_t off = (size_t)(b * T + row) * stride + h * D + col;
            qa[kk][i] = row < T ? ld32(q + off) : 0u;
            ra[kk][i] = (PROBE && row < T) ? ld32(r + off) : 0u;
            ga[kk][i] = row < T ? ld32(dO + (size_t)(b * T + row) * H * D + h * D + col) : 0u;
        }
    float lse2[2], tb[2], tg[2], gvb[2];
    for (int j = 0; j < 2; j++) {
        int row = q0 + g + j * 8;
        size_t ri = (size_t)bh * T + row;
        bool ok = row < T;
        lse2[j] = ok ? lse[ri] * LOG2E : INFINITY;  // padding rows: p = 0
        tb[j] = (ok && PROBE) ? tbar[ri] : 0.0f;
        tg[j] = ok ? Tg[ri] : 0.0f;
        gvb[j] = (ok && PROBE) ? gvbar[ri] : 0.0f;
    }
    float dQ[ND][4], dR[ND][4];
    for (int nd = 0; nd < ND; nd++)
        for (int i = 0; i < 4; i++) dQ[nd][i] = dR[nd][i] = 0.0f;

    int kv_end = min(T, (qt + 1) * BQ);
    for (int k0 = 0; k0 < kv_end; k0 += BK) {
        __syncthreads();
        load_tile_v2<D, BK>(Ks, Kt, k, stride, b, h, k0, T);
        load_tile_v2<D, BK>(Vs, NULL, v, stride, b, h, k0, T);
        __syncthreads();
        if (k0 > q0 + 15) continue;
        float S[NT][4], Tt[NT][4], A[NT][4];
        for (int nt = 0; nt < NT; nt++) {
            for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = A[nt][i] = 0.0f;
            for (int kk = 0; kk < KD; kk++) {
                uint32_t bk[2], bv[2];
                frag_b_v2(bk, Ks, D + 8, nt * 8, kk * 16, g, t);
                frag_b_v2(bv, Vs, D + 8, nt * 8, kk * 16, g, t);
                mma_bf16(S[nt], qa[kk], bk);
                if (PROBE) mma_bf16(Tt[nt], ra[kk], bk);
                mma_bf16(A[nt], ga[kk], bv);
            }
        }
        for (int nt = 0; nt < NT; nt++)
            for (int i = 0; i < 4; i++) {
                int key = k0 + nt * 8 + 2 * t + (i & 1), row = q0 + g + (i >> 1) * 8, j = i >> 1;
                PairTerms pt = pair_terms<PROBE>(S[nt][i], sc, Tt[nt][i], A[nt][i], lse2[j], tb[j], tg[j], gvb[j]);
                bool vis = key <= row && key < T;
                S[nt][i] = vis ? pt.dS : 0.0f;   // S now holds dS
                Tt[nt][i] = vis ? pt.dT : 0.0f;  // Tt now holds dT
            }
        for (int kk = 0; kk < BK / 16; kk++) {
            uint32_t as[4], at[4];
            frag_a_from_c(as, S[2 * kk], S[2 * kk + 1]);
            if (PROBE) frag_a_from_c(at, Tt[2 * kk], Tt[2 * kk + 1]);
            for (int nd = 0; nd < ND; nd++) {
                uint32_t bk[2];
                frag_b_v2(bk, Kt, BK + 8, nd * 8, kk * 16, g, t);
                mma_bf16(dQ[nd], as, bk);
                if (PROBE) mma_bf16(dR[nd], at, bk);
            }
        }
    }
    for (int j = 0; j < 2; j++) {
        int row = q0 + g + j * 8;
        if (row >= T) continue;
        size_t out = (size_t)(b * T + row) * stride + h * D;
        for (int nd = 0; nd < ND; nd++) {
            int col = nd * 8 + 2 * t;
            *(uint32_t*)(dq + out + col) = pack_bf16(c * dQ[nd][2 * j], c * dQ[nd][2 * j + 1]);
            if (PROBE) *(uint32_t*)(dr + out + col) = pack_bf16(dR[nd][2 * j], dR[nd][2 * j + 1]);
        }
    }
}

// step 3: dk_j = c sum_i dS_ij q_i + sum_i dT_ij r_i and dv_j = sum_i w_ij g_i. grid (ceil(T / 64), B*H),
// 128 threads; each warp owns 16 keys (K, V fragments in registers) and streams over query tiles of 32
// from the first that can see them, computing the transposed products S^T = K Q^T, T^T = K R^T,
// A^T = V dO^T. Q, R, dO go to shared memory row-major (B operands of those) and transposed (B operands of
// dS^T Q, dT^T R, w^T dO); the per-query statistics lse, tbar, Tg, gvbar too.
template <int D, bool PROBE>
__global__ void __launch_bounds__(128) attention_backward_dkv_v2_kernel(bf16* dk, bf16* dv, const bf16* dO, const bf16* q,
                                                                     const bf16* r, const bf16* k, const bf16* v,
                                                                     const float* lse, const float* tbar, const float* Tg,
                                                                     const float* gvbar, int B, int T, int H, int stride) {
    constexpr int BKV = 64, BQ = 32, KD = D / 16, NT = BQ / 8, ND = D / 8;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    bf16* Qs = (bf16*)smem_raw;                 // BQ x (D + 8), and likewise Rs, Gs
    bf16* Rs = Qs + BQ * (D + 8);
    bf16* Gs = Rs + BQ * (D + 8);
    bf16* Qt = Gs + BQ * (D + 8);               // D x (BQ + 8), and likewise Rt, Gt
    bf16* Rt = Qt + D * (BQ + 8);
    bf16* Gt = Rt + D * (BQ + 8);
    float* st = (float*)(Gt + D * (BQ + 8));    // lse log2 e, tbar, Tg, gvbar for the BQ queries
    int kt = blockIdx.x;
    int bh = blockIdx.y, b = bh / H, h = bh % H;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int kr0 = kt * BKV + warp * 16;  // this warp's first key
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    uint32_t ka[KD][4], va[KD][4];
    for (int kk = 0; kk < KD; kk++)
        for (int i = 0; i < 4; i++) {
            int row = kr0 + g + (i & 1) * 8, col = kk * 16 + 2 * t + (i >> 1) * 8;
            size_t off = (size_t)(b * T + row) * stride + h * D + col;
            ka[kk][i] = row < T ? ld32(k + off) : 0u;
            va[kk][i] = row < T ? ld32(v + off) : 0u;
        }
    float dK[ND][4], dV[ND][4];
    for (int nd = 0; nd < ND; nd++)
        for (int i = 0; i < 4; i++) dK[nd][i] = dV[nd][i] = 0.0f;

    for (int q0 = (kt * BKV / BQ) * BQ; q0 < T; q0 += BQ) {
        __syncthreads();
        load_tile_v2<D, BQ>(Qs, Qt, q, stride, b, h, q0, T);
        if (PROBE) load_tile_v2<D, BQ>(Rs, Rt, r, stride, b, h, q0, T);
        load_tile_v2<D, BQ>(Gs, Gt, dO, H * D, b, h, q0, T);
        load_rows_v2<BQ>(st, lse, bh, q0, T);
        load_rows_v2<BQ>(st + BQ, tbar, bh, q0, T);
        load_rows_v2<BQ>(st + 2 * BQ, Tg, bh, q0, T);
        load_rows_v2<BQ>(st + 3 * BQ, gvbar, bh, q0, T);
        __syncthreads();
        if (q0 + BQ - 1 < kr0) continue;  // every query of this tile is before every key of this warp
        float S[NT][4], Tt[NT][4], A[NT][4];
        for (int nt = 0; nt < NT; nt++) {
            for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = A[nt][i] = 0.0f;
            for (int kk = 0; kk < KD; kk++) {
                uint32_t bq[2], bg[2];
                frag_b_v2(bq, Qs, D + 8, nt * 8, kk * 16, g, t);
                frag_b_v2(bg, Gs, D + 8, nt * 8, kk * 16, g, t);
                mma_bf16(S[nt], ka[kk], bq);
                mma_bf16(A[nt], va[kk], bg);
                if (PROBE) {
                    uint32_t br[2];
                    frag_b_v2(br, Rs, D + 8, nt * 8, kk * 16, g, t);
                    mma_bf16(Tt[nt], ka[kk], br);
                }
            }
        }
        float W[NT][4];
        for (int nt = 0; nt < NT; nt++)
            for (int i = 0; i < 4; i++) {
                int qi = nt * 8 + 2 * t + (i & 1), key = kr0 + g + (i >> 1) * 8, query = q0 + qi;
                bool vis = key <= query && query < T && key < T;
                PairTerms pt = pair_terms<PROBE>(S[nt][i], sc, Tt[nt][i], A[nt][i], st[qi] * LOG2E,
                                                 PROBE ? st[BQ + qi] : 0.0f, st[2 * BQ + qi],
                                                 PROBE ? st[3 * BQ + qi] : 0.0f);
                S[nt][i] = vis ? c * pt.dS : 0.0f;  // S now holds c dS^T
                Tt[nt][i] = vis ? pt.dT : 0.0f;     // Tt now holds dT^T
                W[nt][i] = vis ? pt.w : 0.0f;
            }
        for (int kk = 0; kk < BQ / 16; kk++) {
            uint32_t as[4], at[4], aw[4];
            frag_a_from_c(as, S[2 * kk], S[2 * kk + 1]);
            frag_a_from_c(aw, W[2 * kk], W[2 * kk + 1]);
            if (PROBE) frag_a_from_c(at, Tt[2 * kk], Tt[2 * kk + 1]);
            for (int nd = 0; nd < ND; nd++) {
                uint32_t bq[2], bg[2];
                frag_b_v2(bq, Qt, BQ + 8, nd * 8, kk * 16, g, t);
                frag_b_v2(bg, Gt, BQ + 8, nd * 8, kk * 16, g, t);
                mma_bf16(dK[nd], as, bq);
                mma_bf16(dV[nd], aw, bg);
                if (PROBE) {
                    uint32_t br[2];
                    frag_b_v2(br, Rt, BQ + 8, nd * 8, kk * 16, g, t);
                    mma_bf16(dK[nd], at, br);
                }
            }
        }
    }
    for (int j = 0; j < 2; j++) {
        int row = kr0 + g + j * 8;
        if (row >= T) continue;
        size_t out = (size_t)(b * T + row) * stride + h * D;
        for (int nd = 0; nd < ND; nd++) {
            int col = nd * 8 + 2 * t;
            *(uint32_t*)(dk + out + col) = pack_bf16(dK[nd][2 * j], dK[nd][2 * j + 1]);
            *(uint32_t*)(dv + out + col) = pack_bf16(dV[nd][2 * j], dV[nd][2 * j + 1]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// launchers: the params structs of parallax_kernels.cuh to kernel arguments.

template <int D, bool PROBE>
static void attention_forward_mma_v2_launch(const AttentionForwardParams& p, cudaStream_t stream) {
    const AttentionShape& s = p.shape;
    dim3 grid(ceil_div(s.seq_len, 64), s.batch * s.heads);
    attention_forward_v2_kernel<D, PROBE><<<grid, 128, 0, stream>>>(p.saved.o, p.saved.vbar, p.saved.lse,
                                                                     p.saved.tbar, p.q, p.r, p.k, p.v, s.batch,
                                                                     s.seq_len, s.heads, p.stride);
    cudaCheckLaunch();
}

static void attention_forward_mma_v2(const AttentionForwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.shape, "attention_forward_mma_v2", [&](auto inst) {
        attention_forward_mma_v2_launch<decltype(inst)::head_dim, decltype(inst)::probe>(p, stream);
    });
}

// backward, step 1 (version 2 only; version 3 computes them in its dq pass): the two per-row dots Tg_i = g_i.o_i and B_i = g_i.vbar_i (fp32, (B, H, T)); one warp
// per row.
template <int D>
__global__ void attention_rowdots_kernel(float* Tg, float* gvbar, const bf16* dO, const bf16* o, const bf16* vbar,
                                         int B, int T, int H) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= B * H * T) return;
    int i = row % T, h = (row / T) % H, b = row / (T * H);
    size_t off = (size_t)(b * T + i) * H * D + h * D;
    float tg = 0.0f, bv = 0.0f;
    for (int d = 2 * lane; d < D; d += 64) {   // bf16 pairs: 128 contiguous bytes per warp and tensor
        float2 gd = __bfloat1622float2(*(const __nv_bfloat162*)(dO + off + d));
        float2 od = __bfloat1622float2(*(const __nv_bfloat162*)(o + off + d));
        float2 vd = __bfloat1622float2(*(const __nv_bfloat162*)(vbar + off + d));
        tg += gd.x * od.x + gd.y * od.y;
        bv += gd.x * vd.x + gd.y * vd.y;
    }
    for (int s = 16; s > 0; s >>= 1) {
        tg += __shfl_xor_sync(0xffffffff, tg, s);
        bv += __shfl_xor_sync(0xffffffff, bv, s);
    }
    if (lane == 0) { Tg[row] = tg; gvbar[row] = bv; }
}

template <int D, bool PROBE>
static void attention_backward_mma_v2_launch(const AttentionBackwardParams& p, cudaStream_t stream) {
    const AttentionForwardParams& f = p.fwd;
    const AttentionShape& s = f.shape;
    const int B = s.batch, T = s.seq_len, H = s.heads;
    attention_rowdots_kernel<D><<<ceil_div(B * H * T, 8), 256, 0, stream>>>(p.Tg, p.gvbar, p.dO, f.saved.o,
                                                                            f.saved.vbar, B, T, H);
    cudaCheckLaunch();
    dim3 grid(ceil_div(T, 64), B * H);
    attention_backward_dq_v2_kernel<D, PROBE><<<grid, 128, 0, stream>>>(p.dq, p.dr, p.dO, f.q, f.r, f.k, f.v,
                                                                         f.saved.lse, f.saved.tbar, p.Tg, p.gvbar,
                                                                         B, T, H, f.stride);
    cudaCheckLaunch();
    size_t smem = (3 * 32 * (D + 8) + 3 * D * (32 + 8)) * sizeof(bf16) + 4 * 32 * sizeof(float);
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_v2_kernel<D, PROBE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = true;
    }
    attention_backward_dkv_v2_kernel<D, PROBE><<<grid, 128, smem, stream>>>(p.dk, p.dv, p.dO, f.q, f.r, f.k, f.v,
                                                                             f.saved.lse, f.saved.tbar, p.Tg,
                                                                             p.gvbar, B, T, H, f.stride);
    cudaCheckLaunch();
}

static void attention_backward_mma_v2(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.fwd.shape, "attention_backward_mma_v2", [&](auto inst) {
        attention_backward_mma_v2_launch<decltype(inst)::head_dim, decltype(inst)::probe>(p, stream);
    });
}
