// train_parallax: pretrains a GPT-2-sized model with Parallax attention (or softmax attention, same code with
// the probe compiled out) on llm.c token shards. The spec is ../shared/PARALLAX.md; the PyTorch reference in
// dev/ computes the same numbers (dev/model_ref.py has the same parameter table and the same backward).
//
// Reads top to bottom: config, parameters, activations, forward, backward, update, command line, main loop.
//   make train                      trains d12 on the built-in corpus (data/shards, made by `make data`)
//   ./train_parallax --help         every flag with its default
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "trainer/cuda_common.h"       // defines: cudaCheck, cublasCheck, bf16, ceil_div
#include "trainer/matmul.cuh"          // defines: matmul, linear_forward, linear_backward_input/_weight
#include "trainer/rmsnorm.cuh"         // defines: rmsnorm_forward, rmsnorm_backward
#include "trainer/qkr_norm_rope.cuh"   // defines: qkr_norm_rope_forward, qkr_norm_rope_backward
#include "trainer/relu2.cuh"           // defines: relu2_forward, relu2_backward
#include "trainer/cross_entropy.cuh"   // defines: cross_entropy_forward_backward
#include "trainer/embedding.cuh"       // defines: embedding_forward, embedding_backward, tokens_by_value
#include "trainer/dataloader.h"        // defines: DataLoader, dataloader_open, dataloader_next
#include "trainer/tensor_file.h"       // defines: TensorFile, tensor_file_read, tensor_file_write
#include "trainer/tokenizer.h"         // defines: Tokenizer, tokenizer_load, tokenizer_decode
#include "parallax_kernels.cuh"        // defines: attention_forward, attention_backward
#include "muon.cuh"                    // defines: muon_step, adamw_step, global_sumsq

// ---------------------------------------------------------------------------------------------------------
// config

struct Config {
    bool probe;        // true: Parallax; false: softmax attention
    int L;             // layers (depth)
    int C;             // width
    int H;             // heads
    int D;             // head dim
    int F;             // MLP hidden size (4C by default; --mlp-hidden)
    int V;             // vocab
    int Vp;            // vocab padded to a multiple of 128
    int max_T;         // longest sequence (size of the RoPE table)
    int n_proj() const { return probe ? 4 : 3; }
};

static Config make_config(bool probe, int depth, int width, int head_dim, int max_T) {
    Config c;
    c.probe = probe;
    c.L = depth;
    c.C = width;
    c.D = head_dim;
    c.H = width / head_dim;
    c.F = 4 * width;
    c.V = GPT2_VOCAB;
    c.Vp = (c.V + 127) / 128 * 128;
    c.max_T = max_T;
    return c;
}

// --mlp-hidden match: softmax lacks W_R's C^2 per layer, and a hidden size of F has 2CF MLP weights, so
// F = 4C + C/2 gives it Parallax's parameter count (all but the r gain's D per layer). Parallax keeps 4C.
static int mlp_hidden_match(bool probe, int width) { return probe ? 4 * width : 4 * width + width / 2; }

// ---------------------------------------------------------------------------------------------------------
// parameters: one table of (name, shape, optimizer group) drives allocation, init, checkpoints, the
// Muon/AdamW split and the tests. Same names and order as dev/model_ref.py's param_table.

enum { P_WTE, P_QKVR, P_QGAIN, P_KGAIN, P_RGAIN, P_ATTPROJ, P_FC, P_FCPROJ, P_HEAD, NUM_PARAMS };
enum ParamGroup { GROUP_EMBED, GROUP_HEAD, GROUP_GAIN, GROUP_MATRIX };

struct ParamSpec {
    const char* name;
    int ndim;
    long shape[3];
    size_t numel, offset;   // in elements, into the one parameter allocation
    ParamGroup group;
    int muon_count, muon_rows, muon_cols;   // the matrices Muon orthogonalizes, one batch
    bool present;           // r_gain exists only with the probe
};

static void fill_param_table(ParamSpec* t, const Config& c) {
    long L = c.L, C = c.C, D = c.D, F = c.F, Vp = c.Vp, n = c.n_proj();
    auto set = [&](int i, const char* name, int ndim, long a, long b, long d, ParamGroup g, int mc, int mr, int mcols) {
        ParamSpec& s = t[i];
        s.name = name; s.ndim = ndim; s.shape[0] = a; s.shape[1] = b; s.shape[2] = d;
        s.numel = (size_t)a * b * (ndim == 3 ? d : 1);
        s.group = g; s.muon_count = mc; s.muon_rows = mr; s.muon_cols = mcols; s.present = true;
    };
    set(P_WTE, "wte", 2, Vp, C, 0, GROUP_EMBED, 0, 0, 0);
    set(P_QKVR, "qkvr_w", 3, L, n * C, C, GROUP_MATRIX, L * n, C, C);   // each C x C block its own matrix
    set(P_QGAIN, "q_gain", 2, L, D, 0, GROUP_GAIN, 0, 0, 0);
    set(P_KGAIN, "k_gain", 2, L, D, 0, GROUP_GAIN, 0, 0, 0);
    set(P_RGAIN, "r_gain", 2, L, D, 0, GROUP_GAIN, 0, 0, 0);
    set(P_ATTPROJ, "attproj_w", 3, L, C, C, GROUP_MATRIX, L, C, C);
    set(P_FC, "fc_w", 3, L, F, C, GROUP_MATRIX, L, F, C);
    set(P_FCPROJ, "fcproj_w", 3, L, C, F, GROUP_MATRIX, L, C, F);
    set(P_HEAD, "lm_head_w", 2, Vp, C, 0, GROUP_HEAD, 0, 0, 0);
    if (!c.probe) { t[P_RGAIN].present = false; t[P_RGAIN].numel = 0; }
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMS; i++) { t[i].offset = off; off += t[i].numel; }
}

// ---------------------------------------------------------------------------------------------------------
// activations of one micro-batch (N = B*T tokens), kept for the backward

struct Activations {
    float* res;       // (2L+1, N, C) fp32: residual stream entering each attention, each MLP, and the head
    float* rstd;      // (2L+1, N): rmsnorm of each of those
    bf16* h;          // (2L+1, N, C): rmsnorm outputs, the inputs of qkvr, fc and the head GEMMs
    bf16* qkvr;       // (L, N, nC): raw q | k | v | r
    bf16* qkr;        // (L, N, nC): q, k, r after head norm, gain and RoPE (v columns unused)
    bf16* o;          // (L, N, C): attention output
    bf16* vbar;       // (L, N, C)
    float* lse;       // (L, B, H, T): logsumexp L of the attention rows
    float* tbar;      // (L, B, H, T)
    bf16* u;          // (L, N, F): fc pre-activation (F = MLP hidden, 4C by default)
    bf16* act;        // (L, N, F): relu(u)^2
    bf16* logits;     // (N, Vp): logits, then dlogits after the fused cross-entropy
    float* losses;    // (N)
    // backward scratch
    float* dres;      // (N, C) fp32 gradient of the residual stream
    bf16* dh;         // (N, C) bf16 gradient entering a rmsnorm (a GEMM's output, like every activation)
    bf16* dres_bf16;  // (N, C) bf16 copy for the GEMMs
    bf16* dbig;       // (N, max(F, nC)): d act / d u, or d qkvr
    float* Tg;        // (B, H, T)
    float* Bv;        // (B, H, T)
    float* scratch;   // the q/k/r backward's gain partials (qkr_backward_scratch_floats), and SUMSQ_PARTS
    int* tokens;      // (N) inputs, (N) targets
    int* groups;      // embedding backward grouping, 3N + 1
    void* base;       // the one allocation all of the above are carved from (activations_alloc)
    size_t bytes;
};

struct Model {
    Config cfg;
    ParamSpec spec[NUM_PARAMS];
    size_t n_params;
    float* params;       // fp32 master weights
    bf16* params_bf16;   // bf16 copy the forward and backward read
    float* grads;        // fp32, accumulated over micro-steps
    float* adam_m;       // AdamW state (every tensor has room, Muon's leave it unused)
    float* adam_v;
    float* muon_buf;     // Muon momentum
    MuonScratch muon;
    float* rope;         // (max_T, D/2, 2)
    int B, T;            // the micro-batch the activations are sized for
    Activations act;
    int adam_t;          // AdamW step count
};

static float* param(Model* m, int i) { return m->params + m->spec[i].offset; }
static bf16* param_bf16(Model* m, int i) { return m->params_bf16 + m->spec[i].offset; }
static float* grad(Model* m, int i) { return m->grads + m->spec[i].offset; }

// One layer's slices of the activations (N = B*T tokens of the current micro-batch).
struct LayerActs {
    float *x, *x_mid;          // residual entering the attention and the MLP
    float *rstd, *rstd2;       // their rmsnorms
    bf16 *h, *h2;              // rmsnorm outputs (inputs of the qkvr and fc GEMMs)
    bf16 *qkvr, *qkr, *o, *vbar, *u, *act;
    float *lse, *tbar;
    QKRGains gains;            // this layer's q, k, r gains (r NULL for softmax)
    QKRGainGrads dgains;       // and their gradients
};

static LayerActs layer_acts(Model* m, int l, size_t N, size_t rows) {
    const Config& c = m->cfg;
    Activations* a = &m->act;
    size_t C = c.C, F = c.F, nC = (size_t)c.n_proj() * C;
    LayerActs la;
    la.x = a->res + (2 * l) * N * C;
    la.x_mid = la.x + N * C;
    la.rstd = a->rstd + (2 * l) * N;
    la.rstd2 = la.rstd + N;
    la.h = a->h + (2 * l) * N * C;
    la.h2 = la.h + N * C;
    la.qkvr = a->qkvr + l * N * nC;
    la.qkr = a->qkr + l * N * nC;
    la.o = a->o + l * N * C;
    la.vbar = a->vbar + l * N * C;
    la.u = a->u + l * N * F;
    la.act = a->act + l * N * F;
    la.lse = a->lse + l * rows;
    la.tbar = a->tbar + l * rows;
    la.gains = {{param(m, P_QGAIN) + l * c.D, param(m, P_KGAIN) + l * c.D, c.probe ? param(m, P_RGAIN) + l * c.D : NULL}};
    la.dgains = {{grad(m, P_QGAIN) + l * c.D, grad(m, P_KGAIN) + l * c.D, c.probe ? grad(m, P_RGAIN) + l * c.D : NULL}};
    return la;
}

// fp32 -> bf16, four elements per thread (one 16-byte load, one 8-byte store; the last thread takes the
// tail of an n that is not a multiple of 4). src 16-byte and dst 8-byte aligned.
__global__ void to_bf16_kernel(bf16* dst, const float* src, size_t n) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i + 4 <= n) {
        float4 v = *(const float4*)(src + i);
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        *(uint2*)(dst + i) = make_uint2(*(uint32_t*)&lo, *(uint32_t*)&hi);
    } else {
        for (; i < n; i++) dst[i] = __float2bfloat16(src[i]);
    }
}

static void to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream) {
    to_bf16_kernel<<<(unsigned)((n + 1023) / 1024), 256, 0, stream>>>(dst, src, n);
    cudaCheckLaunch();
}

// fp32 master -> bf16 copy, after init, load and every update
static void model_sync_bf16(Model* m) { to_bf16(m->params_bf16, m->params, m->n_params, 0); }

// Every activation buffer for micro-batches of up to B x T tokens, as one table: a single cudaMalloc carved
// in table order, each slice starting on a 256-byte boundary (vector loads and cuBLAS want alignment).
static void activations_alloc(Activations* a, const Config& cfg, int B, int T) {
    size_t N = (size_t)B * T, C = cfg.C, F = cfg.F, L = cfg.L, nC = cfg.n_proj() * C, rows = (size_t)B * cfg.H * T;
    size_t scratch = std::max(qkr_backward_scratch_floats(cfg.D), (size_t)SUMSQ_PARTS);
    struct { void** ptr; size_t bytes; } table[] = {
        {(void**)&a->res, (2 * L + 1) * N * C * sizeof(float)},
        {(void**)&a->rstd, (2 * L + 1) * N * sizeof(float)},
        {(void**)&a->h, (2 * L + 1) * N * C * sizeof(bf16)},
        {(void**)&a->qkvr, L * N * nC * sizeof(bf16)},
        {(void**)&a->qkr, L * N * nC * sizeof(bf16)},
        {(void**)&a->o, L * N * C * sizeof(bf16)},
        {(void**)&a->vbar, L * N * C * sizeof(bf16)},
        {(void**)&a->lse, L * rows * sizeof(float)},
        {(void**)&a->tbar, L * rows * sizeof(float)},
        {(void**)&a->u, L * N * F * sizeof(bf16)},
        {(void**)&a->act, L * N * F * sizeof(bf16)},
        {(void**)&a->logits, N * cfg.Vp * sizeof(bf16)},
        {(void**)&a->losses, N * sizeof(float)},
        {(void**)&a->dres, N * C * sizeof(float)},
        {(void**)&a->dh, N * C * sizeof(bf16)},
        {(void**)&a->dres_bf16, N * C * sizeof(bf16)},
        {(void**)&a->dbig, N * std::max(F, nC) * sizeof(bf16)},
        {(void**)&a->Tg, rows * sizeof(float)},
        {(void**)&a->Bv, rows * sizeof(float)},
        {(void**)&a->scratch, scratch * sizeof(float)},
        {(void**)&a->tokens, 2 * N * sizeof(int)},
        {(void**)&a->groups, (3 * N + 1) * sizeof(int)},
    };
    auto slice = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
    a->bytes = 0;
    for (const auto& e : table) a->bytes += slice(e.bytes);
    cudaCheck(cudaMalloc(&a->base, a->bytes));
    char* p = (char*)a->base;
    for (const auto& e : table) {
        *e.ptr = p;
        p += slice(e.bytes);
    }
}

static void model_alloc(Model* m, const Config& cfg, int B, int T) {
    m->cfg = cfg;
    m->B = B;
    m->T = T;
    m->adam_t = 0;
    fill_param_table(m->spec, cfg);
    m->n_params = m->spec[NUM_PARAMS - 1].offset + m->spec[NUM_PARAMS - 1].numel;
    size_t np = m->n_params;
    cudaCheck(cudaMalloc(&m->params, np * sizeof(float)));
    cudaCheck(cudaMalloc(&m->params_bf16, np * sizeof(bf16)));
    cudaCheck(cudaMalloc(&m->grads, np * sizeof(float)));
    cudaCheck(cudaMalloc(&m->adam_m, np * sizeof(float)));
    cudaCheck(cudaMalloc(&m->adam_v, np * sizeof(float)));
    cudaCheck(cudaMalloc(&m->muon_buf, np * sizeof(float)));
    cudaCheck(cudaMemset(m->adam_m, 0, np * sizeof(float)));
    cudaCheck(cudaMemset(m->adam_v, 0, np * sizeof(float)));
    cudaCheck(cudaMemset(m->muon_buf, 0, np * sizeof(float)));
    cudaCheck(cudaMemset(m->grads, 0, np * sizeof(float)));
    size_t max_elems = 0, max_gram = 0;
    int max_count = 0;
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m->spec[i];
        if (!s.muon_count) continue;
        size_t k = (size_t)std::min(s.muon_rows, s.muon_cols);
        max_elems = std::max(max_elems, s.numel);
        max_gram = std::max(max_gram, s.muon_count * k * k);
        max_count = std::max(max_count, s.muon_count);
    }
    muon_scratch_alloc(&m->muon, max_elems, max_count, max_gram);

    // RoPE table in double on the host: angle = pos * 10000^(-2i/D)
    int half = cfg.D / 2;
    std::vector<float> rope((size_t)cfg.max_T * half * 2);
    for (int p = 0; p < cfg.max_T; p++)
        for (int i = 0; i < half; i++) {
            double ang = p * pow(10000.0, -2.0 * i / cfg.D);
            rope[((size_t)p * half + i) * 2] = (float)cos(ang);
            rope[((size_t)p * half + i) * 2 + 1] = (float)sin(ang);
        }
    cudaCheck(cudaMalloc(&m->rope, rope.size() * sizeof(float)));
    cudaCheck(cudaMemcpy(m->rope, rope.data(), rope.size() * sizeof(float), cudaMemcpyHostToDevice));

    activations_alloc(&m->act, cfg, B, T);
}

static void model_free(Model* m) {
    Activations* a = &m->act;
    void* ptrs[] = {m->params, m->params_bf16, m->grads, m->adam_m, m->adam_v, m->muon_buf, m->rope, a->base};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
    muon_scratch_free(&m->muon);
}

// Spec init, drawn on the host from one seed: W_q,k,v,r and W_1 uniform with std 0.5/sqrt(C); W_o, W_2 and
// W_head zero; embedding N(0, 1); q, k gains 1, r gain 1/sqrt(D).
static void model_init(Model* m, unsigned long long seed) {
    std::mt19937_64 rng(seed);
    std::vector<float> host(m->n_params, 0.0f);
    float bound = sqrtf(3.0f) * 0.5f / sqrtf((float)m->cfg.C);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(-bound, bound);
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m->spec[i];
        float* p = host.data() + s.offset;
        for (size_t j = 0; j < s.numel; j++) {
            if (i == P_WTE) p[j] = normal(rng);
            else if (i == P_QKVR || i == P_FC) p[j] = uniform(rng);
            else if (i == P_QGAIN || i == P_KGAIN) p[j] = 1.0f;
            else if (i == P_RGAIN) p[j] = 1.0f / sqrtf((float)m->cfg.D);
        }
    }
    cudaCheck(cudaMemcpy(m->params, host.data(), m->n_params * sizeof(float), cudaMemcpyHostToDevice));
    model_sync_bf16(m);
}

// ---------------------------------------------------------------------------------------------------------
// forward: embedding, L blocks, head and the fused cross-entropy. With targets, the logits buffer ends
// holding dlogits scaled by grad_scale (1 / tokens of the whole batch); the mean loss is returned.
// inputs, targets: host arrays of B*T tokens (B, T may be smaller than the allocation).

static float model_forward(Model* m, const int* inputs, const int* targets, int B, int T, float grad_scale) {
    const Config& c = m->cfg;
    Activations* a = &m->act;
    size_t N = (size_t)B * T, C = c.C, F = c.F, nC = (size_t)c.n_proj() * C, rows = (size_t)B * c.H * T;
    cudaStream_t st = 0;
    cudaCheck(cudaMemcpy(a->tokens, inputs, N * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(a->tokens + N, targets, N * sizeof(int), cudaMemcpyHostToDevice));
    embedding_forward(a->res, param(m, P_WTE), a->tokens, (int)N, c.C, st);
    for (int l = 0; l < c.L; l++) {
        LayerActs la = layer_acts(m, l, N, rows);
        // attention: x_mid = x + W_o Parallax(q, r, k, v)
        rmsnorm_forward(la.h, la.rstd, la.x, (int)N, c.C, st);
        linear_forward(la.qkvr, la.h, param_bf16(m, P_QKVR) + l * nC * C, (int)N, c.C, (int)nC, st);
        qkr_norm_rope_forward(la.qkr, la.qkvr, la.gains, m->rope, (int)N, T, c.H, c.D, c.n_proj(), st);
        attention_forward(la.o, la.vbar, la.lse, la.tbar, la.qkr, c.probe ? la.qkr + 3 * C : NULL, la.qkr + C,
                          la.qkvr + 2 * C, B, T, c.H, c.D, (int)nC, st);
        matmul_residual(la.x_mid, la.x, la.o, param_bf16(m, P_ATTPROJ) + l * C * C, (int)N, c.C, c.C, st);
        // MLP: x_next = x_mid + W_2 relu(W_1 rmsnorm(x_mid))^2
        rmsnorm_forward(la.h2, la.rstd2, la.x_mid, (int)N, c.C, st);
        linear_forward(la.u, la.h2, param_bf16(m, P_FC) + l * F * C, (int)N, c.C, c.F, st);
        relu2_forward(la.act, la.u, N * F, st);
        float* x_next = la.x_mid + N * C;
        matmul_residual(x_next, la.x_mid, la.act, param_bf16(m, P_FCPROJ) + l * C * F, (int)N, c.F, c.C, st);
    }
    float* xf = a->res + 2 * c.L * N * C;
    bf16* hf = a->h + 2 * c.L * N * C;
    rmsnorm_forward(hf, a->rstd + 2 * c.L * N, xf, (int)N, c.C, st);
    linear_forward(a->logits, hf, param_bf16(m, P_HEAD), (int)N, c.C, c.Vp, st);
    cross_entropy_forward_backward(a->logits, a->losses, a->tokens + N, (int)N, c.V, c.Vp, grad_scale, st);
    std::vector<float> losses(N);
    cudaCheck(cudaMemcpy(losses.data(), a->losses, N * sizeof(float), cudaMemcpyDeviceToHost));
    double sum = 0.0;  // in order, in double: the same batch gives the same bits
    for (size_t i = 0; i < N; i++) sum += losses[i];
    return (float)(sum / N);
}

// ---------------------------------------------------------------------------------------------------------
// backward: from the dlogits the forward left, every parameter gradient is added into m->grads.

static void model_backward(Model* m, const int* inputs, int B, int T) {
    const Config& c = m->cfg;
    Activations* a = &m->act;
    size_t N = (size_t)B * T, C = c.C, F = c.F, nC = (size_t)c.n_proj() * C, rows = (size_t)B * c.H * T;
    cudaStream_t st = 0;
    // head: logits = hf W_head^T
    bf16* hf = a->h + 2 * c.L * N * C;
    linear_backward_weight(grad(m, P_HEAD), a->logits, hf, (int)N, c.C, c.Vp, st);
    linear_backward_input(a->dh, a->logits, param_bf16(m, P_HEAD), (int)N, c.C, c.Vp, false, st);
    cudaCheck(cudaMemsetAsync(a->dres, 0, N * C * sizeof(float), st));
    rmsnorm_backward(a->dres, a->dres_bf16, a->dh, a->res + 2 * c.L * N * C, a->rstd + 2 * c.L * N, (int)N, c.C, st);

    for (int l = c.L - 1; l >= 0; l--) {
        LayerActs la = layer_acts(m, l, N, rows);
        // MLP: x_next = x_mid + act W_2^T, act = relu(u)^2, u = h2 W_1^T (dres_bf16: dres, from the last norm)
        linear_backward_weight(grad(m, P_FCPROJ) + l * C * F, a->dres_bf16, la.act, (int)N, c.F, c.C, st);
        linear_backward_input(a->dbig, a->dres_bf16, param_bf16(m, P_FCPROJ) + l * C * F, (int)N, c.F, c.C,
                              false, st);
        relu2_backward(a->dbig, la.u, N * F, st);
        linear_backward_weight(grad(m, P_FC) + l * F * C, a->dbig, la.h2, (int)N, c.C, c.F, st);
        linear_backward_input(a->dh, a->dbig, param_bf16(m, P_FC) + l * F * C, (int)N, c.C, c.F, false, st);
        rmsnorm_backward(a->dres, a->dres_bf16, a->dh, la.x_mid, la.rstd2, (int)N, c.C, st);
        // attention: x_mid = x + o W_o^T
        linear_backward_weight(grad(m, P_ATTPROJ) + l * C * C, a->dres_bf16, la.o, (int)N, c.C, c.C, st);
        bf16* dO = a->dh;  // reuse: free until the q/k/v/r GEMM below
        linear_backward_input(dO, a->dres_bf16, param_bf16(m, P_ATTPROJ) + l * C * C, (int)N, c.C, c.C, false, st);
        bf16* dq = a->dbig;
        attention_backward(dq, c.probe ? dq + 3 * C : NULL, dq + C, dq + 2 * C, a->Tg, a->Bv, dO, la.qkr,
                           c.probe ? la.qkr + 3 * C : NULL, la.qkr + C, la.qkvr + 2 * C, la.o, la.vbar, la.lse, la.tbar,
                           B, T, c.H, c.D, (int)nC, st);
        qkr_norm_rope_backward(a->dbig, la.dgains, a->scratch, la.qkvr, la.gains, m->rope, (int)N, T, c.H, c.D,
                               c.n_proj(), st);
        linear_backward_weight(grad(m, P_QKVR) + l * nC * C, a->dbig, la.h, (int)N, c.C, (int)nC, st);
        linear_backward_input(a->dh, a->dbig, param_bf16(m, P_QKVR) + l * nC * C, (int)N, c.C, (int)nC, false, st);
        rmsnorm_backward(a->dres, l > 0 ? a->dres_bf16 : NULL, a->dh, la.x, la.rstd, (int)N, c.C, st);
    }
    std::vector<int> groups;
    int n_unique = tokens_by_value(&groups, inputs, (int)N);
    cudaCheck(cudaMemcpy(a->groups, groups.data(), groups.size() * sizeof(int), cudaMemcpyHostToDevice));
    embedding_backward(grad(m, P_WTE), a->dres, a->groups, groups, n_unique, c.C, st);
}

// ---------------------------------------------------------------------------------------------------------
// update: Muon for the block matrices (optimizer "muon"), AdamW for the rest, or AdamW for all.

struct Hyper {
    bool muon;                                   // optimizer: true muon (+ AdamW), false AdamW for all
    float muon_lr, muon_beta, muon_wd;
    float adam_lr, adam_beta1, adam_beta2, adam_eps, adam_wd;   // adam_lr: AdamW-only mode
    float embed_lr, head_lr, gain_lr;            // AdamW groups under Muon
    float grad_clip;                             // 0: off
};

static Hyper default_hyper(bool muon) {
    Hyper h;
    h.muon = muon;
    h.muon_lr = 0.02f; h.muon_beta = 0.95f; h.muon_wd = 0.0f;
    h.embed_lr = 0.3f; h.head_lr = 0.008f; h.gain_lr = 0.02f;
    if (muon) { h.adam_lr = 0.0f; h.adam_beta1 = 0.8f; h.adam_beta2 = 0.95f; h.adam_eps = 1e-10f; h.adam_wd = 0.0f; }
    else { h.adam_lr = 1e-3f; h.adam_beta1 = 0.9f; h.adam_beta2 = 0.95f; h.adam_eps = 1e-8f; h.adam_wd = 0.1f; }
    h.grad_clip = 1.0f;
    return h;
}

// Returns the gradient norm (before clipping). lr_scale is the schedule's multiplier.
static float model_update(Model* m, const Hyper& hp, float lr_scale) {
    cudaStream_t st = 0;
    float norm = (float)sqrt(global_sumsq(m->grads, m->n_params, m->act.scratch, st));
    float gscale = (hp.grad_clip > 0.0f && norm > hp.grad_clip) ? hp.grad_clip / norm : 1.0f;
    m->adam_t++;
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m->spec[i];
        if (!s.present) continue;
        float* w = param(m, i);
        float* g = grad(m, i);
        if (hp.muon && s.muon_count) {
            muon_step(&m->muon, w, m->muon_buf + s.offset, g, s.muon_count, s.muon_rows, s.muon_cols,
                      hp.muon_lr * lr_scale, hp.muon_beta, hp.muon_wd, gscale, st);
            continue;
        }
        float lr = hp.adam_lr, wd = hp.adam_wd;
        if (hp.muon) lr = s.group == GROUP_EMBED ? hp.embed_lr : s.group == GROUP_HEAD ? hp.head_lr : hp.gain_lr;
        else if (s.group == GROUP_GAIN) wd = 0.0f;   // AdamW-only: decay on matrices, not on the gains
        adamw_step(w, m->adam_m + s.offset, m->adam_v + s.offset, g, s.numel, lr * lr_scale, hp.adam_beta1,
                   hp.adam_beta2, hp.adam_eps, wd, m->adam_t, gscale, st);
    }
    model_sync_bf16(m);
    return norm;
}

// Learning-rate multiplier at `step` (0-based) of `total`: linear warmup, then WSD (flat, linear decay to 0
// over the last decay_frac) or cosine to 0. Same as dev/optim_ref.py lr_schedule.
static float lr_schedule(int step, int total, int warmup, float decay_frac, bool cosine) {
    if (step < warmup) return (float)(step + 1) / warmup;
    if (!cosine) {
        int decay_start = total - (int)(decay_frac * total);
        if (step < decay_start) return 1.0f;
        return 1.0f - (float)(step - decay_start + 1) / std::max(1, total - decay_start);
    }
    float frac = std::min(1.0f, (float)(step - warmup + 1) / std::max(1, total - warmup));
    return 0.5f * (1.0f + cosf(3.14159265358979f * frac));
}


// ---------------------------------------------------------------------------------------------------------
// checkpoints: the reference tensor-file layout (dev/README.md), read in PyTorch by dev/load_checkpoint.py.
// Tensors param.<name>, muon_buf.<name>, adam_m.<name>, adam_v.<name> (fp32, the table's shapes); metadata
// holds the config, the step, the AdamW step count and the data loader position. That is the whole training
// state, so a resumed run continues bit for bit.

static const char* STATE_PREFIXES[] = {"param.", "muon_buf.", "adam_m.", "adam_v."};

static float* state_buffer(Model* m, int which) {
    float* bufs[] = {m->params, m->muon_buf, m->adam_m, m->adam_v};
    return bufs[which];
}

static bool model_save(Model* m, const char* path, std::vector<std::pair<std::string, std::string>> meta,
                       std::string* err) {
    const Config& c = m->cfg;
    meta.push_back({"kind", "checkpoint"});
    meta.push_back({"variant", c.probe ? "parallax" : "softmax"});
    meta.push_back({"depth", std::to_string(c.L)});
    meta.push_back({"width", std::to_string(c.C)});
    meta.push_back({"head_dim", std::to_string(c.D)});
    meta.push_back({"mlp_hidden", std::to_string(c.F)});
    meta.push_back({"vocab", std::to_string(c.V)});
    meta.push_back({"padded_vocab", std::to_string(c.Vp)});
    meta.push_back({"adam_t", std::to_string(m->adam_t)});
    std::vector<float> host(4 * m->n_params);
    for (int w = 0; w < 4; w++)
        cudaCheck(cudaMemcpy(host.data() + w * m->n_params, state_buffer(m, w), m->n_params * sizeof(float),
                             cudaMemcpyDeviceToHost));
    std::vector<TensorToWrite> tensors;
    for (int w = 0; w < 4; w++)
        for (int i = 0; i < NUM_PARAMS; i++) {
            const ParamSpec& s = m->spec[i];
            if (!s.present) continue;
            TensorToWrite t;
            t.name = std::string(STATE_PREFIXES[w]) + s.name;
            t.dtype = 0;
            for (int d = 0; d < s.ndim; d++) t.shape.push_back(s.shape[d]);
            t.data = host.data() + w * m->n_params + s.offset;
            tensors.push_back(t);
        }
    return tensor_file_write(path, meta, tensors, err);
}

// The checkpoint must describe the same model (variant, depth, width, head dim, MLP hidden size); returns
// false with `err`.
static bool model_load_checkpoint(Model* m, const TensorFile& tf, std::string* err) {
    const Config& c = m->cfg;
    const char* keys[] = {"variant", "depth", "width", "head_dim", "mlp_hidden"};
    std::string want[] = {c.probe ? "parallax" : "softmax", std::to_string(c.L), std::to_string(c.C), std::to_string(c.D),
                          std::to_string(c.F)};
    for (int i = 0; i < 5; i++) {
        std::string got;
        if (i == 4) got = std::to_string(4 * c.C);   // checkpoints older than --mlp-hidden have 4C
        for (auto& kv : tf.meta) if (kv.first == keys[i]) got = kv.second;
        if (got != want[i]) {
            *err = tf.path + ": " + keys[i] + " is " + got + ", this run has " + want[i];
            return false;
        }
    }
    std::vector<float> host(m->n_params, 0.0f);
    for (int w = 0; w < 4; w++) {
        for (int i = 0; i < NUM_PARAMS; i++) {
            const ParamSpec& s = m->spec[i];
            if (!s.present) continue;
            const RefTensor* t = tf.find(std::string(STATE_PREFIXES[w]) + s.name);
            if (!t || (size_t)t->numel != s.numel) {
                *err = tf.path + ": " + STATE_PREFIXES[w] + s.name + " is missing or has the wrong size";
                return false;
            }
            memcpy(host.data() + s.offset, t->f32(), s.numel * sizeof(float));
        }
        cudaCheck(cudaMemcpy(state_buffer(m, w), host.data(), m->n_params * sizeof(float), cudaMemcpyHostToDevice));
    }
    m->adam_t = atoi(tf.meta_value("adam_t").c_str());
    model_sync_bf16(m);
    return true;
}

// ---------------------------------------------------------------------------------------------------------
// sampling: n tokens after <|endoftext|>, temperature 1, one full forward per token (B = 1; short and rare,
// so no KV cache). The sampler has its own RNG: sampling never changes the training run.

static std::vector<int> model_sample(Model* m, int n, unsigned long long seed) {
    const Config& c = m->cfg;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    std::vector<int> toks = {50256};
    std::vector<bf16> row(c.Vp);
    std::vector<double> prob(c.V);
    int limit = m->T;   // the activations hold one sequence of up to T tokens
    for (int i = 0; i < n && (int)toks.size() < limit; i++) {
        int T = (int)toks.size();
        std::vector<int> dummy(T, 0);
        model_forward(m, toks.data(), dummy.data(), 1, T, 0.0f);
        cudaCheck(cudaMemcpy(row.data(), m->act.logits + (size_t)(T - 1) * c.Vp, c.Vp * sizeof(bf16),
                             cudaMemcpyDeviceToHost));
        double mx = -1e30, sum = 0.0;
        for (int v = 0; v < c.V; v++) mx = std::max(mx, (double)__bfloat162float(row[v]));
        for (int v = 0; v < c.V; v++) sum += (prob[v] = exp(__bfloat162float(row[v]) - mx));
        double u = uni(rng) * sum;
        int next = c.V - 1;
        for (int v = 0; v < c.V; v++) {
            u -= prob[v];
            if (u <= 0) { next = v; break; }
        }
        toks.push_back(next);
    }
    return std::vector<int>(toks.begin() + 1, toks.end());
}

// dense bf16 peak of the GPU, for MFU (datasheet numbers; 0 when unknown)
static double gpu_peak_flops(const cudaDeviceProp& p) {
    std::string n = p.name;
    if (n.find("H100") != std::string::npos || n.find("H200") != std::string::npos || n.find("H800") != std::string::npos) return 989e12;
    if (n.find("A100") != std::string::npos || n.find("A800") != std::string::npos) return 312e12;
    return 0.0;
}

#ifndef TESTING
// ---------------------------------------------------------------------------------------------------------
// command line

struct Options {
    std::string train_data = "data/shards/train_*.bin";
    std::string val_data = "data/shards/val_*.bin";
    std::string attention = "parallax";
    std::string optimizer = "muon";
    std::string schedule = "wsd";
    std::string prose_val_data = "data/shards/valprose_*.bin";   // optional: skipped when nothing matches
    std::string tokenizer = "data/shards/gpt2_tokenizer.bin";
    std::string out = "out";
    int depth = 12, width = 0, head_dim = 64, seq_len = 1024, max_seq_len = 1024, batch = 32;
    int mlp_hidden = 0;          // 0: 4C; set from --mlp-hidden after the width is known
    bool mlp_match = false;      // --mlp-hidden match
    long total_batch = 262144;   // 16 micro-steps of 16 x 1024
    int steps = 200, warmup = 20, val_every = 50, val_batches = 20, seed = 1337;
    int checkpoint_every = 100, sample_every = 100, sample_tokens = 64;
    bool resume = false;
    float decay_frac = 0.3f;
    Hyper hp = default_hyper(true);
};

static void usage(const Options& o) {
    printf("usage: ./train_parallax [flags]\n"
           "  --train-data GLOB   training shards (default %s)\n"
           "  --val-data GLOB     validation shards (default %s)\n"
           "  --prose-val-data G  clean-prose validation shards, reported apart; '' = none (default %s)\n"
           "  --tokenizer FILE    llm.c decode file for samples (default %s)\n"
           "  --attention NAME    parallax or softmax (default %s)\n"
           "  --optimizer NAME    muon (Muon + AdamW) or adamw (default %s)\n"
           "  --depth N           layers (default %d); width defaults to 64 x depth\n"
           "  --width C           model width, a multiple of 128 up to 4096 (default 64 x depth)\n"
           "  --head-dim D        64 or 128 (default %d)\n"
           "  --mlp-hidden N      MLP hidden size, a multiple of 64, or 'match': softmax gets 4C + C/2, Parallax's\n"
           "                      parameter count (W_R's C^2 per layer; Parallax keeps 4C) (default 4C)\n"
           "  --seq-len T         sequence length (default %d)\n"
           "  --max-seq-len T     longest sequence allowed (default %d)\n"
           "  --batch B           micro-batch (default %d)\n"
           "  --total-batch N     tokens per step, a multiple of B x T (default %ld)\n"
           "  --steps N           optimizer steps (default %d)\n"
           "  --warmup N          warmup steps (default %d)\n"
           "  --schedule NAME     wsd or cosine (default %s)\n"
           "  --decay-frac F      WSD: fraction of steps in the final decay (default %.2f)\n"
           "  --muon-lr F         (default %g)   --embed-lr F (default %g)   --head-lr F (default %g)\n"
           "  --gain-lr F         (default %g)   --adam-lr F  (AdamW-only, default 0.001)\n"
           "  --grad-clip F       global norm clip, 0 = off (default %g)\n"
           "  --val-every N       validation every N steps (default %d)\n"
           "  --val-batches N     micro-batches per validation (default %d)\n"
           "  --sample-every N    print a sampled text every N steps, 0 = never (default %d)\n"
           "  --sample-tokens N   tokens per sample (default %d)\n"
           "  --checkpoint-every N  write OUT/checkpoint.ptf every N steps and at the end, 0 = only at the end (default %d)\n"
           "  --resume 1          continue from OUT/checkpoint.ptf, bit for bit (same flags)\n"
           "  --seed N            seed of the init (default %d)\n"
           "  --out DIR           log.csv and checkpoint.ptf go here (default %s)\n"
           "  --help              this text\n",
           o.train_data.c_str(), o.val_data.c_str(), o.prose_val_data.c_str(), o.tokenizer.c_str(), o.attention.c_str(),
           o.optimizer.c_str(), o.depth, o.head_dim, o.seq_len, o.max_seq_len, o.batch, o.total_batch, o.steps, o.warmup, o.schedule.c_str(), o.decay_frac, o.hp.muon_lr,
           o.hp.embed_lr, o.hp.head_lr, o.hp.gain_lr, o.hp.grad_clip, o.val_every, o.val_batches, o.sample_every, o.sample_tokens,
           o.checkpoint_every, o.seed, o.out.c_str());
}

[[noreturn]] static void flag_error(const char* flag, const std::string& why) {
    fprintf(stderr, "train_parallax: %s: %s (see --help)\n", flag, why.c_str());
    exit(2);
}

static long parse_int(const char* flag, const char* v, long lo, long hi) {
    char* end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) flag_error(flag, std::string("expected an integer, got '") + v + "'");
    if (x < lo || x > hi) flag_error(flag, std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                                               std::to_string(hi) + "]");
    return x;
}

static float parse_float(const char* flag, const char* v, float lo, float hi) {
    char* end;
    float x = strtof(v, &end);
    if (end == v || *end || !std::isfinite(x)) flag_error(flag, std::string("expected a number, got '") + v + "'");
    if (x < lo || x > hi) flag_error(flag, std::string(v) + " is out of range");
    return x;
}

static Options parse_args(int argc, char** argv) {
    Options o;
    float muon_lr = -1, embed_lr = -1, head_lr = -1, gain_lr = -1, adam_lr = -1, clip = -1;
    bool total_set = false;
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) { usage(o); exit(0); }
        if (strncmp(f, "--", 2) != 0) flag_error(f, "not a flag (flags look like --name value)");
        if (i + 1 >= argc) flag_error(f, "missing value");
        const char* v = argv[++i];
        if (!strcmp(f, "--train-data")) o.train_data = v;
        else if (!strcmp(f, "--val-data")) o.val_data = v;
        else if (!strcmp(f, "--attention")) {
            o.attention = v;
            if (o.attention != "parallax" && o.attention != "softmax") flag_error(f, std::string("unknown attention '") + v + "' (parallax or softmax)");
        } else if (!strcmp(f, "--optimizer")) {
            o.optimizer = v;
            if (o.optimizer != "muon" && o.optimizer != "adamw") flag_error(f, std::string("unknown optimizer '") + v + "' (muon or adamw)");
        } else if (!strcmp(f, "--schedule")) {
            o.schedule = v;
            if (o.schedule != "wsd" && o.schedule != "cosine") flag_error(f, std::string("unknown schedule '") + v + "' (wsd or cosine)");
        } else if (!strcmp(f, "--depth")) o.depth = (int)parse_int(f, v, 1, 256);
        else if (!strcmp(f, "--width")) o.width = (int)parse_int(f, v, 64, 16384);
        else if (!strcmp(f, "--head-dim")) o.head_dim = (int)parse_int(f, v, 64, 128);
        else if (!strcmp(f, "--mlp-hidden")) {
            o.mlp_match = !strcmp(v, "match");
            if (!o.mlp_match) o.mlp_hidden = (int)parse_int(f, v, 64, 1 << 18);
        }
        else if (!strcmp(f, "--seq-len")) o.seq_len = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--max-seq-len")) o.max_seq_len = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--batch")) o.batch = (int)parse_int(f, v, 1, 1 << 16);
        else if (!strcmp(f, "--total-batch")) { o.total_batch = parse_int(f, v, 1, 1L << 40); total_set = true; }
        else if (!strcmp(f, "--steps")) o.steps = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--warmup")) o.warmup = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--decay-frac")) o.decay_frac = parse_float(f, v, 0.0f, 1.0f);
        else if (!strcmp(f, "--val-every")) o.val_every = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--val-batches")) o.val_batches = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--seed")) o.seed = (int)parse_int(f, v, 0, 2147483647L);
        else if (!strcmp(f, "--out")) o.out = v;
        else if (!strcmp(f, "--prose-val-data")) o.prose_val_data = v;
        else if (!strcmp(f, "--tokenizer")) o.tokenizer = v;
        else if (!strcmp(f, "--sample-every")) o.sample_every = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--sample-tokens")) o.sample_tokens = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--checkpoint-every")) o.checkpoint_every = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--resume")) o.resume = parse_int(f, v, 0, 1) == 1;
        else if (!strcmp(f, "--muon-lr")) muon_lr = parse_float(f, v, 0.0f, 100.0f);
        else if (!strcmp(f, "--embed-lr")) embed_lr = parse_float(f, v, 0.0f, 100.0f);
        else if (!strcmp(f, "--head-lr")) head_lr = parse_float(f, v, 0.0f, 100.0f);
        else if (!strcmp(f, "--gain-lr")) gain_lr = parse_float(f, v, 0.0f, 100.0f);
        else if (!strcmp(f, "--adam-lr")) adam_lr = parse_float(f, v, 0.0f, 100.0f);
        else if (!strcmp(f, "--grad-clip")) clip = parse_float(f, v, 0.0f, 1e9f);
        else flag_error(f, "unknown flag");
    }
    o.hp = default_hyper(o.optimizer == "muon");
    if (muon_lr >= 0) o.hp.muon_lr = muon_lr;
    if (embed_lr >= 0) o.hp.embed_lr = embed_lr;
    if (head_lr >= 0) o.hp.head_lr = head_lr;
    if (gain_lr >= 0) o.hp.gain_lr = gain_lr;
    if (adam_lr >= 0) o.hp.adam_lr = adam_lr;
    if (clip >= 0) o.hp.grad_clip = clip;
    if (o.width == 0) o.width = 64 * o.depth;
    // the default step is 2^18 tokens when --batch and --seq-len divide it; otherwise one micro-batch
    if (!total_set && o.total_batch % ((long)o.batch * o.seq_len)) o.total_batch = (long)o.batch * o.seq_len;
    if (o.head_dim != 64 && o.head_dim != 128) flag_error("--head-dim", "must be 64 or 128");
    if (o.width % o.head_dim) flag_error("--width", std::to_string(o.width) + " is not a multiple of --head-dim " + std::to_string(o.head_dim));
    if (o.width % 128) flag_error("--width", std::to_string(o.width) + " must be a multiple of 128");
    if (o.width > RMSNORM_MAX_C)   // also when it comes from --depth
        flag_error("--width", std::to_string(o.width) + " is above " + std::to_string(RMSNORM_MAX_C) +
                              " (the norms hold a row in one block of threads)");
    if (o.mlp_match) o.mlp_hidden = mlp_hidden_match(o.attention == "parallax", o.width);
    if (o.mlp_hidden == 0) o.mlp_hidden = 4 * o.width;
    if (o.mlp_hidden % 64) flag_error("--mlp-hidden", std::to_string(o.mlp_hidden) + " is not a multiple of 64");
    if (o.seq_len > o.max_seq_len) flag_error("--seq-len", std::to_string(o.seq_len) + " is above the maximum " + std::to_string(o.max_seq_len) + " (raise --max-seq-len)");
    long bt = (long)o.batch * o.seq_len;
    if (o.total_batch % bt) flag_error("--total-batch", std::to_string(o.total_batch) + " is not a multiple of --batch x --seq-len = " + std::to_string(bt));
    if (o.steps > 0 && o.warmup > o.steps) flag_error("--warmup", "longer than --steps");
    return o;
}

// ---------------------------------------------------------------------------------------------------------
// main loop

static float evaluate(Model* m, DataLoader* dl, int batches) {
    dataloader_reset(dl);
    double sum = 0.0;
    for (int i = 0; i < batches; i++) {
        dataloader_next(dl);
        sum += model_forward(m, dl->inputs.data(), dl->targets.data(), dl->B, dl->T, 0.0f);
    }
    return (float)(sum / batches);
}


// the metadata a checkpoint carries besides the model: what must match to resume, and where to resume
static std::vector<std::pair<std::string, std::string>> run_meta(const Options& o, int step, const DataLoader& train) {
    return {{"optimizer", o.optimizer}, {"seq_len", std::to_string(o.seq_len)}, {"batch", std::to_string(o.batch)},
            {"total_batch", std::to_string(o.total_batch)}, {"seed", std::to_string(o.seed)},
            {"step", std::to_string(step)}, {"train_shard", std::to_string(train.shard)},
            {"train_offset", std::to_string(train.offset)}};
}

static void save_checkpoint(Model* m, const Options& o, int step, const DataLoader& train) {
    std::string path = o.out + "/checkpoint.ptf", err;
    if (!model_save(m, path.c_str(), run_meta(o, step, train), &err)) {
        fprintf(stderr, "train_parallax: checkpoint: %s\n", err.c_str());
        exit(EXIT_FAILURE);
    }
    printf("step %5d | wrote %s\n", step, path.c_str());
}

int main(int argc, char** argv) {
    Options o = parse_args(argc, argv);
    // every input is checked before any GPU work
    DataLoader train, val, prose;
    std::string err;
    if (!dataloader_open(&train, "--train-data", o.train_data.c_str(), o.batch, o.seq_len, &err) ||
        !dataloader_open(&val, "--val-data", o.val_data.c_str(), o.batch, o.seq_len, &err)) {
        fprintf(stderr, "train_parallax: %s\n", err.c_str());
        return 2;
    }
    bool have_prose = false;
    if (!o.prose_val_data.empty()) {
        glob_t g;
        bool any = glob(o.prose_val_data.c_str(), 0, NULL, &g) == 0 && g.gl_pathc > 0;
        if (any) globfree(&g);
        if (any && !dataloader_open(&prose, "--prose-val-data", o.prose_val_data.c_str(), 1, o.seq_len, &err)) {
            fprintf(stderr, "train_parallax: %s\n", err.c_str());
            return 2;
        }
        have_prose = any;
    }
    Tokenizer tok;
    bool have_tok = o.sample_every > 0 && tokenizer_load(&tok, o.tokenizer.c_str(), &err);
    if (o.sample_every > 0 && !have_tok) printf("note: --tokenizer %s; samples print as token ids\n", err.c_str());
    TensorFile ckpt;
    int start = 0;
    if (o.resume) {
        std::string path = o.out + "/checkpoint.ptf";
        if (!tensor_file_read(&ckpt, path.c_str(), &err)) { fprintf(stderr, "train_parallax: --resume: %s\n", err.c_str()); return 2; }
        for (auto& kv : run_meta(o, 0, train)) {
            if (kv.first == "step" || kv.first == "train_shard" || kv.first == "train_offset") continue;
            if (ckpt.meta_value(kv.first) != kv.second) {
                fprintf(stderr, "train_parallax: --resume: %s has %s %s, this run %s (use the same flags)\n",
                        path.c_str(), kv.first.c_str(), ckpt.meta_value(kv.first).c_str(), kv.second.c_str());
                return 2;
            }
        }
        start = atoi(ckpt.meta_value("step").c_str());
        train.shard = atoi(ckpt.meta_value("train_shard").c_str());
        train.offset = atol(ckpt.meta_value("train_offset").c_str());
        if (start > o.steps || train.shard >= (int)train.paths.size()) {
            fprintf(stderr, "train_parallax: --resume: %s is at step %d (shard %d), past this run's --steps %d or shards\n",
                    path.c_str(), start, train.shard, o.steps);
            return 2;
        }
    }
    if (cuda_device_count() == 0) { fprintf(stderr, "train_parallax: no CUDA GPU found\n"); return 1; }
    std::string mk = "mkdir -p '" + o.out + "'";
    if (system(mk.c_str()) != 0) { fprintf(stderr, "train_parallax: --out %s: cannot create\n", o.out.c_str()); return 2; }

    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    matmul_init();
    Config cfg = make_config(o.attention == "parallax", o.depth, o.width, o.head_dim, o.max_seq_len);
    cfg.F = o.mlp_hidden;
    Model m;
    model_alloc(&m, cfg, o.batch, o.seq_len);
    model_init(&m, (unsigned long long)o.seed);
    if (o.resume) {
        if (!model_load_checkpoint(&m, ckpt, &err)) { fprintf(stderr, "train_parallax: --resume: %s\n", err.c_str()); return 2; }
        ckpt = TensorFile();  // free the host copy
        printf("resumed from %s/checkpoint.ptf at step %d\n", o.out.c_str(), start);
    }
    int accum = (int)(o.total_batch / ((long)o.batch * o.seq_len));
    // model FLOPs per token: 6 x matrix params (embedding excluded) + attention (spec 1, causal) per token
    double mat_params = 0;
    for (int i = 0; i < NUM_PARAMS; i++) if (i != P_WTE && m.spec[i].ndim == 3) mat_params += m.spec[i].numel;
    mat_params += m.spec[P_HEAD].numel;
    double u_per_token = (double)cfg.L * cfg.H * o.seq_len * cfg.D;   // u / (B T)
    double flops_per_token = 6 * mat_params + (cfg.probe ? 12 : 7) * u_per_token;
    double peak = gpu_peak_flops(prop);
    printf("train_parallax: %s attention, %s, d%d (C=%d, H=%d, D=%d), %.1f M parameters, on %s\n",
           o.attention.c_str(), o.optimizer.c_str(), cfg.L, cfg.C, cfg.H, cfg.D, m.n_params / 1e6, prop.name);
    printf("  MLP hidden %d, %zu parameters\n", cfg.F, m.n_params);
    printf("  batch %d x %d, %d micro-steps = %ld tokens per step, %d steps; train %ld tokens in %zu shards, "
           "val %ld tokens\n", o.batch, o.seq_len, accum, o.total_batch, o.steps, dataloader_total_tokens(&train),
           train.paths.size(), dataloader_total_tokens(&val));
    printf("  activations %.2f GiB for micro-batches of %d x %d (one allocation)\n", m.act.bytes / 1073741824.0,
           o.batch, o.seq_len);

    std::string log_path = o.out + "/log.csv";
    FILE* log = fopen(log_path.c_str(), o.resume ? "a" : "w");
    if (!log) { fprintf(stderr, "train_parallax: cannot write %s\n", log_path.c_str()); return 1; }
    if (!o.resume) fprintf(log, "step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s\n");

    double total_ms = 0.0;
    int timed = 0;
    for (int step = start; step <= o.steps; step++) {
        long tokens_seen = (long)step * o.total_batch;
        bool resumed_here = o.resume && step == start;
        if (o.val_every && (step % o.val_every == 0 || step == o.steps) && !resumed_here) {
            float vl = evaluate(&m, &val, o.val_batches);
            fprintf(log, "%d,%ld,val,%.6f,,,,\n", step, tokens_seen, vl);
            if (have_prose) {
                float pl = evaluate(&m, &prose, std::max(1, (int)(dataloader_total_tokens(&prose) / (o.seq_len + 1)) - 1));
                fprintf(log, "%d,%ld,valprose,%.6f,,,,\n", step, tokens_seen, pl);
                printf("step %5d | val loss %.4f | prose val loss %.4f\n", step, vl, pl);
            } else {
                printf("step %5d | val loss %.4f\n", step, vl);
            }
            fflush(log);
        }
        if (o.sample_every && step > start && (step % o.sample_every == 0 || step == o.steps)) {
            std::vector<int> ids = model_sample(&m, o.sample_tokens, (unsigned long long)o.seed * 1000003ULL + step);
            if (have_tok) printf("step %5d | sample: %s\n", step, tokenizer_decode(&tok, ids).c_str());
            else { printf("step %5d | sample ids:", step); for (int id : ids) printf(" %d", id); printf("\n"); }
        }
        if (step > start && (step == o.steps || (o.checkpoint_every && step % o.checkpoint_every == 0)))
            save_checkpoint(&m, o, step, train);
        if (step == o.steps) break;
        cudaEvent_t t0, t1;
        cudaCheck(cudaEventCreate(&t0)); cudaCheck(cudaEventCreate(&t1));
        cudaCheck(cudaEventRecord(t0));
        cudaCheck(cudaMemset(m.grads, 0, m.n_params * sizeof(float)));
        double loss = 0.0;
        for (int k = 0; k < accum; k++) {
            dataloader_next(&train);
            loss += model_forward(&m, train.inputs.data(), train.targets.data(), o.batch, o.seq_len,
                                  1.0f / (float)o.total_batch);
            model_backward(&m, train.inputs.data(), o.batch, o.seq_len);
        }
        loss /= accum;
        float lrs = lr_schedule(step, o.steps, o.warmup, o.decay_frac, o.schedule == "cosine");
        float norm = model_update(&m, o.hp, lrs);
        cudaCheck(cudaEventRecord(t1));
        cudaCheck(cudaEventSynchronize(t1));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, t0, t1));
        cudaCheck(cudaEventDestroy(t0)); cudaCheck(cudaEventDestroy(t1));
        if (step > start) { total_ms += ms; timed++; }   // the first step includes cuBLAS warm-up
        double tps = o.total_batch / (ms / 1e3);
        double mfu = peak > 0 ? 100.0 * flops_per_token * tps / peak : 0.0;
        printf("step %5d/%d | loss %.4f | lr %.3f | norm %.3f | %.1f ms | %.0f tok/s | MFU %.1f%%\n", step + 1,
               o.steps, loss, lrs, norm, ms, tps, mfu);
        fprintf(log, "%d,%ld,train,%.6f,%.5f,%.5f,%.2f,%.0f\n", step + 1, tokens_seen + o.total_batch, loss, lrs,
                norm, ms, tps);
        fflush(log);
        if (!std::isfinite(loss)) { fprintf(stderr, "train_parallax: loss is not finite at step %d\n", step + 1); return 1; }
    }
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    fprintf(log, "%d,%ld,gpu_memory_gib,%.3f,,,,\n", o.steps, (long)o.steps * o.total_batch,
            (total_b - free_b) / 1073741824.0);   // every buffer is allocated up front: this is the peak
    if (timed > 0)
        printf("done: %d steps timed, %.1f s, %.0f tok/s average; GPU memory in use %.1f GiB\n", timed, total_ms / 1e3,
               timed * o.total_batch / (total_ms / 1e3), (total_b - free_b) / 1073741824.0);
    fclose(log);
    model_free(&m);
    return 0;
}
#endif
