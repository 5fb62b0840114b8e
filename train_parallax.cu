// train_parallax: pretrains a GPT-2-sized model with Parallax attention (or softmax attention, same code with
// the probe compiled out) on llm.c token shards. The spec is ../shared/PARALLAX.md; the PyTorch reference in
// dev/ computes the same numbers (dev/model_ref.py has the same parameter table and the same backward).
//
// Reads top to bottom: config, parameters, activations, forward, backward, update, command line, main loop.
//   make train                      trains d12 on the built-in corpus (data/shards, made by `make data`)
//   ./train_parallax --help         every flag with its default
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>
#include <algorithm>
#include <cctype>
#include <dirent.h>

#include "trainer/cuda_common.h"       // defines: cudaCheck, cublasCheck, bf16, ceil_div
#include "trainer/matmul.cuh"          // defines: matmul, linear_forward, linear_backward_input/_weight
#include "trainer/rmsnorm.cuh"         // defines: rmsnorm_forward, rmsnorm_backward
#include "trainer/qkr_norm_rope.cuh"   // defines: qkr_norm_rope_forward, qkr_norm_rope_backward
#include "trainer/relu2.cuh"           // defines: relu2_forward, relu2_backward
#include "trainer/cross_entropy.cuh"   // defines: cross_entropy_forward_backward
#include "trainer/argmax.cuh"          // defines: logits_argmax
#include "trainer/embedding.cuh"       // defines: embedding_forward, embedding_backward, tokens_by_value
#include "trainer/dataloader.h"        // defines: DataLoader, dataloader_open, dataloader_next
#include "trainer/loss_mask.h"         // defines: LossMask, loss_mask_open, loss_mask_train, loss_mask_count_ahead, loss_mask_val
#include "trainer/tensor_file.h"       // defines: TensorFile, tensor_file_read, tensor_file_write, tensor_file_read_meta
#include "trainer/tokenizer.h"         // defines: Tokenizer, tokenizer_load, tokenizer_decode
#include "parallax_kernels.cuh"        // defines: attention_forward, attention_backward, their params structs
#include "trainer/attention_sm80.cuh"  // defines: attention_forward_sm80, attention_backward_sm80 (the 8.x path)
#include "trainer/gpu_arch.h"          // defines: attention_path_pick, gpu_check_supported, gpu_peak_bf16
#include "muon.cuh"                    // defines: muon_step, adamw_step, global_sumsq
#include "trainer/shard_plan.h"        // defines: ShardPlan, shard_plan_make (ZeRO-1: who updates what)
#include "trainer/data_slice.h"        // defines: DataSlice, data_slice_make, dataloader_skip, split_range
#include "trainer/dist.cuh"            // defines: Dist, dist_bucket_ready, dist_sum_host, dist_broadcast
#include "trainer/eval_file.h"         // defines: EvalSet, eval_file_read, eval_fits, eval_row, eval_scores, eval_write_csv

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
    float* lse;       // (L, B, H, T): logsumexp of the attention rows' scores
    float* tbar;      // (L, B, H, T)
    bf16* u;          // (L, N, F): fc pre-activation (F = MLP hidden, 4C by default)
    bf16* act;        // (L, N, F): relu(u)^2
    bf16* logits;     // (N, Vp): logits, then dlogits after the fused cross-entropy
    float* losses;    // (N)
    int* preds;       // (N) predicted tokens of an evaluation (model_predict)
    // backward scratch
    float* dres;      // (N, C) fp32 gradient of the residual stream
    bf16* dh;         // (N, C) bf16 gradient entering a rmsnorm (a GEMM's output, like every activation)
    bf16* dres_bf16;  // (N, C) bf16 copy for the GEMMs
    bf16* dbig;       // (N, max(F, nC)): d act / d u, or d qkvr
    float* Tg;        // (B, H, T): the attention backward's row dot g.o
    float* gvbar;     // (B, H, T): and g.vbar
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
    float* adam_m;       // AdamW state of this rank's parts (plan.state_off), one buffer of plan.adam_state
    float* adam_v;
    float* muon_buf;     // Muon momentum of this rank's matrices, plan.muon_state
    ShardPlan plan;      // which part of each tensor this rank updates (world 1: all of it)
    bool plan_muon;      // the plan is for Muon (+ AdamW) or for AdamW alone
    Dist* dist;          // NULL: one GPU, no NCCL
    bool sync_grads;     // this backward finishes the step's gradients: all-reduce its buckets
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

// The attention's params for one layer of a micro-batch of B sequences of T tokens: q, k, r after their norm
// and RoPE (qkr), v raw (qkvr); the probe is the Config's bool.
static AttentionForwardParams layer_attention(const Config& c, const LayerActs& la, int B, int T) {
    AttentionShape shape = {B, T, c.H, c.D, c.probe};
    return attention_forward_params(shape, la.qkr, la.qkvr, {la.o, la.vbar, la.lse, la.tbar});
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
// Returns the bytes; with base NULL only counts them (the memory check before any allocation).
static size_t activations_layout(Activations* a, const Config& cfg, int B, int T, char* base) {
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
        {(void**)&a->preds, N * sizeof(int)},
        {(void**)&a->dres, N * C * sizeof(float)},
        {(void**)&a->dh, N * C * sizeof(bf16)},
        {(void**)&a->dres_bf16, N * C * sizeof(bf16)},
        {(void**)&a->dbig, N * std::max(F, nC) * sizeof(bf16)},
        {(void**)&a->Tg, rows * sizeof(float)},
        {(void**)&a->gvbar, rows * sizeof(float)},
        {(void**)&a->scratch, scratch * sizeof(float)},
        {(void**)&a->tokens, 2 * N * sizeof(int)},
        {(void**)&a->groups, (3 * N + 1) * sizeof(int)},
    };
    auto slice = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
    size_t total = 0;
    for (const auto& e : table) {
        if (base) *e.ptr = base + total;
        total += slice(e.bytes);
    }
    return total;
}

static void activations_alloc(Activations* a, const Config& cfg, int B, int T) {
    a->bytes = activations_layout(a, cfg, B, T, NULL);
    cudaCheck(cudaMalloc(&a->base, a->bytes));
    activations_layout(a, cfg, B, T, (char*)a->base);
}

// Muon's scratch is sized by the largest matrix batch it orthogonalizes (muon_scratch_alloc's arguments).
struct MuonSizes { size_t max_elems, max_gram; int max_count; };

static MuonSizes muon_sizes(const ParamSpec* spec) {
    MuonSizes z = {0, 0, 0};
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = spec[i];
        if (!s.muon_count) continue;
        size_t k = (size_t)std::min(s.muon_rows, s.muon_cols);
        z.max_elems = std::max(z.max_elems, s.numel);
        z.max_gram = std::max(z.max_gram, s.muon_count * k * k);
        z.max_count = std::max(z.max_count, s.muon_count);
    }
    return z;
}

// GPU memory the run allocates, from the config alone (the same tables model_alloc uses): fp32 params,
// grads, AdamW m and v, Muon momentum and a bf16 copy (22 bytes per parameter), Muon's scratch, the
// activations, the RoPE table and cuBLASLt's workspace. GEMM tuning borrows more for a moment, and fails
// softly when it cannot.
static size_t run_memory_bytes(const Config& cfg, int B, int T) {
    ParamSpec spec[NUM_PARAMS];
    fill_param_table(spec, cfg);
    size_t np = spec[NUM_PARAMS - 1].offset + spec[NUM_PARAMS - 1].numel;
    MuonSizes z = muon_sizes(spec);
    Activations a;
    size_t bytes = np * (5 * sizeof(float) + sizeof(bf16));
    bytes += z.max_elems * (sizeof(float) + 2 * sizeof(bf16)) + z.max_count * sizeof(float) + 2 * z.max_gram * sizeof(bf16);
    bytes += activations_layout(&a, cfg, B, T, NULL);
    bytes += (size_t)cfg.max_T * cfg.D * sizeof(float) + CUBLASLT_WORKSPACE_BYTES;
    return bytes;
}

// Compute capability 8.0 and newer: the Hopper kernels on 9.0, the 8.x attention path elsewhere
// (trainer/gpu_arch.h); *why says why not.
static bool gpu_is_supported(const cudaDeviceProp& p, std::string* why) {
    return gpu_check_supported(p.name, p.major, p.minor, why);
}

// The tensors as the ZeRO-1 plan sees them: Muon's whole matrices, or AdamW's element slices.
static std::vector<PlanTensor> model_plan_tensors(const Model* m, bool muon) {
    std::vector<PlanTensor> t;
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m->spec[i];
        t.push_back({s.numel, s.muon_count, s.muon_rows, s.muon_cols, muon && s.muon_count > 0});
    }
    return t;
}

// (Re)allocates the optimizer state for rank `rank` of `world` under Muon or AdamW, zeroed: only this rank's
// parts have room, so the state per GPU falls as 1 / world.
static void model_plan(Model* m, int world, int rank, bool muon) {
    float* old[] = {m->adam_m, m->adam_v, m->muon_buf};
    for (float* p : old) if (p) cudaCheck(cudaFree(p));
    m->plan = shard_plan_make(model_plan_tensors(m, muon), world, rank);
    m->plan_muon = muon;
    size_t na = std::max(m->plan.adam_state, (size_t)1), nm = std::max(m->plan.muon_state, (size_t)1);
    cudaCheck(cudaMalloc(&m->adam_m, na * sizeof(float)));
    cudaCheck(cudaMalloc(&m->adam_v, na * sizeof(float)));
    cudaCheck(cudaMalloc(&m->muon_buf, nm * sizeof(float)));
    cudaCheck(cudaMemset(m->adam_m, 0, na * sizeof(float)));
    cudaCheck(cudaMemset(m->adam_v, 0, na * sizeof(float)));
    cudaCheck(cudaMemset(m->muon_buf, 0, nm * sizeof(float)));
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
    cudaCheck(cudaMemset(m->grads, 0, np * sizeof(float)));
    m->adam_m = m->adam_v = m->muon_buf = NULL;
    m->dist = NULL;
    m->sync_grads = false;
    model_plan(m, 1, 0, true);
    MuonSizes z = muon_sizes(m->spec);
    muon_scratch_alloc(&m->muon, z.max_elems, z.max_count, z.max_gram);

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
// the attention kernels of this process: the Hopper ones (parallax_kernels.cuh) or the 8.x path
// (trainer/attention_sm80.cuh), picked once from the GPU and PARALLAX_ATTENTION by attention_path_init

static AttentionPath g_attention_path = ATTENTION_PATH_HOPPER;

// false with the reason in *err when the GPU is older than 8.0 or PARALLAX_ATTENTION is bad
static bool attention_path_init(const cudaDeviceProp& prop, std::string* err) {
    if (!gpu_check_supported(prop.name, prop.major, prop.minor, err)) return false;
    bool hopper_built = kernel_built_for_hopper((const void*)attention_forward_kernel<64, true>);
    return attention_path_pick(prop.major, prop.minor, hopper_built, getenv("PARALLAX_ATTENTION"), &g_attention_path,
                               err);
}

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
        (g_attention_path == ATTENTION_PATH_SM80 ? attention_forward_sm80 : attention_forward)(
            layer_attention(c, la, B, T), st);
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
    size_t scored = 0;  // positions inside the loss mask (a negative target is outside: its loss is 0)
    for (size_t i = 0; i < N; i++) { sum += losses[i]; scored += targets[i] >= 0; }
    return scored ? (float)(sum / scored) : 0.0f;
}

// Forward only, for the evaluations that score single positions (recall accuracy, last-word tests): each
// position's loss (0 outside the mask) and predicted token (the first largest logit), host vectors of B * T.
static void model_predict(Model* m, const int* inputs, const int* targets, int B, int T, std::vector<float>* losses,
                          std::vector<int>* preds) {
    size_t N = (size_t)B * T;
    model_forward(m, inputs, targets, B, T, 0.0f);
    logits_argmax(m->act.logits, m->act.preds, (int)N, m->cfg.V, m->cfg.Vp, 0);
    losses->resize(N);
    preds->resize(N);
    cudaCheck(cudaMemcpy(losses->data(), m->act.losses, N * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(preds->data(), m->act.preds, N * sizeof(int), cudaMemcpyDeviceToHost));
}

// ---------------------------------------------------------------------------------------------------------
// backward: from the dlogits the forward left, every parameter gradient is added into m->grads.

// Gradient buckets in the order the backward finishes them: the head, each layer from the last, the
// embedding. Layer l's bucket: its slice of every per-layer tensor (qkvr_w, the gains, attproj_w, fc_w, fcproj_w).
static std::vector<std::vector<GradRange>> grad_buckets(Model* m) {
    int L = m->cfg.L;
    std::vector<std::vector<GradRange>> b(L + 2);
    b[0].push_back({grad(m, P_HEAD), m->spec[P_HEAD].numel});
    for (int l = 0; l < L; l++)
        for (int i = 0; i < NUM_PARAMS; i++) {
            const ParamSpec& s = m->spec[i];
            if (i == P_WTE || i == P_HEAD || !s.present) continue;
            size_t per = s.numel / L;
            b[1 + (L - 1 - l)].push_back({grad(m, i) + l * per, per});
        }
    b[L + 1].push_back({grad(m, P_WTE), m->spec[P_WTE].numel});
    return b;
}

// bucket b's gradients are final: start its all-reduce (only in the step's last backward of a parallel run)
static void grads_ready(Model* m, int b, cudaStream_t st) {
    if (m->dist && m->sync_grads) dist_bucket_ready(m->dist, b, st);
}

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
    grads_ready(m, 0, st);

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
        (g_attention_path == ATTENTION_PATH_SM80 ? attention_backward_sm80 : attention_backward)(
            attention_backward_params(layer_attention(c, la, B, T), dO, dq, a->Tg, a->gvbar), st);
        qkr_norm_rope_backward(a->dbig, la.dgains, a->scratch, la.qkvr, la.gains, m->rope, (int)N, T, c.H, c.D,
                               c.n_proj(), st);
        linear_backward_weight(grad(m, P_QKVR) + l * nC * C, a->dbig, la.h, (int)N, c.C, (int)nC, st);
        linear_backward_input(a->dh, a->dbig, param_bf16(m, P_QKVR) + l * nC * C, (int)N, c.C, (int)nC, false, st);
        rmsnorm_backward(a->dres, l > 0 ? a->dres_bf16 : NULL, a->dh, la.x, la.rstd, (int)N, c.C, st);
        grads_ready(m, 1 + (c.L - 1 - l), st);
    }
    std::vector<int> groups;
    int n_unique = tokens_by_value(&groups, inputs, (int)N);
    cudaCheck(cudaMemcpy(a->groups, groups.data(), groups.size() * sizeof(int), cudaMemcpyHostToDevice));
    embedding_backward(grad(m, P_WTE), a->dres, a->groups, groups, n_unique, c.C, st);
    grads_ready(m, c.L + 1, st);
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

// every rank's updated parts broadcast from their owners (the all-gather of ZeRO-1), timed
static void params_gather(Model* m, cudaStream_t st) {
    std::vector<BcastPart> parts;
    for (int i = 0; i < NUM_PARAMS; i++)
        for (int r = 0; r < m->plan.world; r++) {
            Range own = m->plan.own[i][r];
            parts.push_back({param(m, i) + own.begin, param(m, i) + own.begin, own.size(), r});
        }
    cudaCheck(cudaEventRecord(m->dist->gather_start, st));
    dist_broadcast(m->dist, parts, st);
    cudaCheck(cudaEventRecord(m->dist->gather_done, st));
}

// The global gradient norm (before clipping), on the host: the main loop decides on it whether to update.
static float model_grad_norm(Model* m) {
    return (float)sqrt(global_sumsq(m->grads, m->n_params, m->act.scratch, 0));
}

// One optimizer step with the gradients in m->grads, whose global norm is `norm`; lr_scale is the schedule's
// multiplier.
static void model_apply_update(Model* m, const Hyper& hp, float lr_scale, float norm) {
    cudaStream_t st = 0;
    float gscale = (hp.grad_clip > 0.0f && norm > hp.grad_clip) ? hp.grad_clip / norm : 1.0f;
    if (hp.muon != m->plan_muon) {   // the tests switch optimizers on one model: fresh state for the other
        if (m->plan.world > 1) { fprintf(stderr, "train_parallax: optimizer changed in a parallel run\n"); exit(EXIT_FAILURE); }
        model_plan(m, 1, 0, hp.muon);
    }
    m->adam_t++;
    for (int i = 0; i < NUM_PARAMS; i++) {
        const ParamSpec& s = m->spec[i];
        Range own = m->plan.own[i][m->plan.rank];   // ZeRO-1: only this rank's part
        if (!s.present || own.size() == 0) continue;
        float* w = param(m, i) + own.begin;
        float* g = grad(m, i) + own.begin;
        size_t off = m->plan.state_off[i];
        if (hp.muon && s.muon_count) {
            int count = (int)(own.size() / ((size_t)s.muon_rows * s.muon_cols));
            muon_step(&m->muon, w, m->muon_buf + off, g, count, s.muon_rows, s.muon_cols,
                      hp.muon_lr * lr_scale, hp.muon_beta, hp.muon_wd, gscale, st);
            continue;
        }
        float lr = hp.adam_lr, wd = hp.adam_wd;
        if (hp.muon) lr = s.group == GROUP_EMBED ? hp.embed_lr : s.group == GROUP_HEAD ? hp.head_lr : hp.gain_lr;
        else if (s.group == GROUP_GAIN) wd = 0.0f;   // AdamW-only: decay on matrices, not on the gains
        adamw_step(w, m->adam_m + off, m->adam_v + off, g, own.size(), lr * lr_scale, hp.adam_beta1,
                   hp.adam_beta2, hp.adam_eps, wd, m->adam_t, gscale, st);
    }
    if (m->dist) params_gather(m, st);
    model_sync_bf16(m);
}

// Returns the gradient norm (before clipping).
[[maybe_unused]] static float model_update(Model* m, const Hyper& hp, float lr_scale) {   // the tests and the benchmark
    float norm = model_grad_norm(m);
    model_apply_update(m, hp, lr_scale, norm);
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
// holds the model config, every training setting (run_settings), the step, the AdamW step count, the data
// loader position and the outlier guard's windows. That is the whole training state, so a resumed run
// continues bit for bit.

static const char* STATE_PREFIXES[] = {"param.", "muon_buf.", "adam_m.", "adam_v."};

// which: 0 params, 1 muon_buf, 2 adam_m, 3 adam_v. Whether tensor i has optimizer state `which` (Muon's
// tensors only muon_buf, AdamW's only adam_m and adam_v; the checkpoint holds zeros for the rest), and where
// this rank's part of it is.
static bool state_kept(const Model* m, int which, int i) {
    return m->spec[i].present && (which == 1) == m->plan.tensors[i].muon;
}

static float* state_part(Model* m, int which, int i) {
    float* bufs[] = {NULL, m->muon_buf, m->adam_m, m->adam_v};
    return bufs[which] + m->plan.state_off[i];
}

// The whole of state `which` (n_params floats, the table's offsets) into host (NULL on ranks that do not
// write). Parameters are whole on every rank; optimizer state is gathered from its owners, in a parallel run
// through m->grads (free between steps).
static void state_to_host(Model* m, int which, float* host) {
    size_t n = m->n_params;
    if (which == 0) {
        if (host) cudaCheck(cudaMemcpy(host, m->params, n * sizeof(float), cudaMemcpyDeviceToHost));
        return;
    }
    if (m->dist) {
        cudaCheck(cudaMemset(m->grads, 0, n * sizeof(float)));
        std::vector<BcastPart> parts;
        for (int i = 0; i < NUM_PARAMS; i++) {
            if (!state_kept(m, which, i)) continue;
            for (int r = 0; r < m->plan.world; r++) {
                Range own = m->plan.own[i][r];
                float* recv = grad(m, i) + own.begin;
                parts.push_back({r == m->plan.rank ? state_part(m, which, i) : recv, recv, own.size(), r});
            }
        }
        dist_broadcast(m->dist, parts, 0);
        if (host) cudaCheck(cudaMemcpy(host, m->grads, n * sizeof(float), cudaMemcpyDeviceToHost));
        return;
    }
    memset(host, 0, n * sizeof(float));
    for (int i = 0; i < NUM_PARAMS; i++) {
        Range own = m->plan.own[i][0];
        if (state_kept(m, which, i) && own.size())
            cudaCheck(cudaMemcpy(host + m->spec[i].offset + own.begin, state_part(m, which, i), own.size() * sizeof(float),
                                 cudaMemcpyDeviceToHost));
    }
}

// this rank's parts of state `which` from the whole (host, the table's offsets)
static void state_from_host(Model* m, int which, const float* host) {
    if (which == 0) {
        cudaCheck(cudaMemcpy(m->params, host, m->n_params * sizeof(float), cudaMemcpyHostToDevice));
        return;
    }
    for (int i = 0; i < NUM_PARAMS; i++) {
        Range own = m->plan.own[i][m->plan.rank];
        if (state_kept(m, which, i) && own.size())
            cudaCheck(cudaMemcpy(state_part(m, which, i), host + m->spec[i].offset + own.begin, own.size() * sizeof(float),
                                 cudaMemcpyHostToDevice));
    }
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
    bool writer = !m->dist || m->dist->li.rank == 0;   // every rank takes part in the gather, rank 0 writes
    std::vector<float> host(writer ? 4 * m->n_params : 0);
    for (int w = 0; w < 4; w++) state_to_host(m, w, writer ? host.data() + w * m->n_params : NULL);
    if (!writer) return true;
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
    // a NaN or inf must never replace a good checkpoint (the keep-last pruning would delete the good ones)
    for (const TensorToWrite& t : tensors) {
        const float* x = (const float*)t.data;
        size_t n = 1;
        for (int64_t d : t.shape) n *= (size_t)d;
        for (size_t i = 0; i < n; i++)
            if (!std::isfinite(x[i])) { *err = std::string(path) + ": not written: " + t.name + " holds a non-finite value"; return false; }
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
        state_from_host(m, w, host.data());
    }
    std::string adam_t;
    for (auto& kv : tf.meta) if (kv.first == "adam_t") adam_t = kv.second;
    char* end;
    long t = strtol(adam_t.c_str(), &end, 10);
    if (adam_t.empty() || *end || t < 0 || t > 2147483647L) {
        *err = tf.path + ": adam_t is '" + adam_t + "', expected a count of optimizer steps";
        return false;
    }
    m->adam_t = (int)t;
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

// dense bf16 peak of the GPU in FLOP/s, for MFU (trainer/gpu_arch.h's table; 0 when the GPU is not in it)
static double gpu_peak_flops(const cudaDeviceProp& p) {
    const GpuPeak* g = gpu_peak_bf16(p.name);
    return g ? g->tflops * 1e12 : 0.0;
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
    std::string lastword = "data/shards/lastword.bin";   // optional like prose_val_data: the default skipped when absent
    std::string hellaswag;                               // '' = none
    bool prose_given = false, lastword_given = false;    // named on the command line: then they must exist
    std::string out = "out";
    int depth = 12, width = 0, head_dim = 64, seq_len = 1024, max_seq_len = 0, batch = 32;   // 0: from the others
    int mlp_hidden = 0;          // 0: 4C; set from --mlp-hidden after the width is known
    bool mlp_match = false;      // --mlp-hidden match
    long total_batch = 262144;   // 8 micro-steps of 32 x 1024
    int steps = 200, warmup = 20, val_every = 50, val_batches = 0, seed = 1337;   // val_batches 0: the whole set
    int checkpoint_every = 100, sample_every = 100, sample_tokens = 64;
    int keep_last = 2;          // checkpoints kept on disk, 0 = all
    float skip_outliers = 0.0f; // z-score above which a step's update is skipped, 0 = off
    bool resume = false, dry_run = false;
    float decay_frac = 0.3f;
    Hyper hp = default_hyper(true);
    bool warmup_given = false, total_batch_given = false;   // a default is clamped, a user's value refused
};

#define MAX_MICRO_STEPS 65536   // micro-batches per step: beyond this a --total-batch is surely a typo
#define OUTLIER_WINDOW 64   // steps the --skip-outliers z-score looks back over

// Bytes of one checkpoint at these flags: weights, Muon momentum, AdamW m and v, all fp32 (the header is a few kB).
static double checkpoint_bytes(const Options& o) {
    int width = o.width ? o.width : (64 * o.depth + 127) / 128 * 128;   // before check_config: its default
    Config c = make_config(o.attention == "parallax", o.depth, width, o.head_dim, o.max_seq_len);
    ParamSpec t[NUM_PARAMS];
    fill_param_table(t, c);
    double n = 0;
    for (int i = 0; i < NUM_PARAMS; i++) n += (double)t[i].numel;
    return 16.0 * n;
}

static void usage_checkpoints(const Options& o) {
    double bytes = checkpoint_bytes(o);
    printf("checkpoints and faults:\n"
           "  --keep-last K       keep the K newest checkpoints, 0 = all (default %d)\n"
           "  --skip-outliers Z   skip the update of a step whose loss or gradient norm is more than Z standard\n"
           "                      deviations above the mean of the last %d steps (llm.c's guard), 0 = off (default %g)\n"
           "  Disk: one checkpoint is %.2f GiB at the flags given before --help (%.1f M parameters x 16 bytes:\n"
           "  weights, Muon momentum, AdamW m and v in fp32); a run holds at most K + 1 while it writes one (to a\n"
           "  temporary name, then renamed). --resume 1 refuses a checkpoint whose settings differ from this run's\n"
           "  (model, optimizer, learning rates, schedule, steps, warmup, batch, seed, clip, outlier guard, the train\n"
           "  shards and their sizes) and names each. A fresh run refuses an OUT that holds checkpoints. A non-finite\n"
           "  loss or gradient norm stops the run before its update, naming the step; the last checkpoint stays.\n",
           o.keep_last, OUTLIER_WINDOW, o.skip_outliers, bytes / 1073741824.0, bytes / 16e6);
}

static void usage(const Options& o) {
    printf("usage: ./train_parallax [flags]\n"
           "  --train-data GLOB   training shards (default %s)\n"
           "  --val-data GLOB     validation shards (default %s)\n"
           "  --prose-val-data G  clean-prose validation shards, reported apart; the default skipped when absent,\n"
           "                      '' = none (default %s)\n"
           "  --tokenizer FILE    llm.c decode file for samples (default %s)\n"
           "  --lastword FILE     last-word test (data/lastword.py) at each validation: accuracy, per-word perplexity;\n"
           "                      the default skipped when absent, '' = none (default %s)\n"
           "  --hellaswag FILE    HellaSwag in llm.c's format (data/hellaswag.py) at each validation: acc_norm (default none)\n"
           "  --attention NAME    parallax or softmax (default %s)\n"
           "  --optimizer NAME    muon (Muon + AdamW) or adamw (default %s)\n"
           "  --depth N           layers (default %d); width defaults to 64 x depth\n"
           "  --width C           model width, a multiple of 128 up to 4096 (default 64 x depth, rounded up to 128)\n"
           "  --head-dim D        64 or 128 (default %d)\n"
           "  --mlp-hidden N      MLP hidden size, a multiple of 64, or 'match': softmax gets 4C + C/2, Parallax's\n"
           "                      parameter count (W_R's C^2 per layer; Parallax keeps 4C) (default 4C)\n"
           "  --seq-len T         sequence length (default %d)\n"
           "  --max-seq-len T     longest sequence allowed, the RoPE table (default the larger of 1024 and T)\n"
           "  --batch B           micro-batch (default %d)\n"
           "  --total-batch N     tokens per step (default %ld). Rule: B x T must divide N, and N / (B x T) micro-\n"
           "                      batches be at most %d; otherwise the run is refused with the nearest valid values\n"
           "  --steps N           optimizer steps (default %d)\n"
           "  --warmup N          warmup steps, at most --steps (default %d, lowered to --steps when longer)\n"
           "  --schedule NAME     wsd or cosine (default %s)\n"
           "  --decay-frac F      WSD: fraction of steps in the final decay (default %.2f)\n"
           "  --muon-lr F         (default %g)   --embed-lr F (default %g)   --head-lr F (default %g)\n"
           "  --gain-lr F         (default %g)   --adam-lr F  (AdamW-only, default 0.001)\n"
           "  --grad-clip F       global norm clip, 0 = off (default %g)\n"
           "  --val-every N       validation every N steps, 0 = never (default %d)\n"
           "  --val-batches N     validate on the first N micro-batches of windows only; 0 = every token of the\n"
           "                      validation set exactly once, whatever --batch is (default %d)\n"
           "  --sample-every N    print a sampled text every N steps, 0 = never (default %d)\n"
           "  --sample-tokens N   tokens per sample (default %d)\n"
           "  --checkpoint-every N  write OUT/checkpoint_<step>.ptf every N steps and at the end; 0 = none at all (default %d)\n"
           "  --resume 1          continue from the newest complete checkpoint in OUT, bit for bit (same flags; below)\n"
           "  --seed N            seed of the init (default %d)\n"
           "  --out DIR           log.csv and checkpoint_<step>.ptf go here; created with its parents (default %s)\n"
           "  --dry-run 1         check every flag and file, create OUT, print the plan, stop before the GPU\n"
           "  --help              this text\n"
           "Every flag and file is checked before any GPU work: a bad one exits 2 with the flag or file named.\n",
           o.train_data.c_str(), o.val_data.c_str(), o.prose_val_data.c_str(), o.tokenizer.c_str(), o.lastword.c_str(), o.attention.c_str(),
           o.optimizer.c_str(), o.depth, o.head_dim, o.seq_len, o.batch, o.total_batch, MAX_MICRO_STEPS, o.steps, o.warmup, o.schedule.c_str(), o.decay_frac, o.hp.muon_lr,
           o.hp.embed_lr, o.hp.head_lr, o.hp.gain_lr, o.hp.grad_clip, o.val_every, o.val_batches, o.sample_every, o.sample_tokens,
           o.checkpoint_every, o.seed, o.out.c_str());
    usage_checkpoints(o);
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

// Each flag's own syntax and range; relations between flags are check_config's, after the data is checked.
static Options parse_args(int argc, char** argv) {
    Options o;
    float muon_lr = -1, embed_lr = -1, head_lr = -1, gain_lr = -1, adam_lr = -1, clip = -1;
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
        else if (!strcmp(f, "--width")) o.width = (int)parse_int(f, v, 64, RMSNORM_MAX_C);
        else if (!strcmp(f, "--head-dim")) o.head_dim = (int)parse_int(f, v, 64, 128);
        else if (!strcmp(f, "--mlp-hidden")) {
            o.mlp_match = !strcmp(v, "match");
            if (!o.mlp_match) o.mlp_hidden = (int)parse_int(f, v, 64, 1 << 18);
        }
        else if (!strcmp(f, "--seq-len")) o.seq_len = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--max-seq-len")) o.max_seq_len = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--batch")) o.batch = (int)parse_int(f, v, 1, 1 << 16);
        else if (!strcmp(f, "--total-batch")) { o.total_batch = parse_int(f, v, 1, 1L << 40); o.total_batch_given = true; }
        else if (!strcmp(f, "--steps")) o.steps = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--warmup")) { o.warmup = (int)parse_int(f, v, 0, 1 << 30); o.warmup_given = true; }
        else if (!strcmp(f, "--decay-frac")) o.decay_frac = parse_float(f, v, 0.0f, 1.0f);
        else if (!strcmp(f, "--val-every")) o.val_every = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--val-batches")) o.val_batches = (int)parse_int(f, v, 0, 1 << 20);
        else if (!strcmp(f, "--seed")) o.seed = (int)parse_int(f, v, 0, 2147483647L);
        else if (!strcmp(f, "--out")) {
            o.out = v;
            if (o.out.empty()) flag_error(f, "empty (give a directory)");
        }
        else if (!strcmp(f, "--prose-val-data")) o.prose_val_data = v, o.prose_given = true;
        else if (!strcmp(f, "--tokenizer")) o.tokenizer = v;
        else if (!strcmp(f, "--lastword")) o.lastword = v, o.lastword_given = true;
        else if (!strcmp(f, "--hellaswag")) o.hellaswag = v;
        else if (!strcmp(f, "--sample-every")) o.sample_every = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--sample-tokens")) o.sample_tokens = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--checkpoint-every")) o.checkpoint_every = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--resume")) o.resume = parse_int(f, v, 0, 1) == 1;
        else if (!strcmp(f, "--keep-last")) o.keep_last = (int)parse_int(f, v, 0, 1 << 30);
        else if (!strcmp(f, "--skip-outliers")) o.skip_outliers = parse_float(f, v, 0.0f, 1e6f);
        else if (!strcmp(f, "--dry-run")) o.dry_run = parse_int(f, v, 0, 1) == 1;
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
    return o;
}

// The divisors of n nearest to x: the largest <= x and the smallest in (x, 4x] (0 where there is none).
static void nearest_divisors(long n, long x, long* below, long* above) {
    *below = 0;
    *above = 0;
    for (long d = std::min(x, n); d >= 1 && !*below; d--) if (n % d == 0) *below = d;
    for (long d = x + 1; d <= std::min(n, 4 * x) && !*above; d++) if (n % d == 0) *above = d;
}

// B x T must divide the step; the refusal names the flag the user can change and the nearest valid values.
static void check_step_tokens(const Options& o) {
    long B = o.batch, T = o.seq_len, bt = B * T, n = o.total_batch;
    if (n % bt == 0) return;
    std::string why = "--batch " + std::to_string(B) + " x --seq-len " + std::to_string(T) + " = " + std::to_string(bt) +
                      " tokens does not divide --total-batch " + std::to_string(n) +
                      " (a step is a whole number of micro-batches); nearest valid:";
    const char* flag = o.total_batch_given ? "--total-batch" : "--batch";
    long lo, hi;
    if (n % T == 0) {
        nearest_divisors(n / T, B, &lo, &hi);
        if (lo) why += " --batch " + std::to_string(lo);
        if (hi) why += (lo ? " or " : " --batch ") + std::to_string(hi);
        why += ",";
    } else if (n % B == 0) {
        if (!o.total_batch_given) flag = "--seq-len";
        nearest_divisors(n / B, T, &lo, &hi);
        if (lo) why += " --seq-len " + std::to_string(lo);
        if (hi) why += (lo ? " or " : " --seq-len ") + std::to_string(hi);
        why += ",";
    }
    long down = n / bt * bt, up = down + bt;
    why += " --total-batch " + (down ? std::to_string(down) + " or " : std::string()) + std::to_string(up);
    flag_error(flag, why);
}

// Relations between flags, after the data is checked. A default that the user's other flags make invalid
// is adjusted with a note (a default never fails a command); a value the user gave is refused.
static void check_config(Options* o) {
    if (o->width == 0) {
        o->width = 64 * o->depth;
        if (o->width % 128) {
            printf("note: width 64 x --depth %d = %d rounded up to %d (a multiple of 128; set --width to choose)\n",
                   o->depth, o->width, (o->width + 127) / 128 * 128);
            o->width = (o->width + 127) / 128 * 128;
        }
        if (o->width > RMSNORM_MAX_C)
            flag_error("--width", std::to_string(o->width) + " (64 x --depth " + std::to_string(o->depth) + ") is above " +
                                      std::to_string(RMSNORM_MAX_C) + " (the norms hold a row in one block of threads): set --width");
    }
    if (o->head_dim != 64 && o->head_dim != 128) flag_error("--head-dim", "must be 64 or 128");
    if (o->width % o->head_dim) flag_error("--width", std::to_string(o->width) + " is not a multiple of --head-dim " + std::to_string(o->head_dim));
    if (o->width % 128) flag_error("--width", std::to_string(o->width) + " must be a multiple of 128");
    if (o->mlp_match) o->mlp_hidden = mlp_hidden_match(o->attention == "parallax", o->width);
    if (o->mlp_hidden == 0) o->mlp_hidden = 4 * o->width;
    if (o->mlp_hidden % 64) flag_error("--mlp-hidden", std::to_string(o->mlp_hidden) + " is not a multiple of 64");
    if (o->max_seq_len == 0) o->max_seq_len = std::max(1024, o->seq_len);
    if (o->seq_len > o->max_seq_len)
        flag_error("--seq-len", std::to_string(o->seq_len) + " is above --max-seq-len " + std::to_string(o->max_seq_len));
    check_step_tokens(*o);
    long micro = o->total_batch / ((long)o->batch * o->seq_len);
    if (micro > MAX_MICRO_STEPS)
        flag_error("--total-batch", std::to_string(o->total_batch) + " is " + std::to_string(micro) + " micro-batches of " +
                                        std::to_string(o->batch) + " x " + std::to_string(o->seq_len) + ", more than " +
                                        std::to_string(MAX_MICRO_STEPS) + " (raise --batch or lower --total-batch)");
    if (o->steps > 0 && o->total_batch > (1L << 62) / o->steps)
        flag_error("--steps", std::to_string(o->steps) + " x --total-batch " + std::to_string(o->total_batch) +
                                  " tokens does not fit a 64-bit count");
    if (o->steps > 0 && o->warmup > o->steps) {
        if (o->warmup_given) flag_error("--warmup", std::to_string(o->warmup) + " is longer than --steps " + std::to_string(o->steps));
        printf("note: --warmup %d (the default) lowered to --steps %d\n", o->warmup, o->steps);
        o->warmup = o->steps;
    }
}

// Two globs must not share a file (by device and inode, so links and other spellings count): validation
// that was trained on measures nothing.
static void check_disjoint(const DataLoader& a, const DataLoader& b) {
    for (const std::string& pa : a.paths) {
        struct stat sa;
        if (stat(pa.c_str(), &sa) != 0) continue;
        for (const std::string& pb : b.paths) {
            struct stat sb;
            if (stat(pb.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)
                flag_error(b.flag.c_str(), pb + " is also matched by " + a.flag + " (" + pa + "): validation must be held out");
        }
    }
}

// Opens and checks every shard (header and every token) of the three data sets; exits 2 naming the flag
// and the file. The clean-prose set is optional: skipped when its glob is empty, or when the default matches nothing.
static bool open_data(const Options& o, DataLoader* train, ValSet* val, ValSet* prose) {
    std::string err;
    if (!dataloader_open(train, "--train-data", o.train_data.c_str(), o.batch, o.seq_len, &err) ||
        !valset_open(val, "--val-data", o.val_data.c_str(), o.batch, o.seq_len, &err)) {
        fprintf(stderr, "train_parallax: %s\n", err.c_str());
        exit(2);
    }
    check_disjoint(*train, val->files);
    bool have_prose = false;
    if (!o.prose_val_data.empty()) {
        glob_t g;
        have_prose = glob(o.prose_val_data.c_str(), 0, NULL, &g) == 0 && g.gl_pathc > 0;
        if (have_prose) globfree(&g);
        if (!have_prose && o.prose_given)   // a default may be absent; a named set is a typo if it is
            flag_error("--prose-val-data", o.prose_val_data + ": no file matches ('' = none)");
        if (have_prose && !valset_open(prose, "--prose-val-data", o.prose_val_data.c_str(), o.batch, o.seq_len, &err)) {
            fprintf(stderr, "train_parallax: %s\n", err.c_str());
            exit(2);
        }
        if (have_prose) check_disjoint(*train, prose->files);
    }
    return have_prose;
}

// The loss masks beside the shards of each set (trainer/loss_mask.h), checked; exits 2 naming the file.
struct Masks { LossMask train, val, prose; };

static Masks open_masks(const DataLoader& train, const ValSet& val, const ValSet& prose, bool have_prose) {
    Masks mk;
    std::string err;
    mk.prose.on = false;
    if (!loss_mask_open(&mk.train, train, &err) || !loss_mask_open(&mk.val, val.files, &err) ||
        (have_prose && !loss_mask_open(&mk.prose, prose.files, &err))) {
        fprintf(stderr, "train_parallax: %s\n", err.c_str());
        exit(2);
    }
    const LossMask* sets[] = {&mk.train, &mk.val, &mk.prose};
    const DataLoader* files[] = {&train, &val.files, &prose.files};
    for (int i = 0; i < 3; i++)
        if (sets[i]->on)
            printf("loss mask: %s: %ld of %ld tokens are answers (the masks beside its shards); only they are scored\n",
                   files[i]->flag.c_str(), loss_mask_answers(sets[i]), dataloader_total_tokens(files[i]));
    return mk;
}

// The first GPU checks, before any allocation: a supported compute capability, and room for the run.
static void check_gpu(const cudaDeviceProp& prop, const Config& cfg, const Options& o, size_t need) {
    std::string why;
    if (!gpu_is_supported(prop, &why)) {
        fprintf(stderr, "train_parallax: GPU 0: %s\n", why.c_str());
        exit(2);
    }
    // headroom for what the estimate leaves out: cuBLAS handles, allocator rounding
    const size_t headroom = 512UL << 20;
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    if (need + headroom > free_b) {
        fprintf(stderr, "train_parallax: the run needs %.1f GiB of GPU memory (d%d, C=%d, --batch %d x --seq-len %d; "
                        "0.5 GiB of it headroom), %s has %.1f GiB free: try a smaller --batch or model\n",
                (need + headroom) / 1073741824.0, cfg.L, cfg.C,
                o.batch, o.seq_len, prop.name, free_b / 1073741824.0);
        exit(2);
    }
}

// ---------------------------------------------------------------------------------------------------------
// main loop

// Validation over windows [w0, w1) of the plan (a range, so ranks can split the plan): the summed loss of
// the scored tokens, their number, and how many of them the model predicts (its argmax is the target).
// Batches of B windows; padded rows, and targets outside the loss mask, score nothing.
struct ValScore {
    double sum;
    long tokens, correct;
    float mean() const { return tokens ? (float)(sum / tokens) : 0.0f; }
    double accuracy() const { return tokens ? (double)correct / tokens : 0.0; }
};

// preds: NULL, or (one process) the predictions of the scored targets in plan order (a test hook's dump)
static ValScore evaluate(Model* m, ValSet* vs, LossMask* mk, size_t w0, size_t w1, std::vector<int>* preds) {
    int B = vs->files.B, T = vs->files.T;
    int batches = (int)((w1 - w0 + B - 1) / B);
    int b0 = 0, b1 = batches;   // in a parallel run each rank takes a contiguous share of the batches
    if (m->dist) split_range(batches, m->plan.world, m->plan.rank, &b0, &b1);
    std::vector<int> first, pred;
    std::vector<float> losses((size_t)batches * B * T, 0.0f), loss, tokens(batches, 0.0f), correct(batches, 0.0f);
    for (int bi = b0; bi < b1; bi++) {
        valset_batch(vs, w0 + (size_t)bi * B, w1, &first);
        loss_mask_val(mk, vs, w0 + (size_t)bi * B, w1, first);   // unscored targets -1: loss 0
        const int* tg = vs->files.targets.data();
        model_predict(m, vs->files.inputs.data(), tg, B, T, &loss, &pred);
        std::copy(loss.begin(), loss.end(), losses.begin() + (size_t)bi * B * T);
        for (size_t i = 0; i < loss.size(); i++) {
            if (tg[i] < 0) continue;
            tokens[bi]++;
            correct[bi] += pred[i] == tg[i];
            if (preds) preds->push_back(pred[i]);
        }
    }
    // every rank fills its own batches, zeros elsewhere: the sums over ranks are exact copies (counts per batch
    // are at most B x T, exact in float)
    if (m->dist) { dist_sum_host(m->dist, losses); dist_sum_host(m->dist, tokens); dist_sum_host(m->dist, correct); }
    ValScore r = {0.0, 0, 0};
    for (float x : losses) r.sum += x;   // in order, in double (unscored ones add 0): the same plan, the same bits
    for (int bi = 0; bi < batches; bi++) { r.tokens += (long)tokens[bi]; r.correct += (long)correct[bi]; }
    return r;
}

static std::string fmt_float4(double x) {
    char b[32];
    snprintf(b, sizeof b, "%.4f", x);
    return b;
}

// the test hook's dump: int32 count, then the predictions (int32 each); exits naming the file if it fails
static void write_predictions(const char* path, const std::vector<int>& preds) {
    FILE* f = fopen(path, "wb");
    int n = (int)preds.size();
    bool ok = f && fwrite(&n, sizeof n, 1, f) == 1 && fwrite(preds.data(), sizeof(int), preds.size(), f) == preds.size();
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok) { fprintf(stderr, "train_parallax: TRAIN_PARALLAX_PREDICTIONS %s: cannot write\n", path); exit(EXIT_FAILURE); }
    printf("  wrote %d validation predictions to %s (TRAIN_PARALLAX_PREDICTIONS)\n", n, path);
}

// The windows a validation covers: all of them, or the first --val-batches micro-batches of them.
static size_t val_windows(const Options& o, const ValSet& vs) {
    size_t all = vs.windows.size();
    if (o.val_batches == 0) return all;
    size_t want = (size_t)o.val_batches * o.batch;
    if (want > all) printf("note: --val-batches %d x --batch %d is more than the %zu windows of %s: using them all once\n",
                           o.val_batches, o.batch, all, vs.files.flag.c_str());
    return std::min(want, all);
}

// A downstream test's file, checked before any GPU work (exits 2 naming the flag and the file). '' is none;
// an optional default that does not exist is skipped.
static bool open_eval(EvalSet* es, const char* flag, const std::string& path, int completions, bool optional, int T) {
    struct stat st;
    if (path.empty() || (optional && stat(path.c_str(), &st) != 0)) return false;
    std::string err;
    if (!eval_file_read(es, flag, path.c_str(), completions, &err) || !eval_fits(*es, T, &err)) {
        fprintf(stderr, "train_parallax: %s\n", err.c_str());
        exit(2);
    }
    printf("  %s %s: %zu examples, %d ending%s each, scored at each validation\n", flag, path.c_str(), es->ex.size(),
           completions, completions > 1 ? "s" : "");
    return true;
}

// Every row of a downstream test, B rows of T per forward; in a parallel run each rank takes a contiguous
// share of the batches and fills its rows, zeros elsewhere, so the sums over ranks are exact copies.
static std::vector<RowScore> eval_rows(Model* m, const EvalSet& es, int B, int T) {
    size_t n = es.rows();
    int batches = (int)((n + B - 1) / B), b0 = 0, b1 = batches;
    if (m->dist) split_range(batches, m->plan.world, m->plan.rank, &b0, &b1);
    std::vector<float> loss(n, 0.0f), tokens(n, 0.0f), correct(n, 0.0f);
    std::vector<int> inputs((size_t)B * T), targets((size_t)B * T), preds;
    std::vector<float> losses;
    for (int bi = b0; bi < b1; bi++) {
        for (int b = 0; b < B; b++) {
            size_t r = (size_t)bi * B + b;
            if (r < n) eval_row(es, r, T, &inputs[(size_t)b * T], &targets[(size_t)b * T]);
            else for (int t = 0; t < T; t++) { inputs[(size_t)b * T + t] = 0; targets[(size_t)b * T + t] = -1; }
        }
        model_predict(m, inputs.data(), targets.data(), B, T, &losses, &preds);
        for (int b = 0; b < B && (size_t)bi * B + b < n; b++) {
            size_t r = (size_t)bi * B + b;
            double sum = 0.0;   // in order, in double
            bool all = true;
            for (int t = 0; t < T; t++) {
                int y = targets[(size_t)b * T + t];
                if (y < 0) continue;
                sum += losses[(size_t)b * T + t];
                tokens[r] += 1.0f;
                all = all && preds[(size_t)b * T + t] == y;
            }
            loss[r] = (float)sum;
            correct[r] = all;
        }
    }
    if (m->dist) { dist_sum_host(m->dist, loss); dist_sum_host(m->dist, tokens); dist_sum_host(m->dist, correct); }
    std::vector<RowScore> rows(n);
    for (size_t r = 0; r < n; r++) rows[r] = {loss[r], (int)tokens[r], correct[r] > 0.5f};
    return rows;
}

// One downstream test at a validation: the step line, log.csv (kind <test>_acc, and _ppl for the last-word
// test, in the loss column; the examples in eval_tokens) and OUT/<test>_<step>.csv per row (rank 0).
static void report_eval(Model* m, const EvalSet& es, const Options& o, int step, long tokens_seen, FILE* log) {
    std::vector<RowScore> rows = eval_rows(m, es, o.batch, o.seq_len);
    EvalScores s = eval_scores(es, rows);
    const char* name = es.completions == 1 ? "lastword" : "hellaswag";
    size_t n = es.ex.size();
    if (es.completions == 1) {
        printf("step %5d | lastword acc %.4f | ppl %.2f (%zu passages)\n", step, s.acc, s.ppl, n);
        fprintf(log, "%d,%ld,lastword_ppl,%.6f,,,,,%zu,\n", step, tokens_seen, s.ppl, n);
    } else {
        printf("step %5d | hellaswag acc_norm %.4f (%zu examples)\n", step, s.acc, n);
    }
    fprintf(log, "%d,%ld,%s_acc,%.6f,,,,,%zu,\n", step, tokens_seen, name, s.acc, n);
    char file[64];
    snprintf(file, sizeof file, "/%s_%06d.csv", name, step);
    if ((!m->dist || m->dist->li.rank == 0) && !eval_write_csv(o.out + file, es, rows, s))
        printf("note: cannot write %s%s\n", o.out.c_str(), file);
}

// ---------------------------------------------------------------------------------------------------------
// checkpoints on disk: OUT/checkpoint_<step>.ptf, the settings of the run, its position, the outlier windows

typedef std::vector<std::pair<std::string, std::string>> Meta;

static std::string fmt_float(float x) {
    char b[32];
    snprintf(b, sizeof b, "%.9g", x);   // 9 digits: a float reads back to the same bits
    return b;
}

// Every setting that changes the training run, as the checkpoint stores it. The model keys (variant, depth,
// width, head_dim, mlp_hidden, vocab) are written by model_save from the config; model_settings gives them
// from the flags in the same form.
static Meta run_settings(const Options& o, const DataLoader& train, const LossMask& mask) {
    const Hyper& h = o.hp;
    Meta s = {{"optimizer", o.optimizer}, {"seq_len", std::to_string(o.seq_len)}, {"batch", std::to_string(o.batch)},
              {"total_batch", std::to_string(o.total_batch)}, {"steps", std::to_string(o.steps)},
              {"warmup", std::to_string(o.warmup)}, {"schedule", o.schedule}, {"decay_frac", fmt_float(o.decay_frac)},
              {"seed", std::to_string(o.seed)}, {"muon_lr", fmt_float(h.muon_lr)}, {"muon_beta", fmt_float(h.muon_beta)},
              {"muon_wd", fmt_float(h.muon_wd)}, {"embed_lr", fmt_float(h.embed_lr)}, {"head_lr", fmt_float(h.head_lr)},
              {"gain_lr", fmt_float(h.gain_lr)}, {"adam_lr", fmt_float(h.adam_lr)}, {"adam_beta1", fmt_float(h.adam_beta1)},
              {"adam_beta2", fmt_float(h.adam_beta2)}, {"adam_eps", fmt_float(h.adam_eps)}, {"adam_wd", fmt_float(h.adam_wd)},
              {"grad_clip", fmt_float(h.grad_clip)}, {"skip_outliers", fmt_float(o.skip_outliers)},
              {"train_files", std::to_string(train.paths.size())}};
    for (size_t i = 0; i < train.paths.size(); i++) {
        s.push_back({"train_file." + std::to_string(i), train.paths[i]});
        s.push_back({"train_file_tokens." + std::to_string(i), std::to_string(train.counts[i])});
        if (mask.on) s.push_back({"train_file_answers." + std::to_string(i), std::to_string(mask.answers[i])});
    }
    return s;
}

static Meta model_settings(const Options& o) {
    return {{"variant", o.attention}, {"depth", std::to_string(o.depth)}, {"width", std::to_string(o.width)},
            {"head_dim", std::to_string(o.head_dim)}, {"mlp_hidden", std::to_string(o.mlp_hidden)},
            {"vocab", std::to_string(GPT2_VOCAB)}};
}

static const std::string* meta_find(const Meta& m, const std::string& key) {
    for (auto& kv : m) if (kv.first == key) return &kv.second;
    return NULL;
}

// An integer key in [lo, hi]; false with `why` naming the key and the value.
static bool meta_long(const Meta& m, const char* key, long lo, long hi, long* v, std::string* why) {
    const std::string* s = meta_find(m, key);
    if (!s) { *why = std::string("the metadata key '") + key + "' is missing"; return false; }
    char* end;
    errno = 0;
    *v = strtol(s->c_str(), &end, 10);
    if (s->empty() || *end || errno || *v < lo || *v > hi) {
        *why = std::string(key) + " is '" + *s + "', expected an integer in [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "]";
        return false;
    }
    return true;
}

// The outlier guard: z of a new value against the last OUTLIER_WINDOW values (llm.c's idea), 0 until the window
// is full. Every finite value enters the window, outliers too, so a lasting change of level stops counting as
// an outlier once the window holds it. Floats in, double sums: a resumed run computes the same z.
struct OutlierWindow {
    std::vector<float> v;   // oldest first
};

static double outlier_z(const OutlierWindow& w, float x) {
    if ((int)w.v.size() < OUTLIER_WINDOW) return 0.0;
    double mean = 0.0, var = 0.0;
    for (float y : w.v) mean += y;
    mean /= w.v.size();
    for (float y : w.v) var += (y - mean) * (y - mean);
    var /= w.v.size();
    return var > 0.0 ? (x - mean) / sqrt(var) : 0.0;
}

static void outlier_push(OutlierWindow* w, float x) {
    w->v.push_back(x);
    if ((int)w->v.size() > OUTLIER_WINDOW) w->v.erase(w->v.begin());
}

static std::string window_text(const OutlierWindow& w) {
    std::string s;
    for (float y : w.v) s += (s.empty() ? "" : " ") + fmt_float(y);
    return s;
}

static bool window_parse(const Meta& m, const char* key, OutlierWindow* w, std::string* why) {
    const std::string* s = meta_find(m, key);
    if (!s) { *why = std::string("the metadata key '") + key + "' is missing"; return false; }
    w->v.clear();
    const char* p = s->c_str();
    while (*p) {
        char* end;
        float y = strtof(p, &end);
        if (end == p || !std::isfinite(y) || (*end && *end != ' ') || (int)w->v.size() == OUTLIER_WINDOW) {
            *why = std::string(key) + " is not a list of at most " + std::to_string(OUTLIER_WINDOW) + " finite numbers";
            return false;
        }
        w->v.push_back(y);
        p = *end ? end + 1 : end;
    }
    return true;
}

static std::string checkpoint_path(const std::string& out, int step) {
    char name[64];
    snprintf(name, sizeof name, "/checkpoint_%06d.ptf", step);
    return out + name;
}

// (step, file name) of OUT/checkpoint_<step>.ptf, ascending; with tmp, of the leftover checkpoint_<step>.ptf.tmp
// of a write that was killed. Read with readdir, so that OUT may hold any characters.
static std::vector<std::pair<int, std::string>> list_checkpoints(const std::string& out, bool tmp) {
    std::vector<std::pair<int, std::string>> found;
    DIR* d = opendir(out.c_str());
    if (!d) return found;
    while (struct dirent* e = readdir(d)) {
        const char* n = e->d_name;
        if (strncmp(n, "checkpoint_", 11) != 0 || !isdigit((unsigned char)n[11])) continue;
        char* end;
        errno = 0;
        long step = strtol(n + 11, &end, 10);
        if (errno || step > 2147483647L || strcmp(end, tmp ? ".ptf.tmp" : ".ptf") != 0) continue;
        found.push_back({(int)step, n});
    }
    closedir(d);
    std::sort(found.begin(), found.end());
    return found;
}

// OUT and its parents are made with mkdir(2), one component at a time (no shell ever sees the name); then
// OUT must be a writable directory, and the files the run writes there must not be directories.
static void make_out_dir(const std::string& out) {
    for (size_t i = 1; i <= out.size(); i++) {
        if (i < out.size() && out[i] != '/') continue;
        std::string part = out.substr(0, i);
        if (mkdir(part.c_str(), 0777) != 0 && errno != EEXIST)
            flag_error("--out", part + ": cannot create (" + strerror(errno) + ")");
    }
    struct stat st;
    if (stat(out.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) flag_error("--out", out + " exists and is not a directory");
    if (access(out.c_str(), W_OK | X_OK) != 0) flag_error("--out", out + ": not writable (" + strerror(errno) + ")");
    // log.csv, and every checkpoint_<step>.ptf already there: the run rewrites them, and a resume reads the newest
    std::vector<std::string> files = {"log.csv"};
    for (const auto& c : list_checkpoints(out, false)) files.push_back(c.second);
    for (const std::string& f : files) {
        std::string p = out + "/" + f;
        if (stat(p.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
            flag_error("--out", p + " exists and is not a regular file (the run writes it)");
    }
}

// Where a resumed run starts, read from the checkpoint's metadata before any GPU work.
struct ResumePoint {
    std::string path;
    int step;
    int train_shard;
    long train_offset;
    OutlierWindow loss_window, norm_window;
};

// Each setting of `want` that the checkpoint lacks or holds with another value, one line each with both values.
static std::string settings_mismatch(const Meta& ck, const Meta& want) {
    std::vector<std::string> lines;
    for (auto& kv : want) {
        const std::string* got = meta_find(ck, kv.first);
        if (!got || *got != kv.second)
            lines.push_back(kv.first + ": checkpoint " + (got ? *got : "(missing)") + ", this run " + kv.second);
    }
    for (auto& kv : ck)   // a shard the checkpoint's run had and this one has not
        if (kv.first.compare(0, 10, "train_file") == 0 && !meta_find(want, kv.first))
            lines.push_back(kv.first + ": checkpoint " + kv.second + ", this run (none)");
    std::string s;
    for (size_t i = 0; i < lines.size() && i < 40; i++) s += "\n  " + lines[i];
    if (lines.size() > 40) s += "\n  ... and " + std::to_string(lines.size() - 40) + " more";
    return s;
}

// Checks one checkpoint's metadata against this run: every setting, then the position.
static bool resume_check(const Options& o, const DataLoader& train, const LossMask& mask, const std::string& path,
                         int name_step, const Meta& meta, ResumePoint* rp, std::string* err) {
    const std::string* kind = meta_find(meta, "kind");
    if (!kind || *kind != "checkpoint") {
        *err = "--resume: " + path + ": " + (kind ? "kind is '" + *kind + "'" : std::string("the metadata key 'kind' is missing")) +
               ": not a train_parallax checkpoint";
        return false;
    }
    Meta want = model_settings(o), run = run_settings(o, train, mask);
    want.insert(want.end(), run.begin(), run.end());
    std::string diff = settings_mismatch(meta, want);
    if (!diff.empty()) {
        *err = "--resume: " + path + " was written with other settings (a resumed run needs the same flags and data):" + diff;
        return false;
    }
    long step, shard, offset, adam_t;
    std::string why;
    bool ok = meta_long(meta, "step", 0, o.steps, &step, &why) &&
              meta_long(meta, "train_shard", 0, (long)train.paths.size() - 1, &shard, &why) &&
              meta_long(meta, "train_offset", 0, train.counts[shard < 0 ? 0 : shard], &offset, &why) &&
              meta_long(meta, "adam_t", 0, step, &adam_t, &why) &&
              window_parse(meta, "loss_window", &rp->loss_window, &why) &&
              window_parse(meta, "norm_window", &rp->norm_window, &why);
    if (ok && step != name_step) { why = "step is " + std::to_string(step) + " but the file name says " + std::to_string(name_step); ok = false; }
    if (!ok) { *err = "--resume: " + path + ": " + why; return false; }
    rp->path = path;
    rp->step = (int)step;
    rp->train_shard = (int)shard;
    rp->train_offset = offset;
    return true;
}

// The newest complete checkpoint in OUT decides; a newer one that is cut short or unreadable is passed over
// with a note (a checkpoint under its real name is complete unless the disk lost it: writes are renamed).
static bool resume_find(const Options& o, const DataLoader& train, const LossMask& mask, ResumePoint* rp,
                        std::string* err) {
    std::vector<std::pair<int, std::string>> list = list_checkpoints(o.out, false);
    if (list.empty()) {
        *err = "--resume: " + o.out + " holds no checkpoint (" + o.out + "/checkpoint_<step>.ptf)";
        return false;
    }
    std::string passed;   // why each newer one was passed over
    for (size_t i = list.size(); i-- > 0;) {
        std::string path = o.out + "/" + list[i].second, why;
        Meta meta;
        bool complete = false;
        if (!tensor_file_read_meta(path.c_str(), &meta, &complete, &why) || !complete) {
            if (why.empty()) why = path + ": cut short (its tensors run past the end)";
            printf("note: --resume: passing over %s\n", why.c_str());
            passed += (passed.empty() ? "" : "; ") + why;
            continue;
        }
        return resume_check(o, train, mask, path, list[i].first, meta, rp, err);
    }
    *err = "--resume: no complete checkpoint in " + o.out + ": " + passed;
    return false;
}

// What a run that stops now leaves behind, for its last message.
struct RunState {
    std::string last_checkpoint;   // empty: none written or resumed from
    int last_checkpoint_step = 0;
    OutlierWindow loss_window, norm_window;
};

static std::string last_checkpoint_note(const RunState& rs) {
    if (rs.last_checkpoint.empty()) return "no checkpoint was written";
    return "the last checkpoint, " + rs.last_checkpoint + " (step " + std::to_string(rs.last_checkpoint_step) +
           "), is intact: continue from it with --resume 1";
}

// Keeps the keep_last newest checkpoints at or before `step`; one after it (cut short, passed over by the
// resume) is not counted and is replaced when the run writes that step.
static void prune_checkpoints(const Options& o, int step) {
    if (o.keep_last == 0) return;
    std::vector<std::pair<int, std::string>> list = list_checkpoints(o.out, false);
    int kept = 0;
    for (size_t i = list.size(); i-- > 0;) {
        if (list[i].first > step) continue;
        if (kept++ < o.keep_last) continue;
        std::string path = o.out + "/" + list[i].second;
        if (remove(path.c_str()) != 0) printf("note: cannot remove %s (%s)\n", path.c_str(), strerror(errno));
    }
}

static void save_checkpoint(Model* m, const Options& o, int step, const DataLoader& train, const LossMask& mask,
                            RunState* rs) {
    Meta meta = run_settings(o, train, mask);
    meta.push_back({"step", std::to_string(step)});
    meta.push_back({"train_shard", std::to_string(train.shard)});
    meta.push_back({"train_offset", std::to_string(train.offset)});
    meta.push_back({"loss_window", window_text(rs->loss_window)});
    meta.push_back({"norm_window", window_text(rs->norm_window)});
    std::string path = checkpoint_path(o.out, step), err;
    if (!model_save(m, path.c_str(), meta, &err)) {
        fprintf(stderr, "train_parallax: step %d: checkpoint: %s; %s\n", step, err.c_str(), last_checkpoint_note(*rs).c_str());
        exit(EXIT_FAILURE);
    }
    printf("step %5d | wrote %s\n", step, path.c_str());
    rs->last_checkpoint = path;
    rs->last_checkpoint_step = step;
    if (!m->dist || m->dist->li.rank == 0) prune_checkpoints(o, step);   // rank 0 writes, rank 0 prunes
}

// On resume, log.csv keeps its header and the rows up to the checkpoint's step: later rows are logged again,
// the end-of-run memory row is written again, and a line cut short by a kill is dropped. Rewritten under a
// temporary name and renamed; a missing log.csv starts with the header.
static const char* LOG_HEADER = "step,tokens,kind,loss,lr_scale,grad_norm,ms,tokens_per_s,eval_tokens,eval_correct\n";

static bool log_keep_through(const std::string& path, int step, std::string* err) {
    std::string in, out = LOG_HEADER;
    if (FILE* f = fopen(path.c_str(), "rb")) {
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) in.append(buf, n);
        fclose(f);
    }
    if (in.compare(0, 5, "step,") == 0 && in.find('\n') != std::string::npos) out = in.substr(0, in.find('\n') + 1);
    for (size_t pos = 0, nl; (nl = in.find('\n', pos)) != std::string::npos; pos = nl + 1) {
        std::string line = in.substr(pos, nl + 1 - pos);
        char* end;
        long s = strtol(line.c_str(), &end, 10);
        if (end == line.c_str() || *end != ',' || s > step || line.find(",gpu_memory_gib,") != std::string::npos) continue;
        out += line;
    }
    std::string tmp = path + ".tmp";
    FILE* f = fopen(tmp.c_str(), "wb");
    bool ok = f && fwrite(out.data(), 1, out.size(), f) == out.size();
    if (f) ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        *err = path + ": cannot rewrite (" + strerror(errno) + ")";
        return false;
    }
    return true;
}

int main(int argc, char** argv) {
    Options o = parse_args(argc, argv);
    // every input is checked before any GPU work: the launch (one process per GPU), the data first (a default
    // never hides a bad shard), then the flags' relations and the batch's split over the ranks, then OUT
    LaunchInfo li;
    DataSlice slice;
    std::string lerr;
    if (!launch_parse(launch_getenv, &li, &lerr)) { fprintf(stderr, "train_parallax: %s\n", lerr.c_str()); return 2; }
    DataLoader train;
    ValSet val, prose;
    std::string err;
    bool have_prose = open_data(o, &train, &val, &prose);
    Masks masks = open_masks(train, val, prose, have_prose);
    EvalSet lastword, hellaswag;   // downstream tests: read and checked here, scored at each validation
    bool have_lastword = open_eval(&lastword, "--lastword", o.lastword, 1, !o.lastword_given, o.seq_len);
    bool have_hellaswag = open_eval(&hellaswag, "--hellaswag", o.hellaswag, 4, false, o.seq_len);
    check_config(&o);
    if (!data_slice_make((int)(o.total_batch / ((long)o.batch * o.seq_len)), li.world, li.rank, &slice, &lerr)) {
        fprintf(stderr, "train_parallax: --total-batch %ld: %s\n", o.total_batch, lerr.c_str());
        return 2;
    }
    make_out_dir(o.out);
    size_t val_end = val_windows(o, val), prose_end = have_prose ? val_windows(o, prose) : 0;
    Tokenizer tok;
    bool have_tok = o.sample_every > 0 && tokenizer_load(&tok, o.tokenizer.c_str(), &err);
    if (o.sample_every > 0 && !have_tok) printf("note: --tokenizer %s; samples print as token ids\n", err.c_str());
    // resume: the checkpoint's metadata is checked against every setting here; its tensors are read after GPU start
    ResumePoint rp;
    RunState rs;
    int start = 0;
    if (o.resume) {
        if (!resume_find(o, train, masks.train, &rp, &err)) { fprintf(stderr, "train_parallax: %s\n", err.c_str()); return 2; }
        start = rp.step;
        train.shard = rp.train_shard;
        train.offset = rp.train_offset;
        rs.loss_window = rp.loss_window;
        rs.norm_window = rp.norm_window;
    } else if (!list_checkpoints(o.out, false).empty()) {
        fprintf(stderr, "train_parallax: --out %s: holds checkpoints of an earlier run (%s/%s); continue it with "
                "--resume 1, or use another --out\n", o.out.c_str(), o.out.c_str(), list_checkpoints(o.out, false).back().second.c_str());
        return 2;
    }
    Config cfg = make_config(o.attention == "parallax", o.depth, o.width, o.head_dim, o.max_seq_len);
    cfg.F = o.mlp_hidden;
    size_t need = run_memory_bytes(cfg, o.batch, o.seq_len);
    if (o.dry_run) {
        printf("dry run: every check passed; d%d (C=%d), %d steps of %ld tokens, validation %ld tokens in %zu windows, "
               "GPU memory needed %.2f GiB; stopping before the GPU\n", cfg.L, cfg.C, o.steps, o.total_batch,
               val.tokens, val.windows.size(), need / 1073741824.0);
        return 0;
    }
    if (o.resume && li.rank == 0 && !log_keep_through(o.out + "/log.csv", start, &err)) { fprintf(stderr, "train_parallax: %s\n", err.c_str()); return 2; }
    Dist dist;
    if (li.use_nccl) dist_load(&dist, li);   // exits 2 with what to install when NCCL is missing
    if (cuda_device_count() == 0) { fprintf(stderr, "train_parallax: no CUDA GPU found\n"); return 1; }
    int device = launch_device(li, cuda_device_count(), &lerr);
    if (device < 0) { fprintf(stderr, "train_parallax: rank %d: %s\n", li.rank, lerr.c_str()); return 2; }
    cudaCheck(cudaSetDevice(device));
    if (li.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;   // rank 0 prints; errors still reach stderr
    if (li.use_nccl) dist_connect(&dist);

    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    check_gpu(prop, cfg, o, need);
    if (!attention_path_init(prop, &err)) { fprintf(stderr, "train_parallax: %s\n", err.c_str()); return 2; }
    matmul_init();
    Model m;
    model_alloc(&m, cfg, o.batch, o.seq_len);
    model_plan(&m, li.world, li.rank, o.optimizer == "muon");   // ZeRO-1: this rank's optimizer state only
    if (li.use_nccl) {
        m.dist = &dist;
        dist_set_buckets(&dist, grad_buckets(&m));
    }
    model_init(&m, (unsigned long long)o.seed);
    if (o.resume) {
        TensorFile ckpt;
        if (!tensor_file_read(&ckpt, rp.path.c_str(), &err) || !model_load_checkpoint(&m, ckpt, &err)) {
            fprintf(stderr, "train_parallax: --resume: %s\n", err.c_str());
            return 2;
        }
        rs.last_checkpoint = rp.path;
        rs.last_checkpoint_step = start;
        printf("resumed from %s at step %d\n", rp.path.c_str(), start);
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
    printf("  attention kernels: %s (compute capability %d.%d)\n",
           g_attention_path == ATTENTION_PATH_SM80 ? "8.x path (trainer/attention_sm80.cuh)" : "Hopper", prop.major,
           prop.minor);
    printf("  MLP hidden %d, %zu parameters\n", cfg.F, m.n_params);
    printf("  batch %d x %d, %d micro-steps = %ld tokens per step, %d steps; train %ld tokens in %zu shards, "
           "val %ld tokens in %zu shards\n", o.batch, o.seq_len, accum, o.total_batch, o.steps, dataloader_total_tokens(&train),
           train.paths.size(), dataloader_total_tokens(&val.files), val.files.paths.size());
    printf("  each validation scores %ld tokens in %zu windows of %d%s\n", valset_tokens(&val, 0, val_end), val_end,
           o.seq_len, val_end == val.windows.size() ? ": every token but each shard's first, once" : " (--val-batches)");
    printf("  activations %.2f GiB for micro-batches of %d x %d (one allocation); %.2f GiB estimated in all\n",
           m.act.bytes / 1073741824.0, o.batch, o.seq_len, need / 1073741824.0);
    if (o.checkpoint_every) {
        printf("  checkpoints every %d steps and at the end: %s/checkpoint_<step>.ptf, %.2f GiB each, %s\n",
               o.checkpoint_every, o.out.c_str(), checkpoint_bytes(o) / 1073741824.0,
               o.keep_last ? ("the last " + std::to_string(o.keep_last) + " kept").c_str() : "all kept");
        for (auto& t : list_checkpoints(o.out, true)) {   // never complete: a write that was killed
            std::string path = o.out + "/" + t.second;
            if (remove(path.c_str()) == 0) printf("  removed %s (left by a killed write)\n", path.c_str());
        }
    } else {
        printf("  no checkpoints (--checkpoint-every 0)\n");
    }
    if (o.skip_outliers > 0)
        printf("  updates skipped where the loss or gradient norm z-score over the last %d steps is above %g\n",
               OUTLIER_WINDOW, o.skip_outliers);
    if (li.use_nccl)
        printf("  data parallel: %d ranks (%s), %d micro-steps each; NCCL %d (%s); optimizer state %.2f GiB per GPU "
               "(ZeRO-1)\n", li.world, li.launcher.c_str(), slice.count, dist.api.version, dist.api.path.c_str(),
               (2.0 * m.plan.adam_state + m.plan.muon_state) * 4 / 1073741824.0);

    std::string log_path = o.out + "/log.csv";
    FILE* log = fopen(li.rank == 0 ? log_path.c_str() : "/dev/null", o.resume ? "a" : "w");
    if (!log) { fprintf(stderr, "train_parallax: cannot write %s\n", log_path.c_str()); return 1; }
    if (!o.resume) fputs(LOG_HEADER, log);

    // a test hook, not a flag: TRAIN_PARALLAX_NAN_AT_STEP=N makes step N's loss NaN, so that dev/resume_check.sh
    // can check on a GPU that such a step is not applied and leaves the last checkpoint intact
    // another: TRAIN_PARALLAX_PREDICTIONS=FILE writes the last validation's predictions (one process), for
    // dev/recall_check.sh to recount the reported accuracy
    const char* pred_dump = getenv("TRAIN_PARALLAX_PREDICTIONS");
    const char* nan_env = getenv("TRAIN_PARALLAX_NAN_AT_STEP");
    int nan_test_step = nan_env ? atoi(nan_env) : 0;
    if (nan_test_step > 0) printf("  test hook: the loss of step %d will be NaN (TRAIN_PARALLAX_NAN_AT_STEP)\n", nan_test_step);
    double total_ms = 0.0;
    int timed = 0;
    for (int step = start; step <= o.steps; step++) {
        long tokens_seen = (long)step * o.total_batch;
        bool resumed_here = o.resume && step == start;
        if (o.val_every && (step % o.val_every == 0 || step == o.steps) && !resumed_here) {
            bool dump = pred_dump && step == o.steps && !m.dist;
            std::vector<int> preds;
            ValScore vl = evaluate(&m, &val, &masks.val, 0, val_end, dump ? &preds : NULL);
            fprintf(log, "%d,%ld,val,%.6f,,,,,%ld,%ld\n", step, tokens_seen, vl.mean(), vl.tokens, vl.correct);
            std::string acc;   // masked sets score answers: their accuracy is the number that matters
            if (masks.val.on) acc = " | answer accuracy " + fmt_float4(vl.accuracy()) + " (" + std::to_string(vl.correct) +
                                    " of " + std::to_string(vl.tokens) + ")";
            if (have_prose) {
                ValScore pl = evaluate(&m, &prose, &masks.prose, 0, prose_end, NULL);
                fprintf(log, "%d,%ld,valprose,%.6f,,,,,%ld,%ld\n", step, tokens_seen, pl.mean(), pl.tokens, pl.correct);
                printf("step %5d | val loss %.4f (%ld tokens)%s | prose val loss %.4f (%ld tokens)\n", step, vl.mean(),
                       vl.tokens, acc.c_str(), pl.mean(), pl.tokens);
            } else {
                printf("step %5d | val loss %.4f (%ld tokens)%s\n", step, vl.mean(), vl.tokens, acc.c_str());
            }
            if (have_lastword) report_eval(&m, lastword, o, step, tokens_seen, log);
            if (have_hellaswag) report_eval(&m, hellaswag, o, step, tokens_seen, log);
            fflush(log);
            if (dump) write_predictions(pred_dump, preds);
        }
        if (o.sample_every && li.rank == 0 && step > start && (step % o.sample_every == 0 || step == o.steps)) {
            std::vector<int> ids = model_sample(&m, o.sample_tokens, (unsigned long long)o.seed * 1000003ULL + step);
            if (have_tok) printf("step %5d | sample: %s\n", step, tokenizer_decode(&tok, ids).c_str());
            else { printf("step %5d | sample ids:", step); for (int id : ids) printf(" %d", id); printf("\n"); }
        }
        if (o.checkpoint_every && step > start && (step == o.steps || step % o.checkpoint_every == 0))
            save_checkpoint(&m, o, step, train, masks.train, &rs);
        if (step == o.steps) break;
        cudaEvent_t t0, t1;
        cudaCheck(cudaEventCreate(&t0)); cudaCheck(cudaEventCreate(&t1));
        cudaCheck(cudaEventRecord(t0));
        cudaCheck(cudaMemset(m.grads, 0, m.n_params * sizeof(float)));
        // this rank's micro-batches of the global batch; the per-micro-batch losses summed over the ranks
        // (zeros elsewhere) and added in order, as on one GPU. The gradient is the mean over the step's scored
        // targets (all of them without a loss mask), counted on every rank before the first backward
        std::vector<float> micro(accum, 0.0f), scored(accum, (float)((long)o.batch * o.seq_len));
        dataloader_skip(&train, slice.first);
        if (masks.train.on) {   // each rank counts its own micro-batches, zeros elsewhere, and the ranks sum
            std::fill(scored.begin(), scored.end(), 0.0f);
            loss_mask_count_ahead(&masks.train, &train, slice.count, scored.data() + slice.first);
            if (m.dist) dist_sum_host(&dist, scored);
        }
        double step_scored = 0.0;
        for (float x : scored) step_scored += x;
        float grad_scale = step_scored > 0.0 ? 1.0f / (float)step_scored : 0.0f;
        for (int k = slice.first; k < slice.first + slice.count; k++) {
            dataloader_next(&train);
            loss_mask_train(&masks.train, &train);
            micro[k] = model_forward(&m, train.inputs.data(), train.targets.data(), o.batch, o.seq_len, grad_scale);
            m.sync_grads = k == slice.first + slice.count - 1;   // the last backward all-reduces its buckets
            model_backward(&m, train.inputs.data(), o.batch, o.seq_len);
        }
        dataloader_skip(&train, accum - slice.first - slice.count);
        if (m.dist) {
            dist_grads_wait(&dist, 0);
            dist_sum_host(&dist, micro);
        }
        double loss = 0.0;   // the mean over the step's scored targets
        for (int k = 0; k < accum; k++) loss += (double)micro[k] * scored[k];
        loss = step_scored > 0.0 ? loss / step_scored : 0.0;
        if (step + 1 == nan_test_step) loss = NAN;   // the fault test of dev/resume_check.sh
        float lrs = lr_schedule(step, o.steps, o.warmup, o.decay_frac, o.schedule == "cosine");
        // the update is decided before it is applied: never on a non-finite loss or norm, and not on an outlier
        float norm = model_grad_norm(&m);
        bool finite = std::isfinite(loss) && std::isfinite(norm);
        double z_loss = outlier_z(rs.loss_window, (float)loss), z_norm = outlier_z(rs.norm_window, norm);
        bool skip = o.skip_outliers > 0 && (z_loss > o.skip_outliers || z_norm > o.skip_outliers);
        if (finite && !skip) model_apply_update(&m, o.hp, lrs, norm);
        if (finite) { outlier_push(&rs.loss_window, (float)loss); outlier_push(&rs.norm_window, norm); }
        cudaCheck(cudaEventRecord(t1));
        cudaCheck(cudaEventSynchronize(t1));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, t0, t1));
        cudaCheck(cudaEventDestroy(t0)); cudaCheck(cudaEventDestroy(t1));
        if (step > start) { total_ms += ms; timed++; }   // the first step includes cuBLAS warm-up
        double tps = o.total_batch / (ms / 1e3);
        char mfu[32] = "unknown";   // a GPU not in gpu_arch.h's table gets no number rather than a wrong one
        if (peak > 0) snprintf(mfu, sizeof(mfu), "%.1f%%", 100.0 * flops_per_token * tps / peak / li.world);
        if (m.dist) {   // tokens/s for the job and per GPU, MFU per GPU; the communication the backward did not hide
            float comm = dist_exposed_ms(&dist);
            printf("step %5d/%d | loss %.4f | lr %.3f | norm %.3f | %.1f ms | %.0f tok/s, %.0f per GPU | MFU %s | "
                   "comm exposed %.1f ms\n", step + 1, o.steps, loss, lrs, norm, ms, tps, tps / li.world, mfu, comm);
            fprintf(log, "%d,%ld,comm_exposed,,,,%.2f,,,\n", step + 1, tokens_seen + o.total_batch, comm);
        } else {
            printf("step %5d/%d | loss %.4f | lr %.3f | norm %.3f | %.1f ms | %.0f tok/s | MFU %s\n", step + 1,
                   o.steps, loss, lrs, norm, ms, tps, mfu);
        }
        fprintf(log, "%d,%ld,train,%.6f,%.5f,%.5f,%.2f,%.0f,,\n", step + 1, tokens_seen + o.total_batch, loss, lrs,
                norm, ms, tps);
        if (finite && skip) {
            printf("step %5d | update skipped: loss z-score %.2f, gradient norm z-score %.2f (--skip-outliers %g)\n",
                   step + 1, z_loss, z_norm, o.skip_outliers);
            fprintf(log, "%d,%ld,skipped,%.6f,%.5f,%.5f,,,,\n", step + 1, tokens_seen + o.total_batch, loss, lrs, norm);
        }
        fflush(log);
        if (!finite) {
            fprintf(stderr, "train_parallax: step %d: loss %g, gradient norm %g: not finite; the update was not applied "
                    "and no checkpoint written after it; %s\n", step + 1, loss, norm, last_checkpoint_note(rs).c_str());
            fclose(log);
            return 1;
        }
    }
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    if (m.dist) {   // every rank's memory, printed by rank 0; the log's row is the largest
        std::vector<float> mem(li.world, 0.0f);
        mem[li.rank] = (float)((total_b - free_b) / 1073741824.0);
        dist_sum_host(&dist, mem);
        printf("GPU memory in use per rank (GiB):");
        for (int r = 0; r < li.world; r++) printf(" %.2f", mem[r]);
        printf("\n");
        free_b = total_b - (size_t)(*std::max_element(mem.begin(), mem.end()) * 1073741824.0);
    }
    fprintf(log, "%d,%ld,gpu_memory_gib,%.3f,,,,,,\n", o.steps, (long)o.steps * o.total_batch,
            (total_b - free_b) / 1073741824.0);   // every buffer is allocated up front: this is the peak
    if (timed > 0)
        printf("done: %d steps timed, %.1f s, %.0f tok/s average; GPU memory in use %.1f GiB\n", timed, total_ms / 1e3,
               timed * o.total_batch / (total_ms / 1e3), (total_b - free_b) / 1073741824.0);
    fclose(log);
    if (m.dist) dist_close(&dist);
    model_free(&m);
    return 0;
}
#endif
