// The fast kernels: picks the ISA table, quantizes activations once per matmul, and spreads
// every operation over the thread pool.
#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "kernels/gemm_f32.h"
#include "kernels/isa_kernels.h"
#include "kernels/rope.h"
#include "kernels/thread_pool.h"

namespace orchard {
namespace {

// Quantized activations of the last matmul; reused so that decode allocates nothing.
struct ActivationBuffer {
  std::vector<int8_t> qs, lo;
  std::vector<ActivationBlock> info;

  QuantizedActivations prepare(int64_t n, int64_t in, bool residual) {
    const int64_t blocks = in / kBlock;
    const size_t rows = static_cast<size_t>(n * blocks);  // quantize() fills them
    qs.resize(rows * kBlock);
    if (residual) lo.resize(qs.size());
    info.resize(rows);
    return {n, in, blocks, qs.data(), residual ? lo.data() : nullptr, info.data()};
  }
};

// ORCHARD_ACTIVATIONS: residual (two-level int8, the default), int8 (single level everywhere:
// faster and coarser, see QuantizedActivations), mixed (single level only for the matrices marked
// MatmulWeight::tolerates_int8).
enum class ActivationMode { residual, int8, mixed };

ActivationMode activation_mode() {
  static const ActivationMode mode = [] {
    const char* env = std::getenv("ORCHARD_ACTIVATIONS");
    const std::string_view v = env ? env : "";
    return v == "int8" ? ActivationMode::int8 : v == "mixed" ? ActivationMode::mixed : ActivationMode::residual;
  }();
  return mode;
}

bool residual_activations(const MatmulWeight& w) {
  switch (activation_mode()) {
    case ActivationMode::residual: return true;
    case ActivationMode::int8: return false;
    case ActivationMode::mixed: return !w.tolerates_int8;
  }
  return true;
}

ActivationBuffer& activation_buffer() {
  thread_local ActivationBuffer buffer;
  return buffer;
}

void matmul(const IsaKernels& k, const MatmulWeight& w, const float* x, int64_t n, float* y,
            ThreadPool& pool) {
  if (const PackedMatrix* p = w.packed) {
    QuantizedActivations q = activation_buffer().prepare(n, p->in, residual_activations(w));
    pool.parallel_for(n, [&](int64_t b, int64_t e) { k.quantize(x, b, e, q); });
    // Threads take contiguous ranges of tiles, so each streams its own part of the weights.
    pool.parallel_for(p->tiles, [&](int64_t b, int64_t e) { k.matmul_packed(*p, q, 0, n, b, e, y); });
    return;
  }
  pool.parallel_for(w.ref.rows(), [&](int64_t b, int64_t e) { k.matmul_float(w.ref, x, n, b, e, y); });
}

void matmul_shared_input(const IsaKernels& k, const MatmulWeight* ws, int count, const float* x, int64_t n,
                         float* const* ys, ThreadPool& pool) {
  const bool residual = residual_activations(ws[0]);
  int64_t tiles = 0;
  for (int i = 0; i < count; ++i) {
    const PackedMatrix* p = ws[i].packed;
    if (!p || p->in != ws[0].packed->in || residual_activations(ws[i]) != residual) {
      for (int j = 0; j < count; ++j) matmul(k, ws[j], x, n, ys[j], pool);
      return;
    }
    tiles += p->tiles;
  }
  QuantizedActivations q = activation_buffer().prepare(n, ws[0].packed->in, residual);
  pool.parallel_for(n, [&](int64_t b, int64_t e) { k.quantize(x, b, e, q); });
  // Threads take contiguous ranges of the matrices' tiles laid end to end.
  pool.parallel_for(tiles, [&](int64_t b, int64_t e) {
    int64_t first = 0;  // the first tile of matrix i in that order
    for (int i = 0; i < count; ++i) {
      const PackedMatrix& p = *ws[i].packed;
      const int64_t lo = std::max(b, first) - first, hi = std::min(e, first + p.tiles) - first;
      if (lo < hi) k.matmul_packed(p, q, 0, n, lo, hi, ys[i]);
      first += p.tiles;
    }
  });
}

void attention(const IsaKernels& k, const AttentionBatch& a, ThreadPool& pool) {
  // Heads are independent; with few tokens (decode) split heads, else also split query rows so
  // that both threads get work when heads do not divide evenly.
  if (a.n_tokens < 32 || a.n_heads % pool.size() == 0) {
    pool.parallel_for(a.n_heads, [&](int64_t b, int64_t e) { k.attention(a, b, e, 0, a.n_tokens); });
    return;
  }
  const int64_t tiles = (a.n_tokens + 15) / 16;
  pool.parallel_for(a.n_heads * tiles, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t h = i / tiles, t0 = (i % tiles) * 16;
      k.attention(a, h, h + 1, t0, std::min(a.n_tokens, t0 + 16));
    }
  });
}

void swiglu(const IsaKernels& k, float* gate, const float* up, int64_t n, ThreadPool& pool) {
  constexpr int64_t kChunk = 4096;
  if (n < 2 * kChunk) return k.swiglu(gate, up, n);
  pool.parallel_for((n + kChunk - 1) / kChunk, [&](int64_t b, int64_t e) {
    const int64_t first = b * kChunk, last = std::min(n, e * kChunk);
    k.swiglu(gate + first, up + first, last - first);
  });
}

// One Kernels table per ISA: plain function pointers, so each instantiation binds its table.
template <Isa isa>
struct FastTable {
  static const IsaKernels& k() { return isa_kernels(isa); }
  static void matmul(const MatmulWeight& w, const float* x, int64_t n, float* y, ThreadPool& pool) {
    orchard::matmul(k(), w, x, n, y, pool);
  }
  static void matmul_shared_input(const MatmulWeight* ws, int count, const float* x, int64_t n, float* const* ys,
                                  ThreadPool& pool) {
    orchard::matmul_shared_input(k(), ws, count, x, n, ys, pool);
  }
  static void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
    k().rmsnorm(x, weight, n, eps, out);
  }
  static void attention(const AttentionBatch& a, ThreadPool& pool) { orchard::attention(k(), a, pool); }
  static void swiglu(float* gate, const float* up, int64_t n, ThreadPool& pool) {
    orchard::swiglu(k(), gate, up, n, pool);
  }
  static const Kernels& table() {
    static const std::string name = "fast-" + std::string(isa_name(isa));
    static const Kernels kernels{name.c_str(), KvType::f16,   matmul,    matmul_shared_input, rmsnorm,
                                 rope_rotate,   attention, swiglu, k().exp_weights, k().to_f16,
                                 k().gemm_f32};
    return kernels;
  }
};

}  // namespace

const IsaKernels& isa_kernels(Isa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::avx2: return isa_kernels_avx2();
    case Isa::avx512: return isa_kernels_avx512();
    case Isa::avx512vnni: return isa_kernels_avx512vnni();
#elif defined(__aarch64__)
    case Isa::neon_dotprod: return isa_kernels_neon_dotprod();
    case Isa::neon_i8mm: return isa_kernels_neon_i8mm();
#endif
    default: return isa_kernels_generic();
  }
}

const Kernels& fast_kernels(Isa isa) {
  if (!isa_supported(isa)) fail("the ", isa_name(isa), " kernels cannot run on this CPU");
  switch (isa) {
    case Isa::generic: return FastTable<Isa::generic>::table();
    case Isa::avx2: return FastTable<Isa::avx2>::table();
    case Isa::avx512: return FastTable<Isa::avx512>::table();
    case Isa::avx512vnni: return FastTable<Isa::avx512vnni>::table();
    case Isa::neon_dotprod: return FastTable<Isa::neon_dotprod>::table();
    case Isa::neon_i8mm: return FastTable<Isa::neon_i8mm>::table();
  }
  return FastTable<Isa::generic>::table();
}

}  // namespace orchard
