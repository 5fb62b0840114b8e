// test_host: CPU tests of the trainer's host code (no GPU needed, so they run in CI): the tensor-file writer
// and reader, the data loader's batches, the embedding backward's grouping of positions by token.
//   ./dev/test_host            one PASS / FAIL line per check
//   ./dev/test_host --dump     the parameter table and the learning-rate schedules as JSON, which
//                              dev/test_host.py compares with dev/model_ref.py and dev/optim_ref.py
#include <cstdio>
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

static void write_shard(const std::string& path, const std::vector<uint16_t>& tokens) {
    int header[256] = {SHARD_MAGIC, SHARD_VERSION, (int)tokens.size()};
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(header, sizeof(int), 256, f);
    fwrite(tokens.data(), 2, tokens.size(), f);
    fclose(f);
}

static void test_dataloader() {
    std::string dir = "/tmp/test_host_shards_" + std::to_string(getpid()), err;
    if (system(("mkdir -p " + dir).c_str()) != 0) { check("data loader", false, "mkdir failed"); return; }
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
    if (system(("rm -rf " + dir).c_str()) != 0) perror("rm");
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

int main(int argc, char** argv) {
    if (argc > 1 && strcmp(argv[1], "--dump") == 0) { dump(); return 0; }
    test_tensor_file();
    test_dataloader();
    test_tokens_by_value();
    printf("test_host: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
