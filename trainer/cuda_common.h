// defines: cudaCheck, cublasCheck, mallocCheck, bf16, ceil_div, warp_sum, block_sum, cuda_device_count
// Checking wrappers for CUDA and cuBLAS calls, the bf16 type, small host helpers and two device helpers.
// Every call that can fail goes through one of these: a failure prints the file, the line, the call and,
// where it helps, a hint, then exits.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>

typedef __nv_bfloat16 bf16;

static void cuda_check_(cudaError_t err, const char* call, const char* file, int line) {
    if (err == cudaSuccess) return;
    fprintf(stderr, "CUDA error at %s:%d: %s\n  in %s\n", file, line, cudaGetErrorString(err), call);
    if (err == cudaErrorMemoryAllocation) fprintf(stderr, "  hint: out of GPU memory, try a smaller --batch\n");
    exit(EXIT_FAILURE);
}
#define cudaCheck(call) cuda_check_((call), #call, __FILE__, __LINE__)

// After each kernel launch: catches bad launch configurations at once (asynchronous faults surface at
// the next synchronizing call, which is checked too).
#define cudaCheckLaunch() cuda_check_(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

static void cublas_check_(cublasStatus_t st, const char* call, const char* file, int line) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "cuBLAS error %d (%s) at %s:%d\n  in %s\n", (int)st, cublasGetStatusString(st), file, line, call);
    exit(EXIT_FAILURE);
}
#define cublasCheck(call) cublas_check_((call), #call, __FILE__, __LINE__)

static void* malloc_check_(size_t n, const char* file, int line) {
    void* p = malloc(n);
    if (p == NULL && n > 0) {
        fprintf(stderr, "out of host memory at %s:%d: %zu bytes\n", file, line, n);
        exit(EXIT_FAILURE);
    }
    return p;
}
#define mallocCheck(n) malloc_check_((n), __FILE__, __LINE__)

__host__ __device__ static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// 2^x on the special-function unit (one MUFU.EX2; 2^-inf = 0). exp2f without fast-math adds a range
// check and a multiply around the same instruction.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// the two bf16 of a 32-bit word as fp32: low half, high half
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

// the sum of v over the block, returned to every thread: warp sums, then every thread adds them in warp order
// (deterministic). part: 32 floats of shared memory, not reused (one call per array).
__device__ __forceinline__ float block_sum(float v, float* part) {
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < (int)blockDim.x / 32; w++) s += part[w];
    return s;
}

// The number of CUDA devices, 0 when there is no usable GPU (no driver, no device): callers skip GPU work.
static int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}

// hash-random values in [-scale, scale) (a cheap hash: the values only need to be non-trivial), for tests,
// benchmarks and tuning: bf16 into xb, or fp32 (rounded through bf16) into xf
__global__ void fill_hash_kernel(bf16* xb, float* xf, size_t n, unsigned seed, float scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned h = (unsigned)(i * 2654435761u) ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995; h ^= h >> 15;
    bf16 v = __float2bfloat16(scale * ((h & 0xFFFF) / 32768.0f - 1.0f));
    if (xb) xb[i] = v; else xf[i] = __bfloat162float(v);
}
