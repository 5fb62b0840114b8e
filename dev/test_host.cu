// test_host: CPU tests of the trainer's host code (no GPU needed, so they run in CI): the tensor-file writer
// and reader (and its bound checks), the data loader's batches, the validation window plan (every token once
// for any --batch), the loss masks, the embedding backward's grouping of positions by token, the one-pass
// attention backward's order of sums.
//   ./dev/test_host            one PASS / FAIL line per check
//   ./dev/test_host --dump     the parameter table and the learning-rate schedules as JSON, which
//                              dev/test_host.py compares with dev/model_ref.py and dev/optim_ref.py
#include <algorithm>
#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>
#include <random>
#include <string>
#include <vector>

#define TESTING
#include "../train_parallax.cu"   // defines: fill_param_table, lr_schedule, tokens_by_value, DataLoader, ...

static int n_pass = 0, n_fail = 0;

static void check(const std::string& name, bool ok, const std::string& detail) {
    (ok ? n_pass : n_fail)++;
    printf("%s host: %s: %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
}

static void test_tensor_file() {
    std::string path = "/tmp/test_host_" + std::to_string(getpid()) + ".ptf", err;
    std::vector<float> a(3 * 5 * 7);
    std::vector<int32_t> b(11);
    for (size_t i = 0; i < a.size(); i++) a[i] = 0.5f * i - 3.0f;
    for (size_t i = 0; i < b.size(); i++) b[i] = (int32_t)(i * i) - 7;
    std::vector<TensorToWrite> t = {{"a", 0, {3, 5, 7}, a.data()}, {"b", 1, {11}, b.data()}};
    bool ok = tensor_file_write(path.c_str(), {{"kind", "test"}, {"n", "3"}}, t, &err);
    TensorFile tf;
    ok = ok && tensor_file_read(&tf, path.c_str(), &err);
    const RefTensor* ra = ok ? tf.find("a") : NULL;
    const RefTensor* rb = ok ? tf.find("b") : NULL;
    ok = ok && ra && rb && ra->shape == std::vector<int64_t>({3, 5, 7}) && rb->dtype == 1 &&
         memcmp(ra->data, a.data(), a.size() * 4) == 0 && memcmp(rb->data, b.data(), b.size() * 4) == 0 &&
         tf.meta_value("n") == "3";
    FILE* tmp = fopen((path + ".tmp").c_str(), "rb");
    check("tensor file: write, read back, no .tmp left", ok && !tmp, ok ? "2 tensors, 2 metadata keys" : err);
    if (tmp) fclose(tmp);
    // truncation is refused with the file's name
    FILE* f = fopen(path.c_str(), "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    if (truncate(path.c_str(), size - 8) != 0) perror("truncate");
    TensorFile bad;
    bool refused = !tensor_file_read(&bad, path.c_str(), &err) && err.find(path) != std::string::npos;
    check("tensor file: a truncated file is refused, naming it", refused, err);
    remove(path.c_str());
}

// Hand-made tables whose offset + size or shape product wraps past 2^64: each must be refused, not read.
static void test_tensor_file_bounds() {
    std::string path = "/tmp/test_host_bounds_" + std::to_string(getpid()) + ".ptf", err;
    struct Case { const char* what; std::vector<uint64_t> dims; uint64_t off, nbytes; };
    Case cases[] = {
        {"an offset that wraps past 2^64", {4}, ~0ULL - 7, 16},
        {"a shape whose product wraps to 0 bytes", {1ULL << 62, 4}, 64, 0},
        {"a size past the end of the file", {4}, 64, 16 + 64},
    };
    for (const Case& c : cases) {
        std::vector<char> b;
        auto put = [&](const void* p, size_t n) { b.insert(b.end(), (const char*)p, (const char*)p + n); };
        auto u32 = [&](uint32_t v) { put(&v, 4); };
        put("PTF1", 4); u32(1); u32(0); u32(1);
        u32(1); put("x", 1); u32(0); u32((uint32_t)c.dims.size());
        for (uint64_t d : c.dims) put(&d, 8);
        put(&c.off, 8); put(&c.nbytes, 8);
        b.resize(64 + 16, 0);   // 16 bytes of data at offset 64
        FILE* f = fopen(path.c_str(), "wb");
        fwrite(b.data(), 1, b.size(), f);
        fclose(f);
        TensorFile tf;
        bool refused = !tensor_file_read(&tf, path.c_str(), &err);
        check(std::string("tensor file: ") + c.what + " is refused", refused, refused ? err : "accepted");
    }
    remove(path.c_str());
    TensorFile dir;
    bool refused = !tensor_file_read(&dir, "/tmp", &err) && err.find("directory") != std::string::npos;
    check("tensor file: a directory is refused as one", refused, err);
}

static void write_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
    int header[256] = {SHARD_MAGIC, SHARD_VERSION, (int)tokens.size()};
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(header, sizeof(int), 256, f);
    fwrite(tokens.data(), 2, tokens.size(), f);
    fclose(f);
}

static void test_dataloader() {
    std::string dir = "/tmp/test_host_shards_" + std::to_string(getpid()), err;
    if (mkdir(dir.c_str(), 0700) != 0) { check("data loader", false, dir + ": mkdir failed"); return; }
    std::vector<uint16_t> s0(20), s1(30);
    for (int i = 0; i < 20; i++) s0[i] = (uint16_t)i;
    for (int i = 0; i < 30; i++) s1[i] = (uint16_t)(1000 + i);
    write_shard(dir + "/shard_000.bin", s0);
    write_shard(dir + "/shard_001.bin", s1);
    DataLoader dl;
    bool ok = dataloader_open(&dl, "--train-data", (dir + "/shard_*.bin").c_str(), 2, 4, &err);
    // batches of 8 inputs + 1: shard 0 gives two (offsets 0, 8), then shard 1 three (0, 8, 16), then shard 0
    int want_first[] = {0, 8, 1000, 1008, 1016, 0};
    std::string got;
    for (int i = 0; ok && i < 6; i++) {
        dataloader_next(&dl);
        bool window = true;
        for (int j = 0; j < 8; j++) window = window && dl.inputs[j] == want_first[i] + j && dl.targets[j] == want_first[i] + j + 1;
        ok = window;
        got += std::to_string(dl.inputs[0]) + " ";
    }
    check("data loader: consecutive windows, next shard, back to the first", ok, "first inputs " + got);
    remove((dir + "/shard_000.bin").c_str());
    remove((dir + "/shard_001.bin").c_str());
    rmdir(dir.c_str());
}

// The validation plan over random shard sizes, for several T and B: every token of every shard but its first
// is scored exactly once (whatever B is), each scored target is the shard's token at that position with the
// one before it as input, and the scored count is the plan's tokens. The expected coverage is the files.
static void test_val_plan(unsigned seed) {
    std::string dir = "/tmp/test_host_val_" + std::to_string(getpid()), err;
    if (mkdir(dir.c_str(), 0700) != 0) { check("validation plan", false, dir + ": mkdir failed"); return; }
    std::mt19937 rng(seed);
    int Ts[] = {1, 7, 64};
    int Bs[] = {1, 3, 32};
    for (int T : Ts) {
        // shard sizes: exactly one window, one window + 1, a multiple of T plus one, and random ones
        std::vector<long> sizes = {T + 1L, T + 2L, 3L * T + 1};
        for (int i = 0; i < 3; i++) sizes.push_back(T + 1 + (long)(rng() % (20 * T + 50)));
        std::vector<std::vector<uint16_t>> shards;
        long want_tokens = 0;
        for (size_t s = 0; s < sizes.size(); s++) {
            std::vector<uint16_t> tok(sizes[s]);
            for (uint16_t& t : tok) t = (uint16_t)(rng() % GPT2_VOCAB);
            char name[64];
            snprintf(name, sizeof name, "/val_%03zu.bin", s);
            write_shard(dir + name, tok);
            shards.push_back(tok);
            want_tokens += sizes[s] - 1;
        }
        for (int B : Bs) {
            ValSet vs;
            bool ok = valset_open(&vs, "--val-data", (dir + "/val_*.bin").c_str(), B, T, &err);
            std::vector<std::vector<int>> seen(shards.size());
            for (size_t s = 0; s < shards.size(); s++) seen[s].assign(shards[s].size(), 0);
            long scored = 0, wrong = 0;
            std::vector<int> first;
            for (size_t w = 0; ok && w < vs.windows.size(); w += B) {
                valset_batch(&vs, w, vs.windows.size(), &first);
                for (int b = 0; b < B; b++) {
                    for (int t = first[b]; t < T; t++) {
                        const ValWindow& win = vs.windows[w + b];
                        long pos = win.start + t + 1;   // the target's position in its shard
                        const std::vector<uint16_t>& tok = shards[win.shard];
                        seen[win.shard][pos]++;
                        scored++;
                        if (vs.files.targets[(size_t)b * T + t] != tok[pos] || vs.files.inputs[(size_t)b * T + t] != tok[pos - 1])
                            wrong++;
                    }
                }
            }
            long not_once = 0;
            for (size_t s = 0; s < shards.size(); s++)
                for (size_t p = 0; p < seen[s].size(); p++) not_once += seen[s][p] != (p == 0 ? 0 : 1);
            ok = ok && not_once == 0 && wrong == 0 && scored == want_tokens && vs.tokens == want_tokens;
            check("validation plan: every token once, T " + std::to_string(T) + ", B " + std::to_string(B), ok,
                  ok ? std::to_string(scored) + " tokens in " + std::to_string(vs.windows.size()) + " windows of " +
                           std::to_string(sizes.size()) + " shards"
                     : err + " scored " + std::to_string(scored) + " of " + std::to_string(want_tokens) + ", " +
                           std::to_string(not_once) + " positions not once, " + std::to_string(wrong) + " wrong tokens");
        }
        for (size_t s = 0; s < sizes.size(); s++) {
            char name[64];
            snprintf(name, sizeof name, "/val_%03zu.bin", s);
            remove((dir + name).c_str());
        }
    }
    rmdir(dir.c_str());
}

static void test_tokens_by_value() {
    std::mt19937 rng(7);
    const int N = 5000;
    std::vector<int> idx(N);
    for (int& x : idx) x = (int)(rng() % 300) * (int)(rng() % 3);   // token 0 far more often than the rest
    std::vector<int> g;
    int nu = tokens_by_value(&g, idx.data(), N);
    const int* tokens = g.data();
    const int* start = g.data() + nu;
    const int* pos = g.data() + 2 * nu + 1;
    bool ok = (int)g.size() == 2 * nu + 1 + N && start[nu] == N;
    int covered = 0;
    for (int u = 0; ok && u < nu; u++) {
        if (u > 0) {   // the most frequent first, ties by token id: so every token appears once
            int n = start[u + 1] - start[u], n_prev = start[u] - start[u - 1];
            if (n > n_prev || (n == n_prev && tokens[u] <= tokens[u - 1])) ok = false;
        }
        for (int p = start[u]; ok && p < start[u + 1]; p++) {
            if (idx[pos[p]] != tokens[u] || (p > start[u] && pos[p] <= pos[p - 1])) ok = false;
            covered++;
        }
    }
    check("embedding backward grouping: every position once, under its token, in order, most frequent first",
          ok && covered == N,
          std::to_string(nu) + " distinct tokens, " + std::to_string(covered) + " positions");
}

// trainer/gpu_arch.h: device names as CUDA reports them -> the MFU table's row (NULL: not in the table, MFU
// unknown); every row is reached by some name; the attention path for each compute capability and override.
static void test_gpu_arch() {
    struct { const char* name; const char* row; } cases[] = {
        {"NVIDIA H100 80GB HBM3", "H100 SXM"}, {"NVIDIA H100 PCIe", "H100 PCIe"}, {"NVIDIA H200", "H200 SXM"},
        {"NVIDIA A100-SXM4-80GB", "A100 SXM"}, {"NVIDIA A100-SXM4-40GB", "A100 SXM"},
        {"NVIDIA A100-PCIE-40GB", "A100 PCIe"}, {"NVIDIA A100 80GB PCIe", "A100 PCIe"}, {"NVIDIA A10", "A10"},
        {"NVIDIA RTX A6000", "RTX A6000"}, {"NVIDIA L4", "L4"}, {"NVIDIA GeForce RTX 3090", "RTX 3090"},
        {"NVIDIA GeForce RTX 4090", "RTX 4090"},
        {"NVIDIA H100 NVL", NULL}, {"NVIDIA GH200 480GB", NULL}, {"NVIDIA H200 NVL", NULL}, {"NVIDIA A10G", NULL},
        {"NVIDIA L40S", NULL}, {"NVIDIA GeForce RTX 3090 Ti", NULL}, {"Tesla V100-SXM2-16GB", NULL},
        {"NVIDIA B200", NULL},
    };
    std::string bad;
    std::vector<bool> reached(sizeof(GPU_PEAKS) / sizeof(GPU_PEAKS[0]), false);
    for (const auto& c : cases) {
        const GpuPeak* g = gpu_peak_bf16(c.name);
        bool ok = c.row ? g != NULL && strcmp(g->label, c.row) == 0 : g == NULL;
        if (!ok) bad += std::string(" '") + c.name + "' -> " + (g ? g->label : "unknown");
        if (g) reached[g - GPU_PEAKS] = true;
    }
    for (size_t i = 0; i < reached.size(); i++)
        if (!reached[i]) bad += std::string(" row ") + GPU_PEAKS[i].label + " reached by no name";
    check("gpu_arch: device name -> MFU table row, unknown GPUs unknown", bad.empty(),
          bad.empty() ? std::to_string(sizeof(cases) / sizeof(cases[0])) + " names" : bad);

    struct { int major, minor; bool built; const char* force; int path; } picks[] = {   // path -1: an error
        {9, 0, true, NULL, ATTENTION_PATH_HOPPER}, {9, 0, true, "", ATTENTION_PATH_HOPPER},
        {9, 0, false, NULL, ATTENTION_PATH_SM80}, {9, 0, true, "sm80", ATTENTION_PATH_SM80},
        {9, 0, true, "hopper", ATTENTION_PATH_HOPPER}, {8, 0, true, NULL, ATTENTION_PATH_SM80},
        {8, 6, true, NULL, ATTENTION_PATH_SM80}, {8, 9, true, "sm80", ATTENTION_PATH_SM80},
        {12, 0, true, NULL, ATTENTION_PATH_SM80}, {8, 9, true, "hopper", -1}, {9, 0, false, "hopper", -1},
        {9, 0, true, "SM80", -1}, {9, 0, true, "wgmma", -1},
    };
    bad.clear();
    for (const auto& c : picks) {
        AttentionPath path = (AttentionPath)-1;
        std::string err;
        bool ok = attention_path_pick(c.major, c.minor, c.built, c.force, &path, &err);
        bool want_ok = c.path >= 0;
        bool good = want_ok ? ok && path == c.path : !ok && err.find("PARALLAX_ATTENTION") != std::string::npos;
        if (!good) bad += " " + std::to_string(c.major) + "." + std::to_string(c.minor) + "/" + (c.force ? c.force : "unset");
    }
    check("gpu_arch: attention path from compute capability, build and PARALLAX_ATTENTION", bad.empty(),
          bad.empty() ? std::to_string(sizeof(picks) / sizeof(picks[0])) + " cases" : "wrong:" + bad);

    std::string err;
    bool refused = !gpu_check_supported("Tesla V100-SXM2-16GB", 7, 0, &err) && err.find("V100") != std::string::npos &&
                   err.find("7.0") != std::string::npos;
    bool taken = gpu_check_supported("NVIDIA A100-SXM4-80GB", 8, 0, &err) && gpu_check_supported("NVIDIA L4", 8, 9, &err);
    check("gpu_arch: below 8.0 refused naming the GPU, 8.x taken", refused && taken, refused ? "refused" : err);
}

static void dump() {
    printf("{\"tables\": {");
    // parallax, softmax, and softmax with --mlp-hidden match
    for (int probe = 1; probe >= -1; probe--) {
        Config c = make_config(probe == 1, 12, 768, 64, 1024);
        if (probe == -1) c.F = mlp_hidden_match(false, c.C);
        ParamSpec spec[NUM_PARAMS];
        fill_param_table(spec, c);
        printf("\"%s\": [", probe == 1 ? "parallax" : probe == 0 ? "softmax" : "softmax_match");
        bool first = true;
        for (int i = 0; i < NUM_PARAMS; i++) {
            if (!spec[i].present) continue;
            printf("%s[\"%s\", [", first ? "" : ", ", spec[i].name);
            for (int d = 0; d < spec[i].ndim; d++) printf("%s%ld", d ? ", " : "", spec[i].shape[d]);
            printf("]]");
            first = false;
        }
        printf("]%s", probe > -1 ? ", " : "");
    }
    printf("}, \"schedules\": {");
    const char* kinds[] = {"wsd", "cosine"};
    for (int k = 0; k < 2; k++) {
        printf("\"%s\": [", kinds[k]);
        for (int s = 0; s < 100; s++) printf("%s%.9g", s ? ", " : "", lr_schedule(s, 100, 10, 0.3f, k == 1));
        printf("]%s", k == 0 ? ", " : "");
    }
    printf("}}\n");
}

// the data-parallel view of the trainer's own table: the gradient buckets cover every gradient once, in the
// backward's order (head, layers last to first, embedding), and the ZeRO-1 plan sees 84 Muon matrices at d12
static void test_dist_tables() {
    for (bool probe : {true, false}) {
        Model m;
        m.cfg = make_config(probe, 12, 768, 64, 1024);
        fill_param_table(m.spec, m.cfg);
        m.n_params = m.spec[NUM_PARAMS - 1].offset + m.spec[NUM_PARAMS - 1].numel;
        std::vector<float> g(m.n_params);
        m.grads = g.data();
        std::vector<std::vector<GradRange>> b = grad_buckets(&m);
        std::vector<int> hits(m.n_params, 0);
        for (auto& bucket : b)
            for (auto& r : bucket)
                for (size_t i = 0; i < r.n; i++) hits[(r.p - g.data()) + i]++;
        bool once = std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; });
        // layer l's bucket holds its fc_w slice: bucket 1 is the last layer's
        size_t fc_last = m.spec[P_FC].offset + 11 * m.spec[P_FC].numel / 12;
        bool order = b.size() == 14 && b[0][0].p == grad(&m, P_HEAD) && b[13][0].p == grad(&m, P_WTE);
        bool last_first = false;
        for (auto& r : b[1]) last_first = last_first || (size_t)(r.p - g.data()) == fc_last;
        int mats = 0;
        for (const PlanTensor& t : model_plan_tensors(&m, true)) mats += t.muon ? t.muon_count : 0;
        int adam_mats = 0;
        for (const PlanTensor& t : model_plan_tensors(&m, false)) adam_mats += t.muon ? 1 : 0;
        check(std::string("gradient buckets and plan tensors, d12 ") + (probe ? "parallax" : "softmax"),
              once && order && last_first && mats == (probe ? 84 : 72) && adam_mats == 0,
              std::to_string(b.size()) + " buckets cover " + std::to_string(m.n_params) + " gradients once; " +
                  std::to_string(mats) + " Muon matrices");
    }
}

// Loss masks (trainer/loss_mask.h) on random shards and masks: the answers counted at open; training batches
// whose targets are -1 exactly where the mask is 0, counted ahead without moving the loader (the counts then
// equal what the batches keep); validation batches that also drop the targets before first_scored and the
// padding rows.
static void test_loss_mask(unsigned seed) {
    std::string dir = "/tmp/test_host_mask_" + std::to_string(getpid()), err;
    if (mkdir(dir.c_str(), 0700) != 0) { check("loss mask", false, dir + ": mkdir failed"); return; }
    std::mt19937 rng(seed);
    const int B = 2, T = 8;
    long sizes[] = {2 * B * T + 1, 3 * B * T + 5};
    std::vector<std::vector<uint16_t>> tok(2);
    std::vector<std::vector<uint8_t>> mask(2);
    long answers = 0;
    for (int s = 0; s < 2; s++) {
        tok[s].resize(sizes[s]);
        mask[s].resize(sizes[s]);
        for (long i = 0; i < sizes[s]; i++) { tok[s][i] = (uint16_t)(rng() % GPT2_VOCAB); mask[s][i] = rng() % 3 == 0; }
        std::string base = dir + "/shard_00" + std::to_string(s);
        write_shard(base + ".bin", tok[s]);
        int header[256] = {LOSS_MASK_MAGIC, LOSS_MASK_VERSION, (int)sizes[s], T};
        FILE* f = fopen((base + ".mask").c_str(), "wb");
        fwrite(header, sizeof(int), 256, f);
        fwrite(mask[s].data(), 1, sizes[s], f);
        fclose(f);
        for (uint8_t m : mask[s]) answers += m;
    }
    DataLoader dl;
    LossMask mk;
    bool ok = dataloader_open(&dl, "--train-data", (dir + "/shard_*.bin").c_str(), B, T, &err) &&
              loss_mask_open(&mk, dl, &err) && mk.on && loss_mask_answers(&mk) == answers;
    check("loss mask: opened beside its shards, the answers counted", ok, ok ? std::to_string(answers) + " answers" : err);
    long wrong = 0, moved = 0, batches = 0;
    for (int round = 0; ok && round < 4; round++) {   // 4 x 3 batches: over both shards and back (an epoch)
        float ahead[3];
        int shard = dl.shard;
        long offset = dl.offset;
        loss_mask_count_ahead(&mk, &dl, 3, ahead);
        moved += dl.shard != shard || dl.offset != offset;
        for (int k = 0; k < 3; k++, batches++) {
            dataloader_next(&dl);
            long kept = loss_mask_train(&mk, &dl), start = dl.offset - B * T;
            wrong += kept != (long)ahead[k];
            for (int i = 0; i < B * T; i++) {
                long pos = start + 1 + i;
                int want = mask[dl.shard][pos] ? (int)tok[dl.shard][pos] : -1;
                wrong += dl.targets[i] != want;
            }
        }
    }
    check("loss mask: training targets -1 exactly outside the mask, counted ahead without moving the loader",
          ok && wrong == 0 && moved == 0, std::to_string(batches) + " batches, " + std::to_string(wrong) + " wrong, " +
                                              std::to_string(moved) + " moves");
    ValSet vs;
    LossMask vm;
    ok = valset_open(&vs, "--val-data", (dir + "/shard_*.bin").c_str(), 3, T, &err) && loss_mask_open(&vm, vs.files, &err);
    long scored = 0, want_scored = 0;
    wrong = 0;
    std::vector<int> first;
    for (size_t w = 0; ok && w < vs.windows.size(); w += 3) {
        valset_batch(&vs, w, vs.windows.size(), &first);
        loss_mask_val(&vm, &vs, w, vs.windows.size(), first);
        for (int b = 0; b < 3; b++)
            for (int t = 0; t < T; t++) {
                int got = vs.files.targets[(size_t)b * T + t], want = -1;
                if (w + b < vs.windows.size() && t >= first[b]) {
                    const ValWindow& win = vs.windows[w + b];
                    long pos = win.start + t + 1;
                    if (mask[win.shard][pos]) want = tok[win.shard][pos];
                }
                wrong += got != want;
                scored += got >= 0;
                want_scored += want >= 0;
            }
    }
    long val_answers = answers - mask[0][0] - mask[1][0];   // a shard's first token is never a target
    check("loss mask: validation scores each answer once (first_scored, padding rows and the mask)",
          ok && wrong == 0 && scored == val_answers && want_scored == val_answers,
          ok ? std::to_string(scored) + " of " + std::to_string(val_answers) + " answers, " + std::to_string(wrong) + " wrong"
             : err);
    for (int s = 0; s < 2; s++) {
        std::string base = dir + "/shard_00" + std::to_string(s);
        remove((base + ".bin").c_str());
        remove((base + ".mask").c_str());
    }
    rmdir(dir.c_str());
}

// Version 8 of the attention study (dev/cuda/attention_onepass.cuh) stages each thread's share of dq in the order
// (n-tile, thread, element) and reads the sums back through onepass_sum_index (parallax_kernels.cuh): that must
// be a one-to-one map of a tile's 32 x D elements onto 0..32 D - 1 that gives each fragment element the slot
// onepass_share writes it to (thread 32 w + 4 g + t, n-tile nd, element i: row 16 (w % 2) + g + 8 (i / 2),
// column (w / 2) D / 2 + 8 nd + 2 t + i % 2), with even columns at even slots (the finish kernel reads pairs).
static void test_onepass_sum_index() {
    for (int D : {64, 128}) {
        std::vector<int> hits(32 * D, 0);
        int wrong = 0;
        for (int tid = 0; tid < ATTN_THREADS; tid++)
            for (int nd = 0; nd < D / 16; nd++)
                for (int i = 0; i < 4; i++) {
                    int w = tid / 32, g = (tid % 32) / 4, t = tid % 4;
                    int row = 16 * (w % 2) + g + 8 * (i / 2), col = (w / 2) * (D / 2) + 8 * nd + 2 * t + i % 2;
                    int at = onepass_sum_index(D, row, col);
                    if (at != (nd * ATTN_THREADS + tid) * 4 + i || (col % 2 == 0 && at % 2 != 0)) wrong++;
                    if (at >= 0 && at < 32 * D) hits[at]++;
                }
        int bad = 0;
        for (int h : hits) bad += h != 1;
        check("attention one-pass: the sums' order is the staging order, D " + std::to_string(D), wrong == 0 && bad == 0,
              std::to_string(wrong) + " elements off their slot, " + std::to_string(bad) + " slots not hit once");
    }
}

int main(int argc, char** argv) {
    if (argc > 1 && strcmp(argv[1], "--dump") == 0) { dump(); return 0; }
    unsigned seed = argc > 2 && strcmp(argv[1], "--seed") == 0 ? (unsigned)strtoul(argv[2], NULL, 10) : (unsigned)time(NULL);
    printf("test_host: random seed %u (./dev/test_host --seed %u repeats it)\n", seed, seed);
    test_tensor_file();
    test_tensor_file_bounds();
    test_dataloader();
    test_val_plan(seed);
    test_loss_mask(seed);
    test_tokens_by_value();
    test_gpu_arch();
    test_dist_tables();
    test_onepass_sum_index();
    printf("test_host: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
