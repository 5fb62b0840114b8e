// Versions 6 and 7 of the attention kernel study (dev/cuda/NOTES.md, session 16): version 3 with the backward
// passes' own rows kept in shared memory instead of registers. Each warp of the dq pass owns 16 query rows
// whose Q, R and dO A fragments version 3 holds in registers for the whole pass (3 D / 4 per thread); each
// warp of the dk/dv pass likewise holds its 16 keys' K and V. At D = 128 Parallax those registers, with the
// accumulators, pass the 255 a thread can have, and the kernels spill. Here they are written once into a
// warp-private shared-memory tile (16 rows, the swizzled tile_offset layout) and read back by ldmatrix on every
// tile (parallax_kernels.cuh: RowFrags).
//   6  the dq pass only (dq_rows_in_smem everywhere)
//   7  both passes (dq_rows_in_smem and dkv_rows_in_smem everywhere)
// The forward is version 3's. The trainer takes whichever measured faster per head dim and probe through
// dq_rows_in_smem and dkv_rows_in_smem in parallax_kernels.cuh.
#pragma once

#include "../../parallax_kernels.cuh"   // attention_backward_launch, RowFrags, version 3

static void attention_backward_rows_smem_dq(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.fwd.shape, "attention_backward (version 6)", [&](auto inst) {
        attention_backward_launch<decltype(inst)::head_dim, decltype(inst)::probe, true, false>(p, stream);
    });
}

static void attention_backward_rows_smem_both(const AttentionBackwardParams& p, cudaStream_t stream) {
    attention_dispatch(p.fwd.shape, "attention_backward (version 7)", [&](auto inst) {
        attention_backward_launch<decltype(inst)::head_dim, decltype(inst)::probe, true, true>(p, stream);
    });
}
