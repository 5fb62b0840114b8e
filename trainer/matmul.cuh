// defines: matmul_init, gemm, matmul, matmul_residual, linear_forward, linear_backward_input/_weight
// Row-major GEMMs on cuBLASLt: bf16 operands, fp32 accumulation, bf16 or fp32 output. Every model GEMM and
// Muon's Newton-Schulz go through gemm() below.
// cuBLAS is column-major; a row-major X (r x c) is the column-major X^T, so D = op(A) op(B) is computed as
// D^T = op(B)^T op(A)^T with the operands swapped. cuBLASLt can read C from one buffer and write D to another
// (the residual adds write the next residual buffer without a copy).
//
// Algorithm choice. cuBLASLt's heuristic ranks algorithms by a model, and for some of the model's shapes its
// first pick is far from the fastest (dev/cuda/residual_study: 0.144 ms against 0.082 for the attention
// projection's residual GEMM, 32768 x 768 x 768, on the H200). So each shape of at least GEMM_TUNE_MIN_MACS
// multiply-adds is tuned at its first call, on random inputs of its own size: every one of the heuristic's
// first GEMM_CANDIDATES runs once, only those whose output has the first pick's bits exactly may be chosen
// (no split-K or other reordered sums: a run computes the same bits whichever wins, so results never depend
// on timing noise and resumed runs repeat bit for bit), and the fastest of those (median of 5) is kept.
// Smaller shapes (sampling, small evaluations) take the first pick. If the tuning buffers do not fit
// in GPU memory, the shape takes the first pick too.
#pragma once

#include <algorithm>
#include <map>
#include <tuple>
#include <cublasLt.h>
#include "cuda_common.h"

static cublasLtHandle_t cublaslt_handle;
static void* cublaslt_workspace;
static const size_t CUBLASLT_WORKSPACE_BYTES = 32 << 20;
#define GEMM_CANDIDATES 16
#define GEMM_TUNE_MIN_MACS (1LL << 32)

static unsigned long long* gemm_hash_sum;   // device scratch of the tuning's output hash

static void matmul_init() {
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cudaCheck(cudaMalloc(&cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES));
    cudaCheck(cudaMalloc(&gemm_hash_sum, sizeof(unsigned long long)));
}

// What a GEMM call is, as far as the algorithm is concerned. beta_zero: C is not read.
struct GemmShape {
    int m, n, k;
    bool trans_a, trans_b, c_fp32, beta_zero;
    int batch;
    long long stride_a, stride_b, stride_c;
    bool operator<(const GemmShape& o) const {   // the plans' map key
        return std::tie(m, n, k, trans_a, trans_b, c_fp32, beta_zero, batch, stride_a, stride_b, stride_c) <
               std::tie(o.m, o.n, o.k, o.trans_a, o.trans_b, o.c_fp32, o.beta_zero, o.batch, o.stride_a, o.stride_b,
                        o.stride_c);
    }
};

struct GemmPlan {
    GemmShape s;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;   // cuBLASLt's A (our B), B (our A), C and D
    cublasLtMatmulAlgo_t algo;
    int candidate;   // which of the heuristic's list algo is (0: its first pick)
    bool tuned;
};
// every shape met so far (sampling meets a new T at every token: a map keeps the lookup short)
static std::map<GemmShape, GemmPlan> gemm_plans;

static cublasLtMatrixLayout_t gemm_layout(cudaDataType_t type, int rows, int cols, int batch, long long stride) {
    cublasLtMatrixLayout_t l;
    cublasCheck(cublasLtMatrixLayoutCreate(&l, type, rows, cols, rows));
    if (batch > 1) {
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
        cublasCheck(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                     sizeof(stride)));
    }
    return l;
}

static void gemm_run(const GemmPlan& p, const cublasLtMatmulAlgo_t& algo, void* D, const void* C, const bf16* A,
                     const bf16* B, float alpha, float beta, cudaStream_t stream) {
    cublasCheck(cublasLtMatmul(cublaslt_handle, p.op, &alpha, B, p.la, A, p.lb, &beta, C, p.lc, D, p.lc, &algo,
                               cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES, stream));
}

// an order-independent 64-bit hash of n 32-bit words (a sum of mixed (index, word) pairs): equal hashes mean
// equal bits, short of a 2^-64 accident
__global__ void hash_words_kernel(const uint32_t* w, size_t n, unsigned long long* out) {
    unsigned long long h = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned long long z = ((unsigned long long)i << 32 | w[i]) + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        h += z ^ (z >> 31);
    }
    for (int o = 16; o > 0; o >>= 1) h += __shfl_xor_sync(0xffffffff, h, o);
    if (threadIdx.x % 32 == 0) atomicAdd(out, h);
}

static unsigned long long hash_words(const void* p, size_t bytes) {
    cudaCheck(cudaMemset(gemm_hash_sum, 0, sizeof(unsigned long long)));
    hash_words_kernel<<<1024, 256>>>((const uint32_t*)p, bytes / 4, gemm_hash_sum);
    cudaCheckLaunch();
    unsigned long long h;
    cudaCheck(cudaMemcpy(&h, gemm_hash_sum, sizeof(h), cudaMemcpyDeviceToHost));
    return h;
}

// Runs every candidate on random operands of the plan's size; returns the index of the fastest whose output
// hash equals candidate 0's, or 0 when the buffers do not fit.
static int gemm_tune(const GemmPlan& p, const cublasLtMatmulHeuristicResult_t* heur, int found) {
    const GemmShape& s = p.s;
    size_t na = (size_t)s.m * s.k + (size_t)(s.batch - 1) * s.stride_a;
    size_t nb = (size_t)s.k * s.n + (size_t)(s.batch - 1) * s.stride_b;
    size_t nc = (size_t)s.m * s.n + (size_t)(s.batch - 1) * s.stride_c, c_bytes = nc * (s.c_fp32 ? 4 : 2);
    bf16 *A = NULL, *B = NULL;
    void *C = NULL, *D = NULL;
    bool ok = cudaMalloc(&A, na * sizeof(bf16)) == cudaSuccess && cudaMalloc(&B, nb * sizeof(bf16)) == cudaSuccess &&
              cudaMalloc(&D, c_bytes) == cudaSuccess && (s.beta_zero || cudaMalloc(&C, c_bytes) == cudaSuccess);
    int best = 0;
    if (ok) {
        fill_hash_kernel<<<(unsigned)((na + 255) / 256), 256>>>(A, NULL, na, 11, 1.0f);
        fill_hash_kernel<<<(unsigned)((nb + 255) / 256), 256>>>(B, NULL, nb, 12, 0.05f);
        if (C && s.c_fp32) fill_hash_kernel<<<(unsigned)((nc + 255) / 256), 256>>>(NULL, (float*)C, nc, 13, 4.0f);
        if (C && !s.c_fp32) fill_hash_kernel<<<(unsigned)((nc + 255) / 256), 256>>>((bf16*)C, NULL, nc, 13, 4.0f);
        cudaCheckLaunch();
        const float alpha = 1.0f, beta = s.beta_zero ? 0.0f : 1.0f;
        unsigned long long h0 = 0;
        float best_ms = 1e30f;
        cudaEvent_t e0, e1;
        cudaCheck(cudaEventCreate(&e0));
        cudaCheck(cudaEventCreate(&e1));
        for (int k = 0; k < found; k++) {
            cudaCheck(cudaMemset(D, 0xFF, c_bytes));
            gemm_run(p, heur[k].algo, D, C ? C : D, A, B, alpha, beta, 0);
            unsigned long long h = hash_words(D, c_bytes);
            if (k == 0) h0 = h;
            if (h != h0) continue;   // not candidate 0's bits: not eligible
            float ms[5];
            for (int r = 0; r < 5; r++) {
                cudaCheck(cudaEventRecord(e0));
                gemm_run(p, heur[k].algo, D, C ? C : D, A, B, alpha, beta, 0);
                cudaCheck(cudaEventRecord(e1));
                cudaCheck(cudaEventSynchronize(e1));
                cudaCheck(cudaEventElapsedTime(&ms[r], e0, e1));
            }
            std::sort(ms, ms + 5);
            if (ms[2] < best_ms) { best_ms = ms[2]; best = k; }
        }
        cudaCheck(cudaEventDestroy(e0));
        cudaCheck(cudaEventDestroy(e1));
    }
    cudaGetLastError();   // a failed cudaMalloc above leaves an error to clear; anything else was checked
    void* ptrs[] = {A, B, C, D};
    for (void* q : ptrs)
        if (q) cudaCheck(cudaFree(q));
    return best;
}

// the descriptors of a shape
static GemmPlan gemm_describe(const GemmShape& s) {
    GemmPlan p;
    p.s = s;
    cublasOperation_t ta = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    // column-major views: our B is n x k (k x n stored transposed), our A is k x m (m x k when trans_a), D n x m
    p.la = s.trans_b ? gemm_layout(CUDA_R_16BF, s.k, s.n, s.batch, s.stride_b)
                     : gemm_layout(CUDA_R_16BF, s.n, s.k, s.batch, s.stride_b);
    p.lb = s.trans_a ? gemm_layout(CUDA_R_16BF, s.m, s.k, s.batch, s.stride_a)
                     : gemm_layout(CUDA_R_16BF, s.k, s.m, s.batch, s.stride_a);
    p.lc = gemm_layout(s.c_fp32 ? CUDA_R_32F : CUDA_R_16BF, s.n, s.m, s.batch, s.stride_c);
    return p;
}

// cuBLASLt's heuristic's first `max` algorithms for a plan, best first by its model; returns how many
static int gemm_candidates(const GemmPlan& p, cublasLtMatmulHeuristicResult_t* heur, int max) {
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &CUBLASLT_WORKSPACE_BYTES, sizeof(CUBLASLT_WORKSPACE_BYTES)));
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, p.op, p.la, p.lb, p.lc, p.lc, pref, max, heur, &found));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (found == 0) {
        fprintf(stderr, "gemm: cuBLASLt has no algorithm for %d x %d x %d (batch %d)\n", p.s.m, p.s.n, p.s.k, p.s.batch);
        exit(EXIT_FAILURE);
    }
    return found;
}

// the plan of a shape: made (and tuned, if large) at the shape's first call
static const GemmPlan& gemm_plan(const GemmShape& s) {
    auto it = gemm_plans.find(s);
    if (it != gemm_plans.end()) return it->second;
    GemmPlan p = gemm_describe(s);
    cublasLtMatmulHeuristicResult_t heur[GEMM_CANDIDATES];
    int found = gemm_candidates(p, heur, GEMM_CANDIDATES);
    p.tuned = (long long)s.m * s.n * s.k * s.batch >= GEMM_TUNE_MIN_MACS;
    p.candidate = p.tuned ? gemm_tune(p, heur, found) : 0;
    p.algo = heur[p.candidate].algo;
    return gemm_plans[s] = p;
}

// D (m x n) = alpha * op(A) op(B) + beta * C, row-major; C may be D itself (or anything when beta = 0).
// op(A) is m x k: A is stored m x k, or k x m when trans_a. op(B) is k x n: B is stored k x n, or n x k when
// trans_b. C and D are bf16 (c_fp32 = false) or fp32. batch > 1 runs `batch` independent products, each
// operand advancing by its stride (elements).
static void gemm(void* D, const void* C, const bf16* A, const bf16* B, int m, int n, int k, bool trans_a,
                 bool trans_b, float alpha, float beta, bool c_fp32, int batch, long long stride_a,
                 long long stride_b, long long stride_c, cudaStream_t stream) {
    GemmShape s = {m, n, k, trans_a, trans_b, c_fp32, beta == 0.0f, batch, stride_a, stride_b, stride_c};
    const GemmPlan& p = gemm_plan(s);
    gemm_run(p, p.algo, D, beta == 0.0f ? D : C, A, B, alpha, beta, stream);
}

// C = alpha * op(A) op(B) + beta * C, in place (gemm with C = D)
static void matmul(void* C, const bf16* A, const bf16* B, int m, int n, int k, bool trans_a, bool trans_b,
                   float alpha, float beta, bool c_fp32, int batch = 1, long long stride_a = 0,
                   long long stride_b = 0, long long stride_c = 0, cudaStream_t stream = 0) {
    gemm(C, C, A, B, m, n, k, trans_a, trans_b, alpha, beta, c_fp32, batch, stride_a, stride_b, stride_c, stream);
}

// y = x_res + a W^T in fp32, with a (N x in) and W (out x in) bf16, x_res and y (N x out) fp32 and distinct:
// the residual add of a block, written to the next residual buffer without copying x_res there first.
static void matmul_residual(float* y, const float* x_res, const bf16* a, const bf16* W, int N, int in, int out,
                            cudaStream_t stream) {
    gemm(y, x_res, a, W, N, out, in, false, true, 1.0f, 1.0f, true, 1, 0, 0, 0, stream);
}

// The three products of a linear layer y = x W^T, with x (N x in), W (out x in), y (N x out):
//   forward   y   = x W^T              (y bf16; the residual adds are matmul_residual above)
//   backward  dx  = dy W               (fp32)
//             dW += dy^T x             (fp32 gradient, accumulated over micro-steps)
static void linear_forward(bf16* y, const bf16* x, const bf16* W, int N, int in, int out, cudaStream_t stream) {
    matmul(y, x, W, N, out, in, false, true, 1.0f, 0.0f, false, 1, 0, 0, 0, stream);
}
static void linear_backward_input(void* dx, const bf16* dy, const bf16* W, int N, int in, int out, bool dx_fp32,
                                  cudaStream_t stream) {
    matmul(dx, dy, W, N, in, out, false, false, 1.0f, 0.0f, dx_fp32, 1, 0, 0, 0, stream);
}
static void linear_backward_weight(float* dW, const bf16* dy, const bf16* x, int N, int in, int out,
                                   cudaStream_t stream) {
    matmul(dW, dy, x, out, in, N, true, false, 1.0f, 1.0f, true, 1, 0, 0, 0, stream);
}
