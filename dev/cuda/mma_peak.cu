// mma_peak: the tensor-core ceilings the attention kernels work under, measured on this GPU.
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o dev/cuda/mma_peak dev/cuda/mma_peak.cu
//   ./dev/cuda/mma_peak
// Each warp issues long runs of independent bf16 products (fp32 accumulate) on data already in registers or
// shared memory, so nothing but the tensor pipe and instruction issue limits the rate:
//   mma.sync m16n8k16 (version 3's instruction), 8 independent accumulators per warp, 1 to 4 blocks of 4
//     warps per SM (1 to 4 warps per scheduler);
//   wgmma m64n64k16 (version 4's), A from registers, B from shared memory, 4 independent accumulators per
//     warpgroup, committed and waited for every 16 products.
// The table gives dense TFLOP/s (2 m n k per product). The accumulators are written out at the end so that
// the compiler keeps every product.
#include <cstdio>
#include <cstdint>

#include "attention_wgmma_v4.cuh"   // defines: wgmma_m64n64k16, wgmma_desc, ...; includes parallax_kernels.cuh (mma_bf16)

constexpr int ITERS = 4096;

__global__ void __launch_bounds__(128) mma_sync_peak_kernel(float* out) {
    uint32_t a[4], b[2];
    for (int i = 0; i < 4; i++) a[i] = 0x3c003c00u ^ (threadIdx.x * 2654435761u & 0x00ff00ffu);   // bf16 near 1
    b[0] = a[1];
    b[1] = a[2];
    float c[8][4] = {};
    for (int it = 0; it < ITERS; it++)
        for (int j = 0; j < 8; j++) mma_bf16(c[j], a, b);
    float s = 0.0f;
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 4; i++) s += c[j][i];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

__global__ void __launch_bounds__(128) wgmma_peak_kernel(float* out) {
    __shared__ __align__(128) bf16 Bs[64 * 64];
    for (int i = threadIdx.x; i < 64 * 64; i += blockDim.x) Bs[i] = __float2bfloat16(1.0f / (1 + i % 7));
    fence_proxy_async();
    __syncthreads();
    uint32_t a[4];
    for (int i = 0; i < 4; i++) a[i] = 0x3c003c00u;
    float c[4][8][4] = {};
    uint64_t desc = wgmma_desc(Bs, WG_D_LBO, WG_D_SBO);
    for (int it = 0; it < ITERS / 4; it++) {
        wgmma_fence();
        for (int j = 0; j < 4; j++)
            for (int kk = 0; kk < 4; kk++) wgmma_m64n64k16<0>(c[j], a, desc, 1);
        wgmma_commit();
        wgmma_wait<0>();
        for (int j = 0; j < 4; j++) fence_frags<8>(c[j]);
    }
    float s = 0.0f;
    for (int j = 0; j < 4; j++)
        for (int n = 0; n < 8; n++)
            for (int i = 0; i < 4; i++) s += c[j][n][i];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

template <typename K>
static float time_ms(K launch) {
    launch();
    cudaCheck(cudaDeviceSynchronize());
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    cudaCheck(cudaEventRecord(e0));
    for (int i = 0; i < 5; i++) launch();
    cudaCheck(cudaEventRecord(e1));
    cudaCheck(cudaEventSynchronize(e1));
    float ms;
    cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
    return ms / 5;
}

int main() {
    int n_sm = 0, clock_khz = 0;
    cudaCheck(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    cudaCheck(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
    float* out;
    cudaCheck(cudaMalloc(&out, (size_t)n_sm * 8 * 128 * sizeof(float)));
    printf("| instruction | blocks of 128 threads per SM | TFLOP/s |\n|---|---|---|\n");
    for (int per_sm = 1; per_sm <= 4; per_sm++) {
        int blocks = n_sm * per_sm;
        float ms = time_ms([&]() {
            mma_sync_peak_kernel<<<blocks, 128>>>(out);
            cudaCheckLaunch();
        });
        double flop = (double)blocks * 4 * ITERS * 8 * 2.0 * 16 * 8 * 16;
        printf("| mma.sync m16n8k16 | %d | %.0f |\n", per_sm, flop / ms / 1e9);
    }
    for (int per_sm = 1; per_sm <= 2; per_sm++) {
        int blocks = n_sm * per_sm;
        float ms = time_ms([&]() {
            wgmma_peak_kernel<<<blocks, 128>>>(out);
            cudaCheckLaunch();
        });
        double flop = (double)blocks * ITERS * 4 * 2.0 * 64 * 64 * 16;
        printf("| wgmma m64n64k16 | %d | %.0f |\n", per_sm, flop / ms / 1e9);
    }
    printf("(%d SMs, max clock %.2f GHz)\n", n_sm, clock_khz / 1e6);
    cudaCheck(cudaFree(out));
    return 0;
}
