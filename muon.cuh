// defines: muon_step, MuonScratch, muon_scratch_alloc, muon_scratch_free, adamw_step, global_sumsq
// The optimizers of spec section 3: Muon for the matrices inside the blocks, AdamW for the rest (or for
// everything with --optimizer adamw), plus the global gradient norm used for clipping.
//
// Muon, per matrix W (rows x cols) with gradient G:
//   buf = beta buf + (1 - beta) G;  u = (1 - beta) G + beta buf              (Nesterov, fp32)
//   X = u / (||u||_F + 1e-7); if rows > cols work on X^T
//   5 times: A = X X^T;  X = a X + (b A + c A A) X     (a, b, c) = (3.4445, -4.7750, 2.0315)
//   W *= 1 - lr wd;  W -= lr sqrt(max(1, rows/cols)) X
// A stacked tensor of `count` equal matrices (W_q, W_k, W_v, W_r blocks of qkvr_w, one W_o per layer ...)
// runs as one batch: the Newton-Schulz products are strided-batched cuBLAS GEMMs, bf16 in, fp32 accumulate.
#pragma once

#include <cmath>
#include "trainer/cuda_common.h"
#include "trainer/matmul.cuh"

#define NS_A 3.4445f
#define NS_B (-4.7750f)
#define NS_C 2.0315f
#define NS_STEPS 5

// ---------------------------------------------------------------------------------------------------------
// sums of squares, deterministic: one block per segment, fixed-order tree in shared memory

// out[b] = sum of x[i]^2 over i in [b * seg_len, min(n, (b + 1) * seg_len)).
__global__ void segment_sumsq_kernel(float* out, const float* x, size_t seg_len, size_t n) {
    __shared__ float red[1024];
    size_t begin = (size_t)blockIdx.x * seg_len, end = min(n, begin + seg_len);
    float acc = 0.0f;
    for (size_t i = begin + threadIdx.x; i < end; i += blockDim.x) acc += x[i] * x[i];
    red[threadIdx.x] = acc;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] += red[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = red[0];
}

#define SUMSQ_PARTS 1024

// ||g||^2 of a whole buffer: SUMSQ_PARTS block sums on the GPU, added in order on the host in double.
// scratch: SUMSQ_PARTS floats.
static double global_sumsq(const float* g, size_t n, float* scratch, cudaStream_t stream) {
    size_t seg = (n + SUMSQ_PARTS - 1) / SUMSQ_PARTS;
    int parts = (int)((n + seg - 1) / seg);
    segment_sumsq_kernel<<<parts, 1024, 0, stream>>>(scratch, g, seg, n);
    cudaCheckLaunch();
    float host[SUMSQ_PARTS];
    cudaCheck(cudaMemcpyAsync(host, scratch, parts * sizeof(float), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    double sum = 0.0;
    for (int i = 0; i < parts; i++) sum += host[i];
    return sum;
}

// ---------------------------------------------------------------------------------------------------------
// Muon

__global__ void muon_momentum_kernel(float* u, float* buf, const float* g, float grad_scale, float beta, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * grad_scale;
    float b = beta * buf[i] + (1.0f - beta) * gi;
    buf[i] = b;
    u[i] = (1.0f - beta) * gi + beta * b;
}

// grid (ceil(mat_len / block), count): blockIdx.y is the matrix
__global__ void muon_normalize_kernel(bf16* X, const float* u, const float* sumsq, size_t mat_len) {
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= mat_len) return;
    size_t i = blockIdx.y * mat_len + j;
    X[i] = __float2bfloat16(u[i] / (sqrtf(sumsq[blockIdx.y]) + 1e-7f));
}

__global__ void muon_update_kernel(float* w, const bf16* X, float lr_scaled, float decay, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    w[i] = w[i] * decay - lr_scaled * __bfloat162float(X[i]);
}

// Working memory of Muon, sized for the largest stacked tensor (elements of all its matrices).
struct MuonScratch {
    float* u;        // fp32, max_elems
    float* sumsq;    // fp32, max_count
    bf16* X;         // bf16, max_elems
    bf16* Xn;        // bf16, max_elems
    bf16* A;         // bf16, max_count * k * k, k = min(rows, cols)
    bf16* Bm;        // bf16, same
};

static void muon_scratch_alloc(MuonScratch* s, size_t max_elems, int max_count, size_t max_gram) {
    cudaCheck(cudaMalloc(&s->u, max_elems * sizeof(float)));
    cudaCheck(cudaMalloc(&s->sumsq, max_count * sizeof(float)));
    cudaCheck(cudaMalloc(&s->X, max_elems * sizeof(bf16)));
    cudaCheck(cudaMalloc(&s->Xn, max_elems * sizeof(bf16)));
    cudaCheck(cudaMalloc(&s->A, max_gram * sizeof(bf16)));
    cudaCheck(cudaMalloc(&s->Bm, max_gram * sizeof(bf16)));
}

static void muon_scratch_free(MuonScratch* s) {
    cudaCheck(cudaFree(s->u)); cudaCheck(cudaFree(s->sumsq)); cudaCheck(cudaFree(s->X));
    cudaCheck(cudaFree(s->Xn)); cudaCheck(cudaFree(s->A)); cudaCheck(cudaFree(s->Bm));
}

// X (count matrices of rows x cols, bf16) <- its Newton-Schulz orthogonalization, in place.
static void newton_schulz(MuonScratch* s, int count, int rows, int cols, cudaStream_t stream) {
    bool tall = rows > cols;
    int k = tall ? cols : rows;  // the Gram matrix is k x k
    long long sx = (long long)rows * cols, sg = (long long)k * k;
    bf16 *X = s->X, *Xn = s->Xn;
    for (int it = 0; it < NS_STEPS; it++) {
        if (tall) matmul(s->A, X, X, k, k, rows, true, false, 1.0f, 0.0f, false, count, sx, sx, sg, stream);   // X^T X
        else matmul(s->A, X, X, k, k, cols, false, true, 1.0f, 0.0f, false, count, sx, sx, sg, stream);        // X X^T
        // Bm = c A A + b A
        cudaCheck(cudaMemcpyAsync(s->Bm, s->A, sg * count * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
        matmul(s->Bm, s->A, s->A, k, k, k, false, false, NS_C, NS_B, false, count, sg, sg, sg, stream);
        // Xn = a X + Bm X   (tall: a X + X Bm, Bm symmetric)
        cudaCheck(cudaMemcpyAsync(Xn, X, sx * count * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
        if (tall) matmul(Xn, X, s->Bm, rows, cols, cols, false, false, 1.0f, NS_A, false, count, sx, sg, sx, stream);
        else matmul(Xn, s->Bm, X, rows, cols, rows, false, false, 1.0f, NS_A, false, count, sg, sx, sx, stream);
        bf16* t = X; X = Xn; Xn = t;
    }
    if (X != s->X) cudaCheck(cudaMemcpyAsync(s->X, X, sx * count * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
}

// One Muon step on a stacked tensor of `count` matrices of rows x cols.
static void muon_step(MuonScratch* s, float* w, float* buf, const float* g, int count, int rows, int cols, float lr,
                      float beta, float wd, float grad_scale, cudaStream_t stream) {
    size_t n = (size_t)count * rows * cols, mat = (size_t)rows * cols;
    unsigned grid = (unsigned)((n + 255) / 256);
    muon_momentum_kernel<<<grid, 256, 0, stream>>>(s->u, buf, g, grad_scale, beta, n);
    cudaCheckLaunch();
    segment_sumsq_kernel<<<count, 1024, 0, stream>>>(s->sumsq, s->u, mat, n);
    cudaCheckLaunch();
    muon_normalize_kernel<<<dim3((unsigned)((mat + 255) / 256), count), 256, 0, stream>>>(s->X, s->u, s->sumsq, mat);
    cudaCheckLaunch();
    newton_schulz(s, count, rows, cols, stream);
    float scale = sqrtf(fmaxf(1.0f, (float)rows / cols));
    muon_update_kernel<<<grid, 256, 0, stream>>>(w, s->X, lr * scale, 1.0f - lr * wd, n);
    cudaCheckLaunch();
}

// ---------------------------------------------------------------------------------------------------------
// AdamW: m, v fp32; bias-corrected; decoupled weight decay W *= 1 - lr wd before the step.

__global__ void adamw_kernel(float* w, float* m, float* v, const float* g, size_t n, float lr, float beta1,
                             float beta2, float eps, float wd, float bc1, float bc2, float grad_scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float wi = w[i] * (1.0f - lr * wd);
    w[i] = wi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
}

// t: the step number, from 1.
static void adamw_step(float* w, float* m, float* v, const float* g, size_t n, float lr, float beta1, float beta2,
                       float eps, float wd, int t, float grad_scale, cudaStream_t stream) {
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    adamw_kernel<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(w, m, v, g, n, lr, beta1, beta2, eps, wd, bc1, bc2,
                                                                  grad_scale);
    cudaCheckLaunch();
}
