// The float32 matrix product (Kernels::gemm_f32, contract in kernels.h) as a template over vector
// traits V (simd_*.h), compiled once per ISA file with that file's flags (fast_kernels_impl.h
// binds gemm_f32_blocked<V> into IsaKernels). Everything is in an anonymous namespace so that the
// copies built with different flags never mix.
//
// Blocked in the GotoBLAS/BLIS manner. For each block of at most kNc columns of C and kc steps of K:
//   op(B) [kc, columns] is packed into panels of NR columns, each panel kc rows of NR contiguous
//   floats (zero-padded past N), small enough to stay in L1 while it is reused;
//   op(A) is packed block by block (mc rows, kept in L2) into strips of MR rows, each strip kc
//   columns of MR contiguous floats (zero-padded past M);
//   an MR x NR register tile multiplies one A strip by one B panel with FMAs.
// The packing reads the four transpose cases and any leading dimension, so the micro-kernel sees
// a single layout. Edge tiles run the same kernel on the padded panels and copy only their valid
// part to C.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "kernels/kernels.h"
#include "kernels/thread_pool.h"

namespace orchard {
namespace {

// Register tile: MR rows by NV vectors of V::L floats. Accumulators MR * NV plus NV B vectors and
// one broadcast must fit the register file: 12 x 2 zmm of 32 on AVX-512, 6 x 2 ymm of 16 on AVX2,
// 8 x 3 q of 32 on NEON.
template <typename V>
struct GemmShape {
  static constexpr int kNv = V::L == 4 ? 3 : 2;
  static constexpr int kMr = V::L >= 16 ? 12 : V::L == 4 ? 8 : 6;
  static constexpr int kNr = kNv * V::L;
  // One B panel (kKc x kNr floats, 24 KiB on AVX-512) stays in L1 next to the A strip it meets;
  // one packed A block (kMc x kKc, 216 KiB on AVX-512) stays in L2.
  static constexpr int64_t kKc = V::L >= 16 ? 192 : 256;
  static constexpr int64_t kMc = kMr * (V::L >= 16 ? 24 : 16);
  // Columns of op(B) packed at a time (32 AVX-512 panels, 768 KiB at kKc): wider products (the
  // feed-forward's 4864) go through in column blocks, so that the packed block stays near the
  // core and the packing buffer stays bounded.
  static constexpr int64_t kNc = kNr * 32;
};

// a*b + c: fused where the ISA file's flags give an FMA instruction; the portable x86-64 build has
// none, and std::fma there would be a library call per element.
template <typename V>
inline typename V::F gemm_madd(typename V::F a, typename V::F b, typename V::F c) {
#if defined(__FMA__) || defined(__aarch64__)
  return V::fma(a, b, c);
#else
  return V::fadd(V::fmul(a, b), c);
#endif
}

// C[rows, cols] (+)= A strip [kc, MR] x B panel [kc, NR]; rows <= MR and cols <= NR are the valid
// part of the tile. `add` keeps what C holds (accumulate, or a K block after the first); without
// it C is only written, so whatever it held before (NaN included) does not leak in.
template <typename V>
void gemm_micro(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc, bool add,
                int rows, int cols) {
  using F = typename V::F;
  using S = GemmShape<V>;
  constexpr int L = V::L, kMr = S::kMr, kNv = S::kNv, kNr = S::kNr;
  F acc[kMr][kNv];
#pragma GCC unroll 16
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) acc[i][v] = V::fzero();
  for (int64_t p = 0; p < kc; ++p) {
    F bv[kNv];
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) bv[v] = V::fload(b + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < kMr; ++i) {
      const F ai = V::fset1(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) acc[i][v] = gemm_madd<V>(ai, bv[v], acc[i][v]);
    }
    a += kMr;
    b += kNr;
  }
  if (rows == kMr && cols == kNr) {
#pragma GCC unroll 16
    for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < kNv; ++v) {
        float* to = c + i * ldc + v * L;
        V::fstore(to, add ? V::fadd(V::fload(to), acc[i][v]) : acc[i][v]);
      }
    return;
  }
  alignas(64) float tile[kMr * kNr];
#pragma GCC unroll 16
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < kNv; ++v) V::fstore(tile + i * kNr + v * L, acc[i][v]);
  for (int i = 0; i < rows; ++i) {
    float* to = c + i * ldc;
    const float* from = tile + i * kNr;
    if (add) {
      for (int j = 0; j < cols; ++j) to[j] += from[j];
    } else {
      std::memcpy(to, from, sizeof(float) * static_cast<size_t>(cols));
    }
  }
}

// Rows [i0, i0 + mc) and steps [p0, p0 + kc) of op(A) into strips of kMr rows: strip s holds
// op(A)[i0 + s kMr + i][p0 + p] at s kMr kc + p kMr + i, zero for rows past i0 + mc.
template <int kMr>
void gemm_pack_a(const GemmF32& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t s = 0; s < mc; s += kMr, dst += kMr * kc) {
    const int rows = static_cast<int>(std::min<int64_t>(kMr, mc - s));
    const int64_t r0 = i0 + s;
    if (g.a_trans) {  // A stored [K, M]: each step's kMr values are contiguous
      for (int64_t p = 0; p < kc; ++p) {
        const float* from = g.a + (p0 + p) * g.lda + r0;
        float* to = dst + p * kMr;
        for (int i = 0; i < rows; ++i) to[i] = from[i];
        for (int i = rows; i < kMr; ++i) to[i] = 0.0f;
      }
    } else if (rows == kMr) {  // A stored [M, K]: kMr rows read side by side
      const float* from[kMr];
      for (int i = 0; i < kMr; ++i) from[i] = g.a + (r0 + i) * g.lda + p0;
      for (int64_t p = 0; p < kc; ++p)
#pragma GCC unroll 16
        for (int i = 0; i < kMr; ++i) dst[p * kMr + i] = from[i][p];
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        float* to = dst + p * kMr;
        for (int i = 0; i < rows; ++i) to[i] = g.a[(r0 + i) * g.lda + p0 + p];
        for (int i = rows; i < kMr; ++i) to[i] = 0.0f;
      }
    }
  }
}

// Columns [j0, j0 + nc) and steps [p0, p0 + kc) of op(B) into panels of kNr columns: panel s
// holds op(B)[p0 + p][j0 + s kNr + j] at s kNr kc + p kNr + j, zero for columns past j0 + nc.
template <int kNr>
void gemm_pack_b(const GemmF32& g, int64_t j0, int64_t nc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t s = 0; s < nc; s += kNr, dst += kNr * kc) {
    const int cols = static_cast<int>(std::min<int64_t>(kNr, nc - s));
    const int64_t c0 = j0 + s;
    if (!g.b_trans) {  // B stored [K, N]: each step's kNr values are contiguous
      for (int64_t p = 0; p < kc; ++p) {
        const float* from = g.b + (p0 + p) * g.ldb + c0;
        float* to = dst + p * kNr;
        if (cols == kNr) {
          std::memcpy(to, from, sizeof(float) * kNr);
        } else {
          for (int j = 0; j < cols; ++j) to[j] = from[j];
          for (int j = cols; j < kNr; ++j) to[j] = 0.0f;
        }
      }
    } else if (cols == kNr) {  // B stored [N, K]: kNr rows read side by side
      const float* from[kNr];
      for (int j = 0; j < kNr; ++j) from[j] = g.b + (c0 + j) * g.ldb + p0;
      for (int64_t p = 0; p < kc; ++p)
#pragma GCC unroll 32
        for (int j = 0; j < kNr; ++j) dst[p * kNr + j] = from[j][p];
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        float* to = dst + p * kNr;
        for (int j = 0; j < cols; ++j) to[j] = g.b[(c0 + j) * g.ldb + p0 + p];
        for (int j = cols; j < kNr; ++j) to[j] = 0.0f;
      }
    }
  }
}

// A packing buffer per thread and ISA file, grown as needed and kept, 64-byte aligned so that
// panel rows do not straddle cache lines.
struct GemmBuffer {
  std::unique_ptr<float[]> storage;
  size_t capacity = 0;  // floats usable from data
  float* data = nullptr;

  float* get(size_t floats) {
    if (floats > capacity) {
      storage.reset();  // release the old one first: the new one may be large
      storage = std::make_unique<float[]>(floats + 16);
      const uintptr_t at = reinterpret_cast<uintptr_t>(storage.get());
      data = storage.get() + ((64 - at % 64) % 64) / sizeof(float);
      capacity = floats;
    }
    return data;
  }
};

// C[i0:i1, j0:j1] on the calling thread, i0 and j0 anywhere (the strips and panels are counted
// from them).
template <typename V>
void gemm_block(const GemmF32& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  using S = GemmShape<V>;
  constexpr int kMr = S::kMr, kNr = S::kNr;
  if (j1 - j0 > S::kNc) {  // column blocks of equal whole panels
    const int64_t all_panels = (j1 - j0 + kNr - 1) / kNr, blocks = (j1 - j0 + S::kNc - 1) / S::kNc;
    const int64_t width = (all_panels + blocks - 1) / blocks * kNr;
    for (int64_t jc = j0; jc < j1; jc += width) gemm_block<V>(g, i0, i1, jc, std::min(j1, jc + width));
    return;
  }
  thread_local GemmBuffer a_buffer, b_buffer;
  const int64_t nc = j1 - j0, panels = (nc + kNr - 1) / kNr;
  // K in equal blocks of at most kKc, so that no block is a short remainder.
  const int64_t k_blocks = (g.k + S::kKc - 1) / S::kKc, kc_max = (g.k + k_blocks - 1) / k_blocks;
  float* bp = b_buffer.get(static_cast<size_t>(panels * kNr * kc_max));
  float* ap = a_buffer.get(static_cast<size_t>(S::kMc * kc_max));
  for (int64_t p0 = 0; p0 < g.k; p0 += kc_max) {
    const int64_t kc = std::min(kc_max, g.k - p0);
    const bool add = g.accumulate || p0 > 0;
    gemm_pack_b<kNr>(g, j0, nc, p0, kc, bp);
    for (int64_t ic = i0; ic < i1; ic += S::kMc) {
      const int64_t mc = std::min<int64_t>(S::kMc, i1 - ic);
      gemm_pack_a<kMr>(g, ic, mc, p0, kc, ap);
      for (int64_t jp = 0; jp < panels; ++jp) {
        const int64_t j = j0 + jp * kNr;
        const int cols = static_cast<int>(std::min<int64_t>(kNr, j1 - j));
        const float* b = bp + jp * kNr * kc;
        for (int64_t s = 0; s < mc; s += kMr) {
          const int rows = static_cast<int>(std::min<int64_t>(kMr, mc - s));
          gemm_micro<V>(kc, ap + s * kc, b, g.c + (ic + s) * g.ldc + j, g.ldc, add, rows, cols);
        }
      }
    }
  }
}

// Products below this many multiply-adds run on the calling thread: waking the pool costs more.
constexpr int64_t kGemmParallelMin = int64_t{1} << 18;

template <typename V>
void gemm_f32_blocked(const GemmF32& g, ThreadPool* pool) {
  using S = GemmShape<V>;
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0) {  // the empty sum
    if (!g.accumulate)
      for (int64_t i = 0; i < g.m; ++i) std::fill_n(g.c + i * g.ldc, g.n, 0.0f);
    return;
  }
  const int threads = pool ? pool->size() : 1;
  if (threads == 1 || g.m * g.n * g.k < kGemmParallelMin) return gemm_block<V>(g, 0, g.m, 0, g.n);
  // The threads form a grid of row parts x column parts of C, each part whole strips or panels,
  // and each thread packs the rows of op(A) and the columns of op(B) its rectangle needs: no
  // thread waits on another's packing. The grid minimizes the largest rectangle's arithmetic
  // plus its packing (a packed element costs about kPackCost multiply-adds), so that two threads
  // split the longer side and the operand both pack is the smaller one.
  constexpr int64_t kPackCost = 24;
  const int64_t strips = (g.m + S::kMr - 1) / S::kMr, panels = (g.n + S::kNr - 1) / S::kNr;
  int row_parts = 1;
  int64_t best = -1;
  for (int r = 1; r <= threads; ++r) {
    if (threads % r != 0) continue;
    const int64_t rows = (strips + r - 1) / r * S::kMr, cols = (panels + threads / r - 1) / (threads / r) * S::kNr;
    const int64_t cost = rows * cols + kPackCost * (rows + cols);
    if (best < 0 || cost < best) best = cost, row_parts = r;
  }
  const int col_parts = threads / row_parts;
  pool->run([&](int t, int) {
    const int64_t r = t / col_parts, c = t % col_parts;
    const int64_t i0 = strips * r / row_parts * S::kMr, i1 = std::min(g.m, strips * (r + 1) / row_parts * S::kMr);
    const int64_t j0 = panels * c / col_parts * S::kNr, j1 = std::min(g.n, panels * (c + 1) / col_parts * S::kNr);
    if (i0 < i1 && j0 < j1) gemm_block<V>(g, i0, i1, j0, j1);
  });
}

}  // namespace
}  // namespace orchard
