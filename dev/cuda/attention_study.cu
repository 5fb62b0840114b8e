// The attention kernel study, llm.c's dev/cuda style: one program checks and times any version of the
// Parallax (or softmax) attention forward and backward.
//   make dev/cuda/attention_study
//   ./dev/cuda/attention_study [VERSION] [B T H D] [--softmax]       (default: 3, 16 1024 12 64, Parallax)
// 1. Check: a fresh random case at (B = 2, H = 3, T = 333, the given D), so T is a multiple of no tile,
//    against the float64 CPU reference of spec section 1 (dev/cuda/attention_check.h); outputs poisoned
//    with NaN first; the relative error of every output, and its bound; a second backward must give the
//    same bits. Exit status 1 on a failed check.
// 2. Time: forward and forward + backward at (B, T, H, D), median of 20 runs after 3 warm-ups, L2 flushed,
//    in model TFLOP/s of spec section 1.
// The versions, with what each measured on one H200 (Parallax, forward / forward + backward; more in
// dev/cuda/NOTES.md):
//   1  dev/cuda/attention_rowwise.cuh  one thread per query row, fp32, no tensor cores
//        ./dev/cuda/attention_study 1 2 1024 12 64    2.409 / 34.39 ms at 2x1024x12x64 (0.6 TFLOP/s)
//   2  dev/cuda/attention_mma_v2.cuh   mma.sync tensor cores, FlashAttention-2 tiling, synchronous tiles
//        ./dev/cuda/attention_study 2                 0.611 / 2.159 ms at 16x1024x12x64 (72 TFLOP/s)
//   3  parallax_kernels.cuh            the trainer's: buffered tiles (now by TMA), ldmatrix, no transposed copies
//        ./dev/cuda/attention_study 3                 0.313 / 1.159 ms at 16x1024x12x64 (133 TFLOP/s); revised
//        (one product less in the forward, launch bounds per kernel): 0.283 / 1.126 ms (137 TFLOP/s); fewer
//        instructions per tile (loaders, pair terms, masks): 0.232 / 0.849 ms (182 TFLOP/s); softmax 0.148 / 0.551;
//        tiles in and results out by TMA, longest blocks first: 0.203 / 0.694 ms (223 TFLOP/s); softmax 0.119 / 0.452;
//        block starts overlapped, the probe's shift in the accumulator: 0.195 / 0.679 ms (228); softmax 0.114 / 0.445
//   4  attention_wgmma_v4.cuh          forward and backward on wgmma (sm_90a, D = 64)
//        ./dev/cuda/attention_study 4                 0.264 / 0.889 ms; softmax 0.232 / 0.729
//   5  trainer/attention_sm80.cuh      the 8.x path (A100, L4, RTX 30xx / 40xx): version 3 with cp.async tiles
//        ./dev/cuda/attention_study 5                 (timed on an H100: dev/cuda/NOTES.md)
//   6  attention_rows_smem.cuh         version 3, the dq pass's Q, R, dO in shared memory, not registers
//   7  attention_rows_smem.cuh         version 6, and the dk/dv pass's K, V likewise (for D = 128: no spills)
//        ./dev/cuda/attention_study 7 8 2048 8 128    (dev/cuda/NOTES.md, session 16)
//   8  attention_onepass.cuh           the backward in one pass: the dk/dv pass also sums dq, dr in a fixed order
//        ./dev/cuda/attention_study 8 4 4096 12 64 --softmax    (dev/cuda/NOTES.md, session 17)
//        PARALLAX_ONEPASS_UNORDERED=1 in front: the adds in any order, to time what the fixed order costs
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "attention_timing.h"   // defines: bench_attention, timing_init; includes attention_check.h

static int parse_int(const char* s, const char* what) {
    char* end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0) {
        fprintf(stderr, "attention_study: %s must be a positive integer, got '%s'\n", what, s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char** argv) {
    int version = 3, shape[4] = {16, 1024, 12, 64}, n_shape = 0;
    bool probe = true;
    const char* names[4] = {"B", "T", "H", "D"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--softmax") == 0) probe = false;
        else if (i == 1) version = parse_int(argv[i], "VERSION");
        else if (n_shape < 4) { shape[n_shape] = parse_int(argv[i], names[n_shape]); n_shape++; }
        else { fprintf(stderr, "attention_study: unexpected argument '%s'\n", argv[i]); return 2; }
    }
    const int B = shape[0], T = shape[1], H = shape[2], D = shape[3];
    const AttentionVersion* ver = NULL;
    for (const AttentionVersion& v : ATTENTION_VERSIONS) if (v.number == version) ver = &v;
    if (!ver) { fprintf(stderr, "attention_study: VERSION must be 1 to 8, got %d\n", version); return 2; }
    if (D != 64 && D != 128) { fprintf(stderr, "attention_study: D must be 64 or 128, got %d\n", D); return 2; }
    if (n_shape != 0 && n_shape != 4) { fprintf(stderr, "attention_study: give all of B T H D or none\n"); return 2; }
    if (cuda_device_count() == 0) { printf("attention_study: skipped: no GPU\n"); return 0; }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("attention_study: version %d, %s, on %s\n\n", version, probe ? "parallax" : "softmax", prop.name);

    unsigned seed = (unsigned)time(NULL);
    std::mt19937 rng(seed);
    AttentionCase c = attention_case_random(2, 3, 333, D, probe, rng);
    AttentionOutputs out = attention_case_run(c, *ver);
    int failed = 0;
    printf("check %s (seed %u) against the float64 CPU reference\n", c.name.c_str(), seed);
    for (const AttentionCheck& k : attention_checks(c, out)) {
        double err = rel_error(*k.got, *k.ref);
        bool ok = err <= k.max_rel;   // false for NaN
        failed += !ok;
        printf("  %-5s rel err %.2e (max %.0e) %s\n", k.what, err, k.max_rel, ok ? "ok" : "MISMATCH");
    }
    failed += !out.bwd_repeats;
    printf("  a second backward gives the same bits: %s\n\n", out.bwd_repeats ? "ok" : "MISMATCH");
    print_attention_header();
    timing_init();
    bench_attention(B, T, H, D, probe, *ver);
    if (failed) printf("\nattention_study: %d outputs outside their bound\n", failed);
    return failed ? 1 : 0;
}
