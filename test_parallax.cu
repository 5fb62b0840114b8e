// test_parallax: the GPU test binary. Checks the CUDA kernels against tensors exported from the PyTorch
// reference (dev/export_reference.py) and against a float64 CPU reference on fresh random inputs.
//   ./test_parallax [--ref-dir DIR]        (default dev/ref; `make test` writes the files there first)
// One line per check: PASS or FAIL, the name, the measured relative error ||got - ref|| / ||ref|| and the
// threshold. Outputs are poisoned (NaN) before every run, so an unwritten element fails. Without a GPU it
// prints one "skipped: no GPU" line and exits 0; when CUDA finds none but `nvidia-smi -L` lists one (a
// driver or permission fault), that is a FAIL.
// PARALLAX_ATTENTION=sm80 runs the model's checks on the 8.x attention path (trainer/gpu_arch.h); the attention
// checks cover every kernel version this binary can run here, the 8.x path (prefix "sm80 ") among them.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmath>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#define TESTING
#include "train_parallax.cu"       // defines: Model, model_forward, model_backward, model_update, ...
#include "trainer/tensor_file.h"   // defines: TensorFile, tensor_file_read
#include "dev/cuda/attention_check.h"   // defines: AttentionCase, ATTENTION_VERSIONS (versions 1-7),
                                         // attention_case_run, attention_checks, attention_case_random
#include "dev/cuda/small_kernel_check.h"   // defines: small_kernel_checks (q/k/r norm + RoPE, cross-entropy)

// ---------------------------------------------------------------------------------------------------------
// tolerances: the attention's are in dev/cuda/attention_check.h (shared with the kernel study); the whole
// model's (d12, bf16 forward and backward against the float32 reference) are looser, since rounding
// compounds over 12 layers; the numbers behind them are in the README. "grad" bounds the gradient of every
// tensor of the model's parameter table (the test walks that table, so no second list of names can drift).
static const Tolerance MODEL_TOLERANCES[] = {
    {"logits", 3e-2}, {"loss", 2e-3}, {"steps", 2e-2}, {"grad", 5e-2},
};

static double tolerance(const char* name) {
    for (const Tolerance& t : MODEL_TOLERANCES) if (strcmp(t.name, name) == 0) return t.max_rel;
    fprintf(stderr, "test_parallax: no tolerance for '%s'\n", name);
    exit(EXIT_FAILURE);
}

static int n_pass = 0, n_fail = 0;

static void report(const std::string& name, double err, double tol) {
    bool ok = err <= tol;  // false for NaN and inf
    (ok ? n_pass : n_fail)++;
    printf("%s test_parallax: %s: rel err %.2e (max %.0e)\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol);
    fflush(stdout);
}

// Versions 3, 4, 6, 7 and 8 are the Hopper kernels: they run only where this binary carries their sm_90a code (not
// in test_parallax_ptx80, built from compute_80 PTX alone). Every other version runs on any GPU.
static bool version_runs_here(const AttentionVersion& ver) {
    static int hopper = -1;
    if (hopper < 0) {
        cudaDeviceProp prop;
        cudaCheck(cudaGetDeviceProperties(&prop, 0));
        hopper = prop.major == 9 && kernel_built_for_hopper((const void*)attention_forward_kernel<64, true>);
    }
    return hopper || ver.number == 1 || ver.number == 2 || ver.number == 5;
}

// TEST_PARALLAX_SKIP_VERSION=N leaves out study version N (not 3, the trainer's), with one SKIP line: a device
// script sets it only after that version failed on its own in the study, since a kernel that traps ends the
// process and every check after it.
static bool version_skipped(const AttentionVersion& ver) {
    static int skip = -1;
    if (skip < 0) {
        const char* e = getenv("TEST_PARALLAX_SKIP_VERSION");
        skip = e ? atoi(e) : 0;
        if (e && (skip <= 0 || skip == 3)) {
            fprintf(stderr, "test_parallax: TEST_PARALLAX_SKIP_VERSION must be a study version other than 3, got '%s'\n", e);
            exit(2);
        }
        if (skip) printf("SKIP test_parallax: version %d: skipped: TEST_PARALLAX_SKIP_VERSION=%d\n", skip, skip);
    }
    return ver.number == skip;
}

// Runs one version on a case and reports every output against the case's expected values.
static void run_attention_case(const AttentionCase& c, const AttentionVersion& ver) {
    if (!version_runs_here(ver) || version_skipped(ver)) return;
    AttentionOutputs out = attention_case_run(c, ver);
    for (const AttentionCheck& k : attention_checks(c, out))
        report(ver.prefix + c.name + " " + k.what, rel_error(*k.got, *k.ref), k.max_rel);
    (out.bwd_repeats ? n_pass : n_fail)++;
    printf("%s test_parallax: %s%s: a second backward gives the same bits\n", out.bwd_repeats ? "PASS" : "FAIL",
           ver.prefix, c.name.c_str());
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

// fresh random cases against the float64 CPU reference (dev/cuda/attention_check.h)
static void test_random_attention(unsigned seed) {
    std::mt19937 rng(seed);
    // odd sizes: T = 1, T not a multiple of any tile, B x H > 1, both head dims
    const int shapes[][4] = {{1, 1, 1, 64}, {2, 3, 37, 64}, {1, 2, 200, 64}, {1, 1, 333, 64}, {1, 1, 1, 128},
                             {1, 2, 37, 128}, {2, 1, 77, 128}, {1, 1, 333, 128}};
    for (int probe = 1; probe >= 0; probe--)
        for (const auto& s : shapes) {
            AttentionCase c = attention_case_random(s[0], s[1], s[2], s[3], probe, rng);
            for (const AttentionVersion& ver : ATTENTION_VERSIONS) run_attention_case(c, ver);
        }
}

// ---------------------------------------------------------------------------------------------------------
// the whole model against the exporter's model file: logits, loss, every gradient, 10 optimizer steps of
// Muon and of AdamW, and two identical runs giving identical bits

// empty optimizer state (re-planned and zeroed: only the plan's parts have state)
static void model_zero_state(Model* m) {
    model_plan(m, m->plan.world, m->plan.rank, m->plan_muon);
    m->adam_t = 0;
}

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
    model_zero_state(m);
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
    std::string F = tf.meta_value("mlp_hidden");   // absent in files older than --mlp-hidden: 4C
    if (!F.empty()) cfg.F = atoi(F.c_str());
    if (cfg.F != 4 * cfg.C) tag += " mlp" + std::to_string(cfg.F);
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
        report(tag + " grad " + s.name, rel_error(gi, as_doubles(tf.get(std::string("grad.") + s.name))),
               tolerance("grad"));
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

// ---------------------------------------------------------------------------------------------------------
// one optimizer step, tensor by tensor, against dev/ref/optim_d2.ptf (dev/export_reference.py --optim): Muon
// with its AdamW tensors, and AdamW only, each with clipping off and on (on: the clip is half the gradient
// norm), through the trainer's own model_update. Per tensor: the relative error of the update new - old
// against the float64 reference, and of the optimizer state after it. The bounds come from the file
// (dev/optim_ref.py UPDATE_MAX_REL says why they are what they are; dev/test_reference.py shows that each
// known mistake in the optimizer lands well above them).

// Copies every tensor `prefix + name` of the table from the file into the buffer laid out like the
// parameters; tensors the file does not have are zero (the state Muon's tensors have no use for).
// The reference's tensors of one kind (n_params floats, the table's offsets; zeros where it has none)
static std::vector<float> host_by_table(const Model& m, const TensorFile& tf, const std::string& prefix) {
    std::vector<float> host(m.n_params, 0.0f);
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m.spec[i];
        const RefTensor* t = s.present ? tf.find(prefix + s.name) : NULL;
        if (!t) continue;
        if ((size_t)t->numel != s.numel) {
            fprintf(stderr, "%s: %s%s has %ld elements, the model %zu\n", tf.path.c_str(), prefix.c_str(), s.name,
                    (long)t->numel, s.numel);
            exit(EXIT_FAILURE);
        }
        memcpy(host.data() + s.offset, t->f32(), s.numel * sizeof(float));
    }
    return host;
}

// What the float32 weight adds to the error of an update d, relative to d: two roundings of a weight-sized
// value (the decay product w (1 - lr wd) and the store of the new weight), half an ulp of old + d each.
static double store_rounding_floor(const float* old, const float* d, size_t n) {
    double e2 = 0.0, d2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        float w = fabsf((float)((double)old[i] + d[i]));
        double ulp = (double)nextafterf(w, INFINITY) - w;
        e2 += ulp * ulp;
        d2 += (double)d[i] * d[i];
    }
    return d2 > 0.0 ? sqrt(e2 / d2) : 0.0;
}

static void report_bound(const std::string& name, double err, double tol) {
    bool ok = err <= tol;  // false for NaN and inf
    (ok ? n_pass : n_fail)++;
    printf("%s test_parallax: %s: rel err %.2e (max %.2e)\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol);
    fflush(stdout);
}

static double meta_double(const TensorFile& tf, const std::string& key) { return atof(tf.meta_value(key).c_str()); }

// One recorded step: `kind` muon or adamw, `clip` noclip or clip.
static void test_optimizer_step(Model* m, const TensorFile& tf, bool muon, const char* clip) {
    std::string kind = muon ? "muon" : "adamw", tag = kind + "." + clip;
    if (m->plan_muon != muon) model_plan(m, 1, 0, muon);   // the plan of this optimizer before its state is uploaded
    // parameters and gradients are whole; the optimizer state goes to the plan's parts (state_from_host: Muon's
    // momentum only for its matrices, AdamW's moments only for the rest)
    std::vector<float> grads = host_by_table(*m, tf, kind + ".grad.");
    cudaCheck(cudaMemcpy(m->grads, grads.data(), m->n_params * sizeof(float), cudaMemcpyHostToDevice));
    for (int which = 0; which < 4; which++)   // STATE_PREFIXES: the checkpoint's names, "param." ... "adam_v."
        state_from_host(m, which, host_by_table(*m, tf, kind + "." + STATE_PREFIXES[which]).data());
    m->adam_t = atoi(tf.meta_value(kind + ".adam_t").c_str());
    Hyper hp = hyper_from_meta(tf, muon);
    hp.grad_clip = (float)meta_double(tf, tag + ".grad_clip");
    double ref_norm = meta_double(tf, kind + ".grad_norm");
    double max_update = meta_double(tf, "max_rel_update." + kind), max_adam = meta_double(tf, "max_rel_update.adamw");
    double max_state = meta_double(tf, "max_rel_state");
    std::string name = "optim d2 " + tag;

    float norm = model_update(m, hp, (float)meta_double(tf, "lr_scale"));
    report_bound(name + " grad norm " + std::to_string(norm) + " (clip " + std::to_string(hp.grad_clip) + ")",
                 fabs(norm - ref_norm) / ref_norm, max_state);
    std::vector<float> w = host_copy(m->params, m->n_params), after_state[3];
    const char* after_names[] = {"muon_buf", "adam_m", "adam_v"};
    for (int k = 0; k < 3; k++) {   // the whole of each state, by the table's offsets (zeros where not kept)
        after_state[k].resize(m->n_params);
        state_to_host(m, k + 1, after_state[k].data());
    }
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m->spec[i];
        if (!s.present) continue;
        const float* old = tf.get(kind + ".param." + s.name).f32();
        const float* d_ref = tf.get(tag + ".update." + s.name).f32();
        std::vector<double> d(s.numel), ref(s.numel);
        for (size_t j = 0; j < s.numel; j++) {
            d[j] = (double)w[s.offset + j] - old[j];
            ref[j] = d_ref[j];
        }
        bool by_muon = muon && s.muon_count;
        double tol = (by_muon ? max_update : max_adam) + store_rounding_floor(old, d_ref, s.numel);
        report_bound(name + " update " + s.name + (by_muon ? " (Muon)" : " (AdamW)"), rel_error(d, ref), tol);
        for (int k = 0; k < 3; k++) {
            const RefTensor* after = tf.find(tag + "." + after_names[k] + "." + s.name);
            if (!after) continue;
            const float* got = after_state[k].data() + s.offset;
            report_bound(name + " " + after_names[k] + " " + s.name, rel_error(std::vector<double>(got, got + s.numel),
                         as_doubles(*after)), max_state);
        }
    }
}

static void test_optimizer(const std::string& path) {
    TensorFile tf;
    std::string err;
    if (!tensor_file_read(&tf, path.c_str(), &err)) {
        n_fail++;
        printf("FAIL test_parallax: optimizer reference: %s (make dev/ref/optim_d2.ptf writes it)\n", err.c_str());
        return;
    }
    int depth = atoi(tf.meta_value("depth").c_str()), width = atoi(tf.meta_value("width").c_str());
    int D = atoi(tf.meta_value("head_dim").c_str()), T = atoi(tf.meta_value("max_seq_len").c_str());
    Config cfg = make_config(tf.meta_value("variant") == "parallax", depth, width, D, T);
    cfg.V = atoi(tf.meta_value("vocab").c_str());   // a small vocab keeps the file small; the step ignores it
    cfg.Vp = atoi(tf.meta_value("padded_vocab").c_str());
    Model m;
    model_alloc(&m, cfg, 1, T);  // activations are not used; the step needs the table, the state and scratch
    for (int muon = 1; muon >= 0; muon--)
        for (const char* clip : {"noclip", "clip"}) test_optimizer_step(&m, tf, muon, clip);
    model_free(&m);
}

// ---------------------------------------------------------------------------------------------------------
// the four GEMMs of a linear layer at a size that gemm() tunes (at least GEMM_TUNE_MIN_MACS: the algorithm is
// picked by timing among those whose bits match cuBLASLt's first pick), against float64 on 64 random rows
// (columns for dW): y = x W^T (bf16), y = r + x W^T (fp32), dx = dy W (fp32), dW += dy^T x (fp32)

static void test_tuned_gemms(unsigned seed, int N, int in, int out) {
    std::string name = "gemm N" + std::to_string(N) + " in" + std::to_string(in) + " out" + std::to_string(out);
    std::mt19937 rng(seed);
    std::vector<bf16> x = random_bf16((size_t)N * in, 1.0, rng), W = random_bf16((size_t)out * in, 0.05, rng);
    std::vector<bf16> dy = random_bf16((size_t)N * out, 1.0, rng);
    std::vector<float> r((size_t)N * out), dW0((size_t)out * in);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& e : r) e = normal(rng);
    for (float& e : dW0) e = normal(rng);
    bf16 *d_x = device_copy(x), *d_W = device_copy(W), *d_dy = device_copy(dy), *d_y16;
    float *d_r = device_copy(r), *d_dW = device_copy(dW0), *d_y, *d_dx;
    cudaCheck(cudaMalloc(&d_y16, r.size() * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_y, r.size() * sizeof(float)));
    cudaCheck(cudaMalloc(&d_dx, x.size() * sizeof(float)));
    cudaCheck(cudaMemset(d_y16, 0xFF, r.size() * sizeof(bf16)));
    cudaCheck(cudaMemset(d_y, 0xFF, r.size() * sizeof(float)));
    cudaCheck(cudaMemset(d_dx, 0xFF, x.size() * sizeof(float)));
    linear_forward(d_y16, d_x, d_W, N, in, out, 0);
    matmul_residual(d_y, d_r, d_x, d_W, N, in, out, 0);
    linear_backward_input(d_dx, d_dy, d_W, N, in, out, true, 0);
    linear_backward_weight(d_dW, d_dy, d_x, N, in, out, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<bf16> y16 = host_copy(d_y16, r.size());
    std::vector<float> y = host_copy(d_y, r.size()), dx = host_copy(d_dx, x.size()), dW = host_copy(d_dW, dW0.size());
    auto f = [](bf16 v) { return (double)__bfloat162float(v); };
    std::vector<double> got[4], ref[4];
    std::uniform_int_distribution<int> pick_row(0, N - 1), pick_out(0, out - 1);
    for (int t = 0; t < 64; t++) {
        int row = t == 0 ? N - 1 : pick_row(rng), o = t == 0 ? out - 1 : pick_out(rng);
        for (int j = 0; j < out; j++) {   // row `row` of x W^T
            double acc = 0.0;
            for (int i = 0; i < in; i++) acc += f(x[(size_t)row * in + i]) * f(W[(size_t)j * in + i]);
            got[0].push_back(f(y16[(size_t)row * out + j]));
            ref[0].push_back(acc);
            got[1].push_back(y[(size_t)row * out + j]);
            ref[1].push_back(acc + r[(size_t)row * out + j]);
        }
        for (int i = 0; i < in; i++) {    // row `row` of dy W, and row `o` of dW
            double acc = 0.0, accw = dW0[(size_t)o * in + i];
            for (int j = 0; j < out; j++) acc += f(dy[(size_t)row * out + j]) * f(W[(size_t)j * in + i]);
            for (int n = 0; n < N; n++) accw += f(dy[(size_t)n * out + o]) * f(x[(size_t)n * in + i]);
            got[2].push_back(dx[(size_t)row * in + i]);
            ref[2].push_back(acc);
            got[3].push_back(dW[(size_t)o * in + i]);
            ref[3].push_back(accw);
        }
    }
    report(name + " y = x W^T (bf16)", rel_error(got[0], ref[0]), SMALL_KERNEL_MAX_REL);
    report(name + " y = r + x W^T", rel_error(got[1], ref[1]), 1e-5);
    report(name + " dx = dy W", rel_error(got[2], ref[2]), 1e-5);
    report(name + " dW += dy^T x", rel_error(got[3], ref[3]), 1e-5);
    void* ptrs[] = {d_x, d_W, d_dy, d_y16, d_r, d_dW, d_y, d_dx};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
}

extern char** environ;

// The GPUs `nvidia-smi -L` lists (its "GPU n: ..." lines), 0 when it is absent or fails. Run directly
// (posix_spawnp, no shell), its output read through a pipe.
static int nvidia_smi_gpus() {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    char arg0[] = "nvidia-smi", arg1[] = "-L";
    char* args[] = {arg0, arg1, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "nvidia-smi", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while (rc == 0 && (n = read(fd[0], buf, sizeof buf)) > 0) out.append(buf, n);
    close(fd[0]);
    int status = 0;
    if (rc != 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 0;
    int gpus = 0;
    size_t at = 0;
    while (at < out.size()) {
        if (out.compare(at, 4, "GPU ") == 0) gpus++;
        size_t nl = out.find('\n', at);
        at = nl == std::string::npos ? out.size() : nl + 1;
    }
    return gpus;
}

int main(int argc, char** argv) {
    std::string ref_dir = "dev/ref";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ref-dir") == 0 && i + 1 < argc) ref_dir = argv[++i];
        else { fprintf(stderr, "test_parallax: unknown argument '%s' (usage: test_parallax [--ref-dir DIR])\n", argv[i]); return 2; }
    }
    int n_cuda = 0;
    cudaError_t count_err = cudaGetDeviceCount(&n_cuda);
    if (count_err != cudaSuccess || n_cuda == 0) {
        int listed = nvidia_smi_gpus();
        if (listed > 0) {
            printf("FAIL test_parallax: nvidia-smi -L lists %d GPU(s) but CUDA finds none (%s): a driver, runtime or "
                   "device-permission fault, not a machine without a GPU\n", listed,
                   count_err != cudaSuccess ? cudaGetErrorString(count_err) : "0 devices");
            return 1;
        }
        printf("SKIP test_parallax: skipped: no GPU\n");
        return 0;
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    std::string err;
    if (!attention_path_init(prop, &err)) { fprintf(stderr, "test_parallax: %s\n", err.c_str()); return 2; }
    unsigned seed = (unsigned)time(NULL);
    printf("test_parallax on %s, random seed %u, the model's attention on the %s path\n", prop.name, seed,
           g_attention_path == ATTENTION_PATH_SM80 ? "8.x (sm80)" : "Hopper");
    test_exported_attention(ref_dir + "/attention_cases.ptf");
    test_random_attention(seed);
    for (const KernelCheck& k : small_kernel_checks(seed)) report(k.name, k.err, k.max_rel);
    matmul_init();
    test_tuned_gemms(seed, 8192, 768, 768);     // 4.8 G multiply-adds each: tuned
    test_tuned_gemms(seed + 1, 2056, 3072, 768);
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
    test_optimizer(ref_dir + "/optim_d2.ptf");
    printf("test_parallax: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
