// Parallax attention forward and backward on tensor cores (spec section 1): the kernels the trainer runs.
// Softmax attention is the same code with the probe r compiled out (PROBE = false). FlashAttention-2 style:
// no T x T matrix is ever written to memory. This is version 3 of the kernel study; versions 1, 2 and 4
// (wgmma) are in dev/cuda/, tested and timed alongside, and dev/cuda/NOTES.md has the measured history.
//
// The math, one head, causal (key j <= query i); c = 1/sqrt(D) scales q.k only:
//   s_ij = c q_i.k_j    t_ij = r_i.k_j    p_ij = softmax_j s_ij    tbar_i = sum_j p_ij t_ij
//   vbar_i = sum_j p_ij v_j    o_i = sum_j p_ij (1 + tbar_i - t_ij) v_j
// Forward: per block of 64 queries, a stream over key tiles with an fp32 state per row (the running max m,
// the sums d1, d2, the accumulators O1, O2), in log2 units: per tile S = c log2(e) Q K^T and Tt = R K^T,
//   m_new = max(m, rowmax S);  a = 2^(m - m_new);  W = 2^(S - m_new);  U = W o (Tt - tau)
//   d1 = a d1 + rowsum W;  d2 = a d2 + rowsum U;  O1 = a O1 + W V;  O2 = a O2 + U V
//   end: vbar = O1/d1;  tbar = tau + d2/d1;  o = vbar (1 + d2/d1) - O2/d1;  lse = m ln 2 + ln d1
// tau_i shifts every t of row i by the W-weighted mean of t over the first key tile: the weights
// 1 + tbar - t do not move when all t of a row do, so o is unchanged in exact arithmetic, but U stays small
// where o cancels, and one bf16 product of U is then precise enough.
// Saved for the backward: o and vbar (bf16 rows), lse and tbar (fp32 per row).
// Backward, with g = dL/do, p recomputed from s and lse, A_ij = g_i.v_j and the row dots Tg_i = g_i.o_i,
// gvbar_i = g_i.vbar_i (the spec's B_i):
//   dT_ij = -p_ij (A_ij - gvbar_i)                          the gradient wrt t_ij
//   dS_ij = p_ij (A_ij - Tg_i) - (tbar_i - t_ij) dT_ij      wrt s_ij (the spec's form, regrouped)
//   w_ij  = p_ij (1 + tbar_i - t_ij)                        the effective weight
//   dq_i = c sum_j dS_ij k_j    dr_i = sum_j dT_ij k_j
//   dk_j = c sum_i dS_ij q_i + sum_i dT_ij r_i    dv_j = sum_i w_ij g_i
// in two passes, each summing only over its own loop (no atomics, deterministic): the dq pass (per query
// block, over key tiles; it also writes Tg, gvbar) and the dk/dv pass (per key block, over query tiles).
//
// Reading map, in this order:
//   1. the interface: AttentionShape, AttentionForwardParams, AttentionBackwardParams, attention_dispatch
//   2. attention_forward_kernel, and per key tile forward_products (S, T), forward_tile_softmax (m, a, W,
//      d1), forward_first_tau, forward_tile_probe (U, d2), mma_frags_times_tile (O1, O2); forward_finish
//   3. pair_terms (dS, dT, w of one pair); attention_backward_dq_kernel with dq_rows_begin, dq_tile_terms;
//      attention_backward_dkv_kernel with DkvTile, dkv_load_tile, dkv_tile_terms
//   4. the plumbing: StageRing (tile rings on mbarriers, filled by TMA), tile_offset (the swizzle),
//      ldsm_b_pair / ldsm_bt_pair (ldmatrix), store_rows_tma, block_rank (the order blocks start in)
//   5. the launchers at the end: params to TMA descriptors (make_tile_map) and kernel arguments
//   6. (study only, version 8) the one-pass backward: OnePassSums, onepass_stash_terms, onepass_share,
//      onepass_add, the ONE_PASS steps of attention_backward_dkv_kernel
//
// Layout (every version; C = H D):
//   q, k, v, r      bf16, element (b, t, h, d) at [(b*T + t)*stride + h*D + d]; stride: the token stride, n C
//                   in the packed qkvr buffer (n = 4, or 3 for softmax)
//   o, vbar, dO     bf16 (batch, T, H, D) contiguous, i.e. (batch, T, C)
//   lse, tbar       fp32 (batch, H, T)
//   dq, dk, dv, dr  bf16 with the same token stride as the inputs (they fill the packed dqkvr buffer)
// Products run on mma.sync m16n8k16 (bf16 in, fp32 accumulate); the probabilities are rounded to bf16 only
// as operands of the P V products, as in FlashAttention-2.
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
#include "trainer/async_copy.cuh"   // smem_u32, cp_async4, cp_async_commit, cp_async_wait, tma_load_3d, tma_store_3d

// ---------------------------------------------------------------------------------------------------------
// Tuning, all in one place; each value was the fastest measured (dev/cuda/NOTES.md has the numbers and
// what else was tried).

// One warpgroup per block, 16 query (or key) rows per warp: a block is 64 rows.
constexpr int ATTN_THREADS = 128, ATTN_WARPS = ATTN_THREADS / 32;
// Blocks per SM that each D = 64 kernel is compiled for: __launch_bounds__ caps the registers so that they
// fit (2 blocks: up to 255 per thread, 3: 168, 4: 128), trading spills for warps that hide latency. Parallax
// keeps twice the accumulators, so it takes fewer blocks; the D = 128 kernels take 1.
//                                              forward  dq pass  dk/dv pass
constexpr int ATTN_MIN_BLOCKS[2][3] = {/* softmax  */ {4, 4, 3},
                                       /* Parallax */ {2, 2, 2}};
// Keys per tile of the forward: 64 at D = 64, 32 at D = 128 (the same 8 KB per K or V tile).
__host__ __device__ constexpr int forward_keys_per_tile(int D) { return D == 64 ? 64 : 32; }
// Keys per tile of the dq pass: 64 only for D = 64 Parallax, where it measured faster; 32 elsewhere.
__host__ __device__ constexpr int dq_keys_per_tile(int D, bool probe) { return D == 64 && probe ? 64 : 32; }
// Tile buffers per ring: with 3, two copies are in flight while one tile is read (2 stalled on the copies).
constexpr int FWD_STAGES = 3, DQ_STAGES = 3, DKV_STAGES = 3;
// Where each backward pass keeps the A fragments of its warp's own 16 rows (dq pass: Q, R, dO; dk/dv pass:
// K, V): in registers for the whole pass (false), or in a shared-memory tile per warp, read by ldmatrix on
// every tile (true), which frees D / 4 registers per tensor for the accumulators. At D = 128 Parallax the
// registers cannot hold them all and spill (dev/cuda/NOTES.md, session 15): there shared memory measured 14%
// faster forward + backward; everywhere else registers were faster (versions 6 and 7 of the study take shared
// memory everywhere; NOTES.md, session 16).
__host__ __device__ constexpr bool dq_rows_in_smem(int D, bool probe) { return D == 128 && probe; }
__host__ __device__ constexpr bool dkv_rows_in_smem(int D, bool probe) { return D == 128 && probe; }
// Sequence-heads whose blocks start together, longest first (block_rank): 64 keep the K and V (or Q, R, dO)
// of the blocks in flight in the L2 cache; all of them at once would not fit there at long sequences.
constexpr int ATTN_BH_GROUP = 64;

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// ---------------------------------------------------------------------------------------------------------
// The interface. Every version's forward and backward (this file's and dev/cuda/'s) takes one of these
// params structs (FlashAttention-2's Flash_fwd_params pattern); attention_forward_params and
// attention_backward_params, the one place that knows the packed q | k | v | r layout, build them.

// One attention call's shape. probe: Parallax (true) or softmax (false: r is not read, dr not written); it
// travels as this bool from the trainer's Config to the kernels' PROBE.
struct AttentionShape {
    int batch, seq_len, heads, head_dim;
    bool probe;
};

// What the forward writes and the backward reads (layouts at the top; lse = logsumexp_j s_ij, natural log).
struct AttentionSaved {
    bf16 *o, *vbar;
    float *lse, *tbar;
};

struct AttentionForwardParams {
    AttentionShape shape;
    const bf16 *q, *k, *v, *r;
    int stride;             // token stride of q, k, v, r (and dq, dk, dv, dr), in elements
    AttentionSaved saved;   // the forward's outputs
};

// The backward: dO = dL/do; the gradients dq, dk, dv, dr (written); Tg and gvbar, fp32 (batch, H, T) scratch
// for the row dots.
struct AttentionBackwardParams {
    AttentionForwardParams fwd;   // the inputs and the forward's saved outputs, read
    const bf16* dO;
    bf16 *dq, *dk, *dv, *dr;
    float *Tg, *gvbar;
};

// The packed projection buffer: per token the columns q | k | v | r, C each (no r without the probe).
enum PackedPart { PACKED_Q, PACKED_K, PACKED_V, PACKED_R };
static int packed_stride(const AttentionShape& s) { return (s.probe ? 4 : 3) * s.heads * s.head_dim; }
static size_t packed_offset(const AttentionShape& s, PackedPart part) { return (size_t)part * s.heads * s.head_dim; }

// q, k and r from qkr, v from qkvr, both packed (the trainer keeps q, k, r after their norm and RoPE apart
// from the raw v; a test passes one buffer twice).
static AttentionForwardParams attention_forward_params(const AttentionShape& s, const bf16* qkr, const bf16* qkvr,
                                                       AttentionSaved saved) {
    AttentionForwardParams p;
    p.shape = s;
    p.q = qkr + packed_offset(s, PACKED_Q);
    p.k = qkr + packed_offset(s, PACKED_K);
    p.v = qkvr + packed_offset(s, PACKED_V);
    p.r = s.probe ? qkr + packed_offset(s, PACKED_R) : NULL;   // never read without the probe
    p.stride = packed_stride(s);
    p.saved = saved;
    return p;
}

// dq, dk, dv, dr into the packed gradient buffer dqkvr (the forward's layout).
static AttentionBackwardParams attention_backward_params(const AttentionForwardParams& fwd, const bf16* dO,
                                                         bf16* dqkvr, float* Tg, float* gvbar) {
    const AttentionShape& s = fwd.shape;
    AttentionBackwardParams p;
    p.fwd = fwd;
    p.dO = dO;
    p.dq = dqkvr + packed_offset(s, PACKED_Q);
    p.dk = dqkvr + packed_offset(s, PACKED_K);
    p.dv = dqkvr + packed_offset(s, PACKED_V);
    p.dr = s.probe ? dqkvr + packed_offset(s, PACKED_R) : NULL;   // never written without the probe
    p.Tg = Tg;
    p.gvbar = gvbar;
    return p;
}

// The one map from (head_dim, probe) to a compiled instance, for every version: calls
// launch(AttentionInstance<D, PROBE>()), so that a generic lambda reads D and PROBE off its argument's type.
template <int D, bool PROBE>
struct AttentionInstance {
    static constexpr int head_dim = D;
    static constexpr bool probe = PROBE;
};
template <typename Launch>
static void attention_dispatch(const AttentionShape& s, const char* who, Launch launch) {
    if (s.head_dim == 64 && s.probe) launch(AttentionInstance<64, true>());
    else if (s.head_dim == 64) launch(AttentionInstance<64, false>());
    else if (s.head_dim == 128 && s.probe) launch(AttentionInstance<128, true>());
    else if (s.head_dim == 128) launch(AttentionInstance<128, false>());
    else { fprintf(stderr, "%s: head dim %d is not supported (64 or 128)\n", who, s.head_dim); exit(EXIT_FAILURE); }
}

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

// The order blocks start in. A grid (tiles, batch*H) starts its blocks in the order of their linear index;
// this hands out the work so that the longest blocks (rank 0: the most key or query tiles to visit) start
// first, for ATTN_BH_GROUP sequence-heads at a time (so that the blocks in flight share their K and V, or Q,
// R and dO, in the L2 cache): linear index -> (group of heads, rank, head within the group). A group of 1 is
// plain (rank, head) order.
__device__ __forceinline__ void block_rank_of(int id, int& rank, int& bh) {
    int ntiles = gridDim.x;
    int g0 = id / (ATTN_BH_GROUP * ntiles) * ATTN_BH_GROUP, size = min(ATTN_BH_GROUP, (int)gridDim.y - g0);
    int rem = id - g0 * ntiles;
    rank = rem / size;
    bh = g0 + rem % size;
}
__device__ __forceinline__ void block_rank(int& rank, int& bh) {
    block_rank_of(blockIdx.y * gridDim.x + blockIdx.x, rank, bh);
}

// A ring of STAGES shared-memory buffers filled tile after tile by TMA copies, with two mbarriers per buffer
// instead of __syncthreads: full (the tile's bytes have landed) and empty (every thread is done reading it).
// Tile i lives in buffer i % STAGES and is copied by one warp, warp i % 4, its producer: that warp waits
// until the slowest warp has left the buffer's previous tile, then its lane 0 announces the tile's bytes on
// full and issues one TMA copy per tensor (per 64 columns). The other three warps never wait for a buffer to
// empty and issue no copies: a warp waits only for the data it reads. (The forward's warp 0 issues the
// first STAGES - 1 tiles right after init, before the block's first barrier, so that they start earlier.)
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

// The A fragment at k = k0..k0+15 of a 16-row tile (tile_offset): one ldmatrix.x4; lane l gives the address
// of row l % 8 of 8 x 8 matrix l / 8, the matrices (rows 0-7, k0) (rows 8-15, k0) (rows 0-7, k0+8)
// (rows 8-15, k0+8), i.e. a0..a3 of the fragment layout at the top.
__device__ __forceinline__ void ldsm_a(uint32_t* a, const bf16* x, int k0) {
    int lane = threadIdx.x % 32;
    int off = tile_offset(16, (lane & 7) + ((lane >> 3) & 1) * 8, k0 / 8 + (lane >> 4));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                 : "r"(smem_u32(x) + off));
}

// This warp's A fragments of 16 rows (16 x D bf16, from load_rows_frag) into a shared-memory tile of 16 rows
// (tile_offset; 2 D bytes per row); the warp waits for its own stores.
template <int D>
__device__ __forceinline__ void stash_rows(bf16* tile, const uint32_t (*from)[4]) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int kk = 0; kk < D / 16; kk++)
        for (int i = 0; i < 4; i++)   // a_i: row g + 8 (i & 1), columns 16 kk + 8 (i >> 1) + 2 t, +1
            *(uint32_t*)((unsigned char*)tile + tile_offset(16, g + 8 * (i & 1), 2 * kk + (i >> 1)) + 4 * t) =
                from[kk][i];
    __syncwarp();
}

// One tensor's A fragments of this warp's 16 rows (16 x D bf16), for a pass's products that contract over
// d: kept in registers (IN_SMEM false: D / 4 per thread for the whole pass), or written once into a
// warp-private shared-memory tile of 16 rows (stash_rows) and read back by ldmatrix whenever used (IN_SMEM
// true). get(kk, a): the fragment at k = 16 kk.
template <int D, bool IN_SMEM>
struct RowFrags {
    static constexpr int TILE = 16 * D;   // bf16 elements of the tile
    uint32_t a[IN_SMEM ? 1 : D / 16][4];
    bf16* tile;
    // from fragments just loaded (load_rows_frag); IN_SMEM: tile is this warp's
    __device__ RowFrags(const uint32_t (*from)[4], bf16* tile_) : tile(tile_) {
        if constexpr (IN_SMEM) stash_rows<D>(tile, from);
        else
            for (int kk = 0; kk < D / 16; kk++)
                for (int i = 0; i < 4; i++) a[kk][i] = from[kk][i];
    }
    __device__ void get(int kk, uint32_t* out) const {
        if constexpr (IN_SMEM) ldsm_a(out, tile, 16 * kk);
        else for (int i = 0; i < 4; i++) out[i] = a[kk][i];
    }
};

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
// forward, the per-tile work (version 4 on wgmma shares it): each warp owns 16 query rows (C
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

// The end of the forward for this warp's rows: lse and tbar into global memory, and in registers O1 becomes
// vbar = O1/d1 and O2 becomes o = vbar (1 + tbar') - O2/d1 (without the probe o = vbar: O2 is left alone).
template <int D, bool PROBE>
__device__ __forceinline__ void forward_finish(ForwardRows<D / 8>& st, float* lse, float* tbar, int bh, int T, int q0) {
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
            lse[(size_t)bh * T + row] = st.m[j] * LN2 + logf(d1);
            tbar[(size_t)bh * T + row] = tb + st.tau[j];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// forward. grid (ceil(T / 64), batch*H), 128 threads: each warp owns 16 query rows and streams over key
// tiles of BK keys: the recurrence at the top of this file, with Tt = R K^T - tau the shifted t. K and V
// tiles (K[key][d], V[key][d]) arrive through a StageRing of FWD_STAGES buffers.

template <int D, bool PROBE>
constexpr int forward_smem_bytes() {   // the K tiles, the V tiles, the ring's mbarriers
    constexpr int BK = forward_keys_per_tile(D);
    return TILE_ALIGN + FWD_STAGES * (2 * BK * D * (int)sizeof(bf16) + STAGE_RING_BYTES);
}

template <int D, bool PROBE>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? ATTN_MIN_BLOCKS[PROBE][0] : 1)
attention_forward_kernel(const __grid_constant__ CUtensorMap tm_o, const __grid_constant__ CUtensorMap tm_vbar,
                         float* lse, float* tbar, const bf16* q, const bf16* r,
                         const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v, int batch,
                         int T, int H, int stride) {
    constexpr int BQ = 64, BK = forward_keys_per_tile(D), KD = D / 16, NT = BK / 8, ND = D / 8;
    constexpr int STAGES = FWD_STAGES;
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
    forward_finish<D, PROBE>(st, lse, tbar, bh, T, q0);
    static_assert(ATTN_WARPS * 2 * 16 * D <= 2 * STAGES * BK * D, "the ring holds the results");
    __syncthreads();   // every warp is done with the ring
    store_rows_tma<D, true>(Ks[0], &tm_o, PROBE ? st.O2 : st.O1, &tm_vbar, st.O1, b, h, q0);
}

// ---------------------------------------------------------------------------------------------------------
// The per-pair gradient terms, given the score s (unscaled q.k: sc takes it to log2 units), t = r.k and A = g.v:
//   p = 2^(s sc - lse log2 e);  dS = p [(A - Tg) + (tbar - t)(A - gvbar)];  dT = -p (A - gvbar);  w = p (1 + tbar - t)
// written as dT = p (gvbar - A), dS = p (A - Tg) - (tbar - t) dT, w = p + p (tbar - t): 9 instructions.
struct PairTerms { float dS, dT, w; };

template <bool PROBE>
__device__ __forceinline__ PairTerms pair_terms(float s, float sc, float tt, float A, float lse2, float tb, float Tg,
                                                float gvb) {
    float p = fast_exp2(fmaf(s, sc, -lse2));   // s unscaled: scale and shift in one instruction
    PairTerms r;
    if (PROBE) {
        float e = tb - tt;
        r.dT = p * (gvb - A);
        r.dS = fmaf(-e, r.dT, p * (A - Tg));
        r.w = fmaf(p, e, p);
    } else {
        r.dS = p * (A - Tg);
        r.dT = 0.0f;
        r.w = p;
    }
    return r;
}

// The dq pass's per-row statistics of this warp's rows ([j]: C fragment row g + 8 j): lse in log2 units, tbar,
// and the two row dots Tg = g.o and gvbar = g.vbar (rows past T: lse = inf, so p = 0).
struct DqRows { float lse2[2], tb[2], tg[2], gvb[2]; };

// Starts the dq pass for this warp's 16 rows from row0: the Q, R and dO fragments into registers (qa, ra,
// ga, kept for the whole pass); the row dots from ga and o, vbar read in the same fragment layout (partial
// dots over this thread's columns, summed over the 4 threads of a row), written to Tg, gvbar (fp32, (batch, H, T))
// for the dk/dv pass that runs next; lse and tbar read.
template <int D, bool PROBE>
__device__ __forceinline__ DqRows dq_rows_begin(uint32_t (*qa)[4], uint32_t (*ra)[4], uint32_t (*ga)[4], float* Tg,
                                                float* gvbar, const bf16* q, const bf16* r, const bf16* dO,
                                                const bf16* o, const bf16* vbar, const float* lse, const float* tbar,
                                                int stride, int b, int h, int bh, int H, int row0, int T) {
    load_rows_frag<D>(qa, q, stride, b, h, row0, T);
    if (PROBE) load_rows_frag<D>(ra, r, stride, b, h, row0, T);
    load_rows_frag<D>(ga, dO, H * D, b, h, row0, T);
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    float tg[2] = {0.0f, 0.0f}, gvb[2] = {0.0f, 0.0f};
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
                gvb[j] += gd.x * vd.x + gd.y * vd.y;
            }
        }
    DqRows rs;
    for (int j = 0; j < 2; j++) {
        int row = row0 + g + j * 8;
        size_t ri = (size_t)bh * T + row;
        bool ok = row < T;
        rs.tg[j] = quad_sum(tg[j]);
        rs.gvb[j] = PROBE ? quad_sum(gvb[j]) : 0.0f;
        rs.lse2[j] = ok ? lse[ri] * LOG2E : INFINITY;
        rs.tb[j] = (ok && PROBE) ? tbar[ri] : 0.0f;
        if (ok && t == 0) {
            Tg[ri] = rs.tg[j];
            if (PROBE) gvbar[ri] = rs.gvb[j];
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
            PairTerms pt = pair_terms<PROBE>(S[nt][i], sc, Tt[nt][i], A[nt][i], rs.lse2[j], rs.tb[j], rs.tg[j],
                                             rs.gvb[j]);
            if (MASK) {
                int key = k0 + nt * 8 + 2 * t + (i & 1), row = q0 + g + j * 8;
                if (key > row || key >= T) pt.dS = pt.dT = 0.0f;
            }
            S[nt][i] = pt.dS;
            Tt[nt][i] = pt.dT;
        }
}

// The same, with the mask only where the tile reaches past a row of this warp or past T (rows past T have
// p = 0 through lse2 = inf): off the diagonal the per-element index arithmetic is compiled out.
template <int NT, bool PROBE>
__device__ __forceinline__ void dq_tile_terms(float (*S)[4], float (*Tt)[4], const float (*A)[4], const DqRows& rs,
                                              int k0, int q0, int T, float sc) {
    if (k0 + 8 * NT - 1 > q0 || k0 + 8 * NT > T) dq_tile_terms_mask<NT, PROBE, true>(S, Tt, A, rs, k0, q0, T, sc);
    else dq_tile_terms_mask<NT, PROBE, false>(S, Tt, A, rs, k0, q0, T, sc);
}

// The dk/dv pass's element-wise work on one tile of 8 NT queries from q0 (transposed: C fragment rows are this
// warp's keys key0..key0+15, columns the tile's queries), in place: S (= K Q^T) becomes c dS^T, Tt (= K R^T)
// becomes dT^T and A (= V dO^T) becomes w^T = (p (1 + tbar - t))^T. st holds (lse, tbar, Tg, gvbar) per query of
// the tile. MASK: zero where key > query, query >= T or key >= T (zero-filled queries and keys).
template <int NT, bool PROBE, bool MASK>
__device__ __forceinline__ void dkv_tile_terms_mask(float (*S)[4], float (*Tt)[4], float (*A)[4], const float4* st,
                                                    int q0, int key0, int T, float c, float sc) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int nt = 0; nt < NT; nt++)
        for (int col = 0; col < 2; col++) {
            int qi = nt * 8 + 2 * t + col;
            float4 s = st[qi];   // lse, tbar, Tg, gvbar of this query: once for both of this thread's keys
            float lse2 = s.x * LOG2E;
            for (int j = 0; j < 2; j++) {
                int i = 2 * j + col;
                PairTerms pt = pair_terms<PROBE>(S[nt][i], sc, Tt[nt][i], A[nt][i], lse2, s.y, s.z, s.w);
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

// backward, pass 1: the row dots Tg, gvbar (written for pass 2), then dq_i = c sum_j dS_ij k_j and
// dr_i = sum_j dT_ij k_j. grid (ceil(T / 64), batch*H), 128 threads; each warp owns 16 query rows (their Q, R,
// dO fragments in registers, or with ROWS_SMEM (dq_rows_in_smem) in shared-memory tiles after the K/V ring) and
// streams over key tiles of dq_keys_per_tile; K and V tiles (K[key][d], V[key][d]) arrive through a StageRing:
// plain ldmatrix for Q K^T, R K^T, dO V^T, .trans for dS K, dT K.
template <int D, bool PROBE, bool ROWS_SMEM>
constexpr int dq_smem_bytes() {   // the K tiles, the V tiles, the warps' row tiles, the ring's mbarriers
    return TILE_ALIGN + DQ_STAGES * (2 * dq_keys_per_tile(D, PROBE) * D * (int)sizeof(bf16) + STAGE_RING_BYTES) +
           (ROWS_SMEM ? ATTN_WARPS * 3 * 16 * D * (int)sizeof(bf16) : 0);
}

template <int D, bool PROBE, bool ROWS_SMEM>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? ATTN_MIN_BLOCKS[PROBE][1] : 1)
attention_backward_dq_kernel(const __grid_constant__ CUtensorMap tm_dq, const __grid_constant__ CUtensorMap tm_dr,
                             float* Tg, float* gvbar, const bf16* dO, const bf16* q,
                             const bf16* r, const __grid_constant__ CUtensorMap tm_k,
                             const __grid_constant__ CUtensorMap tm_v, const bf16* o, const bf16* vbar,
                             const float* lse, const float* tbar, int batch, int T, int H, int stride) {
    constexpr int BQ = 64, BK = dq_keys_per_tile(D, PROBE), KD = D / 16, NT = BK / 8, ND = D / 8, STAGES = DQ_STAGES;
    using Rows = RowFrags<D, ROWS_SMEM>;
    extern __shared__ __align__(128) unsigned char smem_raw[];   // dq_smem_bytes<D, PROBE, ROWS_SMEM>()
    bf16 (*Ks)[BK * D] = (bf16 (*)[BK * D])align_tiles(smem_raw);   // Ks[STAGES][BK * D], then Vs likewise
    bf16 (*Vs)[BK * D] = Ks + STAGES;
    bf16* row_tiles = (bf16*)(Vs + STAGES) + (threadIdx.x / 32) * 3 * Rows::TILE;   // this warp's Q, R, dO
    StageRing<STAGES, 1> ring((uint64_t*)((bf16*)(Vs + STAGES) + (ROWS_SMEM ? ATTN_WARPS * 3 * Rows::TILE : 0)));
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
    DqRows rs = dq_rows_begin<D, PROBE>(qa, ra, ga, Tg, gvbar, q, r, dO, o, vbar, lse, tbar, stride, b, h, bh, H, q0,
                                        T);
    const Rows fq(qa, row_tiles), fr(ra, row_tiles + Rows::TILE), fg(ga, row_tiles + 2 * Rows::TILE);
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
            for (int kk = 0; kk < KD; kk++) {
                uint32_t aq[4], ar[4], ag[4];
                fq.get(kk, aq);
                if (PROBE) fr.get(kk, ar);
                fg.get(kk, ag);
                for (int nt = 0; nt < NT; nt += 2) {
                    uint32_t bk0[2], bk1[2], bv0[2], bv1[2];
                    ldsm_b_pair(bk0, bk1, Kb, BK, nt * 8, kk * 16);
                    ldsm_b_pair(bv0, bv1, Vb, BK, nt * 8, kk * 16);
                    mma_bf16(S[nt], aq, bk0);
                    mma_bf16(S[nt + 1], aq, bk1);
                    if (PROBE) {
                        mma_bf16(Tt[nt], ar, bk0);
                        mma_bf16(Tt[nt + 1], ar, bk1);
                    }
                    mma_bf16(A[nt], ag, bv0);
                    mma_bf16(A[nt + 1], ag, bv1);
                }
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
// float4 per query: (lse, tbar, Tg, gvbar) (tbar and gvbar unused without the probe). Tiles in the TMA's swizzled
// layout (tile_offset; version 4 fills them in its own core-matrix layout, BQ = D = 64); buffers start
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
                                              const CUtensorMap* tm_g, const float* lse, const float* tbar,
                                              const float* Tg, const float* gvbar, int b, int h, int bh, int q0,
                                              int T) {
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
    cp_async4(st, ok ? lse + ri : lse, ok ? 4 : 0);
    cp_async4(st + 2, ok ? Tg + ri : Tg, ok ? 4 : 0);
    if (PROBE) {
        cp_async4(st + 1, ok ? tbar + ri : tbar, ok ? 4 : 0);
        cp_async4(st + 3, ok ? gvbar + ri : gvbar, ok ? 4 : 0);
    }
    ring.loaded(i);
}

// ---------------------------------------------------------------------------------------------------------
// The one-pass backward (version 8 of the study, dev/cuda/attention_onepass.cuh; not the trainer's yet). The
// dk/dv pass also makes each query tile's share of dq and dr from the c dS and dT it already holds,
//   dq_i += c sum_{j of this key block} dS_ij k_j    dr_i += sum_{j of this key block} dT_ij k_j,
// so the dq pass, which recomputes S, T and A, goes: 8 tile products instead of 11 (softmax 5 instead of 7).
// The key blocks' shares are summed in fp32 in a fixed order, key block 0 first, so that every run gives the
// same bits: before adding its share of query tile qi, block kt waits until the tile's counter says that kt
// blocks have added theirs. A block takes its work in the order blocks start (a ticket, not blockIdx: CUDA does
// not promise to start blocks in index order), key block 0 first (block_rank), so a block only waits for
// blocks that started before it, and the earliest unfinished block never waits: no deadlock.

// Where the shares go: per (sequence-head, query tile of 32) an fp32 tile of 32 x D for dq and one for dr, in
// the order onepass_sum_index gives, and a counter of the key blocks that have added to it (zero before the
// kernel). The finish step (attention_onepass.cuh) turns the sums into the bf16 dq and dr.
struct OnePassSums {
    float *dq, *dr;    // [batch*H][qtiles][32 D]; dr unused without the probe
    unsigned* added;   // [batch*H][qtiles], then the ticket counter
    int qtiles;        // ceil(T / 32)
    int ordered;       // 1: the fixed order; 0 (timing only, not deterministic): any order, into zeroed sums
};

// The position of element (row, col) (row 0..31 of the query tile, col 0..D-1) in a tile of sums: the order in
// which onepass_share's threads stage their values, one float4 per thread and n-tile nd, n-tile after n-tile
// (the 128 threads' float4s of one n-tile are contiguous: conflict-free stores). The thread of warp w, lane
// 4 g + t holds rows 16 (w % 2) + g (+8) and columns (w / 2) D / 2 + 8 nd + 2 t (+1).
__host__ __device__ inline int onepass_sum_index(int D, int row, int col) {
    int warp = row / 16 + 2 * (col / (D / 2)), g = row % 8, hi = (row % 16) / 8;
    int cc = col % (D / 2), nd = cc / 8, t = (cc % 8) / 2;
    return (nd * ATTN_THREADS + warp * 32 + 4 * g + t) * 4 + 2 * hi + (col & 1);
}

// The one-pass shared memory of a dk/dv block: the c dS and dT tiles of the 32 queries x 64 keys (bf16,
// queries as rows: tile_offset of 32 rows; written after the barrier that ends the last tile's reads), then two
// buffers (tile `it` uses it % 2: a bulk copy may still read the last tile's) of the staged shares of dq and dr
// (fp32, 32 D each, onepass_sum_index order).
template <int D, bool PROBE>
struct OnePassTiles {
    static constexpr int N = PROBE ? 2 : 1;              // from c dS: dq; from dT: dr
    static constexpr int DS = 32 * 64, SHARE = 32 * D;   // elements of one terms tile, of one share
    static constexpr int BYTES = N * DS * (int)sizeof(bf16) + 2 * N * SHARE * (int)sizeof(float);
    unsigned char* base;
    __device__ bf16* terms(int n) const { return (bf16*)base + n * DS; }
    __device__ float* share(int it, int n) const {
        return (float*)(base + N * DS * sizeof(bf16)) + ((it % 2) * N + n) * SHARE;
    }
};

// After dkv_tile_terms: this warp's 16 keys of the tile's c dS^T (in S) and dT^T (in Tt), C fragments with
// keys as rows, into the terms tiles with queries as rows (the transpose that dq = dS K needs; bf16, one
// element per store, 16 banks per store).
template <int NT, bool PROBE>
__device__ __forceinline__ void onepass_stash_terms(bf16* ds, bf16* dt, const float (*S)[4], const float (*Tt)[4]) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4, warp = threadIdx.x / 32;
    for (int nt = 0; nt < NT; nt++)
        for (int i = 0; i < 4; i++) {
            int query = nt * 8 + 2 * t + (i & 1), key = warp * 16 + g + 8 * (i >> 1);
            int off = tile_offset(32, query, key / 8) + (key % 8) * (int)sizeof(bf16);
            *(bf16*)((unsigned char*)ds + off) = __float2bfloat16(S[nt][i]);
            if (PROBE) *(bf16*)((unsigned char*)dt + off) = __float2bfloat16(Tt[nt][i]);
        }
}

// Once per query tile, by the whole block after every warp's onepass_stash_terms: the block's share of dq =
// (c dS) K and dr = dT K for the tile's 32 queries, staged in shared memory for onepass_add. Warp w makes rows
// 16 (w % 2)..+15 and columns (w / 2) D / 2..+D/2-1. K comes from the warps' row tiles: warp kk's 16 keys at
// krows + kk kstride (16 rows, tile_offset). Only the first `chunks` warps' keys can be seen by a query of the
// tile; the others stashed nothing this tile.
template <int D, bool PROBE>
__device__ __forceinline__ void onepass_share(const OnePassTiles<D, PROBE>& op, int it, const bf16* krows,
                                              int kstride, int chunks) {
    constexpr int NDH = D / 16;   // n-tiles of 8 columns per warp
    int warp = threadIdx.x / 32, m0 = (warp % 2) * 16, n0 = (warp / 2) * (D / 2);
    float dq[NDH][4] = {}, dr[NDH][4] = {};
    for (int kk = 0; kk < chunks; kk++) {
        uint32_t as[4], at[4];
        ldsm_a(as, op.terms(0) + m0 * 64, 16 * kk);
        if (PROBE) ldsm_a(at, op.terms(1) + m0 * 64, 16 * kk);
        for (int nd = 0; nd < NDH; nd += 2) {
            uint32_t b0[2], b1[2];
            ldsm_bt_pair(b0, b1, krows + kk * kstride, 16, 0, n0 + nd * 8);
            mma_bf16(dq[nd], as, b0);
            mma_bf16(dq[nd + 1], as, b1);
            if (PROBE) {
                mma_bf16(dr[nd], at, b0);
                mma_bf16(dr[nd + 1], at, b1);
            }
        }
    }
    float4* sq = (float4*)op.share(it, 0) + threadIdx.x;   // onepass_sum_index's order
    for (int nd = 0; nd < NDH; nd++) sq[nd * ATTN_THREADS] = make_float4(dq[nd][0], dq[nd][1], dq[nd][2], dq[nd][3]);
    if (PROBE) {
        float4* sr = (float4*)op.share(it, 1) + threadIdx.x;
        for (int nd = 0; nd < NDH; nd++)
            sr[nd * ATTN_THREADS] = make_float4(dr[nd][0], dr[nd][1], dr[nd][2], dr[nd][3]);
    }
    fence_proxy_async();   // the staged shares, before the bulk copies read them
}

__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_release_gpu(unsigned* p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}

// Spins until *counter == value (polling every ~100 ns after the first miss, to leave the L2 to others), then
// orders what the blocks before announced ahead of this thread's bulk adds. A wait of 2^35 clocks (about 20 s)
// means a bug: trap, naming the query tile qi of sequence-head bh, never hang.
__device__ __forceinline__ void wait_counter(const unsigned* counter, unsigned value, int bh, int qi) {
    long long t0 = clock64();
    while (ld_acquire_gpu(counter) != value) {
        __nanosleep(100);
        if (clock64() - t0 > (1LL << 35)) {
            printf("attention one-pass backward: key block %u of sequence-head %d waited 2^35 clocks for query tile "
                   "%d (its counter is at %u)\n", value, bh, qi, ld_acquire_gpu(counter));
            __trap();
        }
    }
    HOPPER_ONLY(asm volatile("fence.proxy.async.global;\n" ::: "memory"));
}

// Thread 0: this block's adds to tile `tile` (of OnePassSums) have landed; key block kt + 1 may add its own.
__device__ __forceinline__ void onepass_announce(const OnePassSums& sums, size_t tile, int kt) {
    bulk_wait_all();
    st_release_gpu(sums.added + tile, kt + 1);
}

// Thread 0, once per query tile after the block's shares are staged: announces the previous tile (its adds were
// issued a tile ago), waits until key blocks 0..kt-1 have added to query tile qi, and adds this block's shares
// (key block 0 stores them: it is the first).
template <int D, bool PROBE>
__device__ __forceinline__ void onepass_add(const OnePassTiles<D, PROBE>& op, const OnePassSums& sums, int it,
                                            int bh, int qi, int kt) {
    size_t tile = (size_t)bh * sums.qtiles + qi;
    if (it > 0) onepass_announce(sums, tile - 1, kt);
    if (sums.ordered) wait_counter(sums.added + tile, kt, bh, qi);
    constexpr int BYTES = OnePassTiles<D, PROBE>::SHARE * (int)sizeof(float);
    for (int n = 0; n < OnePassTiles<D, PROBE>::N; n++) {
        float* dst = (n == 0 ? sums.dq : sums.dr) + tile * OnePassTiles<D, PROBE>::SHARE;
        if (kt == 0 && sums.ordered) bulk_store(dst, op.share(it, n), BYTES);
        else bulk_add_f32(dst, op.share(it, n), BYTES);
    }
}

// The dk/dv pass's dynamic shared memory: TILE_ALIGN of slack, the ring's DkvTile buffers, the warps' row tiles
// (ROWS_SMEM: K and V of each warp; ONE_PASS without ROWS_SMEM: K only, for dq = dS K), the one-pass tiles, and
// the ring's mbarriers.
template <int D, bool PROBE, bool ROWS_SMEM, bool ONE_PASS>
struct DkvLayout {
    static constexpr int BUF = DkvTile<D, 32>::BYTES;
    static constexpr int ROW_TENSORS = ROWS_SMEM ? 2 : ONE_PASS ? 1 : 0;   // row tiles per warp
    static constexpr int ROWS = DKV_STAGES * BUF;                          // offsets from the aligned start
    static constexpr int ONEPASS = ROWS + ATTN_WARPS * ROW_TENSORS * 16 * D * (int)sizeof(bf16);
    static constexpr int BARS = ONEPASS + (ONE_PASS ? OnePassTiles<D, PROBE>::BYTES : 0);
    static constexpr int BYTES = TILE_ALIGN + BARS + DKV_STAGES * STAGE_RING_BYTES;
};

// backward, pass 2: dk_j = c sum_i dS_ij q_i + sum_i dT_ij r_i and dv_j = sum_i w_ij g_i. grid
// (ceil(T / 64), batch*H), 128 threads; each warp owns 16 keys (their K, V fragments in registers, or with
// ROWS_SMEM (dkv_rows_in_smem) in shared-memory tiles after the ring's buffers) and streams over query tiles
// of 32 from the first that can see them, computing the transposed products S^T = K Q^T, T^T = K R^T,
// A^T = V dO^T (plain ldmatrix from Q, R, dO tiles) and dK += dS^T Q + dT^T R, dV += w^T dO (.trans). The
// query tiles arrive through a StageRing of DKV_STAGES DkvTile buffers. ONE_PASS (version 8, above): each tile
// also gives its share of dq and dr to `sums`, and no dq pass runs.
template <int D, bool PROBE, bool ROWS_SMEM, bool ONE_PASS>
__global__ void __launch_bounds__(ATTN_THREADS, D == 64 ? ATTN_MIN_BLOCKS[PROBE][2] : 1)
attention_backward_dkv_kernel(const __grid_constant__ CUtensorMap tm_dk, const __grid_constant__ CUtensorMap tm_dv,
                              const __grid_constant__ CUtensorMap tm_g,
                              const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_r,
                              const bf16* k, const bf16* v, const float* lse, const float* tbar, const float* Tg,
                              const float* gvbar, int batch, int T, int H, int stride, OnePassSums sums) {
    constexpr int BKV = 64, BQ = 32, KD = D / 16, NT = BQ / 8, ND = D / 8, STAGES = DKV_STAGES;
    using Rows = RowFrags<D, ROWS_SMEM>;
    using Layout = DkvLayout<D, PROBE, ROWS_SMEM, ONE_PASS>;
    extern __shared__ __align__(128) unsigned char smem_raw[];   // Layout::BYTES
    unsigned char* smem = align_tiles(smem_raw);
    constexpr int BUF = Layout::BUF, KSTRIDE = Layout::ROW_TENSORS * Rows::TILE;
    const bf16* krows = (const bf16*)(smem + Layout::ROWS);   // ONE_PASS: warp kk's K at krows + kk KSTRIDE
    bf16* row_tiles = (bf16*)(smem + Layout::ROWS) + (threadIdx.x / 32) * KSTRIDE;   // this warp's K (, V)
    const OnePassTiles<D, PROBE> op{smem + Layout::ONEPASS};
    StageRing<STAGES, 33> ring((uint64_t*)(smem + Layout::BARS));
    int kt, bh;
    if constexpr (ONE_PASS) {   // the work in the order blocks start: the ticket counter follows `added`
        __shared__ int ticket;
        if (threadIdx.x == 0) ticket = atomicAdd(sums.added + (size_t)gridDim.y * sums.qtiles, 1u);
        __syncthreads();
        block_rank_of(ticket, kt, bh);
    } else {
        block_rank(kt, bh);   // rank 0: the first key tile, the longest
    }
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
            dkv_load_tile<D, PROBE>(ring, i, DkvTile<D, BQ>(smem + i * BUF), &tm_q, &tm_r, &tm_g, lse, tbar, Tg, gvbar,
                                    b, h, bh, qstart + i * BQ, T);

    const Rows fk(ka, row_tiles), fv(va, row_tiles + Rows::TILE);
    if (ONE_PASS && !ROWS_SMEM) stash_rows<D>(row_tiles, ka);   // K for dq = dS K, read by every warp
    float dK[ND][4] = {}, dV[ND][4] = {};

    for (int it = 0; it < ntiles; it++) {
        int q0 = qstart + it * BQ;
        ring.wait_full(it);
        if (q0 + BQ - 1 >= kr0) {  // else every query of this tile is before every key of this warp
            const DkvTile<D, BQ> tl(smem + (it % STAGES) * BUF);
            float S[NT][4], Tt[NT][4], A[NT][4];
            for (int nt = 0; nt < NT; nt++)
                for (int i = 0; i < 4; i++) S[nt][i] = Tt[nt][i] = A[nt][i] = 0.0f;
            for (int kk = 0; kk < KD; kk++) {
                uint32_t ak[4], av[4];
                fk.get(kk, ak);
                fv.get(kk, av);
                for (int nt = 0; nt < NT; nt += 2) {
                    uint32_t bq0[2], bq1[2], bg0[2], bg1[2];
                    ldsm_b_pair(bq0, bq1, tl.Q, BQ, nt * 8, kk * 16);
                    ldsm_b_pair(bg0, bg1, tl.G, BQ, nt * 8, kk * 16);
                    mma_bf16(S[nt], ak, bq0);
                    mma_bf16(S[nt + 1], ak, bq1);
                    mma_bf16(A[nt], av, bg0);
                    mma_bf16(A[nt + 1], av, bg1);
                    if (PROBE) {
                        uint32_t br0[2], br1[2];
                        ldsm_b_pair(br0, br1, tl.R, BQ, nt * 8, kk * 16);
                        mma_bf16(Tt[nt], ak, br0);
                        mma_bf16(Tt[nt + 1], ak, br1);
                    }
                }
            }
            dkv_tile_terms<NT, PROBE>(S, Tt, A, tl.st, q0, kr0, T, c, sc);   // S: c dS^T, Tt: dT^T, A: w^T
            if (ONE_PASS) onepass_stash_terms<NT, PROBE>(op.terms(0), op.terms(1), S, Tt);
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
                                    lse, tbar, Tg, gvbar, b, h, bh, qstart + next * BQ, T);
        }
        if (ONE_PASS) {   // this tile's share of dq and dr, added after key blocks 0..kt-1 added theirs
            __syncthreads();   // every warp's terms are stashed
            onepass_share<D, PROBE>(op, it, krows, KSTRIDE, min(ATTN_WARPS, (q0 + BQ - 1 - kt * BKV) / 16 + 1));
            __syncthreads();   // the shares are staged
            if (threadIdx.x == 0) onepass_add<D, PROBE>(op, sums, it, bh, q0 / BQ, kt);
            __syncwarp();   // warp 0 together again before the next tile's ldmatrix and mma.sync
        }
    }
    if (ONE_PASS && threadIdx.x == 0)   // the last tile's adds (and every bulk copy's reads of shared memory)
        onepass_announce(sums, (size_t)bh * sums.qtiles + (qstart + (ntiles - 1) * BQ) / BQ, kt);
    static_assert(ATTN_WARPS * 2 * 16 * D * (int)sizeof(bf16) <= STAGES * BUF, "the ring holds the results");
    __syncthreads();   // every warp is done with the ring
    store_rows_tma<D, true>((bf16*)smem, &tm_dk, dK, &tm_dv, dV, b, h, kr0);
}

// ---------------------------------------------------------------------------------------------------------
// launchers: the params structs above to kernel arguments and TMA descriptors.

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
// bf16 tensor of dims (column 0..H D-1, token 0..T-1, sequence 0..batch-1) with token stride `stride` elements,
// read in boxes of 64 columns x `rows` tokens of one sequence, written to shared memory with the 128-byte
// swizzle (tile_offset). A box that runs past T is filled with zeros, so tiles never mix two sequences.
static CUtensorMap make_tile_map(const bf16* x, const AttentionShape& s, int stride, int rows) {
    const int batch = s.batch, T = s.seq_len, H = s.heads, D = s.head_dim;
    CUtensorMap map;
    cuuint64_t dims[3] = {(cuuint64_t)H * D, (cuuint64_t)T, (cuuint64_t)batch};
    cuuint64_t strides[2] = {(cuuint64_t)stride * sizeof(bf16), (cuuint64_t)stride * sizeof(bf16) * T};   // bytes
    cuuint32_t box[3] = {64, (cuuint32_t)rows, 1}, step[3] = {1, 1, 1};
    CUresult res = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void*)x, dims, strides, box, step,
                                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                        CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (res != CUDA_SUCCESS) {
        fprintf(stderr, "attention: cuTensorMapEncodeTiled failed (error %d) for batch %d T %d H %d D %d, stride %d\n",
                (int)res, batch, T, H, D, stride);
        exit(EXIT_FAILURE);
    }
    return map;
}

template <int D, bool PROBE>
static void attention_forward_launch(const AttentionForwardParams& p, cudaStream_t stream) {
    const AttentionShape& s = p.shape;
    const AttentionSaved& out = p.saved;
    dim3 grid(ceil_div(s.seq_len, 64), s.batch * s.heads);
    constexpr int smem = forward_smem_bytes<D, PROBE>();
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_forward_kernel<D, PROBE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        attr_set = true;
    }
    constexpr int BK = forward_keys_per_tile(D);
    const int C = s.heads * D;
    CUtensorMap tm_k = make_tile_map(p.k, s, p.stride, BK), tm_v = make_tile_map(p.v, s, p.stride, BK);
    CUtensorMap tm_o = make_tile_map(out.o, s, C, 16), tm_vbar = make_tile_map(out.vbar, s, C, 16);
    attention_forward_kernel<D, PROBE><<<grid, ATTN_THREADS, smem, stream>>>(
        tm_o, tm_vbar, out.lse, out.tbar, p.q, p.r, tm_k, tm_v, s.batch, s.seq_len, s.heads, p.stride);
    cudaCheckLaunch();
}

// the trainer's forward (version 3)
static void attention_forward(const AttentionForwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.shape, "attention_forward", [&](auto inst) {
        attention_forward_launch<decltype(inst)::head_dim, decltype(inst)::probe>(p, stream);
    });
}

// The dk/dv pass (ROWS_SMEM: dkv_rows_in_smem; ONE_PASS: version 8, which also adds the shares of dq and dr
// into `sums`; unused otherwise).
template <int D, bool PROBE, bool ROWS_SMEM, bool ONE_PASS>
static void attention_backward_dkv_launch(const AttentionBackwardParams& p, const OnePassSums& sums,
                                          cudaStream_t stream) {
    const AttentionForwardParams& f = p.fwd;
    const AttentionShape& s = f.shape;
    const AttentionSaved& in = f.saved;
    dim3 grid(ceil_div(s.seq_len, 64), s.batch * s.heads);
    constexpr int smem = DkvLayout<D, PROBE, ROWS_SMEM, ONE_PASS>::BYTES;
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_kernel<D, PROBE, ROWS_SMEM, ONE_PASS>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        attr_set = true;
    }
    const int C = s.heads * D;
    CUtensorMap tm_g = make_tile_map(p.dO, s, C, 32), tm_q = make_tile_map(f.q, s, f.stride, 32);
    CUtensorMap tm_r = PROBE ? make_tile_map(f.r, s, f.stride, 32) : tm_q;   // not read without the probe
    CUtensorMap tm_dk = make_tile_map(p.dk, s, f.stride, 16), tm_dv = make_tile_map(p.dv, s, f.stride, 16);
    attention_backward_dkv_kernel<D, PROBE, ROWS_SMEM, ONE_PASS><<<grid, ATTN_THREADS, smem, stream>>>(
        tm_dk, tm_dv, tm_g, tm_q, tm_r, f.k, f.v, in.lse, in.tbar, p.Tg, p.gvbar, s.batch, s.seq_len, s.heads,
        f.stride, sums);
    cudaCheckLaunch();
}

// DQ_SMEM, DKV_SMEM: where each pass keeps its own rows (dq_rows_in_smem, dkv_rows_in_smem; versions 6, 7)
template <int D, bool PROBE, bool DQ_SMEM, bool DKV_SMEM>
static void attention_backward_launch(const AttentionBackwardParams& p, cudaStream_t stream) {
    const AttentionForwardParams& f = p.fwd;
    const AttentionShape& s = f.shape;
    const AttentionSaved& in = f.saved;
    dim3 grid(ceil_div(s.seq_len, 64), s.batch * s.heads);
    constexpr int smem_dq = dq_smem_bytes<D, PROBE, DQ_SMEM>();
    constexpr int BK = dq_keys_per_tile(D, PROBE);
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_backward_dq_kernel<D, PROBE, DQ_SMEM>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem_dq));
        attr_set = true;
    }
    CUtensorMap tm_k = make_tile_map(f.k, s, f.stride, BK), tm_v = make_tile_map(f.v, s, f.stride, BK);
    CUtensorMap tm_dq = make_tile_map(p.dq, s, f.stride, 16);
    CUtensorMap tm_dr = PROBE ? make_tile_map(p.dr, s, f.stride, 16) : tm_dq;   // not written without the probe
    attention_backward_dq_kernel<D, PROBE, DQ_SMEM><<<grid, ATTN_THREADS, smem_dq, stream>>>(
        tm_dq, tm_dr, p.Tg, p.gvbar, p.dO, f.q, f.r, tm_k, tm_v, in.o, in.vbar, in.lse, in.tbar, s.batch, s.seq_len,
        s.heads, f.stride);
    cudaCheckLaunch();
    attention_backward_dkv_launch<D, PROBE, DKV_SMEM, false>(p, OnePassSums{}, stream);
}

// version 3's choice of where the passes keep their rows, per head dim and probe
template <int D, bool PROBE>
static void attention_backward_v3(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_backward_launch<D, PROBE, dq_rows_in_smem(D, PROBE), dkv_rows_in_smem(D, PROBE)>(p, stream);
}

// the trainer's backward (version 3)
static void attention_backward(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.fwd.shape, "attention_backward", [&](auto inst) {
        attention_backward_v3<decltype(inst)::head_dim, decltype(inst)::probe>(p, stream);
    });
}
