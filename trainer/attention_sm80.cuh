// defines: attention_forward_sm80, attention_backward_sm80 (namespace sm80: the kernels)
// Parallax (and softmax) attention forward and backward for every GPU from compute capability 8.0 (A100, A10,
// A6000, L4, RTX 30xx / 40xx; also runs on Hopper): mma.sync m16n8k16, ldmatrix and cp.async only, with
// plain mbarriers (arrival counts, no transaction counts) between the tile ring's producers and consumers.
// No TMA, no wgmma, no mbarrier try_wait: every instruction here exists on sm_80. Same algorithm, same
// layouts and the same numerics as the Hopper kernels in parallax_kernels.cuh (version 3 of the kernel
// study, before its tiles moved to TMA), so the two paths are checked against the same references.
//
// Layout:
//   q, k, v, r      bf16, element (b, t, h, d) at [(b*T + t)*stride + h*D + d]; stride is the token stride,
//                   n*C when they sit packed in the qkvr GEMM output (n = 4, or 3 for softmax)
//   o, vbar, dO     bf16 (B, T, H, D) contiguous, i.e. (B, T, C)
//   L, tbar         fp32 (B, H, T): L = logsumexp_j s_ij (natural log), tbar_i = sum_j p_ij t_ij
//   dq, dk, dv, dr  bf16 with the same token stride as the inputs (they fill the packed dqkvr buffer)
// c = 1/sqrt(D) scales q.k only. Products run on mma.sync m16n8k16 (bf16 in, fp32 accumulate); the
// probabilities are rounded to bf16 only as operands of the P V products, as in FlashAttention-2.
//
// mma.sync m16n8k16 fragments, lane = 4 g + t (g = lane / 4, t = lane % 4):
//   A (16 x 16, row major)  a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//   B (16 x 8, k x n)       b0 (k = 2t..2t+1, n = g)  b1 (k = 2t+8.., n = g)
//   C (16 x 8, fp32)        c0 c1 (g, 2t..2t+1)  c2 c3 (g+8, 2t..2t+1)
// A C tile pair converts to an A fragment in registers: that is how P feeds P V without shared memory.
// Shared-memory tiles are token rows, row-major with D + 8 bf16 per row (the 16-byte pad puts the 8 rows
// that one ldmatrix reads on different banks); they arrive by cp.async, the next tiles while the tensor
// cores work on this one. B fragments come from them with ldmatrix: plain where the product contracts
// over d (Q K^T: storage K[key][d] = B^T), transposed (.trans) where it contracts over tokens (W V:
// storage V[key][d] = B), so no tile is ever stored twice.
//
// Everything lives in namespace sm80 (the Hopper header has helpers of the same names); calls with bf16
// arguments are written sm80::name, since argument-dependent lookup would also find the global ones. The two
// entry points outside it take the same arguments as attention_forward / attention_backward.
#pragma once

#include <cstdint>
#include "cuda_common.h"
#include "async_copy.cuh"   // defines: smem_u32, cp_async16, cp_async4
#include "../parallax_kernels.cuh"   // defines: AttentionForwardParams, AttentionBackwardParams, attention_dispatch

#ifndef LOG2E
#define LOG2E 1.4426950408889634f
#endif
#ifndef LN2
#define LN2 0.6931471805599453f
#endif

namespace sm80 {

// ---------------------------------------------------------------------------------------------------------
// tuning knobs. Shared memory per block stays under 99 KB (the opt-in limit of 8.6 and 8.9: 100 KB per SM);
// A100 and Hopper fit several such blocks per SM.
constexpr int smem_limit = 99 * 1024;
// blocks per SM that each D = 64 kernel is compiled for (__launch_bounds__ caps the registers: 2 blocks up to
// 255 per thread, 3: 168, 4: 128); the D = 128 kernels take 1. [probe][forward, dq pass, dk/dv pass]: the
// Hopper path's choices, which were measured (dev/cuda/NOTES.md).
constexpr int min_blocks[2][3] = {{4, 4, 3}, {2, 2, 3}};
constexpr int fwd_keys64 = 64;              // keys per forward tile at D = 64 (D = 128: 32, for registers)
constexpr int fwd_stages[2] = {3, 4};       // [probe] K, V buffers of the forward (session 5's measurement)
constexpr int dq_keys = 32, dq_stages = 3;  // keys per tile and K, V buffers of the dq pass
constexpr int dkv_stages = 3;               // query-tile buffers of the dk/dv pass
constexpr int bh_group = 64;                // sequence-heads whose blocks start together (block_rank)

// ---------------------------------------------------------------------------------------------------------
// fragment helpers

__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t*)&v;
}

__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *(const uint32_t*)p; }
// A fragment over k = 16 columns (two C tiles, n-tiles 2kk and 2kk+1) of fp32 accumulators, rounded to bf16
__device__ __forceinline__ void frag_a_from_c(uint32_t* a, const float* c0, const float* c1) {
    a[0] = sm80::pack_bf16(c0[0], c0[1]);
    a[1] = sm80::pack_bf16(c0[2], c0[3]);
    a[2] = sm80::pack_bf16(c1[0], c1[1]);
    a[3] = sm80::pack_bf16(c1[2], c1[3]);
}

// The rounding residual of frag_a_from_c: bf16(c - bf16(c)). A product with frag_a_from_c's fragment plus one
// with this one carries c to about 16 significant bits instead of 8 (used for U in O2, see the forward).
__device__ __forceinline__ float bf16_residual(float x) { return x - __bfloat162float(__float2bfloat16_rn(x)); }
__device__ __forceinline__ void frag_a_residual_from_c(uint32_t* a, const float* c0, const float* c1) {
    a[0] = sm80::pack_bf16(bf16_residual(c0[0]), bf16_residual(c0[1]));
    a[1] = sm80::pack_bf16(bf16_residual(c0[2]), bf16_residual(c0[3]));
    a[2] = sm80::pack_bf16(bf16_residual(c1[0]), bf16_residual(c1[1]));
    a[3] = sm80::pack_bf16(bf16_residual(c1[2]), bf16_residual(c1[3]));
}


// sum / max over the 4 threads (t = 0..3) that share a row of a C fragment
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffff, v, 1);
    return v + __shfl_xor_sync(0xffffffff, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffff, v, 2));
}


// ---------------------------------------------------------------------------------------------------------
// shared memory: mbarriers and ldmatrix fragment loads (the cp.async wrappers are in trainer/async_copy.cuh)

// mbarriers (PTX ISA, mbarrier): a 64-bit shared-memory object whose phase completes when the count of
// arrivals given at init has arrived; waiting is on the parity of the phase (0 for the first).
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
// one arrival on bar once every cp.async this thread has issued so far has landed (.noinc: the arrival is one
// of the count given at init)
__device__ __forceinline__ void cp_async_mbar_arrive(uint64_t* bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
// test_wait (sm_80) polls once; try_wait, which suspends the thread for a while, is sm_90 only
__device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity) {
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n.reg .pred p;\nmbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity)
                     : "memory");
}

// Every attention kernel here runs one warpgroup (4 warps) per block; the tile loaders below rely on it (their
// loops have a fixed trip count, the per-thread addresses are computed once per tile).
constexpr int ATTN_THREADS = 128;

// A ring of STAGES shared-memory buffers that every thread of the block fills with cp.async, tile after tile,
// with two mbarriers per buffer instead of __syncthreads: full (every thread's copies of the tile have landed)
// and empty (every thread is done reading it). Tile i lives in buffer i % STAGES. A warp waits only for the
// data it reads, and refills a buffer only once the slowest warp has left it, so warps may drift apart by a
// tile without stopping each other (measured: dev/cuda/NOTES.md, session 5).
template <int STAGES>
struct StageRing {
    uint64_t* full;    // [STAGES]
    uint64_t* empty;   // [STAGES]
    __device__ StageRing(uint64_t* bars) : full(bars), empty(bars + STAGES) {}
    // thread 0 sets the counts; the block must __syncthreads before the first use
    __device__ void init() {
        if (threadIdx.x == 0)
            for (int s = 0; s < STAGES; s++) {
                mbar_init(&full[s], ATTN_THREADS);
                mbar_init(&empty[s], ATTN_THREADS);
            }
    }
    // before loading tile i: every thread is done with tile i - STAGES, the buffer's previous tile
    __device__ void wait_empty(int i) {
        if (i >= STAGES) mbar_wait(&empty[i % STAGES], (i / STAGES - 1) & 1);
    }
    // after issuing this thread's copies of tile i
    __device__ void loaded(int i) { cp_async_mbar_arrive(&full[i % STAGES]); }
    __device__ void wait_full(int i) { mbar_wait(&full[i % STAGES], (i / STAGES) & 1); }
    __device__ void release(int i) { mbar_arrive(&empty[i % STAGES]); }
};
constexpr int STAGE_RING_BYTES = 2 * 8;   // shared memory per stage for the two mbarriers

// The order blocks start in: a grid (tiles, B*H) starts its blocks in the order of their linear index; this
// hands out the work so that the longest blocks (rank 0) start first, bh_group sequence-heads at a time (so
// that the blocks in flight share their tiles in L2): linear index -> (group of heads, rank, head in group).
__device__ __forceinline__ void block_rank(int& rank, int& bh) {
    int id = blockIdx.y * gridDim.x + blockIdx.x, ntiles = gridDim.x;
    int g0 = id / (bh_group * ntiles) * bh_group, size = min(bh_group, (int)gridDim.y - g0);
    int rem = id - g0 * ntiles;
    rank = rem / size;
    bh = g0 + rem % size;
}

// Starts copying ROWS token rows (D wide, from row0 of sequence b, head h) of a strided bf16 tensor into
// shared memory dst[row][d] (leading dim D + 8); rows past T become zeros. Each thread copies chunk
// threadIdx.x % (D / 8) of every STEP-th row.
template <int D, int ROWS>
__device__ __forceinline__ void load_tile_async(bf16* dst, const bf16* src, int stride, int b, int h, int row0,
                                                int T) {
    constexpr int CHUNKS = D / 8, STEP = ATTN_THREADS / CHUNKS;
    static_assert(ROWS % STEP == 0, "the block copies STEP rows per pass");
    int row = threadIdx.x / CHUNKS, c8 = (threadIdx.x % CHUNKS) * 8;
    const bf16* from = src + ((size_t)b * T + row0 + row) * stride + h * D + c8;
    bf16* to = dst + row * (D + 8) + c8;
    for (int i = 0; i < ROWS / STEP; i++) {
        bool ok = row0 + row + i * STEP < T;
        cp_async16(to + i * STEP * (D + 8), ok ? from + (size_t)i * STEP * stride : src, ok ? 16 : 0);
    }
}

// Starts copying ROWS per-row fp32 values (b, h, row0..) into shared memory dst[i * dst_stride]; zeros past
// T. One per thread.
template <int ROWS>
__device__ __forceinline__ void load_rows_async(float* dst, int dst_stride, const float* src, int bh, int row0,
                                                int T) {
    static_assert(ROWS <= ATTN_THREADS, "one row per thread");
    int i = threadIdx.x;
    if (i < ROWS) {
        bool ok = row0 + i < T;
        cp_async4(dst + i * dst_stride, ok ? src + (size_t)bh * T + row0 + i : src, ok ? 4 : 0);
    }
}

// B fragments of the n-tiles n0 and n0 + 8 at k = k0..k0+15, from storage M[n][k] (row-major, leading dim
// ld): one ldmatrix.x4; lane l gives the address of row l % 8 of 8 x 8 matrix l / 8, the matrices being
// (n0, k0) (n0, k0+8) (n0+8, k0) (n0+8, k0+8).
__device__ __forceinline__ void ldsm_b_pair(uint32_t* b0, uint32_t* b1, const bf16* m, int ld, int n0, int k0) {
    int lane = threadIdx.x % 32;
    const bf16* p = m + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
                 : "r"(smem_u32(p)));
}

// The same fragments from storage X[k][n] (row-major in k: token rows when the product contracts over
// tokens): ldmatrix.trans, matrices (k0, n0) (k0+8, n0) (k0, n0+8) (k0+8, n0+8).
__device__ __forceinline__ void ldsm_bt_pair(uint32_t* b0, uint32_t* b1, const bf16* x, int ld, int k0, int n0) {
    int lane = threadIdx.x % 32;
    const bf16* p = x + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
                 : "r"(smem_u32(p)));
}

// Fragments of this warp's 16 token rows (row0..row0+15) of a strided bf16 tensor, straight from global
// memory into registers (A operands kept for the whole kernel); rows past T read as zero.
template <int D>
__device__ __forceinline__ void load_rows_frag(uint32_t (*a)[4], const bf16* src, int stride, int b, int h,
                                               int row0, int T) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int kk = 0; kk < D / 16; kk++)
        for (int i = 0; i < 4; i++) {
            int row = row0 + g + (i & 1) * 8, col = kk * 16 + 2 * t + (i >> 1) * 8;
            a[kk][i] = row < T ? sm80::ld32(src + (size_t)(b * T + row) * stride + h * D + col) : 0u;
        }
}

// The inverse of load_rows_frag for results: this warp's 16 rows of C fragments (D columns), times `scale`,
// into a strided bf16 tensor; rows past T are not written.
template <int D>
__device__ __forceinline__ void store_rows_frag(bf16* dst, const float (*acc)[4], float scale, int stride, int b,
                                                int h, int row0, int T) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int j = 0; j < 2; j++) {
        int row = row0 + g + j * 8;
        if (row >= T) continue;
        size_t out = (size_t)(b * T + row) * stride + h * D;
        for (int nd = 0; nd < D / 8; nd++)
            *(uint32_t*)(dst + out + nd * 8 + 2 * t) = sm80::pack_bf16(scale * acc[nd][2 * j], scale * acc[nd][2 * j + 1]);
    }
}

// acc1 += C1 X and, if TWO, acc2 += C2 X: C1, C2 are C fragments of this warp's 16 rows over K tokens (taken
// as bf16 A fragments), X a shared-memory tile of K token rows by 8 ND columns (leading dim ld) read with
// ldmatrix .trans; the B fragments are loaded once for both products (W V and U V in the forward, dS K and
// dT K in the dq pass).
template <int K, int ND, bool TWO>
__device__ __forceinline__ void mma_frags_times_tile(float (*acc1)[4], float (*acc2)[4], const float (*c1)[4],
                                                     const float (*c2)[4], const bf16* X, int ld) {
    for (int kk = 0; kk < K / 16; kk++) {
        uint32_t a1[4], a2[4];
        sm80::frag_a_from_c(a1, c1[2 * kk], c1[2 * kk + 1]);
        if (TWO) sm80::frag_a_from_c(a2, c2[2 * kk], c2[2 * kk + 1]);
        for (int nd = 0; nd < ND; nd += 2) {
            uint32_t b0[2], b1[2];
            sm80::ldsm_bt_pair(b0, b1, X, ld, kk * 16, nd * 8);
            sm80::mma_bf16(acc1[nd], a1, b0);
            sm80::mma_bf16(acc1[nd + 1], a1, b1);
            if (TWO) {
                sm80::mma_bf16(acc2[nd], a2, b0);
                sm80::mma_bf16(acc2[nd + 1], a2, b1);
            }
        }
    }
}


// forward, the per-tile work: each warp owns 16 query rows (C
// fragment rows g and g + 8) and sees a key tile of 8 NT keys as C fragments S = Q K^T and Tt = R K^T.

// The forward's running state for this warp's 16 rows ([j]: row g + 8 j of the C fragments): the row max
// m (log2 units), d1 = sum W, d2 = sum U, the shift tau, and the accumulators O1 = W V, O2 = U V.
template <int ND>
struct ForwardRows {
    float m[2], d1[2], d2[2], tau[2];
    float O1[ND][4], O2[ND][4];
};

// The start of a forward block for this warp's rows from row0: the Q (and R) fragments into registers, where
// they stay, and an empty running state.
template <int D, bool PROBE>
__device__ __forceinline__ void forward_rows_begin(uint32_t (*qa)[4], uint32_t (*ra)[4], ForwardRows<D / 8>& st,
                                                   const bf16* q, const bf16* r, int stride, int b, int h,
                                                   int row0, int T) {
    sm80::load_rows_frag<D>(qa, q, stride, b, h, row0, T);
    if (PROBE) sm80::load_rows_frag<D>(ra, r, stride, b, h, row0, T);
    for (int j = 0; j < 2; j++) {
        st.m[j] = -INFINITY;
        st.d1[j] = st.d2[j] = st.tau[j] = 0.0f;
    }
    for (int nd = 0; nd < D / 8; nd++)
        for (int i = 0; i < 4; i++) st.O1[nd][i] = st.O2[nd][i] = 0.0f;
}

// The row maxima mx of this warp's rows over one key tile (S unscaled); MASK: S = -inf where key > row or
// key >= T (compiled out for the tiles below the diagonal).
template <int NT, bool MASK>
__device__ __forceinline__ void forward_tile_max(float (*S)[4], float* mx, int k0, int q0, int T) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            float s = S[nt][i];
            if (MASK) {
                int key = k0 + nt * 8 + 2 * t + (i & 1), row = q0 + g + (i >> 1) * 8;
                if (key > row || key >= T) s = -INFINITY;
            }
            S[nt][i] = s;
            mx[i >> 1] = fmaxf(mx[i >> 1], s);
        }
}

// Online softmax over one key tile, in place: S (unscaled Q K^T) becomes W = 2^(S sc - m_new) (masked where key > row or
// key >= T, if `mask`); m, d1, d2 advance and O1, O2 are rescaled by a = 2^(m - m_new).
template <int NT, int ND, bool PROBE>
__device__ __forceinline__ void forward_tile_softmax(float (*S)[4], ForwardRows<ND>& st, bool mask, int k0, int q0,
                                                     int T, float sc) {
    float *m = st.m, *d1 = st.d1, *d2 = st.d2;
    float mx[2] = {-INFINITY, -INFINITY};
    if (mask) forward_tile_max<NT, true>(S, mx, k0, q0, T);
    else forward_tile_max<NT, false>(S, mx, k0, q0, T);
    float a[2], mu[2];
    for (int j = 0; j < 2; j++) {
        float m_new = fmaxf(m[j], quad_max(mx[j]) * sc);   // sc > 0: the max commutes with it
        mu[j] = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet (padding rows)
        a[j] = fast_exp2(m[j] - mu[j]);
        m[j] = m_new;
        d1[j] *= a[j];
        d2[j] *= a[j];
    }
    // once the row maxima stop moving (most tiles after the first few) a = 1: skip the multiplies (exact)
    if (__any_sync(0xffffffff, a[0] != 1.0f || a[1] != 1.0f))
        for (int nd = 0; nd < ND; nd++)
            for (int i = 0; i < 4; i++) {
                st.O1[nd][i] *= a[i >> 1];
                if (PROBE) st.O2[nd][i] *= a[i >> 1];
            }
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            float w = fast_exp2(fmaf(S[nt][i], sc, -mu[i >> 1]));   // scale and shift in one instruction
            S[nt][i] = w;  // S now holds W
            d1[i >> 1] += w;
        }
}

// The probe's part of a tile, after forward_tile_softmax: Tt becomes U = W o (Tt - tau) and d2 advances. On
// the first tile tau is set: the W-weighted mean of t over it.
template <int NT, int ND>
__device__ __forceinline__ void forward_tile_probe(const float (*S)[4], float (*Tt)[4], ForwardRows<ND>& st,
                                                   bool first) {
    float *d2 = st.d2, *tau = st.tau;
    if (first) {  // tau: the W-weighted mean of t over this first tile
        float sw[2] = {0.0f, 0.0f}, swt[2] = {0.0f, 0.0f};
        for (int nt = 0; nt < NT; nt++)
            for (int i = 0; i < 4; i++) {
                sw[i >> 1] += S[nt][i];
                swt[i >> 1] += S[nt][i] * Tt[nt][i];
            }
        for (int j = 0; j < 2; j++) {
            float w = quad_sum(sw[j]), wt = quad_sum(swt[j]);
            tau[j] = w > 0.0f ? wt / w : 0.0f;  // w = 0 only in padding rows past T
        }
    }
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            Tt[nt][i] = S[nt][i] * (Tt[nt][i] - tau[i >> 1]);  // Tt now holds U
            d2[i >> 1] += Tt[nt][i];
        }
}

// The end of the forward for this warp's rows: o, vbar (bf16), L and tbar from the running state.
template <int D, bool PROBE>
__device__ __forceinline__ void forward_store(bf16* o, bf16* vbar, float* L, float* tbar, ForwardRows<D / 8>& st,
                                              int b, int bh, int h, int H, int T, int q0) {
    constexpr int ND = D / 8;
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const float(*O1)[4] = st.O1, (*O2)[4] = st.O2;
    float *m = st.m, *d1 = st.d1, *d2 = st.d2, *tau = st.tau;
    for (int j = 0; j < 2; j++) {
        d1[j] = quad_sum(d1[j]);
        d2[j] = quad_sum(d2[j]);
    }
    for (int j = 0; j < 2; j++) {
        int row = q0 + g + j * 8;
        if (row >= T) continue;
        float inv = 1.0f / d1[j], tb = PROBE ? d2[j] * inv : 0.0f;   // tbar' = tbar - tau
        size_t out = (size_t)(b * T + row) * H * D + h * D;
        for (int nd = 0; nd < ND; nd++) {
            int col = nd * 8 + 2 * t;
            float v0 = O1[nd][2 * j] * inv, v1 = O1[nd][2 * j + 1] * inv;
            *(uint32_t*)(vbar + out + col) = sm80::pack_bf16(v0, v1);
            if (PROBE) {
                v0 = v0 * (1.0f + tb) - O2[nd][2 * j] * inv;
                v1 = v1 * (1.0f + tb) - O2[nd][2 * j + 1] * inv;
            }
            *(uint32_t*)(o + out + col) = sm80::pack_bf16(v0, v1);
        }
        if (t == 0) {
            L[(size_t)bh * T + row] = m[j] * LN2 + logf(d1[j]);
            tbar[(size_t)bh * T + row] = tb + tau[j];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// forward. grid (ceil(T / 64), B*H), 128 threads: each warp owns 16 query rows and streams over key tiles
// of BK keys (the spec's recurrence, in log2 units: sc = c log2 e scales S in the exponent):
//   m_new = max(m, rowmax S); a = 2^(m - m_new); W = 2^(S - m_new); Tt = R K^T; U = W o (Tt - tau)
//   d1 = a d1 + rowsum W; d2 = a d2 + rowsum U; O1 = a O1 + W V; O2 = a O2 + U V
//   end: vbar = O1/d1; tbar' = d2/d1; o = vbar (1 + tbar') - O2/d1; tbar = tbar' + tau; L = m ln 2 + ln d1
// tau_i is a per-row shift of t, the p-weighted mean of t over the first key tile: the weights
// 1 + tbar - t_ij do not change when every t of a row moves by tau, so o is the same in exact arithmetic,
// but U = W o (t - tau) is small where o = vbar (1 + tbar') - O2/d1 cancels, so U in bf16 (one product)
// is enough: exact at T = 1, about 2e-3 of o otherwise, against 2.7e-3 with tau = 0 (dev/cuda/NOTES.md).
// K and V tiles (K[key][d], V[key][d]) arrive through a StageRing of fwd_stages[PROBE] buffers.
// The forward's dynamic shared memory: the K tiles, the V tiles, the ring's mbarriers.
__host__ __device__ constexpr int forward_keys_per_tile(int D) { return D == 64 ? fwd_keys64 : 32; }
template <int D, bool PROBE>
constexpr int forward_smem_bytes() {
    return fwd_stages[PROBE] * (2 * forward_keys_per_tile(D) * (D + 8) * (int)sizeof(bf16) + STAGE_RING_BYTES);
}

template <int D, bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? min_blocks[PROBE][0] : 1)
attention_forward_kernel(bf16* o, bf16* vbar, float* L, float* tbar, const bf16* q, const bf16* r, const bf16* k,
                         const bf16* v, int B, int T, int H, int stride) {
    constexpr int BQ = 64, BK = forward_keys_per_tile(D), KD = D / 16, NT = BK / 8, ND = D / 8, LD = D + 8;
    constexpr int STAGES = fwd_stages[PROBE];
    extern __shared__ __align__(128) unsigned char smem_raw[];   // forward_smem_bytes<D, PROBE>()
    bf16 (*Ks)[BK * LD] = (bf16 (*)[BK * LD])smem_raw;            // Ks[STAGES][BK * LD], then Vs likewise
    bf16 (*Vs)[BK * LD] = Ks + STAGES;
    StageRing<STAGES> ring((uint64_t*)(Vs + STAGES));
    int rank, bh;
    block_rank(rank, bh);
    int qt = gridDim.x - 1 - rank;   // rank 0: the last query tile, the longest
    int b = bh / H, h = bh % H;
    int q0 = qt * BQ + (threadIdx.x / 32) * 16;   // this warp's first row
    const float sc = rsqrtf((float)D) * LOG2E;

    int kv_end = min(T, (qt + 1) * BQ);  // causal: keys past the tile's last query are never needed
    int ntiles = ceil_div(kv_end, BK);
    ring.init();
    __syncthreads();
    for (int i = 0; i < STAGES - 1 && i < ntiles; i++) {
        sm80::load_tile_async<D, BK>(Ks[i], k, stride, b, h, i * BK, T);
        sm80::load_tile_async<D, BK>(Vs[i], v, stride, b, h, i * BK, T);
        ring.loaded(i);
    }

    uint32_t qa[KD][4], ra[KD][4];
    ForwardRows<ND> st;
    sm80::forward_rows_begin<D, PROBE>(qa, ra, st, q, r, stride, b, h, q0, T);

    for (int it = 0; it < ntiles; it++) {
        int k0 = it * BK;
        ring.wait_full(it);
        if (k0 <= q0 + 15) {  // else every key of this tile is after every row of this warp
            const bf16* Kb = Ks[it % STAGES];
            const bf16* Vb = Vs[it % STAGES];
            float S[NT][4], Tt[NT][4];
            for (int nt = 0; nt < NT; nt++)
                for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = 0.0f;
            for (int nt = 0; nt < NT; nt += 2)
                for (int kk = 0; kk < KD; kk++) {
                    uint32_t b0[2], b1[2];
                    sm80::ldsm_b_pair(b0, b1, Kb, LD, nt * 8, kk * 16);
                    sm80::mma_bf16(S[nt], qa[kk], b0);
                    sm80::mma_bf16(S[nt + 1], qa[kk], b1);
                    if (PROBE) {
                        sm80::mma_bf16(Tt[nt], ra[kk], b0);
                        sm80::mma_bf16(Tt[nt + 1], ra[kk], b1);
                    }
                }
            bool mask = k0 + BK - 1 > q0 || k0 + BK > T;   // only tiles reaching past a row or past T
            sm80::forward_tile_softmax<NT, ND, PROBE>(S, st, mask, k0, q0, T, sc);
            if (PROBE) sm80::forward_tile_probe<NT, ND>(S, Tt, st, it == 0);
            sm80::mma_frags_times_tile<BK, ND, PROBE>(st.O1, st.O2, S, Tt, Vb, LD);   // O1 += W V, O2 += U V
        }
        ring.release(it);
        int next = it + STAGES - 1;   // into tile it - 1's buffer
        if (next < ntiles) {
            ring.wait_empty(next);
            sm80::load_tile_async<D, BK>(Ks[next % STAGES], k, stride, b, h, next * BK, T);
            sm80::load_tile_async<D, BK>(Vs[next % STAGES], v, stride, b, h, next * BK, T);
            ring.loaded(next);
        }
    }
    sm80::forward_store<D, PROBE>(o, vbar, L, tbar, st, b, bh, h, H, T, q0);
}


// ---------------------------------------------------------------------------------------------------------
// The per-pair gradient terms, given the score s (unscaled q.k: sc takes it to log2 units), t = r.k and A = g.v:
//   p = 2^(s sc - L log2 e);  dS = p [(A - Tg) + (tbar - t)(A - B)];  dT = -p (A - B);  w = p (1 + tbar - t)
// written as dT = p (B - A), dS = p (A - Tg) - (tbar - t) dT, w = p + p (tbar - t): 9 instructions.
struct PairTerms { float dS, dT, w; };

template <bool PROBE>
__device__ __forceinline__ PairTerms pair_terms(float s, float sc, float tt, float A, float L2, float tb, float Tg,
                                                float Bi) {
    float p = fast_exp2(fmaf(s, sc, -L2));   // scale and shift in one instruction
    PairTerms r;
    if (PROBE) {
        float e = tb - tt;
        r.dT = p * (Bi - A);
        r.dS = fmaf(-e, r.dT, p * (A - Tg));
        r.w = fmaf(p, e, p);
    } else {
        r.dS = p * (A - Tg);
        r.dT = 0.0f;
        r.w = p;
    }
    return r;
}

// The dq pass's per-row statistics of this warp's rows ([j]: C fragment row g + 8 j): L in log2 units, tbar,
// and the two row dots Tg = g.o and B = g.vbar (rows past T: L = inf, so p = 0).
struct DqRows { float L2[2], tb[2], tg[2], bi[2]; };

// Starts the dq pass for this warp's 16 rows from row0: the Q, R and dO fragments into registers (qa, ra,
// ga, kept for the whole pass); the row dots from ga and o, vbar read in the same fragment layout (partial
// dots over this thread's columns, summed over the 4 threads of a row), written to Tg, Bv (fp32, (B, H, T))
// for the dk/dv pass that runs next; L and tbar read.
template <int D, bool PROBE>
__device__ __forceinline__ DqRows dq_rows_begin(uint32_t (*qa)[4], uint32_t (*ra)[4], uint32_t (*ga)[4], float* Tg,
                                                float* Bv, const bf16* q, const bf16* r, const bf16* dO,
                                                const bf16* o, const bf16* vbar, const float* L, const float* tbar,
                                                int stride, int b, int h, int bh, int H, int row0, int T) {
    sm80::load_rows_frag<D>(qa, q, stride, b, h, row0, T);
    if (PROBE) sm80::load_rows_frag<D>(ra, r, stride, b, h, row0, T);
    sm80::load_rows_frag<D>(ga, dO, H * D, b, h, row0, T);
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    float tg[2] = {0.0f, 0.0f}, bi[2] = {0.0f, 0.0f};
    for (int kk = 0; kk < D / 16; kk++)
        for (int i = 0; i < 4; i++) {
            int j = i & 1, row = row0 + g + j * 8, col = kk * 16 + 2 * t + (i >> 1) * 8;
            if (row >= T) continue;
            size_t off = (size_t)(b * T + row) * H * D + h * D + col;
            float2 gd = __bfloat1622float2(*(const __nv_bfloat162*)&ga[kk][i]);
            float2 od = __bfloat1622float2(*(const __nv_bfloat162*)(o + off));
            tg[j] += gd.x * od.x + gd.y * od.y;
            if (PROBE) {
                float2 vd = __bfloat1622float2(*(const __nv_bfloat162*)(vbar + off));
                bi[j] += gd.x * vd.x + gd.y * vd.y;
            }
        }
    DqRows rs;
    for (int j = 0; j < 2; j++) {
        int row = row0 + g + j * 8;
        size_t ri = (size_t)bh * T + row;
        bool ok = row < T;
        rs.tg[j] = quad_sum(tg[j]);
        rs.bi[j] = PROBE ? quad_sum(bi[j]) : 0.0f;
        rs.L2[j] = ok ? L[ri] * LOG2E : INFINITY;
        rs.tb[j] = (ok && PROBE) ? tbar[ri] : 0.0f;
        if (ok && t == 0) {
            Tg[ri] = rs.tg[j];
            if (PROBE) Bv[ri] = rs.bi[j];
        }
    }
    return rs;
}

// The dq pass's element-wise work on one tile of 8 NT keys from k0, in place: S (= Q K^T) becomes dS and Tt
// (= R K^T) becomes dT, given A = dO V^T. MASK: zero where key > row or key >= T (rows row0..row0+15).
template <int NT, bool PROBE, bool MASK>
__device__ __forceinline__ void dq_tile_terms_mask(float (*S)[4], float (*Tt)[4], const float (*A)[4],
                                                   const DqRows& rs, int k0, int q0, int T, float sc) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            int j = i >> 1;
            PairTerms pt = pair_terms<PROBE>(S[nt][i], sc, Tt[nt][i], A[nt][i], rs.L2[j], rs.tb[j], rs.tg[j],
                                             rs.bi[j]);
            if (MASK) {
                int key = k0 + nt * 8 + 2 * t + (i & 1), row = q0 + g + j * 8;
                if (key > row || key >= T) pt.dS = pt.dT = 0.0f;
            }
            S[nt][i] = pt.dS;
            Tt[nt][i] = pt.dT;
        }
}

// The same, with the mask only where the tile reaches past a row of this warp or past T (rows past T have
// p = 0 through L2 = inf): off the diagonal the per-element index arithmetic is compiled out.
template <int NT, bool PROBE>
__device__ __forceinline__ void dq_tile_terms(float (*S)[4], float (*Tt)[4], const float (*A)[4], const DqRows& rs,
                                              int k0, int q0, int T, float sc) {
    if (k0 + 8 * NT - 1 > q0 || k0 + 8 * NT > T) sm80::dq_tile_terms_mask<NT, PROBE, true>(S, Tt, A, rs, k0, q0, T, sc);
    else sm80::dq_tile_terms_mask<NT, PROBE, false>(S, Tt, A, rs, k0, q0, T, sc);
}

// The dk/dv pass's element-wise work on one tile of 8 NT queries from q0 (transposed: C fragment rows are this
// warp's keys key0..key0+15, columns the tile's queries), in place: S (= K Q^T) becomes c dS^T, Tt (= K R^T)
// becomes dT^T and A (= V dO^T) becomes w^T = (p (1 + tbar - t))^T. st holds (L, tbar, Tg, B) per query of
// the tile. MASK: zero where key > query, query >= T or key >= T (zero-filled queries and keys).
template <int NT, bool PROBE, bool MASK>
__device__ __forceinline__ void dkv_tile_terms_mask(float (*S)[4], float (*Tt)[4], float (*A)[4], const float4* st,
                                                    int q0, int key0, int T, float c, float sc) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int nt = 0; nt < NT; nt++)
        for (int col = 0; col < 2; col++) {
            int qi = nt * 8 + 2 * t + col;
            float4 s = st[qi];   // L, tbar, Tg, B of this query: once for both of this thread's keys
            float L2 = s.x * LOG2E;
            for (int j = 0; j < 2; j++) {
                int i = 2 * j + col;
                PairTerms pt = pair_terms<PROBE>(S[nt][i], sc, Tt[nt][i], A[nt][i], L2, s.y, s.z, s.w);
                if (MASK) {
                    int key = key0 + g + j * 8, query = q0 + qi;
                    if (key > query || query >= T || key >= T) pt.dS = pt.dT = pt.w = 0.0f;
                }
                S[nt][i] = c * pt.dS;
                Tt[nt][i] = pt.dT;
                A[nt][i] = pt.w;
            }
        }
}

// The same, with the mask only where a key of this warp comes after a query of the tile or the tile reaches
// past T.
template <int NT, bool PROBE>
__device__ __forceinline__ void dkv_tile_terms(float (*S)[4], float (*Tt)[4], float (*A)[4], const float4* st,
                                               int q0, int key0, int T, float c, float sc) {
    if (key0 + 15 > q0 || q0 + 8 * NT > T || key0 + 16 > T)
        sm80::dkv_tile_terms_mask<NT, PROBE, true>(S, Tt, A, st, q0, key0, T, c, sc);
    else
        sm80::dkv_tile_terms_mask<NT, PROBE, false>(S, Tt, A, st, q0, key0, T, c, sc);
}

// backward, pass 1: the row dots Tg, B (written for pass 2), then dq_i = c sum_j dS_ij k_j and
// dr_i = sum_j dT_ij k_j. grid (ceil(T / 64), B*H), 128 threads; each warp owns 16 query rows (Q, R, dO
// fragments in registers) and streams over key tiles of 32; K and V tiles
// (K[key][d], V[key][d]) arrive through a StageRing: plain ldmatrix for Q K^T, R K^T, dO V^T, .trans for dS K,
// dT K.
// Its dynamic shared memory: the K tiles, the V tiles, the ring's mbarriers.
template <int D>
constexpr int dq_smem_bytes() {
    return dq_stages * (2 * dq_keys * (D + 8) * (int)sizeof(bf16) + STAGE_RING_BYTES);
}

template <int D, bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? min_blocks[PROBE][1] : 1)
attention_backward_dq_kernel(bf16* dq, bf16* dr, float* Tg, float* Bv, const bf16* dO, const bf16* q,
                             const bf16* r, const bf16* k, const bf16* v, const bf16* o, const bf16* vbar,
                             const float* L, const float* tbar, int B, int T, int H, int stride) {
    constexpr int BQ = 64, BK = dq_keys, KD = D / 16, NT = BK / 8, ND = D / 8, LD = D + 8, STAGES = dq_stages;
    extern __shared__ __align__(128) unsigned char smem_raw[];   // dq_smem_bytes<D>()
    bf16 (*Ks)[BK * LD] = (bf16 (*)[BK * LD])smem_raw;            // Ks[STAGES][BK * LD], then Vs likewise
    bf16 (*Vs)[BK * LD] = Ks + STAGES;
    StageRing<STAGES> ring((uint64_t*)(Vs + STAGES));
    int rank, bh;
    block_rank(rank, bh);
    int qt = gridDim.x - 1 - rank;   // rank 0: the last query tile, the longest
    int b = bh / H, h = bh % H;
    int warp = threadIdx.x / 32;
    int q0 = qt * BQ + warp * 16;
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    int kv_end = min(T, (qt + 1) * BQ), ntiles = ceil_div(kv_end, BK);
    ring.init();
    __syncthreads();
    for (int i = 0; i < STAGES - 1 && i < ntiles; i++) {
        sm80::load_tile_async<D, BK>(Ks[i], k, stride, b, h, i * BK, T);
        sm80::load_tile_async<D, BK>(Vs[i], v, stride, b, h, i * BK, T);
        ring.loaded(i);
    }

    uint32_t qa[KD][4], ra[KD][4], ga[KD][4];
    DqRows rs = sm80::dq_rows_begin<D, PROBE>(qa, ra, ga, Tg, Bv, q, r, dO, o, vbar, L, tbar, stride, b, h, bh, H, q0, T);
    float dQ[ND][4] = {}, dR[ND][4] = {};

    for (int it = 0; it < ntiles; it++) {
        int k0 = it * BK;
        ring.wait_full(it);
        if (k0 <= q0 + 15) {
            const bf16* Kb = Ks[it % STAGES];
            const bf16* Vb = Vs[it % STAGES];
            float S[NT][4], Tt[NT][4], A[NT][4];
            for (int nt = 0; nt < NT; nt++)
                for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = A[nt][i] = 0.0f;
            for (int nt = 0; nt < NT; nt += 2)
                for (int kk = 0; kk < KD; kk++) {
                    uint32_t bk0[2], bk1[2], bv0[2], bv1[2];
                    sm80::ldsm_b_pair(bk0, bk1, Kb, LD, nt * 8, kk * 16);
                    sm80::ldsm_b_pair(bv0, bv1, Vb, LD, nt * 8, kk * 16);
                    sm80::mma_bf16(S[nt], qa[kk], bk0);
                    sm80::mma_bf16(S[nt + 1], qa[kk], bk1);
                    if (PROBE) {
                        sm80::mma_bf16(Tt[nt], ra[kk], bk0);
                        sm80::mma_bf16(Tt[nt + 1], ra[kk], bk1);
                    }
                    sm80::mma_bf16(A[nt], ga[kk], bv0);
                    sm80::mma_bf16(A[nt + 1], ga[kk], bv1);
                }
            sm80::dq_tile_terms<NT, PROBE>(S, Tt, A, rs, k0, q0, T, sc);
            sm80::mma_frags_times_tile<BK, ND, PROBE>(dQ, dR, S, Tt, Kb, LD);   // dQ += dS K, dR += dT K
        }
        ring.release(it);
        int next = it + STAGES - 1;   // into tile it - 1's buffer
        if (next < ntiles) {
            ring.wait_empty(next);
            sm80::load_tile_async<D, BK>(Ks[next % STAGES], k, stride, b, h, next * BK, T);
            sm80::load_tile_async<D, BK>(Vs[next % STAGES], v, stride, b, h, next * BK, T);
            ring.loaded(next);
        }
    }
    sm80::store_rows_frag<D>(dq, dQ, c, stride, b, h, q0, T);
    if (PROBE) sm80::store_rows_frag<D>(dr, dR, 1.0f, stride, b, h, q0, T);
}

// One buffer of the dk/dv pass: the Q, R and dO tiles of BQ queries, then the per-query statistics as one
// float4 per query: (L, tbar, Tg, B) (tbar and B unused without the probe). Tiles row-major with D + 8 per row.
template <int D, int BQ>
struct DkvTile {
    static constexpr int TILE = BQ * (D + 8);
    static constexpr int BYTES = 3 * TILE * (int)sizeof(bf16) + 4 * BQ * (int)sizeof(float);
    bf16 *Q, *R, *G;
    float4* st;
    __device__ DkvTile(unsigned char* base) {
        Q = (bf16*)base;
        R = Q + TILE;
        G = R + TILE;
        st = (float4*)(G + TILE);
    }
};

// Starts loading the query tile at q0 into one buffer of the dk/dv pass.
template <int D, int BQ, bool PROBE>
__device__ __forceinline__ void dkv_load_async(DkvTile<D, BQ> tile, const bf16* q, const bf16* r,
                                               const bf16* dO, const float* L, const float* tbar, const float* Tg,
                                               const float* Bv, int b, int h, int bh, int q0, int T, int H,
                                               int stride) {
    sm80::load_tile_async<D, BQ>(tile.Q, q, stride, b, h, q0, T);
    if (PROBE) sm80::load_tile_async<D, BQ>(tile.R, r, stride, b, h, q0, T);
    sm80::load_tile_async<D, BQ>(tile.G, dO, H * D, b, h, q0, T);
    float* st = (float*)tile.st;
    sm80::load_rows_async<BQ>(st, 4, L, bh, q0, T);
    sm80::load_rows_async<BQ>(st + 2, 4, Tg, bh, q0, T);
    if (PROBE) {
        sm80::load_rows_async<BQ>(st + 1, 4, tbar, bh, q0, T);
        sm80::load_rows_async<BQ>(st + 3, 4, Bv, bh, q0, T);
    }
}

// backward, pass 2: dk_j = c sum_i dS_ij q_i + sum_i dT_ij r_i and dv_j = sum_i w_ij g_i. grid (ceil(T / 64), B*H),
// 128 threads; each warp owns 16 keys (K, V fragments in registers) and streams over query tiles of 32
// from the first that can see them, computing the transposed products S^T = K Q^T, T^T = K R^T,
// A^T = V dO^T (plain ldmatrix from Q, R, dO tiles) and dK += dS^T Q + dT^T R, dV += w^T dO (.trans).
// The query tiles arrive through a StageRing of DkvTile buffers (dynamic shared memory).
// Its dynamic shared memory: the DkvTiles, the ring's mbarriers.
template <int D>
constexpr int dkv_smem_bytes() { return dkv_stages * (DkvTile<D, 32>::BYTES + STAGE_RING_BYTES); }

template <int D, bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? min_blocks[PROBE][2] : 1)
attention_backward_dkv_kernel(bf16* dk, bf16* dv, const bf16* dO, const bf16* q, const bf16* r, const bf16* k,
                              const bf16* v, const float* L, const float* tbar, const float* Tg, const float* Bv,
                              int B, int T, int H, int stride) {
    constexpr int BKV = 64, BQ = 32, KD = D / 16, NT = BQ / 8, ND = D / 8, LD = D + 8, STAGES = dkv_stages;
    extern __shared__ __align__(128) unsigned char smem_raw[];   // dkv_smem_bytes<D>()
    constexpr int BUF = DkvTile<D, BQ>::BYTES;
    StageRing<STAGES> ring((uint64_t*)(smem_raw + STAGES * BUF));
    int kt, bh;
    block_rank(kt, bh);   // rank 0: the first key tile, which the most query tiles see
    int b = bh / H, h = bh % H;
    int warp = threadIdx.x / 32;
    int kr0 = kt * BKV + warp * 16;  // this warp's first key
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    int qstart = (kt * BKV / BQ) * BQ, ntiles = ceil_div(T - qstart, BQ);
    ring.init();
    __syncthreads();
    for (int i = 0; i < STAGES - 1 && i < ntiles; i++) {
        sm80::dkv_load_async<D, BQ, PROBE>(DkvTile<D, BQ>(smem_raw + i * BUF), q, r, dO, L, tbar, Tg, Bv, b,
                                            h, bh, qstart + i * BQ, T, H, stride);
        ring.loaded(i);
    }

    uint32_t ka[KD][4], va[KD][4];
    sm80::load_rows_frag<D>(ka, k, stride, b, h, kr0, T);
    sm80::load_rows_frag<D>(va, v, stride, b, h, kr0, T);
    float dK[ND][4] = {}, dV[ND][4] = {};

    for (int it = 0; it < ntiles; it++) {
        int q0 = qstart + it * BQ;
        ring.wait_full(it);
        if (q0 + BQ - 1 >= kr0) {  // else every query of this tile is before every key of this warp
            const DkvTile<D, BQ> tl(smem_raw + (it % STAGES) * BUF);
            float S[NT][4], Tt[NT][4], A[NT][4];
            for (int nt = 0; nt < NT; nt++)
                for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = A[nt][i] = 0.0f;
            for (int nt = 0; nt < NT; nt += 2)
                for (int kk = 0; kk < KD; kk++) {
                    uint32_t bq0[2], bq1[2], bg0[2], bg1[2];
                    sm80::ldsm_b_pair(bq0, bq1, tl.Q, LD, nt * 8, kk * 16);
                    sm80::ldsm_b_pair(bg0, bg1, tl.G, LD, nt * 8, kk * 16);
                    sm80::mma_bf16(S[nt], ka[kk], bq0);
                    sm80::mma_bf16(S[nt + 1], ka[kk], bq1);
                    sm80::mma_bf16(A[nt], va[kk], bg0);
                    sm80::mma_bf16(A[nt + 1], va[kk], bg1);
                    if (PROBE) {
                        uint32_t br0[2], br1[2];
                        sm80::ldsm_b_pair(br0, br1, tl.R, LD, nt * 8, kk * 16);
                        sm80::mma_bf16(Tt[nt], ka[kk], br0);
                        sm80::mma_bf16(Tt[nt + 1], ka[kk], br1);
                    }
                }
            sm80::dkv_tile_terms<NT, PROBE>(S, Tt, A, tl.st, q0, kr0, T, c, sc);   // S: c dS^T, Tt: dT^T, A: w^T
            for (int kk = 0; kk < BQ / 16; kk++) {
                uint32_t as[4], at[4], aw[4];
                sm80::frag_a_from_c(as, S[2 * kk], S[2 * kk + 1]);
                sm80::frag_a_from_c(aw, A[2 * kk], A[2 * kk + 1]);
                if (PROBE) sm80::frag_a_from_c(at, Tt[2 * kk], Tt[2 * kk + 1]);
                for (int nd = 0; nd < ND; nd += 2) {
                    uint32_t bq0[2], bq1[2], bg0[2], bg1[2];
                    sm80::ldsm_bt_pair(bq0, bq1, tl.Q, LD, kk * 16, nd * 8);
                    sm80::ldsm_bt_pair(bg0, bg1, tl.G, LD, kk * 16, nd * 8);
                    sm80::mma_bf16(dK[nd], as, bq0);
                    sm80::mma_bf16(dK[nd + 1], as, bq1);
                    sm80::mma_bf16(dV[nd], aw, bg0);
                    sm80::mma_bf16(dV[nd + 1], aw, bg1);
                    if (PROBE) {
                        uint32_t br0[2], br1[2];
                        sm80::ldsm_bt_pair(br0, br1, tl.R, LD, kk * 16, nd * 8);
                        sm80::mma_bf16(dK[nd], at, br0);
                        sm80::mma_bf16(dK[nd + 1], at, br1);
                    }
                }
            }
        }
        ring.release(it);
        int next = it + STAGES - 1;   // into tile it - 1's buffer
        if (next < ntiles) {
            ring.wait_empty(next);
            sm80::dkv_load_async<D, BQ, PROBE>(DkvTile<D, BQ>(smem_raw + (next % STAGES) * BUF), q, r, dO, L,
                                                tbar, Tg, Bv, b, h, bh, qstart + next * BQ, T, H, stride);
            ring.loaded(next);
        }
    }
    sm80::store_rows_frag<D>(dk, dK, 1.0f, stride, b, h, kr0, T);
    sm80::store_rows_frag<D>(dv, dV, 1.0f, stride, b, h, kr0, T);
}

// every kernel's shared memory fits one block on 8.6 / 8.9 (checked for all four instances)
static_assert(forward_smem_bytes<64, true>() <= smem_limit && forward_smem_bytes<128, true>() <= smem_limit &&
              forward_smem_bytes<64, false>() <= smem_limit && forward_smem_bytes<128, false>() <= smem_limit,
              "forward shared memory over the 8.6 / 8.9 limit");
static_assert(dq_smem_bytes<128>() <= smem_limit && dkv_smem_bytes<128>() <= smem_limit,
              "backward shared memory over the 8.6 / 8.9 limit");

// ---------------------------------------------------------------------------------------------------------
// launchers

// allows a kernel more than 48 KB of dynamic shared memory; once per instantiation (the caller's static flag)
template <typename Kernel>
static void allow_smem(Kernel kernel, int bytes, bool* done) {
    if (*done) return;
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    *done = true;
}

template <int D, bool PROBE>
static void forward_launch(bf16* o, bf16* vbar, float* L, float* tbar, const bf16* q, const bf16* r, const bf16* k,
                           const bf16* v, int B, int T, int H, int stride, cudaStream_t stream) {
    constexpr int smem = forward_smem_bytes<D, PROBE>();
    static bool attr_set = false;
    allow_smem(attention_forward_kernel<D, PROBE>, smem, &attr_set);
    dim3 grid(ceil_div(T, 64), B * H);
    attention_forward_kernel<D, PROBE><<<grid, ATTN_THREADS, smem, stream>>>(o, vbar, L, tbar, q, r, k, v, B, T, H,
                                                                             stride);
    cudaCheckLaunch();
}

template <int D, bool PROBE>
static void backward_launch(bf16* dq, bf16* dr, bf16* dk, bf16* dv, float* Tg, float* Bv, const bf16* dO,
                            const bf16* q, const bf16* r, const bf16* k, const bf16* v, const bf16* o,
                            const bf16* vbar, const float* L, const float* tbar, int B, int T, int H, int stride,
                            cudaStream_t stream) {
    constexpr int smem_dq = dq_smem_bytes<D>(), smem_dkv = dkv_smem_bytes<D>();
    static bool attr_dq = false, attr_dkv = false;
    allow_smem(attention_backward_dq_kernel<D, PROBE>, smem_dq, &attr_dq);
    allow_smem(attention_backward_dkv_kernel<D, PROBE>, smem_dkv, &attr_dkv);
    dim3 grid(ceil_div(T, 64), B * H);
    attention_backward_dq_kernel<D, PROBE><<<grid, ATTN_THREADS, smem_dq, stream>>>(dq, dr, Tg, Bv, dO, q, r, k, v, o,
                                                                                    vbar, L, tbar, B, T, H, stride);
    cudaCheckLaunch();
    attention_backward_dkv_kernel<D, PROBE><<<grid, ATTN_THREADS, smem_dkv, stream>>>(dk, dv, dO, q, r, k, v, L, tbar,
                                                                                      Tg, Bv, B, T, H, stride);
    cudaCheckLaunch();
}

}  // namespace sm80

// The 8.x path's forward and backward, with the parameters of attention_forward / attention_backward
// (parallax_kernels.cuh) and its one (head dim, probe) dispatch.
static void attention_forward_sm80(const AttentionForwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.shape, "attention_forward_sm80", [&](auto inst) {
        constexpr int D = decltype(inst)::head_dim;
        constexpr bool PROBE = decltype(inst)::probe;
        const AttentionShape& s = p.shape;
        sm80::forward_launch<D, PROBE>(p.saved.o, p.saved.vbar, p.saved.lse, p.saved.tbar, p.q, p.r, p.k, p.v,
                                       s.batch, s.seq_len, s.heads, p.stride, stream);
    });
}

static void attention_backward_sm80(const AttentionBackwardParams& p, cudaStream_t stream) {
    const AttentionForwardParams& f = p.fwd;
    attention_dispatch(f.shape, "attention_backward_sm80", [&](auto inst) {
        constexpr int D = decltype(inst)::head_dim;
        constexpr bool PROBE = decltype(inst)::probe;
        const AttentionShape& s = f.shape;
        sm80::backward_launch<D, PROBE>(p.dq, p.dr, p.dk, p.dv, p.Tg, p.gvbar, p.dO, f.q, f.r, f.k, f.v, f.saved.o,
                                        f.saved.vbar, f.saved.lse, f.saved.tbar, s.batch, s.seq_len, s.heads,
                                        f.stride, stream);
    });
}
