// The few NCCL calls the trainer makes, declared here from NCCL's documented C API (nccl.h is not needed to
// build), and libnccl.so.2 opened at run time: the binary builds and runs on one GPU without NCCL.
// Search order: PARALLAX_NCCL_LIB (a path; nothing else is tried when it is set), then "libnccl.so.2" on the
// loader's path (LD_LIBRARY_PATH, ldconfig), then CUDA's lib64, <dir>/../lib of every PATH entry (conda), and
// the pip package nvidia-nccl-cu1x (nvidia/nccl/lib/ under the site-packages next to every PATH entry, of
// /usr/local/lib, /usr/lib and ~/.local/lib).
#pragma once

#include <dlfcn.h>
#include <glob.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include <cuda_runtime.h>

#define NCCL_ID_BYTES 128
struct NcclId { char internal[NCCL_ID_BYTES]; };   // ncclUniqueId
typedef struct ncclComm* NcclComm;                 // ncclComm_t
typedef int NcclResult;                            // ncclResult_t: 0 = ncclSuccess
enum { NCCL_FLOAT32 = 7, NCCL_FLOAT64 = 8 };       // ncclDataType_t: ncclFloat32, ncclFloat64
enum { NCCL_SUM = 0 };                             // ncclRedOp_t: ncclSum

struct NcclApi {
    void* lib;
    std::string path;   // the file that was opened
    int version;        // ncclGetVersion: major * 10000 + minor * 100 + patch (2.x)
    NcclResult (*GetVersion)(int* version);
    const char* (*GetErrorString)(NcclResult r);
    NcclResult (*GetUniqueId)(NcclId* id);
    NcclResult (*CommInitRank)(NcclComm* comm, int nranks, NcclId id, int rank);
    NcclResult (*CommDestroy)(NcclComm comm);
    NcclResult (*AllReduce)(const void* send, void* recv, size_t count, int dtype, int op, NcclComm comm,
                            cudaStream_t stream);
    NcclResult (*Broadcast)(const void* send, void* recv, size_t count, int dtype, int root, NcclComm comm,
                            cudaStream_t stream);
    NcclResult (*GroupStart)();
    NcclResult (*GroupEnd)();
};

#define NCCL_INSTALL_HINT                                                                                  \
    "install NCCL: pip install nvidia-nccl-cu12 (or -cu13; torch brings one), or apt-get install libnccl2, " \
    "or point PARALLAX_NCCL_LIB at a libnccl.so.2"

// the candidate files in search order (PARALLAX_NCCL_LIB alone when set)
static std::vector<std::string> nccl_candidates() {
    const char* forced = getenv("PARALLAX_NCCL_LIB");
    if (forced) return {forced};
    std::vector<std::string> c = {"libnccl.so.2", "/usr/local/cuda/lib64/libnccl.so.2"};
    std::vector<std::string> roots;
    const char* path = getenv("PATH");
    for (std::string rest = path ? path : ""; !rest.empty();) {   // <bin>/../lib/python3*/site-packages
        size_t colon = rest.find(':');
        std::string dir = rest.substr(0, colon);
        rest = colon == std::string::npos ? "" : rest.substr(colon + 1);
        if (!dir.empty()) roots.push_back(dir + "/../lib");
    }
    for (const std::string& r : roots) c.push_back(r + "/libnccl.so.2");   // conda, /usr/local
    roots.push_back("/usr/local/lib");
    roots.push_back("/usr/lib");
    if (getenv("HOME")) roots.push_back(std::string(getenv("HOME")) + "/.local/lib");
    for (const std::string& r : roots) {
        std::string pattern = r + "/python3*/*-packages/nvidia/nccl/lib/libnccl.so.2";
        glob_t g;
        if (glob(pattern.c_str(), 0, NULL, &g) == 0)
            for (size_t i = 0; i < g.gl_pathc; i++) c.push_back(g.gl_pathv[i]);
        globfree(&g);
    }
    return c;
}

// Opens NCCL and resolves every symbol; false with `err` saying what was tried and what to install.
static bool nccl_load(NcclApi* api, std::string* err) {
    *api = NcclApi();
    std::vector<std::string> tried = nccl_candidates();
    std::string last;
    for (const std::string& p : tried) {
        api->lib = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (api->lib) { api->path = p; break; }
        last = dlerror();
    }
    if (!api->lib) {
        *err = "NCCL (libnccl.so.2) not found; tried " + std::to_string(tried.size()) + " paths (first " + tried[0] +
               ": " + last + "); " NCCL_INSTALL_HINT;
        return false;
    }
    struct { void** fn; const char* name; } syms[] = {
        {(void**)&api->GetVersion, "ncclGetVersion"},     {(void**)&api->GetErrorString, "ncclGetErrorString"},
        {(void**)&api->GetUniqueId, "ncclGetUniqueId"},   {(void**)&api->CommInitRank, "ncclCommInitRank"},
        {(void**)&api->CommDestroy, "ncclCommDestroy"},   {(void**)&api->AllReduce, "ncclAllReduce"},
        {(void**)&api->Broadcast, "ncclBroadcast"},       {(void**)&api->GroupStart, "ncclGroupStart"},
        {(void**)&api->GroupEnd, "ncclGroupEnd"},
    };
    for (auto& s : syms) {
        *s.fn = dlsym(api->lib, s.name);
        if (!*s.fn) { *err = api->path + ": no symbol " + s.name + " (not NCCL 2.x?); " NCCL_INSTALL_HINT; return false; }
    }
    api->version = 0;
    if (api->GetVersion(&api->version) != 0 || api->version < 20700) {
        *err = api->path + ": NCCL version " + std::to_string(api->version) + " is older than 2.7; " NCCL_INSTALL_HINT;
        return false;
    }
    return true;
}

static void nccl_check_(const NcclApi& api, NcclResult r, const char* call, const char* file, int line) {
    if (r == 0) return;
    fprintf(stderr, "NCCL error %d (%s) at %s:%d\n  in %s\n", r, api.GetErrorString(r), file, line, call);
    exit(EXIT_FAILURE);
}
#define ncclCheck(api, call) nccl_check_((api), (api).call, #call, __FILE__, __LINE__)
