// Error-minimizing block quantizers. Round-to-nearest takes a block's scale from its largest
// element; these search, per block (and per sub-block for the K types), the scale (and offset,
// for asymmetric types) that minimizes the weighted squared error
//     sum_i importance[i] * (x[i] - dequantized[i])^2,
// then refit the shared super-block scales by least squares after they are rounded. With the
// importance of input column i set to E[activation_i^2] this is the expected squared error of
// the layer's output (llama.cpp's imatrix idea); without calibration every column weighs 1.
// The blocks are standard GGUF blocks: dequantize_row() reads them and the fast kernels run them.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace orchard {

// Quantizes `n` floats (one row) into `dst`. `importance`: n non-negative weights, or nullptr
// for uniform ones. `n` must be a multiple of the type's block size.
void quantize_row_search(DType type, const float* x, const float* importance, void* dst, int64_t n);

}  // namespace orchard
