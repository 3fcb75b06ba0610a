// The fast kernels built for the generic path (compiler flags set per file in CMakeLists.txt).
#include "kernels/simd_generic.h"
#include "kernels/fast_kernels_impl.h"

namespace orchard {

const IsaKernels& isa_kernels_generic() {
  static const IsaKernels kernels = make_isa_kernels<simd::Generic>(Isa::generic);
  return kernels;
}

}  // namespace orchard
