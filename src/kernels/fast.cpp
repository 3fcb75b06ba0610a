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

// ORCHARD_ACTIVATIONS: measured (the default: one level for the matrices the load measured precise
// enough so, PackedMatrix::single_level, two elsewhere), residual (two-level int8 everywhere), int8
// (single level everywhere: faster and coarser, see QuantizedActivations).
enum class ActivationMode { measured, residual, int8 };

ActivationMode activation_mode() {
  static const ActivationMode mode = [] {
    const char* env = std::getenv("ORCHARD_ACTIVATIONS");
    const std::string_view v = env ? env : "";
    return v == "int8" ? ActivationMode::int8 : v == "residual" ? ActivationMode::residual : ActivationMode::measured;
  }();
  return mode;
}

bool residual_activations(const MatmulWeight& w) {
  switch (activation_mode()) {
    case ActivationMode::measured: return !(w.packed && w.packed->single_level);
    case ActivationMode::residual: return true;
    case ActivationMode::int8: return false;
  }
  return true;
}

// Pieces per thread of a matmul (ThreadPool::parallel_for): each thread streams its own part of
// the weights, and one slowed by another process on its core hands its last pieces to the
// other. Measured, one range per thread left both threads 7-15% idle in a 512-token prefill;
// in a decode (Qwen2.5-1.5B Q4_0, tg128, 4 interleaved runs, neighbours busy) 8 pieces gave
// 46.5 t/s against 44.8 with one range (16 pieces: 45.3).
constexpr int kMatmulPieces = 8;

// Tiles go to the threads in pairs: the micro-kernels take two row vectors at a time where the
// ISA has registers for it (V::kRowVectors), and a range of odd length leaves one row vector to
// a kernel of half the width. fn(first tile, end tile) for each piece of [0, tiles).
template <typename Fn>
void for_tile_pairs(ThreadPool& pool, int64_t tiles, int pieces, Fn&& fn) {
  pool.parallel_for((tiles + 1) / 2, [&](int64_t b, int64_t e) { fn(2 * b, std::min(tiles, 2 * e)); }, pieces);
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
    for_tile_pairs(pool, p->tiles, kMatmulPieces, [&](int64_t b, int64_t e) { k.matmul_packed(*p, q, 0, n, b, e, y); });
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
  for_tile_pairs(pool, tiles, kMatmulPieces, [&](int64_t b, int64_t e) {
    int64_t first = 0;  // the first tile of matrix i in that order
    for (int i = 0; i < count; ++i) {
      const PackedMatrix& p = *ws[i].packed;
      const int64_t lo = std::max(b, first) - first, hi = std::min(e, first + p.tiles) - first;
      if (lo < hi) k.matmul_packed(p, q, 0, n, lo, hi, ys[i]);
      first += p.tiles;
    }
  });
}

// Heads (and rows) are independent: every sequence's heads go to the threads in one parallel_for.
// A sequence of few rows (decode) gives one task per head; a longer one a task per head and tile
// of 16 query rows, so that both threads get work when heads do not divide evenly. Consecutive
// tasks of one sequence run in one call where they cover whole heads.
void attention(const IsaKernels& k, std::span<const AttentionBatch> batches, ThreadPool& pool) {
  constexpr int64_t kRows = 16;
  struct Task {
    int32_t batch;
    int32_t head;
    int64_t t0, t1;
  };
  thread_local std::vector<Task> task_list;  // the calling thread's; the workers read it through `tasks`
  std::vector<Task>& tasks = task_list;
  tasks.clear();
  for (size_t b = 0; b < batches.size(); ++b) {
    const AttentionBatch& a = batches[b];
    const int64_t step = a.n_tokens < 32 ? a.n_tokens : kRows;
    for (int64_t h = 0; h < a.n_heads; ++h)
      for (int64_t t0 = 0; t0 < a.n_tokens; t0 += step)
        tasks.push_back({static_cast<int32_t>(b), static_cast<int32_t>(h), t0, std::min(a.n_tokens, t0 + step)});
  }
  pool.parallel_for(static_cast<int64_t>(tasks.size()), [&tasks, &batches, &k](int64_t b, int64_t e) {
    for (int64_t i = b; i < e;) {
      const Task& t = tasks[static_cast<size_t>(i)];
      const AttentionBatch& a = batches[static_cast<size_t>(t.batch)];
      // Whole-head tasks of one sequence in a row: one call over those heads.
      int64_t j = i + 1;
      if (t.t0 == 0 && t.t1 == a.n_tokens)
        while (j < e && tasks[static_cast<size_t>(j)].batch == t.batch) ++j;
      const int64_t heads = j - i;
      k.attention(a, t.head, t.head + heads, t.t0, t.t1);
      i = j;
    }
  });
}

// A decode's (one token, 8960 values) on the calling thread: 1.8 us alone, against 3.3 us on the
// pool (each thread's half and the hand-off, in a 1.5B decode).
void swiglu(const IsaKernels& k, float* gate, const float* up, int64_t n, ThreadPool& pool) {
  constexpr int64_t kChunk = 4096;
  if (n < 4 * kChunk) return k.swiglu(gate, up, n);
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
  static void attention(std::span<const AttentionBatch> batches, ThreadPool& pool) {
    orchard::attention(k(), batches, pool);
  }
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
