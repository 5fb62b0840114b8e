// Checking wrappers for CUDA and cuBLAS calls, the bf16 type, and small host helpers.
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

// The number of CUDA devices, 0 when there is no usable GPU (no driver, no device): callers skip GPU work.
static int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}
