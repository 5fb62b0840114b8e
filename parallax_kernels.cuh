// Parallax attention forward and backward on tensor cores (spec section 1); the softmax variant is the same
// code with the probe (r) compiled out (PROBE = false). FlashAttention-2 style: no T x T matrix is ever
// written to memory. This is version 3 of the kernel study (dev/cuda/NOTES.md; versions 1 and 2 are in
// dev/cuda/ and are tested and timed alongside). Version 4, the forward and backward on wgmma (sm_90a,
// D = 64), is here too (attention_forward_wgmma, attention_backward_wgmma); the trainer does not use it
// (measured: 5% slower than version 3 in the Parallax forward + backward, 30% for softmax).
//
// Layout, shared by every kernel here (and by the study versions in dev/cuda/):
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
// Shared-memory tiles are token rows in 128-byte rows of 64 columns, each row's 16-byte chunks permuted by
// the TMA's swizzle (tile_offset) so that the 8 rows that one ldmatrix reads fall on different banks; they
// arrive by TMA (one copy per tensor and tile, issued by one thread), the next tiles while the tensor cores
// work on this one. B fragments come from them with ldmatrix: plain where the product contracts
// over d (Q K^T: storage K[key][d] = B^T), transposed (.trans) where it contracts over tokens (W V:
// storage V[key][d] = B), so no tile is ever stored twice.
#pragma once

#include <cstdint>
#include "trainer/cuda_common.h"
#include <cudaTypedefs.h>          // PFN_cuTensorMapEncodeTiled_v12000
#include "trainer/async_copy.cuh"   // smem_u32, cp_async16, cp_async4, cp_async_commit, cp_async_wait, tma_load_3d

// Blocks per SM that each D = 64 kernel is compiled for: __launch_bounds__ caps the registers so that
// they fit (2 blocks: up to 255 per thread, 3: 168, 4: 128), trading spills for warps to hide latency.
// Chosen by measurement (dev/cuda/NOTES.md); the D = 128 kernels take 1. The macros are for experiments.
//                     forward  dq pass  dk/dv pass
#ifndef ATTN_BLOCKS_PROBE
#define ATTN_BLOCKS_PROBE    2,      2,       2
#endif
#ifndef ATTN_BLOCKS_SOFTMAX
#define ATTN_BLOCKS_SOFTMAX  4,      4,       3
#endif
constexpr int ATTN_MIN_BLOCKS[2][3] = {{ATTN_BLOCKS_SOFTMAX}, {ATTN_BLOCKS_PROBE}};   // [probe][kernel]
// keys per tile of the D = 64 forward (D = 128: 32)
#ifndef ATTN_FWD_BK64
#define ATTN_FWD_BK64 64
#endif
__host__ __device__ constexpr int forward_keys_per_tile(int D) { return D == 64 ? ATTN_FWD_BK64 : 32; }

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

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
    a[0] = pack_bf16(c0[0], c0[1]);
    a[1] = pack_bf16(c0[2], c0[3]);
    a[2] = pack_bf16(c1[0], c1[1]);
    a[3] = pack_bf16(c1[2], c1[3]);
}

// The rounding residual of frag_a_from_c: bf16(c - bf16(c)). A product with frag_a_from_c's fragment plus one
// with this one carries c to about 16 significant bits instead of 8 (used for U in O2, see the forward).
__device__ __forceinline__ float bf16_residual(float x) { return x - __bfloat162float(__float2bfloat16_rn(x)); }
__device__ __forceinline__ void frag_a_residual_from_c(uint32_t* a, const float* c0, const float* c1) {
    a[0] = pack_bf16(bf16_residual(c0[0]), bf16_residual(c0[1]));
    a[1] = pack_bf16(bf16_residual(c0[2]), bf16_residual(c0[3]));
    a[2] = pack_bf16(bf16_residual(c1[0]), bf16_residual(c1[1]));
    a[3] = pack_bf16(bf16_residual(c1[2]), bf16_residual(c1[3]));
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
// one arrival on bar that also raises its transaction count by `bytes`: the phase completes once its arrivals
// are in and that many bytes of TMA copies (tma_load_3d) have landed; copies may land before this arrival
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    HOPPER_ONLY(asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes)
                 : "memory"));
}
// shared-memory state written by ordinary stores (an mbarrier's init, a tile) becomes visible to the async
// proxy: the TMA copies' transaction counts, the tensor cores' reads
__device__ __forceinline__ void fence_proxy_async() { HOPPER_ONLY(asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory")); }
__device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity) {
    uint32_t done = 0;
    while (!done)
        HOPPER_ONLY(asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(smem_u32(bar)), "r"(parity)
                     : "memory"));
}

// Every attention kernel here runs one warpgroup (4 warps) per block.
constexpr int ATTN_THREADS = 128, ATTN_WARPS = ATTN_THREADS / 32;

// The order blocks start in. A grid (tiles, B*H) starts its blocks in the order of their linear index; this
// hands out the work so that the longest blocks (rank 0: the most key or query tiles to visit) start first, for
// ATTN_BH_GROUP sequence-heads at a time (so that the blocks in flight share their K and V, or Q, R and dO, in
// L2): linear index -> (group of heads, rank, head within the group). A group of 1 is plain (rank, head) order.
// Measured (dev/cuda/NOTES.md, session 7): groups of 64 against 1, Parallax forward + backward 16x1024x12x64
// 0.735 -> 0.695 ms, 32x1024 1.398 -> 1.361; all heads in one group loses at 32x1024 (1.386: K, V no longer
// fit in L2).
#ifndef ATTN_BH_GROUP
#define ATTN_BH_GROUP 64
#endif
__device__ __forceinline__ void block_rank(int& rank, int& bh) {
    int id = blockIdx.y * gridDim.x + blockIdx.x, ntiles = gridDim.x;
    int g0 = id / (ATTN_BH_GROUP * ntiles) * ATTN_BH_GROUP, size = min(ATTN_BH_GROUP, (int)gridDim.y - g0);
    int rem = id - g0 * ntiles;
    rank = rem / size;
    bh = g0 + rem % size;
}

// A ring of STAGES shared-memory buffers filled tile after tile by TMA copies, with two mbarriers per buffer
// instead of __syncthreads: full (the tile's bytes have landed) and empty (every thread is done reading it).
// Tile i lives in buffer i % STAGES and is copied by one warp, warp i % 4, its producer: that warp waits
// until the slowest warp has left the buffer's previous tile, then its lane 0 announces the tile's bytes on
// full and issues one TMA copy per tensor (per 64 columns). The other three warps never wait for a buffer to
// empty and issue no copies: a warp waits only for the data it reads (dev/cuda/NOTES.md, sessions 5 and 7).
// (The forward has warp 0 issue the first STAGES - 1 tiles right after init, before the block's first
// barrier: measured -1% there, none in the backward passes; session 8.)
// FULL_COUNT: the arrivals that complete full, 1 (the producer's lane 0), plus 32 where the producer's lanes
// also copy with cp.async (the dk/dv pass's row statistics, `loaded`).
template <int STAGES, int FULL_COUNT>
struct StageRing {
    uint64_t* full;    // [STAGES]
    uint64_t* empty;   // [STAGES]
    __device__ StageRing(uint64_t* bars) : full(bars), empty(bars + STAGES) {}
    // thread 0 sets the counts; the block must __syncthreads before the first use
    __device__ void init() {
        if (threadIdx.x == 0) {
            for (int s = 0; s < STAGES; s++) {
                mbar_init(&full[s], FULL_COUNT);
                mbar_init(&empty[s], ATTN_THREADS);
            }
            fence_proxy_async();   // the counts, before the first TMA copy reports to them
        }
    }
    __device__ static bool producer(int i) { return threadIdx.x / 32 == i % ATTN_WARPS; }
    // the producer, before loading tile i: every thread is done with tile i - STAGES, the buffer's last tile
    __device__ void wait_empty(int i) {
        if (i >= STAGES) mbar_wait(&empty[i % STAGES], (i / STAGES - 1) & 1);
    }
    // the producer's lane 0, once per tile: `bytes` of TMA copies will report to full_bar(i)
    __device__ void expect(int i, uint32_t bytes) { mbar_arrive_expect_tx(&full[i % STAGES], bytes); }
    __device__ uint64_t* full_bar(int i) { return &full[i % STAGES]; }
    // the producer's lanes, after issuing their cp.async copies of tile i (FULL_COUNT 33)
    __device__ void loaded(int i) { cp_async_mbar_arrive(&full[i % STAGES]); }
    __device__ void wait_full(int i) { mbar_wait(&full[i % STAGES], (i / STAGES) & 1); }
    __device__ void release(int i) { mbar_arrive(&empty[i % STAGES]); }
};
constexpr int STAGE_RING_BYTES = 2 * 8;   // shared memory per stage for the two mbarriers

// Shared-memory tiles of ROWS token rows x D bf16 are laid out as the TMA writes them with the 128-byte
// swizzle: in blocks of 64 columns (D = 128: two blocks, one after the other), a row of a block is 128 bytes
// and its 16-byte chunk c (columns 8 c..8 c+7) sits at chunk c ^ (row % 8), so the 8 rows that one ldmatrix
// reads fall on 8 different bank groups. The byte offset of chunk c (0..D/8-1) of a row:
__device__ __forceinline__ int tile_offset(int rows, int row, int c) {
    return (c / 8) * rows * 128 + row * 128 + (((c % 8) ^ (row % 8)) << 4);
}
constexpr int TILE_ALIGN = 1024;   // the swizzle repeats every 8 rows of 128 bytes: tiles start on 1024 bytes

// The first TILE_ALIGN-aligned address (in the shared window) of a block's dynamic shared memory; kernels ask
// for TILE_ALIGN bytes more than they use.
__device__ __forceinline__ unsigned char* align_tiles(unsigned char* smem) {
    return smem + (TILE_ALIGN - smem_u32(smem) % TILE_ALIGN) % TILE_ALIGN;
}

// The producer's lane 0: TMA copies of ROWS token rows from row0 of sequence b, head h, of the tensor behind
// `map` (make_tile_map: dims column, token, sequence) into a tile at dst; rows past T arrive as zeros.
template <int D, int ROWS>
__device__ __forceinline__ void load_tile_tma(bf16* dst, const CUtensorMap* map, int b, int h, int row0,
                                              uint64_t* bar) {
    for (int half = 0; half < D / 64; half++)
        tma_load_3d(dst + half * ROWS * 64, map, h * D + half * 64, row0, b, bar);
}

// The producer's part of loading key tile i (BK keys from i BK) of the forward or the dq pass: K and V.
template <int D, int BK, int STAGES>
__device__ __forceinline__ void load_kv_tile(StageRing<STAGES, 1>& ring, int i, bf16* Kd, bf16* Vd,
                                             const CUtensorMap* tm_k, const CUtensorMap* tm_v, int b, int h) {
    if (threadIdx.x % 32 == 0) {
        ring.expect(i, 2 * BK * D * sizeof(bf16));
        load_tile_tma<D, BK>(Kd, tm_k, b, h, i * BK, ring.full_bar(i));
        load_tile_tma<D, BK>(Vd, tm_v, b, h, i * BK, ring.full_bar(i));
    }
}

// This warp's 16 rows of C fragments (D columns), rounded to bf16, into a shared-memory tile of 16 rows
// (tile_offset): for each n-tile the warp's 4-byte stores fall on 32 different banks.
template <int D>
__device__ __forceinline__ void stage_rows_frag(bf16* tile, const float (*acc)[4]) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int j = 0; j < 2; j++)
        for (int nd = 0; nd < D / 8; nd++)
            *(uint32_t*)((unsigned char*)tile + tile_offset(16, g + 8 * j, nd) + 4 * t) =
                pack_bf16(acc[nd][2 * j], acc[nd][2 * j + 1]);
}

// The end of a kernel: this warp's 16 rows (from row0 of sequence b, head h) of one or two sets of C fragments
// (D columns) leave through shared memory and the TMA, whole rows instead of scattered 4-byte stores, for the
// tensors behind map1 (and map2 if TWO); rows past T are not written. `stage` is shared memory free for two
// 16-row tiles per warp (warp w: 2 w and 2 w + 1; the ring, once every warp of the block is done with it).
template <int D, bool TWO>
__device__ __forceinline__ void store_rows_tma(bf16* stage, const CUtensorMap* map1, const float (*acc1)[4],
                                               const CUtensorMap* map2, const float (*acc2)[4], int b, int h,
                                               int row0) {
    bf16* tile = stage + (threadIdx.x / 32) * 2 * 16 * D;
    stage_rows_frag<D>(tile, acc1);
    if (TWO) stage_rows_frag<D>(tile + 16 * D, acc2);
    fence_proxy_async();   // this thread's writes, before the TMA reads them
    __syncwarp();
    if (threadIdx.x % 32 == 0) {
        for (int half = 0; half < D / 64; half++) {
            tma_store_3d(map1, tile + half * 16 * 64, h * D + half * 64, row0, b);
            if (TWO) tma_store_3d(map2, tile + 16 * D + half * 16 * 64, h * D + half * 64, row0, b);
        }
        tma_store_wait();   // shared memory must outlive the TMA's reads
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

// B fragments of the n-tiles n0 and n0 + 8 at k = k0..k0+15 (n0 a multiple of 8, k0 of 16), from a tile of
// `rows` rows (tile_offset) storing M[n][k]: one ldmatrix.x4; lane l gives the address of row l % 8 of 8 x 8
// matrix l / 8, the matrices being (n0, k0) (n0, k0+8) (n0+8, k0) (n0+8, k0+8).
__device__ __forceinline__ void ldsm_b_pair(uint32_t* b0, uint32_t* b1, const bf16* m, int rows, int n0, int k0) {
    int lane = threadIdx.x % 32;
    int off = tile_offset(rows, n0 + (lane & 7) + (lane >> 4) * 8, k0 / 8 + ((lane >> 3) & 1));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
                 : "r"(smem_u32(m) + off));
}

// The same fragments from a tile storing X[k][n] (token rows when the product contracts over tokens):
// ldmatrix.trans, matrices (k0, n0) (k0+8, n0) (k0, n0+8) (k0+8, n0+8).
__device__ __forceinline__ void ldsm_bt_pair(uint32_t* b0, uint32_t* b1, const bf16* x, int rows, int k0, int n0) {
    int lane = threadIdx.x % 32;
    int off = tile_offset(rows, k0 + (lane & 7) + ((lane >> 3) & 1) * 8, n0 / 8 + (lane >> 4));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b0[0]), "=r"(b0[1]), "=r"(b1[0]), "=r"(b1[1])
                 : "r"(smem_u32(x) + off));
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
            a[kk][i] = row < T ? ld32(src + (size_t)(b * T + row) * stride + h * D + col) : 0u;
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
            *(uint32_t*)(dst + out + nd * 8 + 2 * t) = pack_bf16(scale * acc[nd][2 * j], scale * acc[nd][2 * j + 1]);
    }
}

// acc1 += C1 X and, if TWO, acc2 += C2 X: C1, C2 are C fragments of this warp's 16 rows over K tokens (taken
// as bf16 A fragments), X a shared-memory tile of K token rows by 8 ND columns (tile_offset) read with
// ldmatrix .trans; the B fragments are loaded once for both products (W V and U V in the forward, dS K and
// dT K in the dq pass).
template <int K, int ND, bool TWO>
__device__ __forceinline__ void mma_frags_times_tile(float (*acc1)[4], float (*acc2)[4], const float (*c1)[4],
                                                     const float (*c2)[4], const bf16* X) {
    for (int kk = 0; kk < K / 16; kk++) {
        uint32_t a1[4], a2[4];
        frag_a_from_c(a1, c1[2 * kk], c1[2 * kk + 1]);
        if (TWO) frag_a_from_c(a2, c2[2 * kk], c2[2 * kk + 1]);
        for (int nd = 0; nd < ND; nd += 2) {
            uint32_t b0[2], b1[2];
            ldsm_bt_pair(b0, b1, X, K, kk * 16, nd * 8);
            mma_bf16(acc1[nd], a1, b0);
            mma_bf16(acc1[nd + 1], a1, b1);
            if (TWO) {
                mma_bf16(acc2[nd], a2, b0);
                mma_bf16(acc2[nd + 1], a2, b1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// forward, the per-tile work shared by the mma.sync and wgmma kernels: each warp owns 16 query rows (C
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
    load_rows_frag<D>(qa, q, stride, b, h, row0, T);
    if (PROBE) load_rows_frag<D>(ra, r, stride, b, h, row0, T);
    for (int j = 0; j < 2; j++) {
        st.m[j] = -INFINITY;
        st.d1[j] = st.d2[j] = st.tau[j] = 0.0f;
    }
    for (int nd = 0; nd < D / 8; nd++)
        for (int i = 0; i < 4; i++) st.O1[nd][i] = st.O2[nd][i] = 0.0f;
}

// The row maxima mx of this warp's rows of S (unscaled: sc > 0 scales the max too) over one key tile; MASK:
// S = -inf where key > row or key >= T (compiled out for the tiles below the diagonal).
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

// Online softmax over one key tile, in place: S (unscaled Q K^T) becomes W = 2^(S sc - m_new) (masked where
// key > row or key >= T, if `mask`); m, d1, d2 advance and O1, O2 are rescaled by a = 2^(m - m_new).
template <int NT, int ND, bool PROBE>
__device__ __forceinline__ void forward_tile_softmax(float (*S)[4], ForwardRows<ND>& st, bool mask, int k0, int q0,
                                                     int T, float sc) {
    float *m = st.m, *d1 = st.d1, *d2 = st.d2;
    float mx[2] = {-INFINITY, -INFINITY};
    if (mask) forward_tile_max<NT, true>(S, mx, k0, q0, T);
    else forward_tile_max<NT, false>(S, mx, k0, q0, T);
    float a[2], mu[2];
    for (int j = 0; j < 2; j++) {
        float m_new = fmaxf(m[j], quad_max(mx[j]) * sc);
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

// On the first tile, after forward_tile_softmax (S holds W): tau, the W-weighted mean of t over the tile, and Tt
// (R K^T, made before tau was known) shifted by it.
template <int NT, int ND>
__device__ __forceinline__ void forward_first_tau(const float (*S)[4], float (*Tt)[4], ForwardRows<ND>& st) {
    float sw[2] = {0.0f, 0.0f}, swt[2] = {0.0f, 0.0f};
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            sw[i >> 1] += S[nt][i];
            swt[i >> 1] += S[nt][i] * Tt[nt][i];
        }
    for (int j = 0; j < 2; j++) {
        float w = quad_sum(sw[j]), wt = quad_sum(swt[j]);
        st.tau[j] = w > 0.0f ? wt / w : 0.0f;  // w = 0 only in padding rows past T
    }
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) Tt[nt][i] -= st.tau[i >> 1];
}

// The probe's part of a tile, after forward_tile_softmax: Tt (t - tau) becomes U = W o (t - tau); d2 advances.
template <int NT, int ND>
__device__ __forceinline__ void forward_tile_probe(const float (*S)[4], float (*Tt)[4], ForwardRows<ND>& st) {
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            Tt[nt][i] *= S[nt][i];  // Tt now holds U
            st.d2[i >> 1] += Tt[nt][i];
        }
}

// S = Q K^T and Tt = R K^T - tau (per row) over a key tile Kb of 8 NT keys; the Q, R fragments are this
// warp's, in registers. Starting Tt at -tau shifts t in the accumulator, for free: one FADD per score less
// (before the first tile's tau is known, tau = 0 and forward_first_tau shifts).
template <int D, int NT, bool PROBE>
__device__ __forceinline__ void forward_products(float (*S)[4], float (*Tt)[4], const uint32_t (*qa)[4],
                                                 const uint32_t (*ra)[4], const bf16* Kb, const float* tau) {
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            S[nt][i] = 0.0f;
            Tt[nt][i] = -tau[i >> 1];
        }
    for (int nt = 0; nt < NT; nt += 2)
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t b0[2], b1[2];
            ldsm_b_pair(b0, b1, Kb, 8 * NT, nt * 8, kk * 16);
            mma_bf16(S[nt], qa[kk], b0);
            mma_bf16(S[nt + 1], qa[kk], b1);
            if (PROBE) {
                mma_bf16(Tt[nt], ra[kk], b0);
                mma_bf16(Tt[nt + 1], ra[kk], b1);
            }
        }
}

// The end of the forward for this warp's rows: L and tbar into global memory, and in registers O1 becomes
// vbar = O1/d1 and O2 becomes o = vbar (1 + tbar') - O2/d1 (without the probe o = vbar: O2 is left alone).
template <int D, bool PROBE>
__device__ __forceinline__ void forward_finish(ForwardRows<D / 8>& st, float* L, float* tbar, int bh, int T, int q0) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int j = 0; j < 2; j++) {
        float d1 = quad_sum(st.d1[j]), d2 = quad_sum(st.d2[j]);
        float inv = 1.0f / d1, tb = PROBE ? d2 * inv : 0.0f;   // tbar' = tbar - tau
        for (int nd = 0; nd < D / 8; nd++)
            for (int i = 2 * j; i < 2 * j + 2; i++) {
                st.O1[nd][i] *= inv;
                if (PROBE) st.O2[nd][i] = st.O1[nd][i] * (1.0f + tb) - st.O2[nd][i] * inv;
            }
        int row = q0 + g + j * 8;
        if (t == 0 && row < T) {
            L[(size_t)bh * T + row] = st.m[j] * LN2 + logf(d1);
            tbar[(size_t)bh * T + row] = tb + st.tau[j];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// forward. grid (ceil(T / 64), B*H), 128 threads: each warp owns 16 query rows and streams over key tiles
// of BK keys (the spec's recurrence, in log2 units: S is pre-multiplied by c log2 e):
//   m_new = max(m, rowmax S); a = 2^(m - m_new); W = 2^(S - m_new); Tt = R K^T - tau; U = W o Tt
//   d1 = a d1 + rowsum W; d2 = a d2 + rowsum U; O1 = a O1 + W V; O2 = a O2 + U V
//   end: vbar = O1/d1; tbar' = d2/d1; o = vbar (1 + tbar') - O2/d1; tbar = tbar' + tau; L = m ln 2 + ln d1
// tau_i is a per-row shift of t, the p-weighted mean of t over the first key tile: the weights
// 1 + tbar - t_ij do not change when every t of a row moves by tau, so o is the same in exact arithmetic,
// but U = W o (t - tau) is small where o = vbar (1 + tbar') - O2/d1 cancels, so U in bf16 (one product)
// is enough: exact at T = 1, about 2e-3 of o otherwise, against 2.7e-3 with tau = 0 (dev/cuda/NOTES.md).
// K and V tiles (K[key][d], V[key][d]) arrive through a StageRing of forward_stages(PROBE) buffers.

// K, V buffers of the forward (measured: Parallax 3, softmax 3, where 2 is slower) and its
// dynamic shared memory: the K tiles, the V tiles, the ring's mbarriers
#ifndef FWD_STAGES_PROBE
#define FWD_STAGES_PROBE 3
#endif
#ifndef FWD_STAGES_SOFTMAX
#define FWD_STAGES_SOFTMAX 3
#endif
__host__ __device__ constexpr int forward_stages(bool probe) { return probe ? FWD_STAGES_PROBE : FWD_STAGES_SOFTMAX; }
template <int D, bool PROBE>
constexpr int forward_smem_bytes() {
    constexpr int BK = forward_keys_per_tile(D);
    return TILE_ALIGN + forward_stages(PROBE) * (2 * BK * D * (int)sizeof(bf16) + STAGE_RING_BYTES);
}

template <int D, bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? ATTN_MIN_BLOCKS[PROBE][0] : 1)
attention_forward_kernel(const __grid_constant__ CUtensorMap tm_o, const __grid_constant__ CUtensorMap tm_vbar,
                         float* L, float* tbar, const bf16* q, const bf16* r, const __grid_constant__ CUtensorMap tm_k,
                         const __grid_constant__ CUtensorMap tm_v, int B, int T, int H, int stride) {
    constexpr int BQ = 64, BK = forward_keys_per_tile(D), KD = D / 16, NT = BK / 8, ND = D / 8;
    constexpr int STAGES = forward_stages(PROBE);
    extern __shared__ __align__(128) unsigned char smem_raw[];   // forward_smem_bytes<D, PROBE>()
    bf16 (*Ks)[BK * D] = (bf16 (*)[BK * D])align_tiles(smem_raw);   // Ks[STAGES][BK * D], then Vs likewise
    bf16 (*Vs)[BK * D] = Ks + STAGES;
    StageRing<STAGES, 1> ring((uint64_t*)(Vs + STAGES));
    int rank, bh;
    block_rank(rank, bh);
    int qt = gridDim.x - 1 - rank;   // rank 0: the last query tile, the longest
    int b = bh / H, h = bh % H;
    int q0 = qt * BQ + (threadIdx.x / 32) * 16;   // this warp's first row
    const float sc = rsqrtf((float)D) * LOG2E;

    int kv_end = min(T, (qt + 1) * BQ);  // causal: keys past the tile's last query are never needed
    int ntiles = ceil_div(kv_end, BK);
    uint32_t qa[KD][4], ra[KD][4];
    ForwardRows<ND> st;
    forward_rows_begin<D, PROBE>(qa, ra, st, q, r, stride, b, h, q0, T);   // loads in flight across the barrier
    if (threadIdx.x < 32) {   // warp 0: the ring's counts and the first tiles, before the barrier (StageRing)
        ring.init();
        __syncwarp();
        for (int i = 0; i < STAGES - 1 && i < ntiles; i++)
            load_kv_tile<D, BK>(ring, i, Ks[i], Vs[i], &tm_k, &tm_v, b, h);
    }
    __syncthreads();

    for (int it = 0; it < ntiles; it++) {
        int k0 = it * BK;
        ring.wait_full(it);
        if (k0 <= q0 + 15) {  // else every key of this tile is after every row of this warp
            const bf16* Kb = Ks[it % STAGES];
            const bf16* Vb = Vs[it % STAGES];
            float S[NT][4], Tt[NT][4];
            forward_products<D, NT, PROBE>(S, Tt, qa, ra, Kb, st.tau);
            bool mask = k0 + BK - 1 > q0 || k0 + BK > T;   // only tiles reaching past a row or past T
            forward_tile_softmax<NT, ND, PROBE>(S, st, mask, k0, q0, T, sc);
            if (PROBE && it == 0) forward_first_tau<NT, ND>(S, Tt, st);
            if (PROBE) forward_tile_probe<NT, ND>(S, Tt, st);
            mma_frags_times_tile<BK, ND, PROBE>(st.O1, st.O2, S, Tt, Vb);   // O1 += W V, O2 += U V
        }
        ring.release(it);
        int next = it + STAGES - 1;   // into tile it - 1's buffer
        if (next < ntiles && ring.producer(next)) {
            ring.wait_empty(next);
            load_kv_tile<D, BK>(ring, next, Ks[next % STAGES], Vs[next % STAGES], &tm_k, &tm_v, b, h);
        }
    }
    forward_finish<D, PROBE>(st, L, tbar, bh, T, q0);
    static_assert(ATTN_WARPS * 2 * 16 * D <= 2 * STAGES * BK * D, "the ring holds the results");
    __syncthreads();   // every warp is done with the ring
    store_rows_tma<D, true>(Ks[0], &tm_o, PROBE ? st.O2 : st.O1, &tm_vbar, st.O1, b, h, q0);
}

// ---------------------------------------------------------------------------------------------------------
// wgmma (sm_90a): one warpgroup (the block's 4 warps) multiplies a 64-row A held in registers (each warp its
// 16 rows, in the mma.sync A fragment layout) by a B read from shared memory by the tensor cores through a
// descriptor, asynchronously; the 64 x 64 fp32 result lands per warp in the mma.sync C fragment layout
// (d[j][i]: columns 8 j + 2 t + (i & 1), rows g + 8 (i >> 1)). B tiles here are 64 x 64 bf16 without swizzle,
// in 8 x 8 "core matrices" of 128 contiguous bytes (8 rows of 16 bytes); the descriptor gives the byte
// distance between core matrices along K (LBO) and along N (SBO). For Q K^T the K tile is "K-major" (its
// rows are keys = N, contiguous in d = K): element (key, d) at (d / 8) 1024 + key 16 + (d % 8) 2 bytes. For
// W V the V tile is "MN-major" (rows are keys = K, contiguous in d = N; the instruction transposes):
// element (key, d) at (key / 8) 1024 + (d / 8) 128 + (key % 8) 16 + (d % 8) 2. Both: LBO 1024, SBO 128.
// (Checked on the H200 by building the study with the two offsets swapped in either descriptor: only this
// assignment passes; dev/cuda/NOTES.md.)

__device__ __forceinline__ uint64_t wgmma_desc(const void* smem, int lbo, int sbo) {
    uint64_t addr = smem_u32(smem);
    return ((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32);   // base offset 0, no swizzle (bits 62-63 = 0)
}
__device__ __forceinline__ void wgmma_fence() { HOPPER_ONLY(asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory")); }
__device__ __forceinline__ void wgmma_commit() { HOPPER_ONLY(asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory")); }
// wait until at most N of this warpgroup's committed groups of products are still running
template <int N>
__device__ __forceinline__ void wgmma_wait() { HOPPER_ONLY(asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory")); }
// Pins N C fragments at this point of the program: the compiler may not move their reads or writes across
// it. A wgmma_wait has no register operands, so without this the arithmetic on an accumulator could be
// scheduled before the wait that makes it valid (ptxas would then serialize every wgmma).
template <int N>
__device__ __forceinline__ void fence_frags(float (*x)[4]) {
    for (int j = 0; j < N; j++)
        for (int i = 0; i < 4; i++) asm volatile("" : "+f"(x[j][i])::"memory");
}

// d (+)= A B for one k = 16 slice: m64 n64 k16, bf16 in, fp32 accumulate; accumulate = 0 overwrites d.
// TRANS_B = 0: B K-major (Q K^T), 1: B MN-major (W V).
template <int TRANS_B>
__device__ __forceinline__ void wgmma_m64n64k16(float (*d)[4], const uint32_t* a, uint64_t desc, int accumulate) {
    HOPPER_ONLY(asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
          "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
          "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
          "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
          "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
          "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
          "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TRANS_B)));
}

// The same for n = 32 (d: 4 C tiles of 8 columns).
template <int TRANS_B>
__device__ __forceinline__ void wgmma_m64n32k16(float (*d)[4], const uint32_t* a, uint64_t desc, int accumulate) {
    HOPPER_ONLY(asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, %22;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
          "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
          "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
          "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TRANS_B)));
}

// Starts copying 64 token rows x 64 d of a strided bf16 tensor into one of the two core-matrix layouts above
// (rows past T become zeros). Each 8 consecutive threads copy chunk c of 8 consecutive rows: their shared-
// memory slots fall on 8 different bank groups in both layouts (a row's 8 chunks would all share one), and
// a warp reads 64 contiguous bytes of each of 8 rows from global memory (whole 32-byte sectors). Thread
// tid copies chunk (tid / 8) % 8 of rows tid % 8 + 8 (tid / 64) + 16 i, i = 0..3.
template <bool K_MAJOR>
__device__ __forceinline__ void load_tile_core_async(bf16* dst, const bf16* src, int stride, int b, int h, int row0,
                                                     int T) {
    int tid = threadIdx.x, row = tid % 8 + 8 * (tid / 64), c = (tid / 8) % 8;
    int off = K_MAJOR ? c * 512 + row * 8 : (row / 8) * 512 + c * 64 + (row % 8) * 8;   // in bf16
    const bf16* from = src + ((size_t)b * T + row0 + row) * stride + h * 64 + c * 8;
    for (int i = 0; i < 64 * 8 / ATTN_THREADS; i++) {
        bool ok = row0 + row + 16 * i < T;
        cp_async16(dst + off + i * (K_MAJOR ? 128 : 1024), ok ? from + (size_t)16 * i * stride : src, ok ? 16 : 0);
    }
}

// The forward on wgmma, D = 64 (version 4): the same blocks, rows per warp and per-tile arithmetic as
// attention_forward_kernel (forward_tile_softmax, _probe, forward_finish), but S = Q K^T,
// Tt = R K^T - tau, O1 += W V and O2 += U V each run as four wgmma k-slices for the whole 64-row block: the
// K and V tiles are read from shared memory once per block instead of once per warp. Tt runs during the
// softmax of S, and the next K and V tiles load during the element-wise work; the other products are waited
// for at once.
// Measured (dev/cuda/NOTES.md): Parallax forward 1.5-4% faster than version 3 as it stood in session 3, but
// 13% slower than version 3 with session 4's leaner tiles (0.264 against 0.233 ms), softmax 57% slower:
// without FlashAttention-3's ping-pong of two warpgroups the tensor cores idle during the element-wise work.
template <bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, PROBE ? 2 : 4)   // 208 / 128 registers: 2 / 4 blocks per SM
attention_forward_wgmma_kernel(bf16* o, bf16* vbar, float* L, float* tbar, const bf16* q, const bf16* r,
                               const bf16* k, const bf16* v, int B, int T, int H, int stride) {
    constexpr int D = 64, BQ = 64, BK = 64, KD = 4, NT = 8, ND = 8, TILE = 64 * 64;
    constexpr int LBO_K = 1024, SBO_K = 128, LBO_V = 1024, SBO_V = 128;   // bytes; see the layouts above
    __shared__ __align__(128) bf16 Ks[2][TILE];
    __shared__ __align__(128) bf16 Vs[2][TILE];
    int qt = gridDim.x - 1 - blockIdx.x;  // the longest (last) query tiles start first
    int bh = blockIdx.y, b = bh / H, h = bh % H;
    int q0 = qt * BQ + (threadIdx.x / 32) * 16;   // this warp's first row
    const float sc = rsqrtf((float)D) * LOG2E;

    int ntiles = ceil_div(min(T, (qt + 1) * BQ), BK);
    load_tile_core_async<true>(Ks[0], k, stride, b, h, 0, T);
    load_tile_core_async<false>(Vs[0], v, stride, b, h, 0, T);
    cp_async_commit();

    uint32_t qa[KD][4], ra[KD][4];
    ForwardRows<ND> st;
    forward_rows_begin<D, PROBE>(qa, ra, st, q, r, stride, b, h, q0, T);

    for (int it = 0; it < ntiles; it++) {
        int k0 = it * BK, buf = it & 1;
        cp_async_wait<0>();   // tile it has landed (this thread's copies) ...
        fence_proxy_async();  // ... is visible to the tensor cores ...
        __syncthreads();      // ... and so are every other thread's
        float S[NT][4], Tt[NT][4];
        for (int nt = 0; nt < NT; nt++)   // Tt = R K^T - tau (forward_products)
            for (int i = 0; i < 4; i++) Tt[nt][i] = -st.tau[i >> 1];
        if (PROBE) fence_frags<NT>(Tt);
        wgmma_fence();
        for (int kk = 0; kk < KD; kk++)   // d = 16 kk .. 16 kk + 15: d groups 2 kk, 2 kk + 1
            wgmma_m64n64k16<0>(S, qa[kk], wgmma_desc(Ks[buf] + kk * 1024, LBO_K, SBO_K), kk > 0);
        wgmma_commit();
        if (PROBE) {
            for (int kk = 0; kk < KD; kk++)
                wgmma_m64n64k16<0>(Tt, ra[kk], wgmma_desc(Ks[buf] + kk * 1024, LBO_K, SBO_K), 1);
            wgmma_commit();
            wgmma_wait<1>();  // S is ready; Tt runs on during the softmax
        } else {
            wgmma_wait<0>();
        }
        fence_frags<NT>(S);
        fence_frags<ND>(st.O1);
        if (PROBE) fence_frags<ND>(st.O2);
        __syncthreads();  // every warp is done with the previous tile: its buffers may be refilled
        if (it + 1 < ntiles) {  // the next tile loads while this one's arithmetic runs
            load_tile_core_async<true>(Ks[buf ^ 1], k, stride, b, h, k0 + BK, T);
            load_tile_core_async<false>(Vs[buf ^ 1], v, stride, b, h, k0 + BK, T);
            cp_async_commit();
        }
        bool mask = k0 + BK - 1 > q0 || k0 + BK > T;
        forward_tile_softmax<NT, ND, PROBE>(S, st, mask, k0, q0, T, sc);
        if (PROBE) {
            wgmma_wait<0>();
            fence_frags<NT>(Tt);
            if (it == 0) forward_first_tau<NT, ND>(S, Tt, st);
            forward_tile_probe<NT, ND>(S, Tt, st);
        }
        uint32_t aw[BK / 16][4], au[BK / 16][4];
        for (int kk = 0; kk < BK / 16; kk++) {
            frag_a_from_c(aw[kk], S[2 * kk], S[2 * kk + 1]);
            if (PROBE) frag_a_from_c(au[kk], Tt[2 * kk], Tt[2 * kk + 1]);
        }
        wgmma_fence();
        for (int kk = 0; kk < BK / 16; kk++) {   // keys 16 kk .. 16 kk + 15
            uint64_t dv = wgmma_desc(Vs[buf] + kk * 1024, LBO_V, SBO_V);   // key groups 2 kk, 2 kk + 1
            wgmma_m64n64k16<1>(st.O1, aw[kk], dv, 1);
            if (PROBE) wgmma_m64n64k16<1>(st.O2, au[kk], dv, 1);
        }
        wgmma_commit();
        // wait here: left running into the next tile, the loop-carried O1 / O2 made ptxas serialize every
        // wgmma, 8% slower (dev/cuda/NOTES.md)
        wgmma_wait<0>();
        fence_frags<ND>(st.O1);
        if (PROBE) fence_frags<ND>(st.O2);
    }
    forward_finish<D, PROBE>(st, L, tbar, bh, T, q0);
    store_rows_frag<D>(o, PROBE ? st.O2 : st.O1, 1.0f, H * D, b, h, q0, T);
    store_rows_frag<D>(vbar, st.O1, 1.0f, H * D, b, h, q0, T);
}

// ---------------------------------------------------------------------------------------------------------
// The per-pair gradient terms, given the score s (unscaled q.k: sc takes it to log2 units), t = r.k and A = g.v:
//   p = 2^(s sc - L log2 e);  dS = p [(A - Tg) + (tbar - t)(A - B)];  dT = -p (A - B);  w = p (1 + tbar - t)
// written as dT = p (B - A), dS = p (A - Tg) - (tbar - t) dT, w = p + p (tbar - t): 9 instructions.
struct PairTerms { float dS, dT, w; };

template <bool PROBE>
__device__ __forceinline__ PairTerms pair_terms(float s, float sc, float tt, float A, float L2, float tb, float Tg,
                                                float Bi) {
    float p = fast_exp2(fmaf(s, sc, -L2));   // s unscaled: scale and shift in one instruction
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
    load_rows_frag<D>(qa, q, stride, b, h, row0, T);
    if (PROBE) load_rows_frag<D>(ra, r, stride, b, h, row0, T);
    load_rows_frag<D>(ga, dO, H * D, b, h, row0, T);
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
    if (k0 + 8 * NT - 1 > q0 || k0 + 8 * NT > T) dq_tile_terms_mask<NT, PROBE, true>(S, Tt, A, rs, k0, q0, T, sc);
    else dq_tile_terms_mask<NT, PROBE, false>(S, Tt, A, rs, k0, q0, T, sc);
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
        dkv_tile_terms_mask<NT, PROBE, true>(S, Tt, A, st, q0, key0, T, c, sc);
    else
        dkv_tile_terms_mask<NT, PROBE, false>(S, Tt, A, st, q0, key0, T, c, sc);
}

// backward, pass 1: the row dots Tg, B (written for pass 2), then dq_i = c sum_j dS_ij k_j and
// dr_i = sum_j dT_ij k_j. grid (ceil(T / 64), B*H), 128 threads; each warp owns 16 query rows (Q, R, dO
// fragments in registers) and streams over key tiles of dq_keys_per_tile; K and V tiles
// (K[key][d], V[key][d]) arrive through a StageRing: plain ldmatrix for Q K^T, R K^T, dO V^T, .trans for dS K,
// dT K.
// keys per tile and K, V buffers of the dq pass, and its dynamic shared memory (the K tiles, the V tiles, the
// ring's mbarriers)
#ifndef DQ_BK_PROBE64
#define DQ_BK_PROBE64 64
#endif
#ifndef DQ_STAGES
#define DQ_STAGES 3
#endif
// (measured: 64 keys for the D = 64 Parallax pass, 2.5% faster than 32; 32 for softmax and D = 128, where 64
// is 9-13% slower)
__host__ __device__ constexpr int dq_keys_per_tile(int D, bool probe) { return D == 64 && probe ? DQ_BK_PROBE64 : 32; }
template <int D, bool PROBE>
constexpr int dq_smem_bytes() {
    return TILE_ALIGN + DQ_STAGES * (2 * dq_keys_per_tile(D, PROBE) * D * (int)sizeof(bf16) + STAGE_RING_BYTES);
}

template <int D, bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? ATTN_MIN_BLOCKS[PROBE][1] : 1)
attention_backward_dq_kernel(const __grid_constant__ CUtensorMap tm_dq, const __grid_constant__ CUtensorMap tm_dr,
                             float* Tg, float* Bv, const bf16* dO, const bf16* q,
                             const bf16* r, const __grid_constant__ CUtensorMap tm_k,
                             const __grid_constant__ CUtensorMap tm_v, const bf16* o, const bf16* vbar,
                             const float* L, const float* tbar, int B, int T, int H, int stride) {
    constexpr int BQ = 64, BK = dq_keys_per_tile(D, PROBE), KD = D / 16, NT = BK / 8, ND = D / 8, STAGES = DQ_STAGES;
    extern __shared__ __align__(128) unsigned char smem_raw[];   // dq_smem_bytes<D, PROBE>()
    bf16 (*Ks)[BK * D] = (bf16 (*)[BK * D])align_tiles(smem_raw);   // Ks[STAGES][BK * D], then Vs likewise
    bf16 (*Vs)[BK * D] = Ks + STAGES;
    StageRing<STAGES, 1> ring((uint64_t*)(Vs + STAGES));
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
    for (int i = 0; i < STAGES - 1 && i < ntiles; i++)
        if (ring.producer(i)) load_kv_tile<D, BK>(ring, i, Ks[i], Vs[i], &tm_k, &tm_v, b, h);

    uint32_t qa[KD][4], ra[KD][4], ga[KD][4];
    DqRows rs = dq_rows_begin<D, PROBE>(qa, ra, ga, Tg, Bv, q, r, dO, o, vbar, L, tbar, stride, b, h, bh, H, q0, T);
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
                    ldsm_b_pair(bk0, bk1, Kb, BK, nt * 8, kk * 16);
                    ldsm_b_pair(bv0, bv1, Vb, BK, nt * 8, kk * 16);
                    mma_bf16(S[nt], qa[kk], bk0);
                    mma_bf16(S[nt + 1], qa[kk], bk1);
                    if (PROBE) {
                        mma_bf16(Tt[nt], ra[kk], bk0);
                        mma_bf16(Tt[nt + 1], ra[kk], bk1);
                    }
                    mma_bf16(A[nt], ga[kk], bv0);
                    mma_bf16(A[nt + 1], ga[kk], bv1);
                }
            dq_tile_terms<NT, PROBE>(S, Tt, A, rs, k0, q0, T, sc);
            mma_frags_times_tile<BK, ND, PROBE>(dQ, dR, S, Tt, Kb);   // dQ += dS K, dR += dT K
        }
        ring.release(it);
        int next = it + STAGES - 1;   // into tile it - 1's buffer
        if (next < ntiles && ring.producer(next)) {
            ring.wait_empty(next);
            load_kv_tile<D, BK>(ring, next, Ks[next % STAGES], Vs[next % STAGES], &tm_k, &tm_v, b, h);
        }
    }
    for (int nd = 0; nd < ND; nd++)
        for (int i = 0; i < 4; i++) dQ[nd][i] *= c;
    static_assert(ATTN_WARPS * 2 * 16 * D <= 2 * STAGES * BK * D, "the ring holds the results");
    __syncthreads();   // every warp is done with the ring
    store_rows_tma<D, PROBE>(Ks[0], &tm_dq, dQ, &tm_dr, dR, b, h, q0);
}

// One buffer of the dk/dv pass: the Q, R and dO tiles of BQ queries, then the per-query statistics as one
// float4 per query: (L, tbar, Tg, B) (tbar and B unused without the probe). Tiles in the TMA's swizzled
// layout (tile_offset; version 3) or the core-matrix layout of the wgmma kernels (BQ = D = 64); buffers start
// on TILE_ALIGN bytes.
template <int D, int BQ>
struct DkvTile {
    static constexpr int TILE = BQ * D;
    static constexpr int BYTES =
        (3 * TILE * (int)sizeof(bf16) + 4 * BQ * (int)sizeof(float) + TILE_ALIGN - 1) / TILE_ALIGN * TILE_ALIGN;
    bf16 *Q, *R, *G;
    float4* st;
    __device__ DkvTile(unsigned char* base) {
        Q = (bf16*)base;
        R = Q + TILE;
        G = R + TILE;
        st = (float4*)(G + TILE);
    }
};

// The producer's part of loading query tile i (32 queries from q0) into one buffer of the dk/dv pass: lane 0
// copies the Q, R and dO rows by TMA, and lane l the statistics of query q0 + l by cp.async (4-byte values
// interleaved into float4s, below the TMA's 16-byte grain; zeros past T).
template <int D, bool PROBE, int STAGES>
__device__ __forceinline__ void dkv_load_tile(StageRing<STAGES, 33>& ring, int i, DkvTile<D, 32> tile,
                                              const CUtensorMap* tm_q, const CUtensorMap* tm_r,
                                              const CUtensorMap* tm_g, const float* L, const float* tbar,
                                              const float* Tg, const float* Bv, int b, int h, int bh, int q0, int T) {
    constexpr int BQ = 32;
    int lane = threadIdx.x % 32, row = q0 + lane;
    if (lane == 0) {
        ring.expect(i, (PROBE ? 3 : 2) * BQ * D * sizeof(bf16));
        load_tile_tma<D, BQ>(tile.Q, tm_q, b, h, q0, ring.full_bar(i));
        if (PROBE) load_tile_tma<D, BQ>(tile.R, tm_r, b, h, q0, ring.full_bar(i));
        load_tile_tma<D, BQ>(tile.G, tm_g, b, h, q0, ring.full_bar(i));
    }
    bool ok = row < T;
    size_t ri = (size_t)bh * T + row;
    float* st = (float*)&tile.st[lane];
    cp_async4(st, ok ? L + ri : L, ok ? 4 : 0);
    cp_async4(st + 2, ok ? Tg + ri : Tg, ok ? 4 : 0);
    if (PROBE) {
        cp_async4(st + 1, ok ? tbar + ri : tbar, ok ? 4 : 0);
        cp_async4(st + 3, ok ? Bv + ri : Bv, ok ? 4 : 0);
    }
    ring.loaded(i);
}

// Starts loading the query tile at q0 into one buffer of the dk/dv pass on wgmma (every thread copies).
template <int D, int BQ, bool PROBE>
__device__ __forceinline__ void dkv_load_core_async(DkvTile<D, BQ> tile, const bf16* q, const bf16* r,
                                                    const bf16* dO, const float* L, const float* tbar,
                                                    const float* Tg, const float* Bv, int b, int h, int bh, int q0,
                                                    int T, int H, int stride) {
    load_tile_core_async<true>(tile.Q, q, stride, b, h, q0, T);
    if (PROBE) load_tile_core_async<true>(tile.R, r, stride, b, h, q0, T);
    load_tile_core_async<true>(tile.G, dO, H * D, b, h, q0, T);
    float* st = (float*)tile.st;
    load_rows_async<BQ>(st, 4, L, bh, q0, T);
    load_rows_async<BQ>(st + 2, 4, Tg, bh, q0, T);
    if (PROBE) {
        load_rows_async<BQ>(st + 1, 4, tbar, bh, q0, T);
        load_rows_async<BQ>(st + 3, 4, Bv, bh, q0, T);
    }
}

// backward, pass 2: dk_j = c sum_i dS_ij q_i + sum_i dT_ij r_i and dv_j = sum_i w_ij g_i. grid (ceil(T / 64), B*H),
// 128 threads; each warp owns 16 keys (K, V fragments in registers) and streams over query tiles of 32
// from the first that can see them, computing the transposed products S^T = K Q^T, T^T = K R^T,
// A^T = V dO^T (plain ldmatrix from Q, R, dO tiles) and dK += dS^T Q + dT^T R, dV += w^T dO (.trans).
// The query tiles arrive through a StageRing of DkvTile buffers (dynamic shared memory).
// query-tile buffers of the dk/dv pass and its dynamic shared memory (the DkvTiles, the ring's mbarriers)
#ifndef DKV_STAGES
#define DKV_STAGES 3
#endif
template <int D>
constexpr int dkv_smem_bytes() { return TILE_ALIGN + DKV_STAGES * (DkvTile<D, 32>::BYTES + STAGE_RING_BYTES); }

template <int D, bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? ATTN_MIN_BLOCKS[PROBE][2] : 1)
attention_backward_dkv_kernel(const __grid_constant__ CUtensorMap tm_dk, const __grid_constant__ CUtensorMap tm_dv,
                              const __grid_constant__ CUtensorMap tm_g,
                              const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_r,
                              const bf16* k, const bf16* v, const float* L, const float* tbar, const float* Tg,
                              const float* Bv, int B, int T, int H, int stride) {
    constexpr int BKV = 64, BQ = 32, KD = D / 16, NT = BQ / 8, ND = D / 8, STAGES = DKV_STAGES;
    extern __shared__ __align__(128) unsigned char smem_raw[];   // dkv_smem_bytes<D>()
    unsigned char* smem = align_tiles(smem_raw);
    constexpr int BUF = DkvTile<D, BQ>::BYTES;
    StageRing<STAGES, 33> ring((uint64_t*)(smem + STAGES * BUF));
    int kt, bh;
    block_rank(kt, bh);   // rank 0: the first key tile, the longest
    int b = bh / H, h = bh % H;
    int warp = threadIdx.x / 32;
    int kr0 = kt * BKV + warp * 16;  // this warp's first key
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    int qstart = (kt * BKV / BQ) * BQ, ntiles = ceil_div(T - qstart, BQ);
    uint32_t ka[KD][4], va[KD][4];   // loads in flight across the barrier
    load_rows_frag<D>(ka, k, stride, b, h, kr0, T);
    load_rows_frag<D>(va, v, stride, b, h, kr0, T);
    ring.init();
    __syncthreads();
    for (int i = 0; i < STAGES - 1 && i < ntiles; i++)
        if (ring.producer(i))
            dkv_load_tile<D, PROBE>(ring, i, DkvTile<D, BQ>(smem + i * BUF), &tm_q, &tm_r, &tm_g, L, tbar, Tg, Bv,
                                    b, h, bh, qstart + i * BQ, T);

    float dK[ND][4] = {}, dV[ND][4] = {};

    for (int it = 0; it < ntiles; it++) {
        int q0 = qstart + it * BQ;
        ring.wait_full(it);
        if (q0 + BQ - 1 >= kr0) {  // else every query of this tile is before every key of this warp
            const DkvTile<D, BQ> tl(smem + (it % STAGES) * BUF);
            float S[NT][4], Tt[NT][4], A[NT][4];
            for (int nt = 0; nt < NT; nt++)
                for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = A[nt][i] = 0.0f;
            for (int nt = 0; nt < NT; nt += 2)
                for (int kk = 0; kk < KD; kk++) {
                    uint32_t bq0[2], bq1[2], bg0[2], bg1[2];
                    ldsm_b_pair(bq0, bq1, tl.Q, BQ, nt * 8, kk * 16);
                    ldsm_b_pair(bg0, bg1, tl.G, BQ, nt * 8, kk * 16);
                    mma_bf16(S[nt], ka[kk], bq0);
                    mma_bf16(S[nt + 1], ka[kk], bq1);
                    mma_bf16(A[nt], va[kk], bg0);
                    mma_bf16(A[nt + 1], va[kk], bg1);
                    if (PROBE) {
                        uint32_t br0[2], br1[2];
                        ldsm_b_pair(br0, br1, tl.R, BQ, nt * 8, kk * 16);
                        mma_bf16(Tt[nt], ka[kk], br0);
                        mma_bf16(Tt[nt + 1], ka[kk], br1);
                    }
                }
            dkv_tile_terms<NT, PROBE>(S, Tt, A, tl.st, q0, kr0, T, c, sc);   // S: c dS^T, Tt: dT^T, A: w^T
            for (int kk = 0; kk < BQ / 16; kk++) {
                uint32_t as[4], at[4], aw[4];
                frag_a_from_c(as, S[2 * kk], S[2 * kk + 1]);
                frag_a_from_c(aw, A[2 * kk], A[2 * kk + 1]);
                if (PROBE) frag_a_from_c(at, Tt[2 * kk], Tt[2 * kk + 1]);
                for (int nd = 0; nd < ND; nd += 2) {
                    uint32_t bq0[2], bq1[2], bg0[2], bg1[2];
                    ldsm_bt_pair(bq0, bq1, tl.Q, BQ, kk * 16, nd * 8);
                    ldsm_bt_pair(bg0, bg1, tl.G, BQ, kk * 16, nd * 8);
                    mma_bf16(dK[nd], as, bq0);
                    mma_bf16(dK[nd + 1], as, bq1);
                    mma_bf16(dV[nd], aw, bg0);
                    mma_bf16(dV[nd + 1], aw, bg1);
                    if (PROBE) {
                        uint32_t br0[2], br1[2];
                        ldsm_bt_pair(br0, br1, tl.R, BQ, kk * 16, nd * 8);
                        mma_bf16(dK[nd], at, br0);
                        mma_bf16(dK[nd + 1], at, br1);
                    }
                }
            }
        }
        ring.release(it);
        int next = it + STAGES - 1;   // into tile it - 1's buffer
        if (next < ntiles && ring.producer(next)) {
            ring.wait_empty(next);
            dkv_load_tile<D, PROBE>(ring, next, DkvTile<D, BQ>(smem + (next % STAGES) * BUF), &tm_q, &tm_r, &tm_g,
                                    L, tbar, Tg, Bv, b, h, bh, qstart + next * BQ, T);
        }
    }
    static_assert(ATTN_WARPS * 2 * 16 * D * (int)sizeof(bf16) <= STAGES * BUF, "the ring holds the results");
    __syncthreads();   // every warp is done with the ring
    store_rows_tma<D, true>((bf16*)smem, &tm_dk, dK, &tm_dv, dV, b, h, kr0);
}

// ---------------------------------------------------------------------------------------------------------
// backward on wgmma (version 4, D = 64): the same two passes as version 3, but each block is one warpgroup
// whose 64 rows share every product, so a tile in shared memory is read once per 64 rows instead of once
// per 16 (ncu: version 3's dk/dv pass spends its time in ldmatrix). The block's own rows (Q, R, dO or K, V
// fragments, warp w: rows 16 w..16 w+15) are the A operand in registers, a 64-token tile is B, and each
// tile is taken in two halves of 32 tokens so that one half's products run during the other's element-wise
// work (measured: dk/dv pass 8% faster than the whole tile at once, dq pass the same):
//   contracting over d       S = Q K^T, Tt = R K^T, A = dO V^T (dq pass; transposed in the dk/dv pass)
//                            B "K-major": the tile's token rows are N, its d is K
//   contracting over tokens  dQ += dS K, dR += dT K; dV += w^T dO, dK += (c dS^T) Q + dT^T R
//                            B "MN-major": the same tile, its token rows now K, its d N
// One layout serves both readings: tile element (row, d) at (d / 8) 1024 + (row / 8) 128 + (row % 8) 16 +
// (d % 8) 2 bytes (load_tile_core_async<true>), so the d-contracting read takes LBO 1024 (along d) and
// SBO 128 (along rows), the token-contracting read LBO 128 (along rows, now K) and SBO 1024 (along d, now N).
// (The swapped assignment was built too and fails the check: dev/cuda/NOTES.md, session 4.)
constexpr int WG_D_LBO = 1024, WG_D_SBO = 128;      // bytes; reading a tile along d (K-major)
constexpr int WG_ROWS_LBO = 128, WG_ROWS_SBO = 1024;   // bytes; reading it along its token rows (MN-major)

// acc += C X over NK x 16 tokens from token 16 kk0 of a 64-token tile X: C is a C fragment set (64 rows x
// 16 NK tokens, rounded to bf16 A fragments)
template <int NK>
__device__ __forceinline__ void wgmma_frags_times_tile(float (*acc)[4], const uint32_t (*a)[4], const bf16* X,
                                                       int kk0) {
    for (int kk = 0; kk < NK; kk++)   // tokens 16 k.., k = kk0 + kk: row groups 2 k, 2 k + 1 (64 bf16 each)
        wgmma_m64n64k16<1>(acc, a[kk], wgmma_desc(X + (kk0 + kk) * 128, WG_ROWS_LBO, WG_ROWS_SBO), 1);
}

// acc = A X^T over d for the 32 tokens from token 32 half of a 64-token tile X (n = 32)
__device__ __forceinline__ void wgmma_rows_times_half_tile_t(float (*acc)[4], const uint32_t (*a)[4], const bf16* X,
                                                             int half) {
    for (int kk = 0; kk < 4; kk++)   // token rows 32 half.. start at row group 4 half (64 bf16 each)
        wgmma_m64n32k16<0>(acc, a[kk], wgmma_desc(X + half * 256 + kk * 1024, WG_D_LBO, WG_D_SBO), kk > 0);
}

// pass 1 on wgmma: grid (ceil(T / 64), B*H), 128 threads = one warpgroup of 64 query rows; key tiles of 64
// (K and V in the core-matrix layout, double-buffered); everything else as in attention_backward_dq_kernel.
template <bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, 2)
attention_backward_dq_wgmma_kernel(bf16* dq, bf16* dr, float* Tg, float* Bv, const bf16* dO, const bf16* q,
                                   const bf16* r, const bf16* k, const bf16* v, const bf16* o, const bf16* vbar,
                                   const float* L, const float* tbar, int B, int T, int H, int stride) {
    constexpr int D = 64, BQ = 64, BK = 64, KD = 4, NT = 8, ND = 8, TILE = 64 * 64;
    __shared__ __align__(128) bf16 Ks[2][TILE];
    __shared__ __align__(128) bf16 Vs[2][TILE];
    int qt = gridDim.x - 1 - blockIdx.x;   // the longest (last) query tiles start first
    int bh = blockIdx.y, b = bh / H, h = bh % H;
    int q0 = qt * BQ + (threadIdx.x / 32) * 16;   // this warp's first row
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    int ntiles = ceil_div(min(T, (qt + 1) * BQ), BK);
    load_tile_core_async<true>(Ks[0], k, stride, b, h, 0, T);
    load_tile_core_async<true>(Vs[0], v, stride, b, h, 0, T);
    cp_async_commit();

    uint32_t qa[KD][4], ra[KD][4], ga[KD][4];
    DqRows rs = dq_rows_begin<D, PROBE>(qa, ra, ga, Tg, Bv, q, r, dO, o, vbar, L, tbar, stride, b, h, bh, H, q0, T);
    float dQ[ND][4] = {}, dR[ND][4] = {};

    for (int it = 0; it < ntiles; it++) {
        int k0 = it * BK, buf = it & 1;
        cp_async_wait<0>();   // tile it has landed (this thread's copies) ...
        fence_proxy_async();  // ... is visible to the tensor cores ...
        __syncthreads();      // ... and so are every other thread's; tile it - 1's products are done
        if (it + 1 < ntiles) {   // the next tile loads while this one's products and arithmetic run
            load_tile_core_async<true>(Ks[buf ^ 1], k, stride, b, h, k0 + BK, T);
            load_tile_core_async<true>(Vs[buf ^ 1], v, stride, b, h, k0 + BK, T);
            cp_async_commit();
        }
        // the tile in two halves of 32 keys: half 1's products run during half 0's element-wise work, and
        // half 0's dQ, dR products during half 1's
        float S[2][NT / 2][4], Tt[2][NT / 2][4], A[2][NT / 2][4];
        uint32_t as[2][2][4], at[2][2][4];
        wgmma_fence();
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            wgmma_rows_times_half_tile_t(S[hf], qa, Ks[buf], hf);
            if (PROBE) wgmma_rows_times_half_tile_t(Tt[hf], ra, Ks[buf], hf);
            wgmma_rows_times_half_tile_t(A[hf], ga, Vs[buf], hf);
            wgmma_commit();
        }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            wgmma_wait<1>();   // this half's S, T, A
            fence_frags<NT / 2>(S[hf]);
            if (PROBE) fence_frags<NT / 2>(Tt[hf]);
            fence_frags<NT / 2>(A[hf]);
            dq_tile_terms<NT / 2, PROBE>(S[hf], Tt[hf], A[hf], rs, k0 + 32 * hf, q0, T, sc);   // S: dS, Tt: dT
            for (int kk = 0; kk < 2; kk++) {
                frag_a_from_c(as[hf][kk], S[hf][2 * kk], S[hf][2 * kk + 1]);
                if (PROBE) frag_a_from_c(at[hf][kk], Tt[hf][2 * kk], Tt[hf][2 * kk + 1]);
            }
            wgmma_fence();
            wgmma_frags_times_tile<2>(dQ, as[hf], Ks[buf], 2 * hf);
            if (PROBE) wgmma_frags_times_tile<2>(dR, at[hf], Ks[buf], 2 * hf);
            wgmma_commit();
        }
        wgmma_wait<0>();
        fence_frags<ND>(dQ);
        if (PROBE) fence_frags<ND>(dR);
    }
    store_rows_frag<D>(dq, dQ, c, stride, b, h, q0, T);
    if (PROBE) store_rows_frag<D>(dr, dR, 1.0f, stride, b, h, q0, T);
}

// pass 2 on wgmma: grid (ceil(T / 64), B*H), 128 threads = one warpgroup of 64 keys (K, V fragments in
// registers); query tiles of 64 (Q, R, dO and the row statistics, DkvTile in the core-matrix layout,
// double-buffered, dynamic shared memory); everything else as in attention_backward_dkv_kernel.
template <bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, 2)
attention_backward_dkv_wgmma_kernel(bf16* dk, bf16* dv, const bf16* dO, const bf16* q, const bf16* r,
                                    const bf16* k, const bf16* v, const float* L, const float* tbar, const float* Tg,
                                    const float* Bv, int B, int T, int H, int stride) {
    constexpr int D = 64, BKV = 64, BQ = 64, KD = 4, NT = 8, ND = 8;
    constexpr int BUF = DkvTile<D, BQ>::BYTES;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    int kt = blockIdx.x;
    int bh = blockIdx.y, b = bh / H, h = bh % H;
    int key0 = kt * BKV + (threadIdx.x / 32) * 16;   // this warp's first key
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    int qstart = kt * BKV, ntiles = ceil_div(T - qstart, BQ);
    dkv_load_core_async<D, BQ, PROBE>(DkvTile<D, BQ>(smem_raw), q, r, dO, L, tbar, Tg, Bv, b, h, bh, qstart,
                                       T, H, stride);
    cp_async_commit();
    uint32_t ka[KD][4], va[KD][4];
    load_rows_frag<D>(ka, k, stride, b, h, key0, T);
    load_rows_frag<D>(va, v, stride, b, h, key0, T);
    float dK[ND][4] = {}, dV[ND][4] = {};

    for (int it = 0; it < ntiles; it++) {
        int q0 = qstart + it * BQ, buf = it & 1;
        cp_async_wait<0>();
        fence_proxy_async();
        __syncthreads();
        if (it + 1 < ntiles) {
            dkv_load_core_async<D, BQ, PROBE>(DkvTile<D, BQ>(smem_raw + (buf ^ 1) * BUF), q, r, dO, L, tbar,
                                               Tg, Bv, b, h, bh, q0 + BQ, T, H, stride);
            cp_async_commit();
        }
        const DkvTile<D, BQ> tl(smem_raw + buf * BUF);
        // the tile in two halves of 32 queries: half 1's products run during half 0's element-wise work,
        // and half 0's dK, dV products during half 1's
        float S[2][NT / 2][4], Tt[2][NT / 2][4], A[2][NT / 2][4];
        uint32_t as[2][2][4], at[2][2][4], aw[2][2][4];
        wgmma_fence();
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            wgmma_rows_times_half_tile_t(S[hf], ka, tl.Q, hf);
            if (PROBE) wgmma_rows_times_half_tile_t(Tt[hf], ka, tl.R, hf);
            wgmma_rows_times_half_tile_t(A[hf], va, tl.G, hf);
            wgmma_commit();
        }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            wgmma_wait<1>();   // this half's S, T, A (half 0: half 1's may run on; half 1: half 0's dK, dV may)
            fence_frags<NT / 2>(S[hf]);
            if (PROBE) fence_frags<NT / 2>(Tt[hf]);
            fence_frags<NT / 2>(A[hf]);
            dkv_tile_terms<NT / 2, PROBE>(S[hf], Tt[hf], A[hf], tl.st + 32 * hf, q0 + 32 * hf, key0, T, c, sc);
            for (int kk = 0; kk < 2; kk++) {
                frag_a_from_c(as[hf][kk], S[hf][2 * kk], S[hf][2 * kk + 1]);
                if (PROBE) frag_a_from_c(at[hf][kk], Tt[hf][2 * kk], Tt[hf][2 * kk + 1]);
                frag_a_from_c(aw[hf][kk], A[hf][2 * kk], A[hf][2 * kk + 1]);
            }
            wgmma_fence();
            wgmma_frags_times_tile<2>(dV, aw[hf], tl.G, 2 * hf);
            wgmma_frags_times_tile<2>(dK, as[hf], tl.Q, 2 * hf);
            if (PROBE) wgmma_frags_times_tile<2>(dK, at[hf], tl.R, 2 * hf);
            wgmma_commit();
        }
        wgmma_wait<0>();
        fence_frags<ND>(dK);
        fence_frags<ND>(dV);
    }
    store_rows_frag<D>(dk, dK, 1.0f, stride, b, h, key0, T);
    store_rows_frag<D>(dv, dV, 1.0f, stride, b, h, key0, T);
}

// ---------------------------------------------------------------------------------------------------------
// launchers. r == NULL selects the softmax variant. D must be 64 or 128.

// The driver's tensor-map encoder, looked up once through the runtime (so nothing links against libcuda).
static PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
    if (!encode) {
        void* fn = NULL;
        cudaDriverEntryPointQueryResult found;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || fn == NULL) {
            fprintf(stderr, "attention: the CUDA driver has no cuTensorMapEncodeTiled (CUDA 12 or later is needed)\n");
            exit(EXIT_FAILURE);
        }
        encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
    }
    return encode;
}

// The TMA descriptor of the kernels' tiles of one attention input (q, k, v, r or dO, layout at the top): a
// bf16 tensor of dims (column 0..H D-1, token 0..T-1, sequence 0..B-1) with token stride `stride` elements,
// read in boxes of 64 columns x `rows` tokens of one sequence, written to shared memory with the 128-byte
// swizzle (tile_offset). A box that runs past T is filled with zeros, so tiles never mix two sequences.
static CUtensorMap make_tile_map(const bf16* x, int B, int T, int H, int D, int stride, int rows) {
    CUtensorMap map;
    cuuint64_t dims[3] = {(cuuint64_t)H * D, (cuuint64_t)T, (cuuint64_t)B};
    cuuint64_t strides[2] = {(cuuint64_t)stride * sizeof(bf16), (cuuint64_t)stride * sizeof(bf16) * T};   // bytes
    cuuint32_t box[3] = {64, (cuuint32_t)rows, 1}, step[3] = {1, 1, 1};
    CUresult res = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void*)x, dims, strides, box, step,
                                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                        CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (res != CUDA_SUCCESS) {
        fprintf(stderr, "attention: cuTensorMapEncodeTiled failed (error %d) for B %d T %d H %d D %d, stride %d\n",
                (int)res, B, T, H, D, stride);
        exit(EXIT_FAILURE);
    }
    return map;
}

template <int D, bool PROBE>
static void attention_forward_launch(bf16* o, bf16* vbar, float* L, float* tbar, const bf16* q, const bf16* r,
                                     const bf16* k, const bf16* v, int B, int T, int H, int stride,
                                     cudaStream_t stream) {
    dim3 grid(ceil_div(T, 64), B * H);
    constexpr int smem = forward_smem_bytes<D, PROBE>();
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_forward_kernel<D, PROBE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        attr_set = true;
    }
    constexpr int BK = forward_keys_per_tile(D);
    CUtensorMap tm_k = make_tile_map(k, B, T, H, D, stride, BK), tm_v = make_tile_map(v, B, T, H, D, stride, BK);
    CUtensorMap tm_o = make_tile_map(o, B, T, H, D, H * D, 16), tm_vbar = make_tile_map(vbar, B, T, H, D, H * D, 16);
    attention_forward_kernel<D, PROBE><<<grid, ATTN_THREADS, smem, stream>>>(tm_o, tm_vbar, L, tbar, q, r, tm_k, tm_v,
                                                                             B, T, H, stride);
    cudaCheckLaunch();
}

// version 3: mma.sync, D = 64 or 128
static void attention_forward_mma(bf16* o, bf16* vbar, float* L, float* tbar, const bf16* q, const bf16* r,
                                  const bf16* k, const bf16* v, int B, int T, int H, int D, int stride,
                                  cudaStream_t stream) {
    bool probe = r != NULL;
#define ATTN_FWD(DD, PP) attention_forward_launch<DD, PP>(o, vbar, L, tbar, q, r, k, v, B, T, H, stride, stream)
    if (D == 64 && probe) ATTN_FWD(64, true);
    else if (D == 64) ATTN_FWD(64, false);
    else if (D == 128 && probe) ATTN_FWD(128, true);
    else if (D == 128) ATTN_FWD(128, false);
    else { fprintf(stderr, "attention_forward: head dim %d is not supported (64 or 128)\n", D); exit(EXIT_FAILURE); }
#undef ATTN_FWD
}

// version 4: wgmma for D = 64; other head dims take version 3
static void attention_forward_wgmma(bf16* o, bf16* vbar, float* L, float* tbar, const bf16* q, const bf16* r,
                                    const bf16* k, const bf16* v, int B, int T, int H, int D, int stride,
                                    cudaStream_t stream) {
    if (D != 64) {
        attention_forward_mma(o, vbar, L, tbar, q, r, k, v, B, T, H, D, stride, stream);
        return;
    }
    dim3 grid(ceil_div(T, 64), B * H);
    if (r != NULL)
        attention_forward_wgmma_kernel<true><<<grid, ATTN_THREADS, 0, stream>>>(o, vbar, L, tbar, q, r, k, v, B, T, H,
                                                                                stride);
    else
        attention_forward_wgmma_kernel<false><<<grid, ATTN_THREADS, 0, stream>>>(o, vbar, L, tbar, q, r, k, v, B, T, H,
                                                                                 stride);
    cudaCheckLaunch();
}

// the trainer's forward
static void attention_forward(bf16* o, bf16* vbar, float* L, float* tbar, const bf16* q, const bf16* r,
                              const bf16* k, const bf16* v, int B, int T, int H, int D, int stride,
                              cudaStream_t stream) {
    attention_forward_mma(o, vbar, L, tbar, q, r, k, v, B, T, H, D, stride, stream);
}

template <int D, bool PROBE>
static void attention_backward_launch(bf16* dq, bf16* dr, bf16* dk, bf16* dv, float* Tg, float* Bv,
                                      const bf16* dO, const bf16* q, const bf16* r, const bf16* k, const bf16* v,
                                      const bf16* o, const bf16* vbar, const float* L, const float* tbar,
                                      int B, int T, int H, int stride, cudaStream_t stream) {
    dim3 grid(ceil_div(T, 64), B * H);
    constexpr int smem_dq = dq_smem_bytes<D, PROBE>(), smem_dkv = dkv_smem_bytes<D>(), BK = dq_keys_per_tile(D, PROBE);
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_backward_dq_kernel<D, PROBE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem_dq));
        cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_kernel<D, PROBE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem_dkv));
        attr_set = true;
    }
    CUtensorMap tm_k = make_tile_map(k, B, T, H, D, stride, BK), tm_v = make_tile_map(v, B, T, H, D, stride, BK);
    CUtensorMap tm_dq = make_tile_map(dq, B, T, H, D, stride, 16);
    CUtensorMap tm_dr = PROBE ? make_tile_map(dr, B, T, H, D, stride, 16) : tm_dq;   // not written without the probe
    attention_backward_dq_kernel<D, PROBE><<<grid, ATTN_THREADS, smem_dq, stream>>>(tm_dq, tm_dr, Tg, Bv, dO, q, r,
                                                                                    tm_k, tm_v, o, vbar, L, tbar, B,
                                                                                    T, H, stride);
    cudaCheckLaunch();
    CUtensorMap tm_g = make_tile_map(dO, B, T, H, D, H * D, 32), tm_q = make_tile_map(q, B, T, H, D, stride, 32);
    CUtensorMap tm_r = PROBE ? make_tile_map(r, B, T, H, D, stride, 32) : tm_q;   // not read without the probe
    CUtensorMap tm_dk = make_tile_map(dk, B, T, H, D, stride, 16), tm_dv = make_tile_map(dv, B, T, H, D, stride, 16);
    attention_backward_dkv_kernel<D, PROBE><<<grid, ATTN_THREADS, smem_dkv, stream>>>(tm_dk, tm_dv, tm_g, tm_q, tm_r,
                                                                                      k, v, L, tbar, Tg, Bv, B, T, H,
                                                                                      stride);
    cudaCheckLaunch();
}

// version 4's backward: both passes on wgmma (D = 64)
template <bool PROBE>
static void attention_backward_wgmma_launch(bf16* dq, bf16* dr, bf16* dk, bf16* dv, float* Tg, float* Bv,
                                            const bf16* dO, const bf16* q, const bf16* r, const bf16* k,
                                            const bf16* v, const bf16* o, const bf16* vbar, const float* L,
                                            const float* tbar, int B, int T, int H, int stride, cudaStream_t stream) {
    dim3 grid(ceil_div(T, 64), B * H);
    attention_backward_dq_wgmma_kernel<PROBE><<<grid, ATTN_THREADS, 0, stream>>>(dq, dr, Tg, Bv, dO, q, r, k, v, o,
                                                                                 vbar, L, tbar, B, T, H, stride);
    cudaCheckLaunch();
    size_t smem = 2 * DkvTile<64, 64>::BYTES;  // two buffers of query tiles
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_wgmma_kernel<PROBE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = true;
    }
    attention_backward_dkv_wgmma_kernel<PROBE><<<grid, ATTN_THREADS, smem, stream>>>(dk, dv, dO, q, r, k, v, L, tbar,
                                                                                     Tg, Bv, B, T, H, stride);
    cudaCheckLaunch();
}

// Tg, Bv: fp32 scratch of B*H*T each.
static void attention_backward(bf16* dq, bf16* dr, bf16* dk, bf16* dv, float* Tg, float* Bv, const bf16* dO,
                               const bf16* q, const bf16* r, const bf16* k, const bf16* v, const bf16* o,
                               const bf16* vbar, const float* L, const float* tbar, int B, int T, int H, int D,
                               int stride, cudaStream_t stream) {
    bool probe = r != NULL;
#define ATTN_BWD(DD, PP) attention_backward_launch<DD, PP>(dq, dr, dk, dv, Tg, Bv, dO, q, r, k, v, o, vbar, L, tbar, \
                                                           B, T, H, stride, stream)
    if (D == 64 && probe) ATTN_BWD(64, true);
    else if (D == 64) ATTN_BWD(64, false);
    else if (D == 128 && probe) ATTN_BWD(128, true);
    else if (D == 128) ATTN_BWD(128, false);
    else { fprintf(stderr, "attention_backward: head dim %d is not supported (64 or 128)\n", D); exit(EXIT_FAILURE); }
#undef ATTN_BWD
}

// version 4's backward (Tg, Bv as above); head dims other than 64 take version 3
static void attention_backward_wgmma(bf16* dq, bf16* dr, bf16* dk, bf16* dv, float* Tg, float* Bv, const bf16* dO,
                                     const bf16* q, const bf16* r, const bf16* k, const bf16* v, const bf16* o,
                                     const bf16* vbar, const float* L, const float* tbar, int B, int T, int H, int D,
                                     int stride, cudaStream_t stream) {
    if (D != 64)
        attention_backward(dq, dr, dk, dv, Tg, Bv, dO, q, r, k, v, o, vbar, L, tbar, B, T, H, D, stride, stream);
    else if (r != NULL)
        attention_backward_wgmma_launch<true>(dq, dr, dk, dv, Tg, Bv, dO, q, r, k, v, o, vbar, L, tbar, B, T, H,
                                              stride, stream);
    else
        attention_backward_wgmma_launch<false>(dq, dr, dk, dv, Tg, Bv, dO, q, r, k, v, o, vbar, L, tbar, B, T, H,
                                               stride, stream);
}
