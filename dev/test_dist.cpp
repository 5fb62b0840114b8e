// test_dist: CPU tests of the data-parallel host code (no GPU, no NCCL needed; runs in CI):
//   the launcher variables of torchrun, mpirun and srun, and every bad or inconsistent value refused;
//   the NCCL id rendezvous over TCP and through a file, with forked processes on this machine;
//   the NCCL loader's search path and its message when NCCL is missing;
//   the ZeRO-1 plan for world sizes 1, 2, 3, 4, 8 against a direct per-matrix computation;
//   each rank's micro-batches against the single-GPU order;
//   with the trainer's path: bad launches refused by train_parallax itself, exit status 2, before GPU work.
//   ./dev/test_dist [./train_parallax]     one PASS / FAIL / SKIP line per check
#include <sys/stat.h>
#include <ftw.h>
#include <sys/wait.h>
#include <errno.h>
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include "../trainer/launcher.h"
#include "../trainer/rendezvous.h"
#include "../trainer/nccl_api.h"
#include "../trainer/shard_plan.h"
#include "../trainer/data_slice.h"

static int n_pass = 0, n_fail = 0;

static void check(const std::string& name, bool ok, const std::string& detail) {
    (ok ? n_pass : n_fail)++;
    printf("%s dist: %s: %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
}

// ---------------------------------------------------------------------------------------------------------
// launcher

static std::map<std::string, std::string> g_env;
static const char* table_env(const char* name) {
    auto it = g_env.find(name);
    return it == g_env.end() ? NULL : it->second.c_str();
}

static bool parse_with(const std::map<std::string, std::string>& env, LaunchInfo* li, std::string* err) {
    g_env = env;
    return launch_parse(table_env, li, err);
}

static void test_launcher_good() {
    struct Case {
        std::map<std::string, std::string> env;
        const char* launcher;
        int rank, world, local;
        bool nccl;
        int port;   // rendezvous port, 0 = none
    };
    const std::map<std::string, std::string> master = {{"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}};
    auto with = [&](std::map<std::string, std::string> e, bool m) { if (m) e.insert(master.begin(), master.end()); return e; };
    Case cases[] = {
        {{}, "none", 0, 1, 0, false, 0},
        {with({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}}, true), "torchrun", 5, 8, 1, true, 29501},
        {with({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}}, true), "torchrun", 0, 1, 0, true, 0},
        {with({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}, {"PARALLAX_NCCL", "0"}}, true), "torchrun", 0, 1, 0, false, 0},
        {with({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "3"}}, true), "mpirun", 3, 4, 3, true, 29501},
        {{{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}, "mpirun", 0, 1, 0, false, 0},
        {{{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"PARALLAX_NCCL", "1"}}, "mpirun", 0, 1, 0, true, 0},
        {with({{"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"}, {"SLURM_STEP_ID", "0"}, {"PARALLAX_RDZV_PORT", "4000"}}, true), "srun", 9, 16, 1, true, 4000},
        // a batch script (no job step): its SLURM_PROCID / SLURM_NTASKS are not a launch
        {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "0"}}, "none", 0, 1, 0, false, 0},
        // torchrun inside srun: torchrun's variables win
        {with({{"RANK", "6"}, {"WORLD_SIZE", "16"}, {"LOCAL_RANK", "6"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}, {"SLURM_STEP_ID", "0"}}, true), "torchrun", 6, 16, 6, true, 29501},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"PARALLAX_NCCL_ID_FILE", "/shared/id"}}, "torchrun", 1, 2, 0, true, 0},
    };
    for (const Case& c : cases) {
        LaunchInfo li;
        std::string err;
        bool ok = parse_with(c.env, &li, &err);
        std::string desc;
        for (auto& kv : c.env) desc += kv.first + "=" + kv.second + " ";
        bool good = ok && li.launcher == c.launcher && li.rank == c.rank && li.world == c.world &&
                    li.local_rank == c.local && li.use_nccl == c.nccl && li.rdzv_port == c.port &&
                    (c.port == 0 || li.master_addr == "node0");
        check("launcher: " + std::string(c.launcher) + " rank " + std::to_string(c.rank) + " of " + std::to_string(c.world),
              good, ok ? desc + "-> " + li.launcher + " rank " + std::to_string(li.rank) + "/" + std::to_string(li.world) +
                             " local " + std::to_string(li.local_rank) + (li.use_nccl ? " nccl" : " plain") +
                             " port " + std::to_string(li.rdzv_port)
                       : desc + "refused: " + err);
    }
}

static void test_launcher_bad() {
    struct Case {
        std::map<std::string, std::string> env;
        const char* must_name;   // the variable the message must name
    };
    Case cases[] = {
        {{{"RANK", "abc"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK"},
        {{{"RANK", "1"}, {"LOCAL_RANK", "0"}}, "WORLD_SIZE"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}}, "LOCAL_RANK"},
        {{{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK=2 is not below WORLD_SIZE=2"},
        {{{"RANK", "0"}, {"WORLD_SIZE", "0"}, {"LOCAL_RANK", "0"}}, "WORLD_SIZE"},
        {{{"RANK", "-1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}, "RANK"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}}, "LOCAL_RANK=2 is above RANK=1"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2 "}, {"LOCAL_RANK", "1"}}, "WORLD_SIZE"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}}, "MASTER_ADDR"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "h"}}, "MASTER_PORT"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}, "MASTER_PORT"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}, {"PARALLAX_RDZV_PORT", "0"}}, "PARALLAX_RDZV_PORT"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"PARALLAX_NCCL_ID_FILE", ""}}, "PARALLAX_NCCL_ID_FILE"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"PARALLAX_NCCL", "0"}}, "PARALLAX_NCCL=0"},
        {{{"PARALLAX_NCCL", "yes"}}, "PARALLAX_NCCL"},
        {{{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}, "OMPI_COMM_WORLD_RANK=3"},
        {{{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "OMPI_COMM_WORLD_LOCAL_RANK"},
        {{{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "x"}, {"SLURM_LOCALID", "0"}, {"SLURM_STEP_ID", "3"}}, "SLURM_NTASKS"},
        {{{"SLURM_PROCID", "1"}, {"SLURM_LOCALID", "0"}, {"SLURM_STEP_ID", "3"}}, "SLURM_NTASKS"},
    };
    for (const Case& c : cases) {
        LaunchInfo li;
        std::string err, desc;
        for (auto& kv : c.env) desc += kv.first + "='" + kv.second + "' ";
        bool ok = parse_with(c.env, &li, &err);
        check("launcher refuses " + desc, !ok && err.find(c.must_name) != std::string::npos,
              ok ? "accepted" : "message: " + err);
    }
    std::string err;
    LaunchInfo li = {};
    li.local_rank = 3;
    bool bad = launch_device(li, 2, &err) < 0 && err.find("local rank 3") != std::string::npos;
    li.local_rank = 1;
    bool one = launch_device(li, 1, &err) == 0 && launch_device(li, 4, &err) == 1;
    check("launcher: GPU of a local rank", bad && one, "local rank 3 of 2 GPUs refused; one visible GPU -> 0; else the local rank");
}

// ---------------------------------------------------------------------------------------------------------
// rendezvous

static int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    bind(fd, (sockaddr*)&a, sizeof(a));
    getsockname(fd, (sockaddr*)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

// runs ranks 1 .. world-1 as forked children (each claims `child_world`), rank 0 here; true when every
// child received rank 0's bytes. err: rank 0's error, child_fail: how many children failed.
static bool run_rendezvous(RdzvSpec base, int child_world, unsigned seed, std::string* err, int* child_fail) {
    std::mt19937 rng(seed);
    unsigned char id[128], expect[128];
    for (int i = 0; i < 128; i++) id[i] = expect[i] = (unsigned char)rng();
    std::vector<pid_t> kids;
    for (int r = 1; r < base.world; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            RdzvSpec s = base;
            s.rank = r;
            s.world = child_world;
            unsigned char got[128] = {0};
            std::string e;
            bool ok = rendezvous(s, got, &e) && memcmp(got, expect, 128) == 0;
            _exit(ok ? 0 : 1);
        }
        kids.push_back(pid);
    }
    RdzvSpec s = base;
    s.rank = 0;
    bool ok = rendezvous(s, id, err);
    *child_fail = 0;
    for (pid_t k : kids) {
        int st;
        waitpid(k, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) (*child_fail)++;
    }
    return ok && *child_fail == 0;
}

static void test_rendezvous(unsigned seed) {
    RdzvSpec tcp = {0, 4, "127.0.0.1", free_port(), "", 20.0};
    std::string err;
    int fails;
    bool ok = run_rendezvous(tcp, 4, seed, &err, &fails);
    check("rendezvous over TCP, 4 processes", ok, ok ? "ranks 1-3 got rank 0's 128 bytes" : err + ", " + std::to_string(fails) + " ranks failed");

    RdzvSpec two = {0, 2, "localhost", free_port(), "", 20.0};
    ok = run_rendezvous(two, 3, seed + 1, &err, &fails);
    check("rendezvous over TCP: a rank with another world size is refused", !ok && err.find("inconsistent") != std::string::npos && fails == 1,
          ok ? "accepted" : "rank 0: " + err);

    RdzvSpec none = {1, 2, "127.0.0.1", free_port(), "", 0.5};
    unsigned char id[128];
    ok = rendezvous(none, id, &err);
    check("rendezvous over TCP: no rank 0 times out naming the address", !ok && err.find("127.0.0.1:" + std::to_string(none.port)) != std::string::npos,
          ok ? "accepted" : err);

    std::string file = "/tmp/test_dist_id_" + std::to_string(getpid());
    remove(file.c_str());
    RdzvSpec fs = {0, 3, "", 0, file, 20.0};
    ok = run_rendezvous(fs, 3, seed + 2, &err, &fails);
    check("rendezvous through a file, 3 processes", ok, ok ? "ranks 1-2 read rank 0's 128 bytes from " + file : err);
    ok = rendezvous(fs, id, &err);   // rank 0 again: the file is there now
    check("rendezvous through a file: an existing file is refused", !ok && err.find("exists already") != std::string::npos, ok ? "accepted" : err);
    RdzvSpec other = fs;
    other.rank = 1;
    other.world = 5;
    ok = rendezvous(other, id, &err);
    check("rendezvous through a file: another world size is refused", !ok && err.find("inconsistent") != std::string::npos, ok ? "accepted" : err);
    remove(file.c_str());
}

// ---------------------------------------------------------------------------------------------------------
// NCCL loader

// Test directories without a shell: mkdir(2) per path component, and a depth-first remove by nftw(3).
static bool make_dirs(const std::string& path) {
    for (size_t i = 1; i <= path.size(); i++)
        if (i == path.size() || path[i] == '/')
            if (mkdir(path.substr(0, i).c_str(), 0755) != 0 && errno != EEXIST) return false;
    return true;
}

static int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return remove(path); }

static void remove_tree(const std::string& path) {
    if (nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) printf("note: could not remove %s\n", path.c_str());
}

static void test_nccl_loader() {
    std::string saved_path = getenv("PATH") ? getenv("PATH") : "";
    std::string root = "/tmp/test_dist_py_" + std::to_string(getpid());
    std::string lib = root + "/lib/python3.99/site-packages/nvidia/nccl/lib";
    bool made = make_dirs(root + "/bin") && make_dirs(lib);
    FILE* f = made ? fopen((lib + "/libnccl.so.2").c_str(), "wb") : NULL;
    if (f) fclose(f);
    setenv("PATH", (root + "/bin:" + saved_path).c_str(), 1);
    unsetenv("PARALLAX_NCCL_LIB");
    std::vector<std::string> c = nccl_candidates();
    bool found = false;
    for (const std::string& p : c) found = found || p == root + "/bin/../lib/python3.99/site-packages/nvidia/nccl/lib/libnccl.so.2";
    check("NCCL loader searches the pip package next to a python3 on PATH", made && found && c[0] == "libnccl.so.2",
          std::to_string(c.size()) + " candidates, first " + c[0]);
    setenv("PATH", saved_path.c_str(), 1);
    remove_tree(root);

    setenv("PARALLAX_NCCL_LIB", "/nonexistent/libnccl.so.2", 1);
    NcclApi api;
    std::string err;
    bool ok = nccl_load(&api, &err);
    check("NCCL loader: a missing PARALLAX_NCCL_LIB says what to install",
          !ok && err.find("/nonexistent/libnccl.so.2") != std::string::npos && err.find("pip install nvidia-nccl") != std::string::npos,
          ok ? "loaded?" : err);
    unsetenv("PARALLAX_NCCL_LIB");
    ok = nccl_load(&api, &err);
    if (ok) check("NCCL loader: this machine's NCCL", true, api.path + ", version " + std::to_string(api.version));
    else printf("SKIP dist: NCCL loader on this machine: skipped: no libnccl.so.2 here (%s)\n", err.c_str());
}

// ---------------------------------------------------------------------------------------------------------
// ZeRO-1 plan

// the d12-style stacked tensors of the spec, written out from the architecture (not the trainer's table):
// embedding, 4 (q, k, v, r) or 3 C x C per layer, q/k/r gains, W_o, W_1 (4C x C), W_2 (C x 4C), head
static std::vector<PlanTensor> model_tensors(int L, long C, long D, bool probe, bool muon) {
    long Vp = 50304, n = probe ? 4 : 3;
    std::vector<PlanTensor> t = {
        {(size_t)(Vp * C), 0, 0, 0, false},
        {(size_t)(L * n * C * C), (int)(L * n), C, C, muon},
        {(size_t)(L * D), 0, 0, 0, false}, {(size_t)(L * D), 0, 0, 0, false},
    };
    if (probe) t.push_back({(size_t)(L * D), 0, 0, 0, false});
    t.push_back({(size_t)(L * C * C), L, C, C, muon});
    t.push_back({(size_t)(L * 4 * C * C), L, 4 * C, C, muon});
    t.push_back({(size_t)(L * C * 4 * C), L, C, 4 * C, muon});
    t.push_back({(size_t)(Vp * C), 0, 0, 0, false});
    return t;
}

// direct owner of every Muon matrix: floor(world (S_j + c_j / 2) / S), in long double
static std::vector<int> direct_owners(const std::vector<PlanTensor>& t, int world) {
    long double total = 0, before = 0;
    for (auto& x : t) if (x.muon) total += (long double)x.muon_count * muon_cost(x.rows, x.cols);
    std::vector<int> owners;
    for (auto& x : t) {
        if (!x.muon) continue;
        long double c = muon_cost(x.rows, x.cols);
        for (int j = 0; j < x.muon_count; j++) {
            int o = (int)floorl(world * (before + c / 2) / total);
            owners.push_back(o < world - 1 ? o : world - 1);
            before += c;
        }
    }
    return owners;
}

static void test_plan_one(const std::vector<PlanTensor>& t, int world, const std::string& tag) {
    std::vector<ShardPlan> plans;
    for (int r = 0; r < world; r++) plans.push_back(shard_plan_make(t, world, r));
    const ShardPlan& p = plans[0];
    std::vector<int> direct = direct_owners(t, world), planned;
    bool cover = true, aligned = true, slices = true, same = true, states = true;
    std::vector<long double> load(world, 0);
    long double max_cost = 0, total = 0;
    for (size_t i = 0; i < t.size(); i++) {
        // every element of the tensor belongs to exactly one rank, the ranks in order
        size_t at = 0;
        for (int r = 0; r < world; r++) {
            Range g = p.own[i][r];
            cover = cover && g.begin == at && g.end >= g.begin;
            at = g.end;
            for (int q = 1; q < world; q++) same = same && plans[q].own[i][r].begin == g.begin && plans[q].own[i][r].end == g.end;
        }
        cover = cover && at == t[i].numel;
        if (t[i].muon) {
            size_t mat = (size_t)t[i].rows * t[i].cols;
            long double c = muon_cost(t[i].rows, t[i].cols);
            max_cost = std::max(max_cost, c);
            for (int r = 0; r < world; r++) {
                aligned = aligned && p.own[i][r].begin % mat == 0 && p.own[i][r].end % mat == 0;
                for (size_t j = p.own[i][r].begin / mat; j < p.own[i][r].end / mat; j++) planned.push_back(r);
                load[r] += c * (p.own[i][r].size() / mat);
                total += c * (p.own[i][r].size() / mat);
            }
        } else {
            for (int r = 0; r < world; r++) {   // sizes differ by at most one element
                long d = (long)p.own[i][r].size() - (long)(t[i].numel / world);
                slices = slices && d >= 0 && d <= 1;
            }
        }
    }
    // each rank's state buffers hold exactly its parts, back to back
    size_t muon_all = 0, adam_all = 0, muon_sum = 0, adam_sum = 0;
    for (size_t i = 0; i < t.size(); i++) (t[i].muon ? muon_all : adam_all) += t[i].numel;
    for (int r = 0; r < world; r++) {
        size_t mo = 0, ao = 0;
        for (size_t i = 0; i < t.size(); i++) {
            size_t& o = t[i].muon ? mo : ao;
            states = states && plans[r].state_off[i] == o;
            o += plans[r].own[i][r].size();
        }
        states = states && mo == plans[r].muon_state && ao == plans[r].adam_state;
        muon_sum += mo;
        adam_sum += ao;
    }
    states = states && muon_sum == muon_all && adam_sum == adam_all;
    bool balanced = true;
    for (int r = 0; r < world; r++) balanced = balanced && load[r] <= total / world + max_cost;
    char detail[256];
    snprintf(detail, sizeof detail, "%zu Muon matrices, owners as the direct formula: %s; load max %.3g of ideal %.3g",
             planned.size(), planned == direct ? "yes" : "no", (double)*std::max_element(load.begin(), load.end()),
             (double)(total / world));
    check("plan " + tag + " world " + std::to_string(world) + ": Muon owners", planned == direct && aligned && balanced, detail);
    check("plan " + tag + " world " + std::to_string(world) + ": every element owned once, AdamW slices even, state offsets",
          cover && slices && same && states, std::to_string(muon_sum) + " Muon + " + std::to_string(adam_sum) + " AdamW state elements over the ranks");
}

static void test_plans() {
    std::vector<PlanTensor> d12 = model_tensors(12, 768, 64, true, true);
    int mats = 0;
    for (auto& x : d12) mats += x.muon ? x.muon_count : 0;
    check("plan: d12 Parallax has 84 Muon matrices", mats == 84, std::to_string(mats));
    for (int w : {1, 2, 3, 4, 8}) {
        test_plan_one(d12, w, "d12 parallax muon");
        test_plan_one(model_tensors(12, 768, 64, false, true), w, "d12 softmax muon");
        test_plan_one(model_tensors(12, 768, 64, true, false), w, "d12 parallax adamw");
        test_plan_one(model_tensors(2, 256, 128, true, true), w, "d2 C256");
    }
    ShardPlan one = shard_plan_make(d12, 1, 0);
    bool all = true;
    for (size_t i = 0; i < d12.size(); i++) all = all && one.own[i][0].begin == 0 && one.own[i][0].end == d12[i].numel;
    check("plan world 1: rank 0 owns every tensor whole", all, "the single-GPU update");
}

// ---------------------------------------------------------------------------------------------------------
// data slices

static void write_shard(const std::string& path, const std::vector<uint16_t>& tok) {
    int header[256] = {SHARD_MAGIC, SHARD_VERSION, (int)tok.size()};
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(header, sizeof(int), 256, f);
    fwrite(tok.data(), 2, tok.size(), f);
    fclose(f);
}

static void test_data_slices(unsigned seed) {
    std::string dir = "/tmp/test_dist_shards_" + std::to_string(getpid());
    if (!make_dirs(dir)) { check("data slices: temp dir", false, dir); return; }
    std::mt19937 rng(seed);
    long sizes[] = {1000, 437, 2900};   // uneven: micro-batches skip shard tails and wrap around
    for (int s = 0; s < 3; s++) {
        std::vector<uint16_t> tok(sizes[s]);
        for (auto& x : tok) x = (uint16_t)(rng() % 50257);
        write_shard(dir + "/train_00" + std::to_string(s) + ".bin", tok);
    }
    std::string pattern = dir + "/train_*.bin", err;
    const int B = 2, T = 16, accum = 24, steps = 7;
    DataLoader single;
    dataloader_open(&single, "--train-data", pattern.c_str(), B, T, &err);
    std::vector<std::vector<int>> ref;   // every micro-batch of the single-GPU run, in order
    for (int k = 0; k < steps * accum; k++) {
        dataloader_next(&single);
        ref.push_back(single.inputs);
        ref.back().insert(ref.back().end(), single.targets.begin(), single.targets.end());
    }
    for (int world : {1, 2, 3, 4, 8}) {
        bool same = true, pos = true;
        std::vector<DataLoader> dl(world);
        std::vector<DataSlice> sl(world);
        for (int r = 0; r < world; r++) {
            dataloader_open(&dl[r], "--train-data", pattern.c_str(), B, T, &err);
            data_slice_make(accum, world, r, &sl[r], &err);
        }
        DataLoader walk;
        dataloader_open(&walk, "--train-data", pattern.c_str(), B, T, &err);
        for (int step = 0; step < steps; step++) {
            std::vector<std::vector<int>> got;
            for (int r = 0; r < world; r++) {   // rank order = micro-batch order
                dataloader_skip(&dl[r], sl[r].first);
                for (int k = 0; k < sl[r].count; k++) {
                    dataloader_next(&dl[r]);
                    got.push_back(dl[r].inputs);
                    got.back().insert(got.back().end(), dl[r].targets.begin(), dl[r].targets.end());
                }
                dataloader_skip(&dl[r], accum - sl[r].first - sl[r].count);
            }
            for (int k = 0; k < accum; k++) same = same && got[k] == ref[step * accum + k];
            for (int k = 0; k < accum; k++) dataloader_next(&walk);   // where the single run is after the step
            for (int r = 0; r < world; r++) pos = pos && dl[r].shard == walk.shard && dl[r].offset == walk.offset;
        }
        check("data: " + std::to_string(world) + " ranks see the single-GPU micro-batches", same && pos,
              std::to_string(steps) + " steps of " + std::to_string(accum) + " micro-batches of " + std::to_string(B) + "x" +
                  std::to_string(T) + " over 3 uneven shards (wrapping), and every rank's position after each step");
    }
    DataSlice s;
    bool refused = !data_slice_make(6, 4, 0, &s, &err) && err.find("--total-batch") != std::string::npos;
    check("data: 6 micro-batches over 4 ranks refused naming --total-batch", refused, err);
    bool split = true;
    for (int n : {1, 5, 20, 37})
        for (int w : {1, 2, 3, 4, 8}) {
            int at = 0;
            for (int r = 0; r < w; r++) {
                int b, e;
                split_range(n, w, r, &b, &e);
                split = split && b == at && e >= b && e - b <= n / w + 1;
                at = e;
            }
            split = split && at == n;
        }
    check("data: evaluation batches split over ranks, each once", split, "n = 1, 5, 20, 37 over 1, 2, 3, 4, 8 ranks");
    remove_tree(dir);
}

// ---------------------------------------------------------------------------------------------------------
// the trainer refuses bad launches before any GPU work

// runs exe with args and exactly the environment env; returns the exit status, stderr in *out
static int run_trainer(const std::string& exe, const std::vector<std::string>& args, const std::vector<std::string>& env,
                       std::string* out) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        std::vector<char*> av, ev;
        av.push_back((char*)exe.c_str());
        for (auto& a : args) av.push_back((char*)a.c_str());
        av.push_back(NULL);
        for (auto& e : env) ev.push_back((char*)e.c_str());
        ev.push_back(NULL);
        execve(exe.c_str(), av.data(), ev.data());
        _exit(127);
    }
    close(pipefd[1]);
    char buf[4096];
    ssize_t k;
    out->clear();
    while ((k = read(pipefd[0], buf, sizeof buf)) > 0) out->append(buf, k);
    close(pipefd[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_trainer(const std::string& exe, unsigned seed) {
    std::string dir = "/tmp/test_dist_cli_" + std::to_string(getpid());
    if (!make_dirs(dir)) { check("trainer: temp dir", false, dir); return; }
    std::mt19937 rng(seed);
    std::vector<uint16_t> tok(5000);
    for (auto& x : tok) x = (uint16_t)(rng() % 50257);
    std::string shard = dir + "/good.bin";
    write_shard(shard, tok);
    std::string val_shard = dir + "/val.bin";   // validation must be held out: a file of its own
    write_shard(val_shard, tok);
    std::vector<std::string> args = {"--train-data", shard, "--val-data", val_shard, "--batch", "2", "--seq-len", "64",
                                     "--depth", "2", "--total-batch", "512", "--steps", "1", "--warmup", "0", "--out", dir + "/out"};
    std::string path = std::string("PATH=") + (getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
    struct Case {
        std::vector<std::string> env;
        const char* must;      // in the message
        const char* what;
    };
    Case cases[] = {
        {{"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0"}, "MASTER_ADDR", "a 2-process launch without MASTER_ADDR"},
        {{"RANK=1", "WORLD_SIZE=3", "LOCAL_RANK=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29500"}, "--total-batch",
         "4 micro-batches over 3 ranks"},
        {{"OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_LOCAL_RANK=0"}, "OMPI_COMM_WORLD_RANK=2",
         "mpirun rank 2 of 2"},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29500",
          "PARALLAX_NCCL_LIB=/nonexistent/libnccl.so.2"}, "pip install nvidia-nccl", "a 2-process launch without NCCL"},
        {{"RANK=0", "WORLD_SIZE=1", "LOCAL_RANK=0", "PARALLAX_NCCL_LIB=/nonexistent/libnccl.so.2"}, "needs NCCL",
         "torchrun at world size 1 takes the NCCL path"},
    };
    for (const Case& c : cases) {
        std::vector<std::string> env = c.env;
        env.push_back(path);
        std::string out;
        int rc = run_trainer(exe, args, env, &out);
        std::string first = out.substr(0, out.find('\n'));
        check(std::string("trainer refuses ") + c.what, rc == 2 && out.find(c.must) != std::string::npos,
              "exit " + std::to_string(rc) + ": " + first);
    }
    remove_tree(dir);
}

int main(int argc, char** argv) {
    unsigned seed = std::random_device()();
    printf("test_dist: seed %u\n", seed);
    test_launcher_good();
    test_launcher_bad();
    test_rendezvous(seed);
    test_nccl_loader();
    test_plans();
    test_data_slices(seed);
    if (argc > 1) test_trainer(argv[1], seed);
    printf("test_dist: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
