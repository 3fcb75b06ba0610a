#include "tensor/dequantize.h"

#include "base/error.h"

namespace orchard {

// Filled in by the quantized-formats work (see issue 2).
void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  fail("dequantize_row: type ", dtype_name(type), " not implemented yet");
}

}  // namespace orchard
