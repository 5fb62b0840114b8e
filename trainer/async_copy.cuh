// defines: smem_u32, cp_async16, cp_async4, cp_async_commit, cp_async_wait, tma_load_3d, tma_store_3d, tma_store_wait,
//          bulk_store, bulk_add_f32, bulk_wait_all
// PTX wrappers for asynchronous copies between global and shared memory that do not pass through registers, so a
// thread can have many in flight and keep working (or wait) while they land: cp.async (16 or 4 bytes per
// thread, used by the cross-entropy's row stash and the attention kernels) and the tensor memory
// accelerator's tile copy (a whole box of a tensor per instruction, completion counted on an mbarrier; used by
// the attention kernels' tile rings).
#pragma once

#include <cstdint>
#include <cuda.h>   // CUtensorMap (a type only: nothing is linked from the driver library)
#include "cuda_common.h"

// Hopper-only instructions (TMA, wgmma, mbarrier transaction counts and try_wait) compile for sm_90 only: in
// the 8.x code of a fat binary the statement becomes a trap. The kernels that use them are never launched there
// (the attention path is picked at run time, trainer/gpu_arch.h); the 8.x path is trainer/attention_sm80.cuh.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define HOPPER_ONLY(...) __trap()
#else
#define HOPPER_ONLY(...) __VA_ARGS__
#endif

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared without passing through registers; bytes = 0 fills the 16 bytes with zeros
// (src must still be a valid address)
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// wait until at most N of this thread's committed groups are still in flight
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// TMA (sm_90): one instruction copies the box of tensor map `map` (built on the host by cuTensorMapEncodeTiled)
// at element coordinates (c0, c1, c2) into shared memory dst (1024-byte aligned for the 128-byte swizzle);
// boxes that reach past the tensor's bounds are filled with zeros. When the bytes have landed they count
// against the transaction count of the mbarrier `bar` (mbar_arrive_expect_tx in parallax_kernels.cuh). The own
// block's shared-memory addresses are valid .shared::cluster addresses without a cluster launch.
__device__ __forceinline__ void tma_load_3d(void* dst, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* bar) {
    HOPPER_ONLY(asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4}], [%5];\n"
                 ::"r"(smem_u32(dst)), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar))
                 : "memory"));
}

// The reverse: the box at (c0, c1, c2) from shared memory src (laid out as tma_load_3d writes it); parts of the
// box past the tensor's bounds are not written. Tracked per thread in bulk groups: tma_store_wait.
__device__ __forceinline__ void tma_store_3d(const CUtensorMap* map, const void* src, int c0, int c1, int c2) {
    HOPPER_ONLY(asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4}], [%1];\n"
                 ::"l"(map), "r"(smem_u32(src)), "r"(c0), "r"(c1), "r"(c2)
                 : "memory"));
}
// until this thread's TMA stores so far have read their shared memory (it may then be reused or freed)
__device__ __forceinline__ void tma_store_wait() {
    HOPPER_ONLY(asm volatile("cp.async.bulk.commit_group;\ncp.async.bulk.wait_group.read 0;\n" ::: "memory"));
}

// Bulk copies of `bytes` (a multiple of 16; both addresses 16-byte aligned) from shared to global memory
// (sm_90), tracked per thread in bulk groups like the TMA stores: bulk_store copies, bulk_add_f32 adds fp32
// values element by element into what global memory holds (each element's add is atomic, rounded to nearest;
// the order of two blocks' adds is the caller's to fix). Both commit their group.
__device__ __forceinline__ void bulk_store(void* dst, const void* src, int bytes) {
    HOPPER_ONLY(asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\ncp.async.bulk.commit_group;\n"
                 ::"l"(dst), "r"(smem_u32(src)), "r"(bytes) : "memory"));
}
__device__ __forceinline__ void bulk_add_f32(float* dst, const float* src, int bytes) {
    HOPPER_ONLY(asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                 "cp.async.bulk.commit_group;\n"
                 ::"l"(dst), "r"(smem_u32(src)), "r"(bytes) : "memory"));
}
// until every bulk copy and TMA store of this thread has completed (written global memory), then orders those
// writes of the async proxy before this thread's later ordinary memory operations (a flag that announces them)
__device__ __forceinline__ void bulk_wait_all() {
    HOPPER_ONLY(asm volatile("cp.async.bulk.wait_group 0;\nfence.proxy.async.global;\n" ::: "memory"));
}
