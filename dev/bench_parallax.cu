// bench_parallax: the benchmark table of issue #5 (one GPU). Not a test: it checks nothing, it times.
//   make bench        (builds dev/bench_parallax and runs it: every section)
//   ./dev/bench_parallax attention|model    (section 1 only, or sections 2-4 only)
// 1. Attention kernels alone, both variants, forward and forward + backward, at 16x1024x12x64,
//    4x4096x12x64 and 8x2048x8x128, the trainer's kernels (version 3) and the study's versions 4 (wgmma
//    forward, D = 64; D = 128 runs version 3) and 2: median
//    of 20 timed runs after 3 warm-ups, CUDA events, L2 flushed
//    before each run; model FLOPs of spec section 1 (forward 4u / 2u, forward + backward 12u / 7u).
// 2. The d12 model, T = 1024, micro-batch 32, random tokens: forward + backward of one micro-batch and the
//    optimizer update (Muon or AdamW), both variants; tokens/s and MFU for a 2^19-token step
//    (16 micro-batches), the update's share of that step, and the GPU memory in use.
// 3. Where a micro-batch's time goes: each GEMM of the model (the trainer's own calls, at N = 32 x 1024
//    tokens, with the trainer's output types) timed alone, and their sum per micro-batch beside the
//    attention kernels' and the measured total; the rest is the small kernels (norms, RoPE, ReLU^2, loss).
// 4. Those small kernels one by one, with the GB/s they reach over the bytes they must move.
#define TESTING
#include "../train_parallax.cu"   // defines: Model, model_forward, model_backward, model_update, attention_*
#include "cuda/attention_timing.h"    // defines: time_median, fill_random, bench_attention; ATTENTION_VERSIONS
#include "cuda/small_kernel_check.h"   // defines: zipf_tokens, device_copy

// one linear layer's three products (forward, backward to the input, backward to the weight) at N tokens,
// as the trainer calls them (dx in bf16); returns the summed ms and prints a row per product
// residual: the forward is the block's residual add y = x_res + x W^T (fp32, cuBLASLt), as the trainer does
static double bench_linear(const char* name, int N, int in, int out, bool residual) {
    bf16 *x, *W, *dy;
    void *y, *dx;
    float *dW, *x_res;
    cudaCheck(cudaMalloc(&x, (size_t)N * in * sizeof(bf16)));
    cudaCheck(cudaMalloc(&W, (size_t)out * in * sizeof(bf16)));
    cudaCheck(cudaMalloc(&dy, (size_t)N * out * sizeof(bf16)));
    cudaCheck(cudaMalloc(&y, (size_t)N * out * sizeof(float)));
    cudaCheck(cudaMalloc(&dx, (size_t)N * in * sizeof(float)));
    cudaCheck(cudaMalloc(&dW, (size_t)out * in * sizeof(float)));
    cudaCheck(cudaMalloc(&x_res, (size_t)N * out * sizeof(float)));
    cudaCheck(cudaMemset(x_res, 0, (size_t)N * out * sizeof(float)));
    fill_random(x, (size_t)N * in, 3, 1.0f);
    fill_random(W, (size_t)out * in, 4, 0.03f);
    fill_random(dy, (size_t)N * out, 5, 1.0f);
    cudaCheck(cudaMemset(dW, 0, (size_t)out * in * sizeof(float)));
    float ms[3] = {
        time_median([&]() {
            if (residual) matmul_residual((float*)y, x_res, x, W, N, in, out, 0);
            else linear_forward((bf16*)y, x, W, N, in, out, 0);
        }, 3, 20),
        time_median([&]() { linear_backward_input(dx, dy, W, N, in, out, false, 0); }, 3, 20),
        time_median([&]() { linear_backward_weight(dW, dy, x, N, in, out, 0); }, 3, 20)};
    const char* what[3] = {residual ? "y = r + x W^T" : "y = x W^T", "dx = dy W", "dW += dy^T x"};
    double flops = 2.0 * N * in * out;
    for (int i = 0; i < 3; i++)
        printf("| %-8s | %-12s | %d x %d x %d | %6.3f | %6.1f |\n", name, what[i], N, out, in, ms[i],
               flops / ms[i] / 1e9);
    void* ptrs[] = {x, W, dy, y, dx, dW, x_res};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
    return ms[0] + ms[1] + ms[2];
}

// section 3 for one variant: GEMMs per micro-batch (12 layers + head) and attention, against the total
// returns "the rest": the micro-batch's time less the GEMMs and the attention
static double bench_breakdown(bool probe, float micro_ms) {
    const int N = 32 * 1024, C = 768, L = 12, n = probe ? 4 : 3;
    // the attention at B = 32 before the GEMMs too: is it slower after them (clocks, power) than alone?
    printf("\n%s: attention at the trainer's batch, before the GEMM timings\n\n", probe ? "parallax" : "softmax");
    print_attention_header();
    float attn_before = bench_attention(32, 1024, 12, 64, probe, ATTENTION_VERSIONS[0]);
    printf("\n%s: GEMMs of one micro-batch (N = %d tokens), each timed alone\n\n", probe ? "parallax" : "softmax", N);
    printf("| layer | product | N x out x in | ms | TFLOP/s |\n|---|---|---|---|---|\n");
    double block = bench_linear(probe ? "qkvr" : "qkv", N, C, n * C, false);
    block += bench_linear("attproj", N, C, C, true);
    block += bench_linear("fc", N, C, 4 * C, false);
    block += bench_linear("fcproj", N, 4 * C, C, true);
    double head = bench_linear("head", N, C, 50304, false);
    double gemm = L * block + head;
    // attention forward + backward of one layer at B = 32 (the trainer's kernels, version 3), after the GEMMs
    printf("\n");
    print_attention_header();
    float attn = bench_attention(32, 1024, 12, 64, probe, ATTENTION_VERSIONS[0]);
    printf("\nattention fwd+bwd at B = 32: %.3f ms before the GEMM timings, %.3f ms after (the breakdown uses after)\n",
           attn_before, attn);
    double rest = micro_ms - gemm - L * attn;
    printf("\nper micro-batch: total %.1f ms = GEMMs %.1f ms (%.0f%%) + attention %.1f ms (%.0f%%) + the rest %.1f ms "
           "(%.0f%%)\n", micro_ms, gemm, 100 * gemm / micro_ms, L * attn, 100 * L * attn / micro_ms, rest,
           100 * rest / micro_ms);
    return rest;
}

// the GEMM shapes gemm() tuned during this run, and which of cuBLASLt's candidates each one kept (0: the
// heuristic's first pick; trainer/matmul.cuh says how the pick is made)
static void bench_gemm_plans() {
    printf("\nGEMM shapes tuned in this run (row-major D (m x n) = op(A) op(B), k summed)\n\n"
           "| m | n | k | batch | op(A) op(B) | D | beta | candidate kept |\n|---|---|---|---|---|---|---|---|\n");
    for (const auto& entry : gemm_plans) {
        const GemmPlan& p = entry.second;
        if (p.tuned)
            printf("| %d | %d | %d | %d | %s %s | %s | %s | %d |\n", p.s.m, p.s.n, p.s.k, p.s.batch, p.s.trans_a ? "T" : "N",
                   p.s.trans_b ? "T" : "N", p.s.c_fp32 ? "fp32" : "bf16", p.s.beta_zero ? "0" : "1", p.candidate);
    }
}

// one small kernel timed alone: prints its row (ms, GB/s over the bytes it must move, calls per micro-batch)
// and returns ms x calls
static double small_row(const char* name, float ms, double bytes, int calls) {
    printf("| %-28s | %7.3f | %6.0f | %2d | %6.2f |\n", name, ms, bytes / ms / 1e6, calls, ms * calls);
    return (double)ms * calls;
}

// section 4 for one variant: every kernel that is not a GEMM or attention, at N = 32 x 1024 tokens of d12,
// on buffers of the trainer's sizes (contents: zeros or random; the time does not depend on them), with
// the number of calls per micro-batch; their sum is set against section 3's "rest".
static void bench_small_kernels(bool probe, double rest_ms) {
    const int B = 32, T = 1024, N = B * T, C = 768, H = 12, D = 64, L = 12, V = 50257, Vp = 50304;
    const int n = probe ? 4 : 3, n_norm = probe ? 3 : 2;
    size_t NC = (size_t)N * C;
    float *x, *dx, *rstd, *rope, *gains, *dgains, *scratch, *losses;
    bf16* dh;
    bf16 *h, *qkvr, *qkr, *u, *act, *logits;
    int* targets;
    cudaCheck(cudaMalloc(&x, NC * sizeof(float)));
    cudaCheck(cudaMalloc(&dx, NC * sizeof(float)));
    cudaCheck(cudaMalloc(&dh, NC * sizeof(bf16)));
    cudaCheck(cudaMalloc(&rstd, N * sizeof(float)));
    cudaCheck(cudaMalloc(&rope, (size_t)T * D * sizeof(float)));
    cudaCheck(cudaMalloc(&gains, 3 * D * sizeof(float)));
    cudaCheck(cudaMalloc(&dgains, 3 * D * sizeof(float)));
    cudaCheck(cudaMalloc(&scratch, qkr_backward_scratch_floats(D) * sizeof(float)));
    cudaCheck(cudaMalloc(&losses, N * sizeof(float)));
    cudaCheck(cudaMalloc(&h, NC * sizeof(bf16)));
    cudaCheck(cudaMalloc(&qkvr, NC * n * sizeof(bf16)));
    cudaCheck(cudaMalloc(&qkr, NC * n * sizeof(bf16)));
    cudaCheck(cudaMalloc(&u, NC * 4 * sizeof(bf16)));
    cudaCheck(cudaMalloc(&act, NC * 4 * sizeof(bf16)));
    cudaCheck(cudaMalloc(&logits, (size_t)N * Vp * sizeof(bf16)));
    cudaCheck(cudaMalloc(&targets, N * sizeof(int)));
    void* zeroed[] = {x, dx, dh, rope, gains, dgains};
    size_t zero_bytes[] = {NC * 4, NC * 4, NC * 2, (size_t)T * D * 4, 3 * D * 4, 3 * D * 4};
    for (int i = 0; i < 6; i++) cudaCheck(cudaMemset(zeroed[i], 0, zero_bytes[i]));
    cudaCheck(cudaMemset(targets, 0, N * sizeof(int)));
    fill_random(qkvr, NC * n, 6, 1.7f);
    fill_random(u, NC * 4, 7, 1.7f);
    fill_random(act, NC * 4, 8, 1.7f);
    fill_random(logits, (size_t)N * Vp, 9, 4.0f);
    QKRGains g = {{gains, gains + D, probe ? gains + 2 * D : NULL}};
    QKRGainGrads dg = {{dgains, dgains + D, probe ? dgains + 2 * D : NULL}};

    printf("\n%s: the other kernels of one micro-batch (N = %d tokens), each timed alone\n\n",
           probe ? "parallax" : "softmax", N);
    printf("| kernel | ms | GB/s | calls | ms per micro-batch |\n|---|---|---|---|---|\n");
    double sum = 0.0, qkr_bytes = (double)N * n_norm * C * 2;
    sum += small_row("rmsnorm forward", time_median([&]() { rmsnorm_forward(h, rstd, x, N, C, 0); }, 3, 20),
                     NC * 6.0, 2 * L + 1);
    sum += small_row("rmsnorm backward (+ bf16 copy)", time_median([&]() {
        rmsnorm_backward(dx, h, dh, x, rstd, N, C, 0); }, 3, 20), NC * 16.0, 2 * L + 1);
    sum += small_row("qkr norm + rope forward",
                     time_median([&]() { qkr_norm_rope_forward(qkr, qkvr, g, rope, N, T, H, D, n, 0); }, 3, 20),
                     qkr_bytes * 2, L);
    sum += small_row("qkr norm + rope backward", time_median([&]() {
        qkr_norm_rope_backward(qkr, dg, scratch, qkvr, g, rope, N, T, H, D, n, 0); }, 3, 20), qkr_bytes * 3, L);
    sum += small_row("relu2 forward", time_median([&]() { relu2_forward(act, u, NC * 4, 0); }, 3, 20), NC * 16.0, L);
    sum += small_row("relu2 backward", time_median([&]() { relu2_backward(act, u, NC * 4, 0); }, 3, 20), NC * 24.0,
                     L);
    {   // token ids as in real text (a few ids fill thousands of positions): the embedding backward's worst case
        std::mt19937 rng(1);
        std::vector<int> idx = zipf_tokens(N, V, rng), groups;
        int n_unique = tokens_by_value(&groups, idx.data(), N);
        int* d_groups = device_copy(groups);
        float* dwte;
        cudaCheck(cudaMalloc(&dwte, (size_t)V * C * sizeof(float)));
        cudaCheck(cudaMemset(dwte, 0, (size_t)V * C * sizeof(float)));
        sum += small_row("embedding backward (Zipf ids)", time_median([&]() {
            embedding_backward(dwte, x, d_groups, groups, n_unique, C, 0); }, 3, 20), NC * 4.0 + n_unique * C * 8.0, 1);
        cudaCheck(cudaFree(d_groups)); cudaCheck(cudaFree(dwte));
    }
    sum += small_row("cross-entropy (fused)", time_median([&]() {
        cross_entropy_forward_backward(logits, losses, targets, N, V, Vp, 1.0f / N, 0); }, 3, 20),
                     (double)N * Vp * 4, 1);
    printf("\nsum %.1f ms per micro-batch, against %.1f ms of section 3's rest (the embedding, the loss copy "
           "and launch gaps are the difference)\n", sum, rest_ms);
    void* ptrs[] = {x, dx, dh, rstd, rope, gains, dgains, scratch, losses, h, qkvr, qkr, u, act, logits, targets};
    for (void* p : ptrs) cudaCheck(cudaFree(p));
}

// The spec's init leaves W_o, W_2 and the head at zero, and tensor cores on zeros draw less power, so the
// GPU holds higher clocks than in training (measured: d12 steps 8% slower from the third step on). The
// bench gives those matrices random values of the init's scale, as they have once training moves them.
static void bench_weights_nonzero(Model* m) {
    std::mt19937 rng(7);
    float bound = sqrtf(3.0f) * 0.5f / sqrtf((float)m->cfg.C);
    std::uniform_real_distribution<float> uniform(-bound, bound);
    std::vector<float> host(m->n_params);
    cudaCheck(cudaMemcpy(host.data(), m->params, m->n_params * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i : {P_ATTPROJ, P_FCPROJ, P_HEAD})
        for (size_t j = 0; j < m->spec[i].numel; j++) host[m->spec[i].offset + j] = uniform(rng);
    cudaCheck(cudaMemcpy(m->params, host.data(), m->n_params * sizeof(float), cudaMemcpyHostToDevice));
    model_sync_bf16(m);
}

// returns the fwd+bwd ms of one micro-batch
static float bench_model(bool probe, bool muon, double peak) {
    const int B = 32, T = 1024, accum = 16;
    Config cfg = make_config(probe, 12, 768, 64, T);
    Model m;
    model_alloc(&m, cfg, B, T);
    model_init(&m, 1337);
    bench_weights_nonzero(&m);
    std::vector<int> in((size_t)B * T), tg((size_t)B * T);
    unsigned s = 12345;
    for (size_t i = 0; i < in.size(); i++) {
        s = s * 1664525u + 1013904223u;
        in[i] = (int)((s >> 8) % 50257);
        tg[i] = (int)((s >> 3) % 50257);
    }
    Hyper hp = default_hyper(muon);
    auto micro = [&]() {
        model_forward(&m, in.data(), tg.data(), B, T, 1.0f / (B * T * accum));
        model_backward(&m, in.data(), B, T);
    };
    auto update = [&]() { model_update(&m, hp, 1.0f); };
    float ms_micro = time_median(micro, 2, 7), ms_update = time_median(update, 2, 7);
    double step_ms = accum * ms_micro + ms_update;
    double tokens = (double)B * T * accum, tps = tokens / (step_ms / 1e3);
    double mat = 0;
    for (int i = 0; i < NUM_PARAMS; i++) if (i != P_WTE && m.spec[i].ndim == 3) mat += m.spec[i].numel;
    mat += m.spec[P_HEAD].numel;
    double fpt = 6 * mat + (probe ? 12 : 7) * (double)cfg.L * cfg.H * T * cfg.D;
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    printf("| %-8s | %-5s | %7.1f | %7.1f | %9.0f | %5.1f%% | %5.1f%% | %5.1f GiB |\n", probe ? "parallax" : "softmax",
           muon ? "muon" : "adamw", ms_micro, ms_update, tps, peak > 0 ? 100 * fpt * tps / peak : 0.0,
           100 * ms_update / step_ms, (total_b - free_b) / 1073741824.0);
    model_free(&m);
    return ms_micro;
}

int main(int argc, char** argv) {
    // which sections: all (default), attention (section 1), model (sections 2-4)
    const char* part = argc > 1 ? argv[1] : "all";
    bool attention = !strcmp(part, "all") || !strcmp(part, "attention"), model = !strcmp(part, "all") || !strcmp(part, "model");
    if (argc > 2 || (!attention && !model)) {
        fprintf(stderr, "usage: bench_parallax [all|attention|model]\n");
        return 2;
    }
    if (cuda_device_count() == 0) { printf("bench_parallax: skipped: no GPU\n"); return 0; }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    timing_init();
    matmul_init();
    printf("bench_parallax on %s\n\n", prop.name);
    if (attention) {
        print_attention_header();
        const int shapes[][4] = {{16, 1024, 12, 64}, {4, 4096, 12, 64}, {8, 2048, 8, 128}};
        for (const auto& sh : shapes)
            for (int probe = 1; probe >= 0; probe--) {
                for (const AttentionVersion& ver : ATTENTION_VERSIONS)   // all but version 1 (far too slow here)
                    if (ver.number != 1) bench_attention(sh[0], sh[1], sh[2], sh[3], probe, ver);
            }
    }
    if (!model) {
        cudaCheck(cudaFree(l2_flush_buf));
        return 0;
    }
    printf("\nd12, T = 1024, micro-batch 32, step = 16 micro-batches = 2^19 tokens (random tokens)\n\n");
    printf("| attention | optimizer | fwd+bwd ms / micro-batch | update ms | tokens/s | MFU | update share "
           "| GPU memory |\n|---|---|---|---|---|---|---|---|\n");
    float micro_ms[2];
    for (int probe = 1; probe >= 0; probe--)
        for (int muon = 1; muon >= 0; muon--) micro_ms[probe] = bench_model(probe, muon, gpu_peak_flops(prop));
    for (int probe = 1; probe >= 0; probe--) {
        double rest = bench_breakdown(probe, micro_ms[probe]);
        bench_small_kernels(probe, rest);
    }
    bench_gemm_plans();
    cudaCheck(cudaFree(l2_flush_buf));
    return 0;
}
