// Version 4 of the Parallax attention kernels (kernel study, dev/cuda/NOTES.md): the forward and both
// backward passes on wgmma (sm_90a, D = 64; other head dims run version 3). The same blocks, rows per warp
// and per-tile arithmetic as version 3 (parallax_kernels.cuh), but each block is one warpgroup whose 64 rows
// share every product, with B tiles read by the tensor cores from shared memory through descriptors. The
// trainer does not use it: slower than version 3 without FlashAttention-3's ping-pong of two warpgroups
// (NOTES.md has the numbers). Launchers attention_forward_wgmma and attention_backward_wgmma; test_parallax
// checks it, the study times it (./dev/cuda/attention_study 4).
#pragma once

#include "../../parallax_kernels.cuh"   // fragment helpers, ForwardRows, DqRows, DkvTile, pair terms, version 3

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
attention_forward_wgmma_kernel(bf16* o, bf16* vbar, float* lse, float* tbar, const bf16* q, const bf16* r,
                               const bf16* k, const bf16* v, int batch, int T, int H, int stride) {
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
    forward_finish<D, PROBE>(st, lse, tbar, bh, T, q0);
    store_rows_frag<D>(o, PROBE ? st.O2 : st.O1, 1.0f, H * D, b, h, q0, T);
    store_rows_frag<D>(vbar, st.O1, 1.0f, H * D, b, h, q0, T);
}

// Starts loading the query tile at q0 into one buffer of the dk/dv pass on wgmma (every thread copies).
template <int D, int BQ, bool PROBE>
__device__ __forceinline__ void dkv_load_core_async(DkvTile<D, BQ> tile, const bf16* q, const bf16* r,
                                                    const bf16* dO, const float* lse, const float* tbar,
                                                    const float* Tg, const float* gvbar, int b, int h, int bh, int q0,
                                                    int T, int H, int stride) {
    load_tile_core_async<true>(tile.Q, q, stride, b, h, q0, T);
    if (PROBE) load_tile_core_async<true>(tile.R, r, stride, b, h, q0, T);
    load_tile_core_async<true>(tile.G, dO, H * D, b, h, q0, T);
    float* st = (float*)tile.st;
    load_rows_async<BQ>(st, 4, lse, bh, q0, T);
    load_rows_async<BQ>(st + 2, 4, Tg, bh, q0, T);
    if (PROBE) {
        load_rows_async<BQ>(st + 1, 4, tbar, bh, q0, T);
        load_rows_async<BQ>(st + 3, 4, gvbar, bh, q0, T);
    }
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
attention_backward_dq_wgmma_kernel(bf16* dq, bf16* dr, float* Tg, float* gvbar, const bf16* dO, const bf16* q,
                                   const bf16* r, const bf16* k, const bf16* v, const bf16* o, const bf16* vbar,
                                   const float* lse, const float* tbar, int batch, int T, int H, int stride) {
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
    DqRows rs = dq_rows_begin<D, PROBE>(qa, ra, ga, Tg, gvbar, q, r, dO, o, vbar, lse, tbar, stride, b, h, bh, H, q0, T);
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
                                    const bf16* k, const bf16* v, const float* lse, const float* tbar, const float* Tg,
                                    const float* gvbar, int batch, int T, int H, int stride) {
    constexpr int D = 64, BKV = 64, BQ = 64, KD = 4, NT = 8, ND = 8;
    constexpr int BUF = DkvTile<D, BQ>::BYTES;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    int kt = blockIdx.x;
    int bh = blockIdx.y, b = bh / H, h = bh % H;
    int key0 = kt * BKV + (threadIdx.x / 32) * 16;   // this warp's first key
    const float c = rsqrtf((float)D), sc = c * LOG2E;

    int qstart = kt * BKV, ntiles = ceil_div(T - qstart, BQ);
    dkv_load_core_async<D, BQ, PROBE>(DkvTile<D, BQ>(smem_raw), q, r, dO, lse, tbar, Tg, gvbar, b, h, bh, qstart,
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
            dkv_load_core_async<D, BQ, PROBE>(DkvTile<D, BQ>(smem_raw + (buf ^ 1) * BUF), q, r, dO, lse, tbar,
                                               Tg, gvbar, b, h, bh, q0 + BQ, T, H, stride);
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

// launchers: the params structs of parallax_kernels.cuh to kernel arguments. Version 4 is for D = 64; other
// head dims run version 3's launchers.

template <bool PROBE>
static void attention_forward_wgmma_launch(const AttentionForwardParams& p, cudaStream_t stream) {
    const AttentionShape& s = p.shape;
    dim3 grid(ceil_div(s.seq_len, 64), s.batch * s.heads);
    attention_forward_wgmma_kernel<PROBE><<<grid, ATTN_THREADS, 0, stream>>>(
        p.saved.o, p.saved.vbar, p.saved.lse, p.saved.tbar, p.q, p.r, p.k, p.v, s.batch, s.seq_len, s.heads,
        p.stride);
    cudaCheckLaunch();
}

static void attention_forward_wgmma(const AttentionForwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.shape, "attention_forward_wgmma", [&](auto inst) {
        constexpr int D = decltype(inst)::head_dim;
        constexpr bool PROBE = decltype(inst)::probe;
        if constexpr (D == 64) attention_forward_wgmma_launch<PROBE>(p, stream);
        else attention_forward_launch<D, PROBE>(p, stream);
    });
}

template <bool PROBE>
static void attention_backward_wgmma_launch(const AttentionBackwardParams& p, cudaStream_t stream) {
    const AttentionForwardParams& f = p.fwd;
    const AttentionShape& s = f.shape;
    const int B = s.batch, T = s.seq_len, H = s.heads;
    dim3 grid(ceil_div(T, 64), B * H);
    attention_backward_dq_wgmma_kernel<PROBE><<<grid, ATTN_THREADS, 0, stream>>>(
        p.dq, p.dr, p.Tg, p.gvbar, p.dO, f.q, f.r, f.k, f.v, f.saved.o, f.saved.vbar, f.saved.lse, f.saved.tbar, B,
        T, H, f.stride);
    cudaCheckLaunch();
    size_t smem = 2 * DkvTile<64, 64>::BYTES;  // two buffers of query tiles
    static bool attr_set = false;  // once per instantiation: allow more than 48 KB of dynamic shared memory
    if (!attr_set) {
        cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_wgmma_kernel<PROBE>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = true;
    }
    attention_backward_dkv_wgmma_kernel<PROBE><<<grid, ATTN_THREADS, smem, stream>>>(
        p.dk, p.dv, p.dO, f.q, f.r, f.k, f.v, f.saved.lse, f.saved.tbar, p.Tg, p.gvbar, B, T, H, f.stride);
    cudaCheckLaunch();
}

static void attention_backward_wgmma(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.fwd.shape, "attention_backward_wgmma", [&](auto inst) {
        constexpr int D = decltype(inst)::head_dim;
        constexpr bool PROBE = decltype(inst)::probe;
        if constexpr (D == 64) attention_backward_wgmma_launch<PROBE>(p, stream);
        else attention_backward_v3<D, PROBE>(p, stream);
    });
}
