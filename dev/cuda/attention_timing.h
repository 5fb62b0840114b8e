// Timing for make bench (dev/bench_parallax.cu) and the kernel study (dev/cuda/attention_study.cu): CUDA
// events, median of many runs after warm-ups, L2 flushed before each run; random bf16 fills; and the
// attention table (header and rows) both print.
#pragma once

#include <algorithm>
#include <vector>

#include "attention_check.h"   // defines: AttentionVersion, ATTENTION_VERSIONS

static float* l2_flush_buf = NULL;
static size_t l2_flush_bytes = 0;

// a buffer of twice the L2 size, written before every timed run so that no run finds its inputs in L2
static void timing_init() {
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    l2_flush_bytes = (size_t)prop.l2CacheSize * 2;
    cudaCheck(cudaMalloc(&l2_flush_buf, l2_flush_bytes));
}

static void flush_l2() {
    cudaCheck(cudaMemsetAsync(l2_flush_buf, 0, l2_flush_bytes));
}

// median milliseconds of `reps` runs of fn, each after an L2 flush
template <typename F>
static float time_median(F fn, int warmup, int reps) {
    for (int i = 0; i < warmup; i++) fn();
    cudaEvent_t a, b;
    cudaCheck(cudaEventCreate(&a));
    cudaCheck(cudaEventCreate(&b));
    std::vector<float> ms;
    for (int i = 0; i < reps; i++) {
        flush_l2();
        cudaCheck(cudaEventRecord(a));
        fn();
        cudaCheck(cudaEventRecord(b));
        cudaCheck(cudaEventSynchronize(b));
        float t;
        cudaCheck(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t);
    }
    cudaCheck(cudaEventDestroy(a));
    cudaCheck(cudaEventDestroy(b));
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

static void fill_random(bf16* x, size_t n, unsigned seed, float scale) {
    fill_hash_kernel<<<(unsigned)((n + 255) / 256), 256>>>(x, NULL, n, seed, scale);
    cudaCheckLaunch();
}

// The header of the table whose rows bench_attention prints.
static void print_attention_header() {
    printf("| attention | kernels | B x T x H x D | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |\n"
           "|---|---|---|---|---|---|---|\n");
}

// Times one version's forward and forward + backward at (B, T, H, D) on random inputs and prints a table
// row: | variant | vN | BxTxHxD | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | (model FLOPs of
// spec section 1: forward 4u / 2u, forward + backward 12u / 7u, u = B H T^2 D). Returns the fwd+bwd ms.
static float bench_attention(int B, int T, int H, int D, bool probe, const AttentionVersion& ver) {
    AttentionShape shape = {B, T, H, D, probe};
    int C = H * D, stride = packed_stride(shape);
    size_t N = (size_t)B * T, rows = (size_t)B * H * T;
    bf16 *qkvr, *dqkvr, *o, *vbar, *dO;
    float *L, *tbar, *Tg, *Bv;
    cudaCheck(cudaMalloc(&qkvr, N * stride * sizeof(bf16)));
    cudaCheck(cudaMalloc(&dqkvr, N * stride * sizeof(bf16)));
    cudaCheck(cudaMalloc(&o, N * C * sizeof(bf16)));
    cudaCheck(cudaMalloc(&vbar, N * C * sizeof(bf16)));
    cudaCheck(cudaMalloc(&dO, N * C * sizeof(bf16)));
    cudaCheck(cudaMalloc(&L, rows * sizeof(float)));
    cudaCheck(cudaMalloc(&tbar, rows * sizeof(float)));
    cudaCheck(cudaMalloc(&Tg, rows * sizeof(float)));
    cudaCheck(cudaMalloc(&Bv, rows * sizeof(float)));
    fill_random(qkvr, N * stride, 1, 1.7f);   // uniform(-1.7, 1.7): unit variance
    fill_random(dO, N * C, 2, 1.7f);
    AttentionForwardParams fp = attention_forward_params(shape, qkvr, qkvr, {o, vbar, L, tbar});
    AttentionBackwardParams bp = attention_backward_params(fp, dO, dqkvr, Tg, Bv);
    auto fwd = [&]() { ver.fwd(fp, 0); };
    auto fwdbwd = [&]() {
        fwd();
        ver.bwd(bp, 0);
    };
    float ms_f = time_median(fwd, 3, 20), ms_fb = time_median(fwdbwd, 3, 20);
    double u = (double)B * H * T * T * D;
    double fl_f = (probe ? 4 : 2) * u, fl_fb = (probe ? 12 : 7) * u;
    printf("| %-8s | v%d | %dx%dx%dx%d | %7.3f | %6.1f | %7.3f | %6.1f |\n", probe ? "parallax" : "softmax",
           ver.number, B, T, H, D, ms_f, fl_f / ms_f / 1e9, ms_fb, fl_fb / ms_fb / 1e9);
    void* ptrs[] = {qkvr, dqkvr, o, vbar, dO, L, tbar, Tg, Bv};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
    return ms_fb;
}
