// One attention case checked on the GPU: the code that test_parallax and the kernel study
// (dev/cuda/attention_study.cu) share. A case holds inputs and expected outputs in the reference's
// (B, H, T, D) order as doubles; attention_case_run runs one kernel version on it; attention_checks pairs
// each output with its expected values and its bound; attention_reference_cpu is the float64 CPU
// reference of spec section 1 (materialized, row by row) for fresh random cases.
#pragma once

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../parallax_kernels.cuh"   // version 3, the trainer's: attention_forward, attention_backward
#include "attention_wgmma_v4.cuh"       // version 4: attention_forward_wgmma, attention_backward_wgmma
#include "attention_mma_v2.cuh"         // version 2: attention_forward_mma_v2, attention_backward_mma_v2
#include "attention_rowwise.cuh"        // version 1: attention_forward_rowwise, attention_backward_rowwise
#include "../../trainer/attention_sm80.cuh"   // version 5, the 8.x path: attention_forward_sm80, _backward_sm80
#include "attention_rows_smem.cuh"      // versions 6 and 7: attention_backward_rows_smem_dq, _both
#include "attention_onepass.cuh"        // version 8: attention_backward_onepass

// Bounds on the relative error ||got - ref|| / ||ref||. bf16 outputs carry a rounding error of about
// 2^-9/sqrt(3) = 1.1e-3 relative (rms) on their own, and the inputs' bf16 rounding is already in the
// reference; fp32 accumulation over T <= 1024 terms adds far less. 1e-2 is thus ~5x the floor for outputs
// stored in bf16; L and tbar are fp32.
struct Tolerance { const char* name; double max_rel; };
static const Tolerance ATTENTION_TOLERANCES[] = {
    {"o", 1e-2}, {"vbar", 1e-2}, {"L", 1e-5}, {"tbar", 1e-4},
    {"dq", 1e-2}, {"dk", 1e-2}, {"dv", 1e-2}, {"dr", 1e-2},
};

static double attention_tolerance(const char* name) {
    for (const Tolerance& t : ATTENTION_TOLERANCES) if (strcmp(t.name, name) == 0) return t.max_rel;
    return -1.0;
}

static double rel_error(const std::vector<double>& got, const std::vector<double>& ref) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < got.size(); i++) {
        if (!std::isfinite(got[i])) return INFINITY;  // NaN never passes (poisoned, unwritten outputs)
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num) / (den > 0.0 ? sqrt(den) : 1.0);
}

// ---------------------------------------------------------------------------------------------------------
// one attention case: inputs in (B, H, T, D) order as the reference stores them, as doubles

struct AttentionCase {
    std::string name;
    int B, H, T, D;
    bool probe;
    std::vector<double> q, r, k, v, dO;                                   // inputs
    std::vector<double> o, L, tbar, vbar, dq, dr, dk, dv;                 // expected
};

// one run's; bwd_repeats: a second backward on the same inputs gave the same bits (resumed runs need it)
struct AttentionOutputs {
    std::vector<double> o, vbar, L, tbar, dq, dk, dv, dr;
    bool bwd_repeats;
};

// The versions of the kernel study: the trainer's (parallax_kernels.cuh, version 3), the forward and backward
// on wgmma (attention_wgmma_v4.cuh, version 4: D = 64; other head dims run version 3) and the earlier ones in
// dev/cuda/, the 8.x path (trainer/attention_sm80.cuh, version 5), version 3 with the backward's own rows in
// shared memory (attention_rows_smem.cuh, versions 6 and 7) and the one-pass backward (attention_onepass.cuh,
// version 8); test_parallax starts each check's name with the prefix.
struct AttentionVersion {
    int number;
    const char* prefix;
    void (*fwd)(const AttentionForwardParams&, cudaStream_t);
    void (*bwd)(const AttentionBackwardParams&, cudaStream_t);
};
static const AttentionVersion ATTENTION_VERSIONS[] = {
    {3, "", attention_forward, attention_backward},
    {4, "v4 ", attention_forward_wgmma, attention_backward_wgmma},
    {2, "v2 ", attention_forward_mma_v2, attention_backward_mma_v2},
    {1, "v1 ", attention_forward_rowwise, attention_backward_rowwise},
    {5, "sm80 ", attention_forward_sm80, attention_backward_sm80},
    {6, "v6 ", attention_forward, attention_backward_rows_smem_dq},
    {7, "v7 ", attention_forward, attention_backward_rows_smem_both},
    {8, "v8 ", attention_forward, attention_backward_onepass},
};

// ---------------------------------------------------------------------------------------------------------
// the float64 CPU reference of spec section 1 (materialized, row by row): fills the expected outputs

static void attention_reference_cpu(AttentionCase* c) {
    const int T = c->T, D = c->D;
    const size_t nel = (size_t)c->B * c->H * T * D, nrow = (size_t)c->B * c->H * T;
    const double sc = 1.0 / sqrt((double)D);
    c->o.assign(nel, 0); c->vbar.assign(nel, 0); c->L.assign(nrow, 0); c->tbar.assign(nrow, 0);
    c->dq.assign(nel, 0); c->dk.assign(nel, 0); c->dv.assign(nel, 0); c->dr.assign(nel, 0);
    std::vector<double> p(T), t(T), A(T);
    for (size_t bh = 0; bh < (size_t)c->B * c->H; bh++) {
        const size_t base = bh * T * D;
        auto dot = [&](const std::vector<double>& a, int i, const std::vector<double>& b, int j) {
            double s = 0;
            for (int d = 0; d < D; d++) s += a[base + (size_t)i * D + d] * b[base + (size_t)j * D + d];
            return s;
        };
        for (int i = 0; i < T; i++) {
            double m = -INFINITY, sum = 0, tb = 0;
            for (int j = 0; j <= i; j++) { p[j] = sc * dot(c->q, i, c->k, j); m = fmax(m, p[j]); }
            for (int j = 0; j <= i; j++) { p[j] = exp(p[j] - m); sum += p[j]; }
            for (int j = 0; j <= i; j++) {
                p[j] /= sum;
                t[j] = c->probe ? dot(c->r, i, c->k, j) : 0.0;
                tb += p[j] * t[j];
                A[j] = dot(c->dO, i, c->v, j);
            }
            c->L[bh * T + i] = m + log(sum);
            c->tbar[bh * T + i] = tb;
            double Tg = 0, Bv = 0;
            for (int d = 0; d < D; d++) {
                double vb = 0, o = 0;
                for (int j = 0; j <= i; j++) {
                    vb += p[j] * c->v[base + (size_t)j * D + d];
                    o += p[j] * (1.0 + tb - t[j]) * c->v[base + (size_t)j * D + d];
                }
                c->vbar[base + (size_t)i * D + d] = vb;
                c->o[base + (size_t)i * D + d] = o;
                Tg += c->dO[base + (size_t)i * D + d] * o;
                Bv += c->dO[base + (size_t)i * D + d] * vb;
            }
            for (int j = 0; j <= i; j++) {
                double dS = p[j] * ((A[j] - Tg) + (tb - t[j]) * (A[j] - Bv));
                double dT = -p[j] * (A[j] - Bv);
                double w = p[j] * (1.0 + tb - t[j]);
                for (int d = 0; d < D; d++) {
                    size_t ii = base + (size_t)i * D + d, jj = base + (size_t)j * D + d;
                    c->dq[ii] += sc * dS * c->k[jj];
                    c->dk[jj] += sc * dS * c->q[ii];
                    c->dv[jj] += w * c->dO[ii];
                    if (c->probe) { c->dr[ii] += dT * c->k[jj]; c->dk[jj] += dT * c->r[ii]; }
                }
            }
        }
    }
}

// A fresh random case (inputs rounded to bf16 first, so the float64 reference sees exactly what the kernel
// reads; r at scale 1/sqrt(D) so that t = r.k is of unit scale, as at the spec init) with its expected
// outputs from the CPU reference.
static AttentionCase attention_case_random(int B, int H, int T, int D, bool probe, std::mt19937& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    AttentionCase c;
    c.B = B; c.H = H; c.T = T; c.D = D;
    c.probe = probe;
    c.name = std::string("random ") + (probe ? "parallax" : "softmax") + ".B" + std::to_string(B) + "H" +
             std::to_string(H) + "T" + std::to_string(T) + "D" + std::to_string(D);
    size_t nel = (size_t)B * H * T * D;
    auto draw = [&](double scale) {
        std::vector<double> x(nel);
        for (double& e : x) e = __bfloat162float(__float2bfloat16((float)(normal(rng) * scale)));
        return x;
    };
    c.q = draw(1.0); c.k = draw(1.0); c.v = draw(1.0); c.dO = draw(1.0);
    c.r = probe ? draw(1.0 / sqrt((double)D)) : std::vector<double>(nel, 0.0);
    attention_reference_cpu(&c);
    return c;
}

// Runs one version's forward and backward on the GPU, with the inputs packed like the trainer's qkvr buffer
// and every output poisoned with NaN first, and returns the outputs in the reference's order.
static AttentionOutputs attention_case_run(const AttentionCase& c, const AttentionVersion& ver) {
    const int B = c.B, H = c.H, T = c.T, D = c.D, C = H * D;
    const AttentionShape shape = {B, T, H, D, c.probe};
    const int n = c.probe ? 4 : 3, stride = packed_stride(shape);
    const size_t nrow = (size_t)B * H * T, nel = nrow * D;
    // (b, h, t, d) of the reference -> offset in a (B, T, *) buffer with token stride `st` at column `col`
    auto at = [&](size_t idx, int st, size_t col) {
        size_t d = idx % D, t = (idx / D) % T, h = (idx / ((size_t)D * T)) % H, b = idx / ((size_t)D * T * H);
        return (b * T + t) * st + col + h * D + d;
    };
    std::vector<bf16> qkvr((size_t)B * T * stride), dO(nel);
    const std::vector<double>* parts[4] = {&c.q, &c.k, &c.v, &c.r};
    for (int p = 0; p < n; p++)
        for (size_t i = 0; i < nel; i++) qkvr[at(i, stride, packed_offset(shape, (PackedPart)p))] = __float2bfloat16((float)(*parts[p])[i]);
    for (size_t i = 0; i < nel; i++) dO[at(i, C, 0)] = __float2bfloat16((float)c.dO[i]);

    bf16 *d_qkvr, *d_dqkvr, *d_o, *d_vbar, *d_dO;
    float *d_L, *d_tbar, *d_Tg, *d_Bv;
    cudaCheck(cudaMalloc(&d_qkvr, qkvr.size() * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_dqkvr, qkvr.size() * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_o, nel * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_vbar, nel * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_dO, nel * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_L, nrow * sizeof(float)));
    cudaCheck(cudaMalloc(&d_tbar, nrow * sizeof(float)));
    cudaCheck(cudaMalloc(&d_Tg, nrow * sizeof(float)));
    cudaCheck(cudaMalloc(&d_Bv, nrow * sizeof(float)));
    cudaCheck(cudaMemcpy(d_qkvr, qkvr.data(), qkvr.size() * sizeof(bf16), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(d_dO, dO.data(), nel * sizeof(bf16), cudaMemcpyHostToDevice));
    // poison: all-ones bytes are NaN in bf16 and fp32
    cudaCheck(cudaMemset(d_o, 0xFF, nel * sizeof(bf16)));
    cudaCheck(cudaMemset(d_vbar, 0xFF, nel * sizeof(bf16)));
    cudaCheck(cudaMemset(d_L, 0xFF, nrow * sizeof(float)));
    cudaCheck(cudaMemset(d_tbar, 0xFF, nrow * sizeof(float)));
    cudaCheck(cudaMemset(d_dqkvr, 0xFF, qkvr.size() * sizeof(bf16)));

    AttentionForwardParams fwd = attention_forward_params(shape, d_qkvr, d_qkvr, {d_o, d_vbar, d_L, d_tbar});
    ver.fwd(fwd, 0);
    ver.bwd(attention_backward_params(fwd, d_dO, d_dqkvr, d_Tg, d_Bv), 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<bf16> h_d(qkvr.size()), h_d2(qkvr.size());
    cudaCheck(cudaMemcpy(h_d.data(), d_dqkvr, qkvr.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemset(d_dqkvr, 0xFF, qkvr.size() * sizeof(bf16)));   // the backward again, poisoned again
    ver.bwd(attention_backward_params(fwd, d_dO, d_dqkvr, d_Tg, d_Bv), 0);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(h_d2.data(), d_dqkvr, qkvr.size() * sizeof(bf16), cudaMemcpyDeviceToHost));

    std::vector<bf16> h_o(nel), h_vbar(nel);
    std::vector<float> h_L(nrow), h_tbar(nrow);
    cudaCheck(cudaMemcpy(h_o.data(), d_o, nel * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_vbar.data(), d_vbar, nel * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_L.data(), d_L, nrow * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_tbar.data(), d_tbar, nrow * sizeof(float), cudaMemcpyDeviceToHost));

    // gather a bf16 (B, T, *) buffer back into reference order
    auto gather = [&](const std::vector<bf16>& buf, int st, size_t col) {
        std::vector<double> out(nel);
        for (size_t i = 0; i < nel; i++) out[i] = __bfloat162float(buf[at(i, st, col)]);
        return out;
    };
    AttentionOutputs out;
    out.o = gather(h_o, C, 0);
    out.vbar = gather(h_vbar, C, 0);
    out.L.assign(h_L.begin(), h_L.end());
    out.tbar.assign(h_tbar.begin(), h_tbar.end());
    out.dq = gather(h_d, stride, packed_offset(shape, PACKED_Q));
    out.dk = gather(h_d, stride, packed_offset(shape, PACKED_K));
    out.dv = gather(h_d, stride, packed_offset(shape, PACKED_V));
    if (c.probe) out.dr = gather(h_d, stride, packed_offset(shape, PACKED_R));
    out.bwd_repeats = memcmp(h_d.data(), h_d2.data(), h_d.size() * sizeof(bf16)) == 0;

    cudaCheck(cudaFree(d_qkvr)); cudaCheck(cudaFree(d_dqkvr)); cudaCheck(cudaFree(d_o));
    cudaCheck(cudaFree(d_vbar)); cudaCheck(cudaFree(d_dO)); cudaCheck(cudaFree(d_L));
    cudaCheck(cudaFree(d_tbar)); cudaCheck(cudaFree(d_Tg)); cudaCheck(cudaFree(d_Bv));
    return out;
}

// The outputs that a run is checked on, each with its expected values and its bound: o, vbar, L, dq, dk,
// dv, and tbar and dr for the Parallax variant.
struct AttentionCheck {
    const char* what;
    const std::vector<double>* got;
    const std::vector<double>* ref;
    double max_rel;
};

static std::vector<AttentionCheck> attention_checks(const AttentionCase& c, const AttentionOutputs& out) {
    std::vector<AttentionCheck> all = {
        {"o", &out.o, &c.o, 0}, {"vbar", &out.vbar, &c.vbar, 0}, {"L", &out.L, &c.L, 0},
        {"tbar", &out.tbar, &c.tbar, 0}, {"dq", &out.dq, &c.dq, 0}, {"dk", &out.dk, &c.dk, 0},
        {"dv", &out.dv, &c.dv, 0}, {"dr", &out.dr, &c.dr, 0}};
    std::vector<AttentionCheck> checks;
    for (AttentionCheck k : all) {
        if (!c.probe && (strcmp(k.what, "tbar") == 0 || strcmp(k.what, "dr") == 0)) continue;
        k.max_rel = attention_tolerance(k.what);
        checks.push_back(k);
    }
    return checks;
}
