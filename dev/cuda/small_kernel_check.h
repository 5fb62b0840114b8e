// Checks of the trainer's element-wise kernels against a float64 CPU reference on fresh random inputs, for
// test_parallax: the residual rmsnorm (forward, backward with its bf16 copy), the q/k/r norm + RoPE (forward,
// backward, gain gradient), the fused cross-entropy and the embedding backward.
// Inputs are rounded to bf16 first, so the reference sees exactly what the kernel reads; outputs are
// poisoned with NaN before the run. Odd sizes on purpose (T = 37, N not a multiple of a block).
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>
#include "attention_check.h"              // defines: rel_error
#include "../../trainer/rmsnorm.cuh"
#include "../../trainer/qkr_norm_rope.cuh"
#include "../../trainer/cross_entropy.cuh"
#include "../../trainer/argmax.cuh"
#include "../../trainer/embedding.cuh"

struct KernelCheck { std::string name; double err, max_rel; };

static const double SMALL_KERNEL_MAX_REL = 1e-2;   // bf16 outputs: about 2e-3 expected

template <typename T>
static T* device_copy(const std::vector<T>& h) {
    T* d;
    cudaCheck(cudaMalloc(&d, h.size() * sizeof(T)));
    cudaCheck(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <typename T>
static std::vector<T> host_copy(const T* d, size_t n) {
    std::vector<T> h(n);
    cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

static std::vector<bf16> random_bf16(size_t n, double scale, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<bf16> x(n);
    for (bf16& e : x) e = __float2bfloat16((float)(normal(rng) * scale));
    return x;
}

// rmsnorm_forward and rmsnorm_backward on N rows of C (fp32 residual in, bf16 h out; dx accumulated onto a
// random starting value, then copied to bf16)
static void rmsnorm_check(std::vector<KernelCheck>* out, int N, int C, std::mt19937& rng) {
    std::string name = "rmsnorm N" + std::to_string(N) + "C" + std::to_string(C);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x((size_t)N * C), dx0(x.size());
    for (float& e : x) e = 2.0f * normal(rng);
    std::vector<bf16> dh_b = random_bf16(x.size(), 1.0, rng);   // dh arrives in bf16 (a GEMM's output)
    std::vector<float> dh(x.size());
    for (size_t i = 0; i < dh.size(); i++) dh[i] = __bfloat162float(dh_b[i]);
    for (float& e : dx0) e = normal(rng);
    std::vector<double> ref_h, ref_dx;
    for (int r = 0; r < N; r++) {
        const float* xr = &x[(size_t)r * C];
        const float* g = &dh[(size_t)r * C];
        double ss = 0.0, dot = 0.0;
        for (int i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        double s = 1.0 / sqrt(ss / C + 1e-6);
        for (int i = 0; i < C; i++) dot += g[i] * xr[i] * s;
        for (int i = 0; i < C; i++) {
            ref_h.push_back(xr[i] * s);
            ref_dx.push_back(dx0[(size_t)r * C + i] + s * (g[i] - xr[i] * s * dot / C));
        }
    }
    float *d_x = device_copy(x), *d_dx = device_copy(dx0), *d_rstd;
    bf16 *d_dh = device_copy(dh_b), *d_h, *d_dxb;
    cudaCheck(cudaMalloc(&d_rstd, N * sizeof(float)));
    cudaCheck(cudaMalloc(&d_h, x.size() * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_dxb, x.size() * sizeof(bf16)));
    cudaCheck(cudaMemset(d_rstd, 0xFF, N * sizeof(float)));
    cudaCheck(cudaMemset(d_h, 0xFF, x.size() * sizeof(bf16)));
    cudaCheck(cudaMemset(d_dxb, 0xFF, x.size() * sizeof(bf16)));
    rmsnorm_forward(d_h, d_rstd, d_x, N, C, 0);
    rmsnorm_backward(d_dx, d_dxb, d_dh, d_x, d_rstd, N, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<bf16> h_h = host_copy(d_h, x.size()), h_dxb = host_copy(d_dxb, x.size());
    std::vector<float> h_dx = host_copy(d_dx, x.size());
    std::vector<double> got_h(x.size()), got_dx(h_dx.begin(), h_dx.end()), got_dxb(x.size());
    for (size_t i = 0; i < x.size(); i++) {
        got_h[i] = __bfloat162float(h_h[i]);
        got_dxb[i] = __bfloat162float(h_dxb[i]);
    }
    out->push_back({name + " forward", rel_error(got_h, ref_h), SMALL_KERNEL_MAX_REL});
    out->push_back({name + " backward dx (fp32)", rel_error(got_dx, ref_dx), 1e-5});
    out->push_back({name + " backward dx (bf16 copy)", rel_error(got_dxb, ref_dx), SMALL_KERNEL_MAX_REL});
    void* ptrs[] = {d_x, d_dh, d_dx, d_rstd, d_h, d_dxb};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
}

// One (B, T, H, D) case of qkr_norm_rope_forward / _backward, Parallax (n = 4) or softmax (n = 3).
static void qkr_norm_rope_check(std::vector<KernelCheck>* out, int B, int T, int H, int D, int n, std::mt19937& rng) {
    const int N = B * T, C = H * D, half = D / 2, n_norm = n == 4 ? 3 : 2, width = n * C;
    const size_t nel = (size_t)N * width;
    std::string name = std::string("qkr norm rope ") + (n == 4 ? "parallax" : "softmax") + ".B" + std::to_string(B) +
                       "T" + std::to_string(T) + "H" + std::to_string(H) + "D" + std::to_string(D);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<bf16> raw = random_bf16(nel, 1.5, rng), dout = random_bf16(nel, 1.0, rng);
    std::vector<float> gains(3 * D), rope((size_t)T * half * 2);
    for (float& g : gains) g = (float)(1.0 + 0.3 * normal(rng));
    for (int p = 0; p < T; p++)
        for (int i = 0; i < half; i++) {
            double ang = p * pow(10000.0, -2.0 * i / D);
            rope[((size_t)p * half + i) * 2] = (float)cos(ang);
            rope[((size_t)p * half + i) * 2 + 1] = (float)sin(ang);
        }

    // float64 reference
    std::vector<double> ref_out, ref_dx, got_out, got_dx, ref_dg(n_norm * D, 0.0);
    std::vector<double> v_before, v_after;   // the v columns of the gradient must pass through untouched
    for (int tok = 0; tok < N; tok++)
        for (int j = 0; j < n_norm; j++)
            for (int h = 0; h < H; h++) {
                size_t base = (size_t)tok * width + (j == 2 ? 3 : j) * C + h * D;
                const float* cs = &rope[(size_t)(tok % T) * half * 2];
                const float* g = &gains[j * D];
                double ss = 0.0;
                for (int i = 0; i < D; i++) ss += pow(__bfloat162float(raw[base + i]), 2);
                double s = 1.0 / sqrt(ss / D + 1e-6), dot = 0.0;
                std::vector<double> y(D), dy(D);
                for (int i = 0; i < half; i++) {
                    double c = cs[2 * i], sn = cs[2 * i + 1];
                    double y1 = __bfloat162float(raw[base + i]) * s, y2 = __bfloat162float(raw[base + half + i]) * s;
                    double n1 = y1 * g[i], n2 = y2 * g[half + i];
                    ref_out.push_back(n1 * c - n2 * sn);
                    ref_out.push_back(n1 * sn + n2 * c);
                    double d1 = __bfloat162float(dout[base + i]), d2 = __bfloat162float(dout[base + half + i]);
                    double dn1 = d1 * c + d2 * sn, dn2 = -d1 * sn + d2 * c;
                    ref_dg[j * D + i] += dn1 * y1;
                    ref_dg[j * D + half + i] += dn2 * y2;
                    y[i] = y1; y[half + i] = y2;
                    dy[i] = dn1 * g[i]; dy[half + i] = dn2 * g[half + i];
                }
                for (int i = 0; i < D; i++) dot += dy[i] * y[i];
                for (int i = 0; i < half; i++) {
                    ref_dx.push_back(s * (dy[i] - y[i] * dot / D));
                    ref_dx.push_back(s * (dy[half + i] - y[half + i] * dot / D));
                }
            }
    for (int tok = 0; tok < N; tok++)
        for (int i = 0; i < C; i++) v_before.push_back(__bfloat162float(dout[(size_t)tok * width + 2 * C + i]));

    bf16 *d_raw = device_copy(raw), *d_grad = device_copy(dout), *d_out;
    float *d_gains = device_copy(gains), *d_rope = device_copy(rope), *d_dg, *d_scratch;
    cudaCheck(cudaMalloc(&d_out, nel * sizeof(bf16)));
    cudaCheck(cudaMemset(d_out, 0xFF, nel * sizeof(bf16)));   // NaN
    cudaCheck(cudaMalloc(&d_dg, 3 * D * sizeof(float)));
    cudaCheck(cudaMemset(d_dg, 0, 3 * D * sizeof(float)));    // accumulated into
    cudaCheck(cudaMalloc(&d_scratch, qkr_backward_scratch_floats(D) * sizeof(float)));
    cudaCheck(cudaMemset(d_scratch, 0xFF, qkr_backward_scratch_floats(D) * sizeof(float)));
    QKRGains gp = {{d_gains, d_gains + D, n == 4 ? d_gains + 2 * D : NULL}};
    QKRGainGrads dgp = {{d_dg, d_dg + D, n == 4 ? d_dg + 2 * D : NULL}};
    qkr_norm_rope_forward(d_out, d_raw, gp, d_rope, N, T, H, D, n, 0);
    qkr_norm_rope_backward(d_grad, dgp, d_scratch, d_raw, gp, d_rope, N, T, H, D, n, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<bf16> h_out = host_copy(d_out, nel), h_dx = host_copy(d_grad, nel);
    std::vector<float> h_dg = host_copy(d_dg, 3 * D);
    for (int tok = 0; tok < N; tok++)   // same order as the reference: pairs (i, half + i)
        for (int j = 0; j < n_norm; j++)
            for (int h = 0; h < H; h++) {
                size_t base = (size_t)tok * width + (j == 2 ? 3 : j) * C + h * D;
                for (int i = 0; i < half; i++) {
                    got_out.push_back(__bfloat162float(h_out[base + i]));
                    got_out.push_back(__bfloat162float(h_out[base + half + i]));
                    got_dx.push_back(__bfloat162float(h_dx[base + i]));
                    got_dx.push_back(__bfloat162float(h_dx[base + half + i]));
                }
            }
    for (int tok = 0; tok < N; tok++)
        for (int i = 0; i < C; i++) v_after.push_back(__bfloat162float(h_dx[(size_t)tok * width + 2 * C + i]));
    std::vector<double> got_dg(h_dg.begin(), h_dg.begin() + n_norm * D);
    out->push_back({name + " forward", rel_error(got_out, ref_out), SMALL_KERNEL_MAX_REL});
    out->push_back({name + " backward dx", rel_error(got_dx, ref_dx), SMALL_KERNEL_MAX_REL});
    out->push_back({name + " backward gain grad", rel_error(got_dg, ref_dg), SMALL_KERNEL_MAX_REL});
    out->push_back({name + " backward leaves v as it was", rel_error(v_after, v_before), 0.0});
    void* ptrs[] = {d_raw, d_grad, d_out, d_gains, d_rope, d_dg, d_scratch};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
}

// One case of cross_entropy_forward_backward: N rows of Vp logits, the first V in the vocabulary.
static void cross_entropy_check(std::vector<KernelCheck>* out, int N, int V, int Vp, std::mt19937& rng) {
    std::string name = "cross-entropy N" + std::to_string(N) + "V" + std::to_string(V) + "Vp" + std::to_string(Vp) +
                       (N > 2 ? " (every 3rd row masked out)" : "");
    std::vector<bf16> logits = random_bf16((size_t)N * Vp, 3.0, rng);
    std::vector<int> targets(N);
    std::uniform_int_distribution<int> pick(0, V - 1);
    for (int& t : targets) t = pick(rng);
    targets[0] = V - 1;   // the last column inside the vocabulary, next to the padding
    for (int r = 2; r < N; r += 3) targets[r] = -1;   // outside the loss mask: loss 0, dlogits 0
    const double scale = 1.0 / N;
    std::vector<double> ref_loss(N), ref_grad((size_t)N * Vp, 0.0);
    for (int r = 0; r < N; r++) {
        if (targets[r] < 0) continue;   // its reference loss and gradient stay 0
        const bf16* x = &logits[(size_t)r * Vp];
        double m = -INFINITY, s = 0.0;
        for (int i = 0; i < V; i++) m = std::max(m, (double)__bfloat162float(x[i]));
        for (int i = 0; i < V; i++) s += exp(__bfloat162float(x[i]) - m);
        double lse = m + log(s);
        ref_loss[r] = lse - __bfloat162float(x[targets[r]]);
        for (int i = 0; i < V; i++)
            ref_grad[(size_t)r * Vp + i] = scale * (exp(__bfloat162float(x[i]) - lse) - (i == targets[r] ? 1.0 : 0.0));
    }
    bf16* d_logits = device_copy(logits);
    int* d_targets = device_copy(targets);
    float* d_losses;
    cudaCheck(cudaMalloc(&d_losses, N * sizeof(float)));
    cudaCheck(cudaMemset(d_losses, 0xFF, N * sizeof(float)));
    cross_entropy_forward_backward(d_logits, d_losses, d_targets, N, V, Vp, (float)scale, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<float> h_loss = host_copy(d_losses, N);
    std::vector<bf16> h_grad = host_copy(d_logits, (size_t)N * Vp);
    std::vector<double> got_loss(h_loss.begin(), h_loss.end()), got_grad(h_grad.size());
    for (size_t i = 0; i < h_grad.size(); i++) got_grad[i] = __bfloat162float(h_grad[i]);
    out->push_back({name + " loss", rel_error(got_loss, ref_loss), SMALL_KERNEL_MAX_REL});
    out->push_back({name + " dlogits (padding columns 0)", rel_error(got_grad, ref_grad), SMALL_KERNEL_MAX_REL});
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_targets)); cudaCheck(cudaFree(d_losses));
}

// logits_argmax: the first column of each row's largest logit, against a CPU scan. Rows with planted ties
// (the max copied to a later and an earlier column), an all-zero row (the spec's init: column 0) and a row whose
// largest logit sits in the padding (must not be picked). The error is the fraction of rows that differ.
static void argmax_check(std::vector<KernelCheck>* out, int N, int V, int Vp, std::mt19937& rng) {
    std::string name = "argmax N" + std::to_string(N) + "V" + std::to_string(V) + "Vp" + std::to_string(Vp);
    std::vector<bf16> logits = random_bf16((size_t)N * Vp, 3.0, rng);
    std::uniform_int_distribution<int> pick(0, V - 1);
    for (int r = 0; r < N; r++) {
        bf16* x = &logits[(size_t)r * Vp];
        if (r == 0) for (int i = 0; i < Vp; i++) x[i] = __float2bfloat16(0.0f);
        if (r == 1 && Vp > V) x[V] = __float2bfloat16(100.0f);   // padding: outside the vocabulary
        if (r >= 2 && r % 2 == 0) {   // a tie: the row's max planted at two columns
            int a = pick(rng), b = pick(rng);
            x[a] = x[b] = __float2bfloat16(50.0f);
        }
    }
    std::vector<int> ref(N);
    for (int r = 0; r < N; r++) {
        const bf16* x = &logits[(size_t)r * Vp];
        int best = 0;
        for (int i = 1; i < V; i++) if (__bfloat162float(x[i]) > __bfloat162float(x[best])) best = i;
        ref[r] = best;
    }
    bf16* d_logits = device_copy(logits);
    int* d_out;
    cudaCheck(cudaMalloc(&d_out, N * sizeof(int)));
    cudaCheck(cudaMemset(d_out, 0xFF, N * sizeof(int)));   // -1: an unwritten row differs
    logits_argmax(d_logits, d_out, N, V, Vp, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<int> got = host_copy(d_out, N);
    int wrong = 0;
    for (int r = 0; r < N; r++) wrong += got[r] != ref[r];
    out->push_back({name + " (ties, a zero row, a padding max): rows wrong", (double)wrong / N, 0.0});
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_out));
}

// Token ids with a Zipf-like law (rank r drawn with weight 1/r), as in real text: a few ids fill many
// positions, most fill one or two.
static std::vector<int> zipf_tokens(int N, int V, std::mt19937& rng) {
    std::vector<double> w(V);
    for (int r = 0; r < V; r++) w[r] = 1.0 / (r + 1);
    std::discrete_distribution<int> pick(w.begin(), w.end());
    std::vector<int> t(N);
    for (int& x : t) x = pick(rng);
    return t;
}

// embedding_backward: dwte[tok] += sum of dx over tok's positions, against a float64 sum (dwte starts
// random, so the accumulation is checked too; rows of tokens that do not occur must stay as they were)
static void embedding_check(std::vector<KernelCheck>* out, int N, int V, int C, std::mt19937& rng) {
    std::string name = "embedding backward N" + std::to_string(N) + "V" + std::to_string(V) + "C" + std::to_string(C);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<int> idx = zipf_tokens(N, V, rng);
    std::vector<float> dx((size_t)N * C), dwte((size_t)V * C);
    for (float& e : dx) e = normal(rng);
    for (float& e : dwte) e = normal(rng);
    std::vector<double> ref(dwte.begin(), dwte.end());
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) ref[(size_t)idx[n] * C + i] += dx[(size_t)n * C + i];
    std::vector<int> groups;
    int n_unique = tokens_by_value(&groups, idx.data(), N);
    float *d_dx = device_copy(dx), *d_dwte = device_copy(dwte);
    int* d_groups = device_copy(groups);
    embedding_backward(d_dwte, d_dx, d_groups, groups, n_unique, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<float> h = host_copy(d_dwte, dwte.size());
    std::vector<double> got(h.begin(), h.end());
    out->push_back({name + " (largest group " + std::to_string(groups[n_unique + 1] - groups[n_unique]) + ")",
                    rel_error(got, ref), 1e-6});
    cudaCheck(cudaFree(d_dx)); cudaCheck(cudaFree(d_dwte)); cudaCheck(cudaFree(d_groups));
}

static std::vector<KernelCheck> small_kernel_checks(unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<KernelCheck> out;
    rmsnorm_check(&out, 37, 768, rng);
    rmsnorm_check(&out, 5, 128, rng);      // one warp per row
    rmsnorm_check(&out, 3, 4096, rng);     // 1024 threads per row, the widest
    for (int D : {64, 128})
        for (int n : {4, 3}) {
            qkr_norm_rope_check(&out, 2, 37, 3, D, n, rng);
            qkr_norm_rope_check(&out, 1, 1, 1, D, n, rng);
        }
    qkr_norm_rope_check(&out, 4, 1024, 12, 64, 4, rng);   // enough rows for every backward block to loop
    cross_entropy_check(&out, 7, 1001, 1024, rng);
    cross_entropy_check(&out, 3, 50257, 50304, rng);
    cross_entropy_check(&out, 2, 70001, 70008, rng);   // a 140 KB row in shared memory: one block per SM
    argmax_check(&out, 9, 1001, 1024, rng);
    argmax_check(&out, 5, 50257, 50304, rng);
    argmax_check(&out, 1, 7, 8, rng);
    embedding_check(&out, 2000, 300, 768, rng);
    embedding_check(&out, 37, 50, 200, rng);   // C not a multiple of the block
    embedding_check(&out, 20000, 1000, 256, rng);   // groups of thousands: EMB_SLICES threads per column
    embedding_check(&out, 4000, 20, 200, rng);      // large groups, C not a multiple of the block
    return out;
}
