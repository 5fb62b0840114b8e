// Row-major GEMMs on cuBLAS: bf16 operands, fp32 accumulation, bf16 or fp32 output.
// cuBLAS is column-major; a row-major X (r x c) is the column-major X^T, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T with the operands swapped. Every model GEMM and Muon's Newton-Schulz go through here;
// the residual adds go through cuBLASLt, which can read C from one buffer and write D to another.
#pragma once

#include <cublasLt.h>
#include "cuda_common.h"

static cublasHandle_t cublas_handle;
static cublasLtHandle_t cublaslt_handle;
static void* cublaslt_workspace;
static const size_t CUBLASLT_WORKSPACE_BYTES = 32 << 20;

static void matmul_init() {
    cublasCheck(cublasCreate(&cublas_handle));
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cudaCheck(cudaMalloc(&cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES));
}

// C (m x n) = alpha * op(A) op(B) + beta * C, row-major. op(A) is m x k: A is stored m x k, or k x m when
// trans_a. op(B) is k x n: B is stored k x n, or n x k when trans_b. C is bf16 (c_fp32 = false) or fp32.
// batch > 1 runs `batch` independent products, each operand advancing by its stride (elements).
static void matmul(void* C, const bf16* A, const bf16* B, int m, int n, int k, bool trans_a, bool trans_b,
                   float alpha, float beta, bool c_fp32, int batch = 1, long long stride_a = 0,
                   long long stride_b = 0, long long stride_c = 0, cudaStream_t stream = 0) {
    cublasCheck(cublasSetStream(cublas_handle, stream));
    int lda = trans_a ? m : k;
    int ldb = trans_b ? k : n;
    cudaDataType_t ct = c_fp32 ? CUDA_R_32F : CUDA_R_16BF;
    cublasOperation_t opA = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1) {
        cublasCheck(cublasGemmEx(cublas_handle, opB, opA, n, m, k, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda,
                                 &beta, C, ct, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        cublasCheck(cublasGemmStridedBatchedEx(cublas_handle, opB, opA, n, m, k, &alpha, B, CUDA_R_16BF, ldb,
                                               stride_b, A, CUDA_R_16BF, lda, stride_a, &beta, C, ct, n, stride_c,
                                               batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
}

// y = x_res + a W^T in fp32, with a (N x in) and W (out x in) bf16, x_res and y (N x out) fp32 and distinct:
// the residual add of a block, written to the next residual buffer without copying x_res there first.
static void matmul_residual(float* y, const float* x_res, const bf16* a, const bf16* W, int N, int in, int out,
                            cudaStream_t stream) {
    // column-major: y^T (out x N) = W (stored in x out, op T) a^T (stored in x N) + x_res^T
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasCheck(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, in, out, in));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, in, N, in));
    cublasCheck(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, out, N, out));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &CUBLASLT_WORKSPACE_BYTES, sizeof(CUBLASLT_WORKSPACE_BYTES)));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, op, la, lb, lc, lc, pref, 1, &heur, &found));
    if (found == 0) {
        fprintf(stderr, "matmul_residual: cuBLASLt has no algorithm for %d x %d x %d\n", N, out, in);
        exit(EXIT_FAILURE);
    }
    const float alpha = 1.0f, beta = 1.0f;
    cublasCheck(cublasLtMatmul(cublaslt_handle, op, &alpha, W, la, a, lb, &beta, x_res, lc, y, lc, &heur.algo,
                               cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES, stream));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(lc));
    cublasCheck(cublasLtMatmulDescDestroy(op));
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
