// defines: AttentionPath, attention_path_pick, kernel_built_for_hopper, gpu_check_supported, gpu_peak_bf16,
//          GpuPeak, GPU_PEAKS
// Which GPU this is and what follows from it (host code only): the attention path for its compute capability
// (Hopper kernels on 9.x, the 8.x path of trainer/attention_sm80.cuh on 8.x, forced on Hopper by
// PARALLAX_ATTENTION=sm80), the refusal below 8.0, and the dense bf16 tensor peak for MFU, matched by name.
#pragma once

#include <cctype>
#include <cstdio>
#include <cstring>
#include <string>
#include <cuda_runtime.h>

enum AttentionPath { ATTENTION_PATH_HOPPER, ATTENTION_PATH_SM80 };

// The path for compute capability major.minor. hopper_built: this binary carries the Hopper kernels as sm_90a
// code (kernel_built_for_hopper; a build with only compute_80 PTX runs the 8.x path on Hopper too). force: the
// value of PARALLAX_ATTENTION (NULL or "" when unset): "sm80" takes the 8.x path on any GPU, "hopper" insists on
// the Hopper path; anything else is an error. Returns false with the reason in *err on an error.
static bool attention_path_pick(int major, int minor, bool hopper_built, const char* force, AttentionPath* path,
                                std::string* err) {
    bool hopper = major == 9 && hopper_built;   // sm_90a code runs on 9.0 only; later GPUs JIT the 8.x path's PTX
    if (force == NULL || force[0] == '\0') {
        *path = hopper ? ATTENTION_PATH_HOPPER : ATTENTION_PATH_SM80;
        return true;
    }
    if (strcmp(force, "sm80") == 0) { *path = ATTENTION_PATH_SM80; return true; }
    if (strcmp(force, "hopper") == 0 && hopper) { *path = ATTENTION_PATH_HOPPER; return true; }
    char buf[200];
    if (strcmp(force, "hopper") == 0)
        snprintf(buf, sizeof(buf), "PARALLAX_ATTENTION=hopper needs compute capability 9.0 and a build with sm_90a code "
                 "(this GPU: %d.%d, sm_90a code %s)", major, minor, hopper_built ? "present" : "absent");
    else
        snprintf(buf, sizeof(buf), "PARALLAX_ATTENTION must be sm80 or hopper, got '%s'", force);
    *err = buf;
    return false;
}

// Whether `kernel` runs from code built for sm_90 or later on this device (not JIT-compiled from older PTX).
static bool kernel_built_for_hopper(const void* kernel) {
    cudaFuncAttributes a;
    if (cudaFuncGetAttributes(&a, kernel) != cudaSuccess) return false;
    return a.ptxVersion >= 90;
}

// Compute capability 8.0 (Ampere) is the oldest this build runs on (bf16 mma.sync, cp.async). Returns false
// with a message naming the GPU otherwise.
static bool gpu_check_supported(const char* name, int major, int minor, std::string* err) {
    if (major >= 8) return true;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s has compute capability %d.%d; Parallax-GPT needs 8.0 or newer (A100, A10, L4, "
             "RTX 30xx / 40xx, H100, H200)", name, major, minor);
    *err = buf;
    return false;
}

// Dense (no sparsity) bf16 tensor-core peak, fp32 accumulate, from NVIDIA's datasheets and architecture
// whitepapers. Matched against the device name: every `needs` substring present and no `avoid` substring
// (so an H100 NVL or a PCIe card never takes an SXM row). The first match wins; none: MFU unknown.
struct GpuPeak {
    const char* label;
    const char* needs[2];   // NULL: unused
    const char* avoid[2];
    double tflops;
};
static const GpuPeak GPU_PEAKS[] = {
    {"H100 PCIe", {"H100", "PCIe"}, {NULL, NULL}, 756.0},
    {"H100 SXM", {"H100", NULL}, {"PCIe", "NVL"}, 989.4},      // reports "NVIDIA H100 80GB HBM3"
    {"H200 SXM", {"H200", NULL}, {"NVL", "GH200"}, 989.4},
    {"A100 PCIe", {"A100", "PCIE"}, {NULL, NULL}, 312.0},       // "A100-PCIE-40GB", "A100 80GB PCIe"
    {"A100 SXM", {"A100", NULL}, {NULL, NULL}, 312.0},          // "A100-SXM4-40GB", "A100-SXM4-80GB"
    {"RTX A6000", {"RTX A6000", NULL}, {NULL, NULL}, 154.8},
    {"A10", {"NVIDIA A10", NULL}, {"A100", "A10G"}, 125.0},
    {"L4", {"NVIDIA L4", NULL}, {"L40", NULL}, 121.0},
    {"RTX 4090", {"RTX 4090", NULL}, {NULL, NULL}, 165.2},
    {"RTX 3090", {"RTX 3090", NULL}, {"Ti", NULL}, 71.0},
};

// case-insensitive substring test (names differ in case: "PCIe", "PCIE")
static bool name_has(const char* name, const char* part) {
    size_t n = strlen(name), m = strlen(part);
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m && tolower((unsigned char)name[i + j]) == tolower((unsigned char)part[j])) j++;
        if (j == m) return true;
    }
    return false;
}

// The table row for a device name, or NULL when the GPU is not in it.
static const GpuPeak* gpu_peak_bf16(const char* name) {
    for (const GpuPeak& g : GPU_PEAKS) {
        bool ok = true;
        for (int i = 0; i < 2; i++) {
            if (g.needs[i] && !name_has(name, g.needs[i])) ok = false;
            if (g.avoid[i] && name_has(name, g.avoid[i])) ok = false;
        }
        if (ok) return &g;
    }
    return NULL;
}
