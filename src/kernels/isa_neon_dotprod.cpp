// The fast kernels built for ARMv8.2-A with the dot-product extension (flags in CMakeLists.txt).
#if defined(__aarch64__)
#include "kernels/simd_neon.h"
#include "kernels/fast_kernels_impl.h"

namespace orchard {

const IsaKernels& isa_kernels_neon_dotprod() {
  static const IsaKernels kernels = make_isa_kernels<simd::NeonDotprod>(Isa::neon_dotprod);
  return kernels;
}

}  // namespace orchard

#endif  // __aarch64__
