// The fast kernels built for the avx512vnni path (compiler flags set per file in CMakeLists.txt).
#if defined(__x86_64__)
#include "kernels/simd_avx512.h"
#include "kernels/fast_kernels_impl.h"

namespace orchard {

const IsaKernels& isa_kernels_avx512vnni() {
  static const IsaKernels kernels = make_isa_kernels<simd::Avx512Vnni>(Isa::avx512vnni);
  return kernels;
}

}  // namespace orchard

#endif  // __x86_64__
