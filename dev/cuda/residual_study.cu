// The residual add of a block, x_next = x + a W^T (fp32 residual x, bf16 a and W), and the rmsnorm that
// reads x_next right after: which way of computing the pair is fastest on this GPU.
//
//   ./dev/cuda/residual_study [N]      (N tokens, default 32768; the d12 shapes: in = 768 and 3072, out = 768)
//
// Ways, each timed alone (median of 20, L2 flushed) and compared with way 1's x_next:
//   1. cuBLASLt, C = x and D = x_next in fp32, the heuristic's first algorithm (the trainer until session 6),
//      then rmsnorm_forward
//   2. the same with each of the heuristic's other algorithms (up to 16), and the trainer's matmul_residual,
//      which picks the fastest of the first GEMM_CANDIDATES that give way 1's bits (session 6)
//   3. cuBLAS a W^T alone in fp32 (no C), then one kernel that adds x and normalizes (residual_rmsnorm below):
//      the same sum x + (a W^T) rounded once, so x_next can match way 1 bit for bit when the GEMMs agree
//   4. a W^T alone in bf16 (for scale: the product without fp32 traffic)
// Printed: ms of each part, the pair's total, and the largest |difference| from way 1 in x_next.
#include <cstdio>
#include <vector>

#include "../../trainer/matmul.cuh"
#include "../../trainer/rmsnorm.cuh"
#include "attention_timing.h"   // defines: time_median, timing_init, fill_random

// x_out = x + branch, then h = rmsnorm(x_out), rstd: one block per row of C, one float4 per thread (as
// rmsnorm_forward_kernel, with the add in front)
__global__ void residual_rmsnorm_kernel(float* x_out, bf16* h, float* rstd, const float* x, const float* branch,
                                        int C) {
    __shared__ float part[32];
    size_t i = (size_t)blockIdx.x * (C / 4) + threadIdx.x;
    float4 v = ((const float4*)x)[i], b = ((const float4*)branch)[i];
    v.x += b.x; v.y += b.y; v.z += b.z; v.w += b.w;
    ((float4*)x_out)[i] = v;
    float s = rsqrtf(block_sum(v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w, part) / C + RMSNORM_EPS);
    __nv_bfloat162 lo = __floats2bfloat162_rn(v.x * s, v.y * s), hi = __floats2bfloat162_rn(v.z * s, v.w * s);
    ((uint2*)h)[i] = make_uint2(*(uint32_t*)&lo, *(uint32_t*)&hi);
    if (threadIdx.x == 0) rstd[blockIdx.x] = s;
}

static double max_abs_diff(const float* d_a, const float* d_b, size_t n) {
    std::vector<float> a(n), b(n);
    cudaCheck(cudaMemcpy(a.data(), d_a, n * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(b.data(), d_b, n * sizeof(float), cudaMemcpyDeviceToHost));
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;   // NaN sticks
    }
    return m;
}

static void study(int N, int in, int out) {
    const int C = out;
    size_t nx = (size_t)N * C;
    bf16 *a, *W, *h, *y16;
    float *x, *y_ref, *y, *branch, *rstd;
    cudaCheck(cudaMalloc(&a, (size_t)N * in * sizeof(bf16)));
    cudaCheck(cudaMalloc(&W, (size_t)out * in * sizeof(bf16)));
    cudaCheck(cudaMalloc(&h, nx * sizeof(bf16)));
    cudaCheck(cudaMalloc(&y16, nx * sizeof(bf16)));
    cudaCheck(cudaMalloc(&x, nx * sizeof(float)));
    cudaCheck(cudaMalloc(&y_ref, nx * sizeof(float)));
    cudaCheck(cudaMalloc(&y, nx * sizeof(float)));
    cudaCheck(cudaMalloc(&branch, nx * sizeof(float)));
    cudaCheck(cudaMalloc(&rstd, N * sizeof(float)));
    fill_random(a, (size_t)N * in, 1, 1.0f);
    fill_random(W, (size_t)out * in, 2, 0.05f);
    fill_hash_kernel<<<(unsigned)((nx + 255) / 256), 256>>>(NULL, x, nx, 3, 4.0f);
    cudaCheckLaunch();
    printf("\nN %d, in %d, out %d\n\n| way | GEMM ms | norm ms | total ms | max |x_next - way 1| |\n|---|---|---|---|---|\n",
           N, in, out);

    float norm_ms = time_median([&]() { rmsnorm_forward(h, rstd, y_ref, N, C, 0); }, 3, 20);
    // the residual GEMM's shape as matmul_residual passes it to gemm()
    GemmShape shape = {N, out, in, false, true, true, false, 1, 0, 0, 0};
    GemmPlan plan = gemm_describe(shape);
    cublasLtMatmulHeuristicResult_t heur[16];
    int found = gemm_candidates(plan, heur, 16);
    for (int k = 0; k < found; k++) {
        float* dst = k == 0 ? y_ref : y;
        auto run = [&]() { gemm_run(plan, heur[k].algo, dst, x, a, W, 1.0f, 1.0f, 0); };
        cudaCheck(cudaMemset(dst, 0xFF, nx * sizeof(float)));
        run();
        double diff = max_abs_diff(dst, y_ref, nx);
        float g = time_median(run, 3, 20);
        printf("| %d. cuBLASLt x + a W^T, heuristic %d, then rmsnorm | %.3f | %.3f | %.3f | %.3g |\n", k == 0 ? 1 : 2, k,
               g, norm_ms, g + norm_ms, diff);
    }
    cudaCheck(cudaMemset(y, 0xFF, nx * sizeof(float)));
    matmul_residual(y, x, a, W, N, in, out, 0);   // tunes at the first call
    double diff_t = max_abs_diff(y, y_ref, nx);
    float gt = time_median([&]() { matmul_residual(y, x, a, W, N, in, out, 0); }, 3, 20);
    printf("| the trainer's matmul_residual (tuned once: the fastest of %d that match heuristic 0) | %.3f | %.3f | %.3f | %.3g |\n",
           GEMM_CANDIDATES,
           gt, norm_ms, gt + norm_ms, diff_t);

    auto fused = [&]() {
        residual_rmsnorm_kernel<<<N, C / 4>>>(y, h, rstd, x, branch, C);
        cudaCheckLaunch();
    };
    float g3 = time_median([&]() { matmul(branch, a, W, N, out, in, false, true, 1.0f, 0.0f, true); }, 3, 20);
    cudaCheck(cudaMemset(y, 0xFF, nx * sizeof(float)));
    fused();
    double diff3 = max_abs_diff(y, y_ref, nx);
    float f3 = time_median(fused, 3, 20);
    printf("| 3. cuBLAS a W^T fp32, then add + rmsnorm in one kernel | %.3f | %.3f | %.3f | %.3g |\n", g3, f3, g3 + f3,
           diff3);
    float g4 = time_median([&]() { linear_forward(y16, a, W, N, in, out, 0); }, 3, 20);
    printf("| 4. cuBLAS a W^T bf16 (no add) | %.3f | | | |\n", g4);
    void* ptrs[] = {a, W, h, y16, x, y_ref, y, branch, rstd};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
}

int main(int argc, char** argv) {
    int N = argc > 1 ? atoi(argv[1]) : 32768;
    if (N <= 0) {
        fprintf(stderr, "usage: residual_study [N > 0]\n");
        return EXIT_FAILURE;
    }
    if (cuda_device_count() == 0) {
        printf("residual_study: skipped: no GPU\n");
        return 0;
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("residual_study on %s\n", prop.name);
    matmul_init();
    timing_init();
    study(N, 768, 768);
    study(N, 3072, 768);
    return 0;
}
