// The fast kernels built for ARMv8.2-A with dot-product and int8 matrix-multiply extensions
// (flags in CMakeLists.txt): USDOT multiplies unsigned weights by signed activations directly.
#if defined(__aarch64__)
#include "kernels/simd_neon.h"
#include "kernels/fast_kernels_impl.h"

namespace orchard {

const IsaKernels& isa_kernels_neon_i8mm() {
  static const IsaKernels kernels = make_isa_kernels<simd::NeonI8mm>(Isa::neon_i8mm);
  return kernels;
}

}  // namespace orchard

#endif  // __aarch64__
