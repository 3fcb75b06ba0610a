// The fast float32 matrix product behind Kernels::gemm_f32 (kernels.h states the contract). Each
// ISA file compiles its own blocked version (gemm_f32_impl.h, IsaKernels::gemm_f32); the fast
// kernel tables call theirs directly.
#pragma once
#include "kernels/kernels.h"

namespace orchard {

// The blocked product on the path selected_isa() names (ORCHARD_ISA, or the best this CPU runs).
void gemm_f32_fast(const GemmF32& g, ThreadPool* pool);

}  // namespace orchard
