// Version 8 of the attention kernel study (dev/cuda/NOTES.md, session 17): the backward in one pass over the
// key blocks, Hopper only. Version 3 runs two passes: the dq pass (per query block, over key tiles) and the
// dk/dv pass (per key block, over query tiles), and both recompute S = Q K^T, T = R K^T and A = dO V^T. Here
// the dk/dv pass also makes each query tile's share of dq and dr (parallax_kernels.cuh, "The one-pass
// backward": ONE_PASS of attention_backward_dkv_kernel) and the key blocks add their shares in a fixed order,
// so dq and dr are the same bits on every run. Three launches:
//   1. onepass_row_dots_kernel: Tg = g.o and gvbar = g.vbar per row (version 3's dq pass writes them);
//   2. the dk/dv pass with ONE_PASS: dk, dv, and the fp32 sums of dq and dr per query tile (at D = 128 with
//      the warps' K and V rows in shared memory: in registers the softmax variant spilled 84 bytes);
//   3. onepass_finish_kernel: the sums into the bf16 dq and dr.
// The forward is version 3's.
#pragma once

#include <cstring>

#include "../../parallax_kernels.cuh"   // attention_backward_dkv_launch, OnePassSums, onepass_sum_index

// Tg_i = g_i.o_i and gvbar_i = g_i.vbar_i (the spec's B_i), fp32 (batch, H, T). g (= dO), o, vbar: bf16
// (batch, T, H, D) contiguous, so row (b T + t) H + h is D contiguous elements; D / 8 threads per row, 8
// elements (16 bytes) each, summed across the row's threads by shuffles. `rows` = batch T H.
template <int D, bool PROBE>
__global__ void __launch_bounds__(256) onepass_row_dots_kernel(float* Tg, float* gvbar, const bf16* dO, const bf16* o,
                                                               const bf16* vbar, int T, int H, int rows) {
    constexpr int L = D / 8;   // threads per row: a power of two within one warp
    int idx = blockIdx.x * blockDim.x + threadIdx.x, row = idx / L;
    bool ok = row < rows;
    float tg = 0.0f, gv = 0.0f;
    if (ok) {
        size_t off = (size_t)row * D + (idx % L) * 8;
        uint4 graw = *(const uint4*)(dO + off), oraw = *(const uint4*)(o + off), vraw = graw;
        if (PROBE) vraw = *(const uint4*)(vbar + off);
        const bf16 *gp = (const bf16*)&graw, *op = (const bf16*)&oraw, *vp = (const bf16*)&vraw;
        for (int e = 0; e < 8; e++) {
            float g = __bfloat162float(gp[e]);
            tg += g * __bfloat162float(op[e]);
            if (PROBE) gv += g * __bfloat162float(vp[e]);
        }
    }
    for (int m = L / 2; m > 0; m /= 2) {   // every lane takes part: rows past the end add zeros
        tg += __shfl_xor_sync(0xffffffff, tg, m);
        gv += __shfl_xor_sync(0xffffffff, gv, m);
    }
    if (ok && idx % L == 0) {
        int h = row % H, t = (row / H) % T, b = row / H / T;
        size_t ri = ((size_t)b * H + h) * T + t;
        Tg[ri] = tg;
        if (PROBE) gvbar[ri] = gv;
    }
}

// The bf16 dq and dr (token stride `stride`, layout at the top of parallax_kernels.cuh) from the fp32 sums of
// the one-pass dk/dv pass: grid (query tiles, batch*H), 256 threads, two adjacent columns of a row per step.
template <int D, bool PROBE>
__global__ void __launch_bounds__(256) onepass_finish_kernel(bf16* dq, bf16* dr, OnePassSums sums, int T, int H,
                                                             int stride) {
    int qi = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H;
    size_t tile = ((size_t)bh * sums.qtiles + qi) * 32 * D;
    for (int e = threadIdx.x; e < 32 * D / 2; e += blockDim.x) {
        int row = e / (D / 2), col = 2 * (e % (D / 2)), t = qi * 32 + row;
        if (t >= T) break;   // rows only grow with e
        int at = onepass_sum_index(D, row, col);   // even: col + 1 is at + 1
        size_t out = (size_t)(b * T + t) * stride + h * D + col;
        float2 v = *(const float2*)(sums.dq + tile + at);
        *(__nv_bfloat162*)(dq + out) = __floats2bfloat162_rn(v.x, v.y);
        if (PROBE) {
            float2 w = *(const float2*)(sums.dr + tile + at);
            *(__nv_bfloat162*)(dr + out) = __floats2bfloat162_rn(w.x, w.y);
        }
    }
}

// PARALLAX_ONEPASS_UNORDERED=1 (a measurement, never a test): the key blocks add in whatever order they come,
// into sums zeroed first, so that a timing shows what the fixed order costs. The result is still the sum, but
// not the same bits on every run.
static bool onepass_unordered() {
    static int unordered = -1;
    if (unordered < 0) {
        const char* e = getenv("PARALLAX_ONEPASS_UNORDERED");
        unordered = e && strcmp(e, "1") == 0;
        if (unordered) printf("PARALLAX_ONEPASS_UNORDERED=1: version 8 adds in any order (timing only)\n");
    }
    return unordered;
}

// Version 8's scratch for a shape, ready for one backward on `stream`: the sums (4 B H T D bytes per variant,
// twice for Parallax: 48 MB at 4x4096x12x64 softmax; zeroed only when unordered) and the counters with the
// ticket (zeroed), grown when a larger shape comes and kept (the study and the tests run many shapes through
// one process). One set per process: two backward calls in flight at once (two streams or devices) would share
// it, so this is for the study only; the trainer would own its scratch.
static OnePassSums onepass_sums(const AttentionShape& s, cudaStream_t stream) {
    static float* sums = NULL;
    static unsigned* added = NULL;
    static size_t sums_cap = 0, added_cap = 0;
    int qtiles = ceil_div(s.seq_len, 32);
    size_t tiles = (size_t)s.batch * s.heads * qtiles, per = tiles * 32 * s.head_dim;
    size_t floats = per * (s.probe ? 2 : 1);
    if (floats > sums_cap) {
        if (sums) cudaCheck(cudaFree(sums));
        cudaCheck(cudaMalloc(&sums, floats * sizeof(float)));
        sums_cap = floats;
    }
    if (tiles + 1 > added_cap) {   // + the ticket counter
        if (added) cudaCheck(cudaFree(added));
        cudaCheck(cudaMalloc(&added, (tiles + 1) * sizeof(unsigned)));
        added_cap = tiles + 1;
    }
    cudaCheck(cudaMemsetAsync(added, 0, (tiles + 1) * sizeof(unsigned), stream));
    bool unordered = onepass_unordered();
    if (unordered) cudaCheck(cudaMemsetAsync(sums, 0, floats * sizeof(float), stream));
    return OnePassSums{sums, s.probe ? sums + per : NULL, added, qtiles, unordered ? 0 : 1};
}

template <int D, bool PROBE>
static void attention_backward_onepass_launch(const AttentionBackwardParams& p, cudaStream_t stream) {
    const AttentionShape& s = p.fwd.shape;
    const AttentionSaved& in = p.fwd.saved;
    OnePassSums sums = onepass_sums(s, stream);
    int rows = s.batch * s.seq_len * s.heads;
    onepass_row_dots_kernel<D, PROBE><<<ceil_div(rows * (D / 8), 256), 256, 0, stream>>>(
        p.Tg, p.gvbar, p.dO, in.o, in.vbar, s.seq_len, s.heads, rows);
    cudaCheckLaunch();
    attention_backward_dkv_launch<D, PROBE, D == 128, true>(p, sums, stream);   // D = 128: K, V in shared memory
    onepass_finish_kernel<D, PROBE><<<dim3(sums.qtiles, s.batch * s.heads), 256, 0, stream>>>(
        p.dq, p.dr, sums, s.seq_len, s.heads, p.fwd.stride);
    cudaCheckLaunch();
}

static void attention_backward_onepass(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.fwd.shape, "attention_backward (version 8)", [&](auto inst) {
        attention_backward_onepass_launch<decltype(inst)::head_dim, decltype(inst)::probe>(p, stream);
    });
}
