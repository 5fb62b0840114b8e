// test_parallax: the GPU test binary. Checks the CUDA kernels against tensors exported from the PyTorch
// reference (dev/export_reference.py) and against a float64 CPU reference on fresh random inputs.
//   ./test_parallax [--ref-dir DIR]        (default dev/ref; `make test` writes the files there first)
// One line per check: PASS or FAIL, the name, the measured relative error ||got - ref|| / ||ref|| and the
// threshold. Outputs are poisoned (NaN) before every run, so an unwritten element fails. Without a GPU it
// prints one "skipped: no GPU" line and exits 0.
#include <cmath>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#define TESTING
#include "train_parallax.cu"       // defines: Model, model_forward, model_backward, model_update, ...
#include "trainer/tensor_file.h"   // defines: TensorFile, tensor_file_read
#include "dev/cuda/attention_rowwise.cuh"  // defines: attention_forward_rowwise, attention_backward_rowwise
#include "dev/cuda/attention_mma_v2.cuh"    // defines: attention_forward_mma_v2, attention_backward_mma_v2

// ---------------------------------------------------------------------------------------------------------
// tolerances, one table. bf16 outputs carry a rounding error of about 2^-9/sqrt(3) = 1.1e-3 relative (rms)
// on their own, and the inputs' bf16 rounding is already in the reference; fp32 accumulation over T <= 1024
// terms adds far less. 1e-2 is thus ~5x the floor for outputs that are stored in bf16; L and tbar are fp32.
// The whole model (d12, bf16 forward and backward against the float32 reference): rounding compounds over
// 12 layers, so the thresholds are looser; the numbers behind them are in the README.
struct Tolerance { const char* name; double max_rel; };
static const Tolerance TOLERANCES[] = {
    {"o", 1e-2}, {"vbar", 1e-2}, {"L", 1e-5}, {"tbar", 1e-4},
    {"dq", 1e-2}, {"dk", 1e-2}, {"dv", 1e-2}, {"dr", 1e-2},
    {"logits", 3e-2}, {"loss", 2e-3}, {"steps", 2e-2},
    {"wte", 5e-2}, {"qkvr_w", 5e-2}, {"q_gain", 5e-2}, {"k_gain", 5e-2}, {"r_gain", 5e-2},
    {"attproj_w", 5e-2}, {"fc_w", 5e-2}, {"fcproj_w", 5e-2}, {"lm_head_w", 5e-2},
};

static double tolerance(const char* name) {
    for (const Tolerance& t : TOLERANCES) if (strcmp(t.name, name) == 0) return t.max_rel;
    fprintf(stderr, "test_parallax: no tolerance for '%s'\n", name);
    exit(EXIT_FAILURE);
}

static int n_pass = 0, n_fail = 0;

static double rel_error(const std::vector<double>& got, const std::vector<double>& ref) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < got.size(); i++) {
        if (!std::isfinite(got[i])) return INFINITY;  // NaN never passes (poisoned, unwritten outputs)
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num) / (den > 0.0 ? sqrt(den) : 1.0);
}

static void report(const std::string& name, double err, double tol) {
    bool ok = err <= tol;  // false for NaN and inf
    (ok ? n_pass : n_fail)++;
    printf("%s test_parallax: %s: rel err %.2e (max %.0e)\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol);
    fflush(stdout);
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

// The attention implementations under test: the trainer's (parallax_kernels.cuh, version 3 of the kernel
// study) and the study's earlier versions in dev/cuda/; each check's name starts with the prefix.
struct AttentionVersion {
    const char* prefix;
    decltype(&attention_forward) fwd;
    decltype(&attention_backward) bwd;
};
static const AttentionVersion ATTENTION_VERSIONS[] = {
    {"", attention_forward, attention_backward},
    {"v2 ", attention_forward_mma_v2, attention_backward_mma_v2},
    {"v1 ", attention_forward_rowwise, attention_backward_rowwise},
};

// Runs forward and backward on the GPU with the inputs packed like the trainer's qkvr buffer, and checks
// every output against the case's expected values.
static void run_attention_case(const AttentionCase& c, const AttentionVersion& ver) {
    const int B = c.B, H = c.H, T = c.T, D = c.D, C = H * D, n = c.probe ? 4 : 3, stride = n * C;
    const size_t nrow = (size_t)B * H * T, nel = nrow * D;
    // (b, h, t, d) of the reference -> offset in a (B, T, *) buffer with token stride `st` at column `col`
    auto at = [&](size_t idx, int st, int col) {
        size_t d = idx % D, t = (idx / D) % T, h = (idx / ((size_t)D * T)) % H, b = idx / ((size_t)D * T * H);
        return (b * T + t) * st + col + h * D + d;
    };
    std::vector<bf16> qkvr((size_t)B * T * stride), dO(nel);
    const std::vector<double>* parts[4] = {&c.q, &c.k, &c.v, &c.r};
    for (int p = 0; p < n; p++)
        for (size_t i = 0; i < nel; i++) qkvr[at(i, stride, p * C)] = __float2bfloat16((float)(*parts[p])[i]);
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

    const bf16 *q = d_qkvr, *k = d_qkvr + C, *v = d_qkvr + 2 * C, *r = c.probe ? d_qkvr + 3 * C : NULL;
    ver.fwd(d_o, d_vbar, d_L, d_tbar, q, r, k, v, B, T, H, D, stride, 0);
    ver.bwd(d_dqkvr, c.probe ? d_dqkvr + 3 * C : NULL, d_dqkvr + C, d_dqkvr + 2 * C, d_Tg, d_Bv, d_dO, q, r, k, v, d_o,
        d_vbar, d_L, d_tbar, B, T, H, D, stride, 0);
    cudaCheck(cudaDeviceSynchronize());

    std::vector<bf16> h_o(nel), h_vbar(nel), h_d(qkvr.size());
    std::vector<float> h_L(nrow), h_tbar(nrow);
    cudaCheck(cudaMemcpy(h_o.data(), d_o, nel * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_vbar.data(), d_vbar, nel * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_d.data(), d_dqkvr, qkvr.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_L.data(), d_L, nrow * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_tbar.data(), d_tbar, nrow * sizeof(float), cudaMemcpyDeviceToHost));

    // gather a bf16 (B, T, *) buffer back into reference order
    auto gather = [&](const std::vector<bf16>& buf, int st, int col) {
        std::vector<double> out(nel);
        for (size_t i = 0; i < nel; i++) out[i] = __bfloat162float(buf[at(i, st, col)]);
        return out;
    };
    auto check = [&](const char* what, const std::vector<double>& got, const std::vector<double>& ref) {
        report(ver.prefix + c.name + " " + what, rel_error(got, ref), tolerance(what));
    };
    check("o", gather(h_o, C, 0), c.o);
    check("vbar", gather(h_vbar, C, 0), c.vbar);
    check("L", std::vector<double>(h_L.begin(), h_L.end()), c.L);
    if (c.probe) check("tbar", std::vector<double>(h_tbar.begin(), h_tbar.end()), c.tbar);
    check("dq", gather(h_d, stride, 0), c.dq);
    check("dk", gather(h_d, stride, C), c.dk);
    check("dv", gather(h_d, stride, 2 * C), c.dv);
    if (c.probe) check("dr", gather(h_d, stride, 3 * C), c.dr);

    cudaCheck(cudaFree(d_qkvr)); cudaCheck(cudaFree(d_dqkvr)); cudaCheck(cudaFree(d_o));
    cudaCheck(cudaFree(d_vbar)); cudaCheck(cudaFree(d_dO)); cudaCheck(cudaFree(d_L));
    cudaCheck(cudaFree(d_tbar)); cudaCheck(cudaFree(d_Tg)); cudaCheck(cudaFree(d_Bv));
}

// ---------------------------------------------------------------------------------------------------------
// cases exported by the PyTorch reference

static std::vector<double> as_doubles(const RefTensor& t) {
    std::vector<double> out(t.numel);
    for (int64_t i = 0; i < t.numel; i++) out[i] = t.f32()[i];
    return out;
}

static void test_exported_attention(const std::string& path) {
    TensorFile tf;
    std::string err;
    if (!tensor_file_read(&tf, path.c_str(), &err)) {
        n_fail++;
        printf("FAIL test_parallax: exported attention cases: %s (make dev/ref/attention_cases.ptf writes it)\n",
               err.c_str());
        return;
    }
    for (const RefTensor& t : tf.tensors) {
        size_t len = t.name.size();
        if (len < 2 || t.name.compare(len - 2, 2, ".q") != 0) continue;
        std::string pre = t.name.substr(0, len - 1);  // "parallax.B2H3T127D64."
        AttentionCase c;
        c.name = "exported " + pre.substr(0, pre.size() - 1);
        c.B = (int)t.shape[0]; c.H = (int)t.shape[1]; c.T = (int)t.shape[2]; c.D = (int)t.shape[3];
        c.probe = tf.find(pre + "r") != NULL;
        c.q = as_doubles(t);
        c.k = as_doubles(tf.get(pre + "k"));
        c.v = as_doubles(tf.get(pre + "v"));
        c.dO = as_doubles(tf.get(pre + "dO"));
        c.o = as_doubles(tf.get(pre + "o"));
        c.L = as_doubles(tf.get(pre + "L"));
        c.vbar = as_doubles(tf.get(pre + "vbar"));
        c.dq = as_doubles(tf.get(pre + "dq"));
        c.dk = as_doubles(tf.get(pre + "dk"));
        c.dv = as_doubles(tf.get(pre + "dv"));
        if (c.probe) {
            c.r = as_doubles(tf.get(pre + "r"));
            c.tbar = as_doubles(tf.get(pre + "tbar"));
            c.dr = as_doubles(tf.get(pre + "dr"));
        }
        for (const AttentionVersion& ver : ATTENTION_VERSIONS) run_attention_case(c, ver);
    }
}

// ---------------------------------------------------------------------------------------------------------
// fresh random cases against a float64 CPU reference of spec section 1 (materialized, row by row)

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

static void test_random_attention(unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    // odd sizes: T = 1, T not a multiple of any tile, B x H > 1, both head dims
    const int shapes[][4] = {{1, 1, 1, 64}, {2, 3, 37, 64}, {1, 2, 200, 64}, {1, 1, 1, 128}, {2, 1, 77, 128}, {1, 1, 333, 128}};
    for (int probe = 1; probe >= 0; probe--) {
        for (const auto& s : shapes) {
            AttentionCase c;
            c.B = s[0]; c.H = s[1]; c.T = s[2]; c.D = s[3];
            c.probe = probe;
            c.name = std::string("random ") + (probe ? "parallax" : "softmax") + ".B" + std::to_string(c.B) +
                     "H" + std::to_string(c.H) + "T" + std::to_string(c.T) + "D" + std::to_string(c.D);
            size_t nel = (size_t)c.B * c.H * c.T * c.D;
            // inputs rounded to bf16 first, so the float64 reference sees exactly what the kernel reads;
            // r at scale 1/sqrt(D) so that t = r.k is of unit scale, as at the spec init
            auto draw = [&](double scale) {
                std::vector<double> x(nel);
                for (double& e : x) e = __bfloat162float(__float2bfloat16((float)(normal(rng) * scale)));
                return x;
            };
            c.q = draw(1.0); c.k = draw(1.0); c.v = draw(1.0); c.dO = draw(1.0);
            c.r = probe ? draw(1.0 / sqrt((double)c.D)) : std::vector<double>(nel, 0.0);
            attention_reference_cpu(&c);
            for (const AttentionVersion& ver : ATTENTION_VERSIONS) run_attention_case(c, ver);
        }
    }
}


// ---------------------------------------------------------------------------------------------------------
// the whole model against the exporter's model file: logits, loss, every gradient, 10 optimizer steps of
// Muon and of AdamW, and two identical runs giving identical bits

static void load_params(Model* m, const TensorFile& tf) {
    std::vector<float> host(m->n_params, 0.0f);
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m->spec[i];
        if (!s.present) continue;
        const RefTensor& t = tf.get(std::string("param.") + s.name);
        if ((size_t)t.numel != s.numel) {
            fprintf(stderr, "%s: param.%s has %ld elements, the model %zu\n", tf.path.c_str(), s.name, (long)t.numel, s.numel);
            exit(EXIT_FAILURE);
        }
        memcpy(host.data() + s.offset, t.f32(), s.numel * sizeof(float));
    }
    cudaCheck(cudaMemcpy(m->params, host.data(), m->n_params * sizeof(float), cudaMemcpyHostToDevice));
    model_sync_bf16(m);
    cudaCheck(cudaMemset(m->adam_m, 0, m->n_params * sizeof(float)));
    cudaCheck(cudaMemset(m->adam_v, 0, m->n_params * sizeof(float)));
    cudaCheck(cudaMemset(m->muon_buf, 0, m->n_params * sizeof(float)));
    m->adam_t = 0;
}

static Hyper hyper_from_meta(const TensorFile& tf, bool muon) {
    Hyper h = default_hyper(muon);
    auto get = [&](const char* key) { return (float)atof(tf.meta_value(std::string(muon ? "muon." : "adamw.") + key).c_str()); };
    h.adam_beta1 = get("adam_beta1"); h.adam_beta2 = get("adam_beta2"); h.adam_eps = get("adam_eps"); h.adam_wd = get("adam_wd");
    if (muon) {
        h.muon_lr = get("muon_lr"); h.muon_beta = get("muon_beta"); h.muon_wd = get("muon_wd");
        h.embed_lr = get("embed_lr"); h.head_lr = get("head_lr"); h.gain_lr = get("gain_lr");
    } else {
        h.adam_lr = get("adam_lr");
    }
    h.grad_clip = 0.0f;  // the reference steps are unclipped
    return h;
}

// n optimizer steps on one batch from the model's current state; returns the loss before each step and
// after the last (n + 1 values).
static std::vector<double> train_steps(Model* m, const Hyper& hp, float lr_scale, int n, const int* in, const int* tg,
                                       int B, int T) {
    std::vector<double> losses;
    for (int s = 0; s <= n; s++) {
        cudaCheck(cudaMemset(m->grads, 0, m->n_params * sizeof(float)));
        losses.push_back(model_forward(m, in, tg, B, T, 1.0f / (B * T)));
        if (s == n) break;
        model_backward(m, in, B, T);
        model_update(m, hp, lr_scale);
    }
    return losses;
}

// Two steps, a checkpoint, a fresh start from it, two more steps: the losses must be the bits of four
// uninterrupted steps.
static void test_resume(Model* m, const TensorFile& tf, const Hyper& hp, float lr_scale, const int* in, const int* tg,
                        int B, int T, const std::string& name) {
    load_params(m, tf);
    std::vector<double> straight = train_steps(m, hp, lr_scale, 4, in, tg, B, T);
    load_params(m, tf);
    train_steps(m, hp, lr_scale, 2, in, tg, B, T);
    std::string path = "/tmp/test_parallax_checkpoint.ptf", err;
    bool ok = model_save(m, path.c_str(), {}, &err);
    TensorFile ck;
    load_params(m, tf);  // scramble: back to the initial weights and empty optimizer state
    ok = ok && tensor_file_read(&ck, path.c_str(), &err) && model_load_checkpoint(m, ck, &err);
    std::vector<double> resumed = ok ? train_steps(m, hp, lr_scale, 2, in, tg, B, T) : std::vector<double>();
    remove(path.c_str());
    bool same = ok && memcmp(resumed.data(), straight.data() + 2, 3 * sizeof(double)) == 0;
    (same ? n_pass : n_fail)++;
    printf("%s test_parallax: %s: save at step 2 and resume gives the bits of 4 straight steps%s%s\n",
           same ? "PASS" : "FAIL", name.c_str(), ok ? "" : ": ", ok ? "" : err.c_str());
}

static void test_model(const std::string& path) {
    TensorFile tf;
    std::string err;
    if (!tensor_file_read(&tf, path.c_str(), &err)) {
        n_fail++;
        printf("FAIL test_parallax: model reference: %s (make dev/ref/model_parallax_d12.ptf writes it)\n", err.c_str());
        return;
    }
    std::string variant = tf.meta_value("variant");
    int depth = atoi(tf.meta_value("depth").c_str()), width = atoi(tf.meta_value("width").c_str());
    int D = atoi(tf.meta_value("head_dim").c_str()), B = atoi(tf.meta_value("batch").c_str());
    int T = atoi(tf.meta_value("seq_len").c_str()), steps = atoi(tf.meta_value("steps").c_str());
    float lr_scale = (float)atof(tf.meta_value("lr_scale").c_str());
    std::string tag = "model " + variant + " d" + std::to_string(depth) + " B" + std::to_string(B) + "T" + std::to_string(T);
    Config cfg = make_config(variant == "parallax", depth, width, D, T);
    Model m;
    model_alloc(&m, cfg, B, T);
    load_params(&m, tf);
    const int* in = tf.get("inputs").i32();
    const int* tg = tf.get("targets").i32();
    size_t N = (size_t)B * T;

    // logits and loss (evaluation mode leaves the logits in place)
    float loss = model_forward(&m, in, tg, B, T, 0.0f);
    std::vector<bf16> lg(N * cfg.Vp);
    cudaCheck(cudaMemcpy(lg.data(), m.act.logits, lg.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    std::vector<double> got(lg.size());
    for (size_t i = 0; i < lg.size(); i++) got[i] = __bfloat162float(lg[i]);
    report(tag + " logits", rel_error(got, as_doubles(tf.get("logits"))), tolerance("logits"));
    double ref_loss = tf.get("loss").f32()[0];
    report(tag + " loss (" + std::to_string(loss) + " vs " + std::to_string(ref_loss) + ")",
           std::isfinite(loss) ? fabs(loss - ref_loss) / ref_loss : INFINITY, tolerance("loss"));

    // every gradient
    cudaCheck(cudaMemset(m.grads, 0, m.n_params * sizeof(float)));
    model_forward(&m, in, tg, B, T, 1.0f / N);
    model_backward(&m, in, B, T);
    std::vector<float> g(m.n_params);
    cudaCheck(cudaMemcpy(g.data(), m.grads, m.n_params * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m.spec[i];
        if (!s.present) continue;
        std::vector<double> gi(g.begin() + s.offset, g.begin() + s.offset + s.numel);
        report(tag + " grad " + s.name, rel_error(gi, as_doubles(tf.get(std::string("grad.") + s.name))), tolerance(s.name));
    }

    // optimizer steps, and determinism
    for (int muon = 1; muon >= 0; muon--) {
        const char* kind = muon ? "muon" : "adamw";
        Hyper hp = hyper_from_meta(tf, muon);
        load_params(&m, tf);
        std::vector<double> a = train_steps(&m, hp, lr_scale, steps, in, tg, B, T);
        const RefTensor& ref = tf.get(std::string(kind) + ".losses");
        double worst = 0.0;
        std::string trace;
        for (int s = 0; s <= steps; s++) {
            double r = ref.f32()[s];
            worst = std::isfinite(a[s]) ? std::max(worst, fabs(a[s] - r) / r) : INFINITY;
            char buf[64];
            snprintf(buf, sizeof(buf), " %.4f/%.4f", a[s], r);
            if (s == 0 || s == steps) trace += buf;
        }
        report(tag + " " + kind + " " + std::to_string(steps) + " steps, loss ours/ref" + trace, worst, tolerance("steps"));
        load_params(&m, tf);
        std::vector<double> b = train_steps(&m, hp, lr_scale, steps, in, tg, B, T);
        bool same = memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
        (same ? n_pass : n_fail)++;
        printf("%s test_parallax: %s %s: two runs give bitwise equal losses\n", same ? "PASS" : "FAIL", tag.c_str(), kind);
        test_resume(&m, tf, hp, lr_scale, in, tg, B, T, tag + " " + kind);
    }
    model_free(&m);
}

int main(int argc, char** argv) {
    std::string ref_dir = "dev/ref";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ref-dir") == 0 && i + 1 < argc) ref_dir = argv[++i];
        else { fprintf(stderr, "test_parallax: unknown argument '%s' (usage: test_parallax [--ref-dir DIR])\n", argv[i]); return 2; }
    }
    if (cuda_device_count() == 0) {
        printf("SKIP test_parallax: skipped: no GPU\n");
        return 0;
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    unsigned seed = (unsigned)time(NULL);
    printf("test_parallax on %s, random seed %u\n", prop.name, seed);
    test_exported_attention(ref_dir + "/attention_cases.ptf");
    test_random_attention(seed);
    matmul_init();
    // every exported model: d12 (D = 64) and a 2-layer D = 128 model, both variants (make test writes them)
    glob_t g;
    std::string pattern = ref_dir + "/model_*.ptf";
    if (glob(pattern.c_str(), 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) test_model(g.gl_pathv[i]);
        globfree(&g);
    } else {
        n_fail++;
        printf("FAIL test_parallax: no model references match %s (make ref writes them)\n", pattern.c_str());
    }
    printf("test_parallax: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
