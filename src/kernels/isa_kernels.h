// The per-instruction-set building blocks of the fast kernels. Each ISA file compiles the same
// templates (fast_kernels_impl.h) with its own compiler flags and vector traits; fast.cpp picks a
// table at run time and spreads the work over the thread pool.
#pragma once
#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/packing.h"

namespace orchard {

// Activations quantized to int8 per block of 32, in one of two precisions:
//   plain:    x[t][i] ~= d * qs[t][i]                      (error up to d/2 per element)
//   residual: x[t][i] ~= d * (256 * qs[t][i] + lo[t][i])  (error up to d/2, d 256x smaller)
// with d the step of token t's block i / 32. The residual form quantizes what the first int8
// missed with a second int8 at 1/256 of its step: the kernels run two int8 dot products per
// block on the same unpacked weights and combine them in int32, so the weights (the memory
// traffic) and the float work per block are unchanged. Plain int8 (as llama.cpp does) is too
// coarse for some golden models' tolerances.
//
// Block-major layout: block b of tokens t, t+1, ... lies at consecutive addresses, so that a
// micro-kernel reaches a group of tokens' activations (and their ActivationBlock) from one
// pointer with constant displacements instead of one pointer register per token.
//
// The weight formats store u = q + offset (unsigned, as dpbusd wants), so a block's integer dot
// product is sum u * a - offset * sum a. The kernels start each dot product's chain at
// -offset * sum a, kept here as -8 * sum (8 is Q4_0's offset; Q8_0's 128 and Q6_K's 32 are
// shifts of it): one broadcast load, where subtracting at the end cost a broadcast, a shift and
// a subtraction per token and block (measured: those and the step's multiply were a sixth of a
// Q4_0 prefill matmul's time).
struct ActivationBlock {
  float d;                       // the step
  int32_t minus_8_sum;           // -8 * the sum of the block's 32 integer activations (qs, or 256 * qs + lo)
  int32_t minus_8_second_half;   // -8 * the sum of its last 16
  float d_sum;                   // d * sum
};

struct QuantizedActivations {
  int64_t n = 0, in = 0, blocks = 0;
  int8_t* qs = nullptr;           // [blocks, n, 32]
  int8_t* lo = nullptr;           // [blocks, n, 32] when residual, else null
  ActivationBlock* info = nullptr;  // [blocks, n]

  int64_t at(int64_t t, int64_t b) const { return b * n + t; }
};

struct IsaKernels {
  Isa isa;
  // Quantizes rows [t_begin, t_end) of x [n, in] (in a multiple of 32) into q.
  void (*quantize)(const float* x, int64_t t_begin, int64_t t_end, QuantizedActivations& q);
  // y[t][rows of tiles [tile_begin, tile_end)] for tokens [t_begin, t_end); y: [n, w.out].
  void (*matmul_packed)(const PackedMatrix& w, const QuantizedActivations& x, int64_t t_begin,
                        int64_t t_end, int64_t tile_begin, int64_t tile_end, float* y);
  // Float path for any weight type: y[t][o] for rows [row_begin, row_end), all n tokens.
  void (*matmul_float)(const TensorRef& w, const float* x, int64_t n, int64_t row_begin,
                       int64_t row_end, float* y);
  // Query heads [head_begin, head_end) of tokens [t_begin, t_end).
  void (*attention)(const AttentionBatch& a, int64_t head_begin, int64_t head_end, int64_t t_begin,
                    int64_t t_end);
  void (*rmsnorm)(const float* x, const float* weight, int64_t n, float eps, float* out);
  void (*swiglu)(float* gate, const float* up, int64_t n);
  double (*exp_weights)(const float* x, int64_t n, float shift, float scale, float* weights);
  void (*to_f16)(const float* x, int64_t n, uint16_t* out);
  // Kernels::gemm_f32 (kernels.h), blocked around this ISA's register tile (gemm_f32_impl.h).
  void (*gemm_f32)(const GemmF32& g, ThreadPool* pool);
};

const IsaKernels& isa_kernels(Isa isa);

#if defined(__x86_64__)
const IsaKernels& isa_kernels_avx2();
const IsaKernels& isa_kernels_avx512();
const IsaKernels& isa_kernels_avx512vnni();
#elif defined(__aarch64__)
const IsaKernels& isa_kernels_neon_dotprod();
const IsaKernels& isa_kernels_neon_i8mm();
#endif
const IsaKernels& isa_kernels_generic();

}  // namespace orchard
