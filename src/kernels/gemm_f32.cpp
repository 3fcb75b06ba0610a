#include "kernels/gemm_f32.h"

#include "kernels/isa_kernels.h"

namespace orchard {

void gemm_f32_fast(const GemmF32& g, ThreadPool* pool) {
  static const IsaKernels& k = isa_kernels(selected_isa());
  k.gemm_f32(g, pool);
}

}  // namespace orchard
