// The fast kernels as templates over vector traits V (simd_*.h). Each ISA file includes this
// once, inside its own compiler flags, and instantiates make_isa_kernels<V>(). Everything here
// is in an anonymous namespace so that the copies built with different flags never mix.
//
// Shapes follow the engine's convention: x [n, in] row-major, y [n, out], weights {in, out}.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/half.h"
#include "kernels/gemm_f32_impl.h"
#include "kernels/isa_kernels.h"
#include "kernels/packed_matmul_impl.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

// ---- Helpers -------------------------------------------------------------------------------

// exp(x) for each lane: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial (relative
// error ~1e-7), 2^n put into the exponent bits. Lanes below -87 give ~0, not denormals.
// As the polynomial p and the power of two: exp(x) = p * scale. A caller that adds to exp(x)
// writes fma(p, scale, c) itself: left as p * scale + c, the compiler may or may not fuse the
// two (-ffp-contract, where the ISA has FMA) depending on the code around each inlined copy, and
// the same token's values would then differ between call sites (batch invariance, issue 20).
template <typename V>
struct ExpParts {
  typename V::F p, scale;
};

template <typename V>
ORCHARD_INLINE ExpParts<V> vexp_parts(typename V::F x) {
  using F = typename V::F;
  x = V::fmax(V::fmin(x, V::fset1(88.0f)), V::fset1(-87.0f));
  const typename V::I n = V::cvt_round(V::fmul(x, V::fset1(1.44269504088896341f)));
  const F nf = V::cvt(n);
  F r = V::fnmadd(nf, V::fset1(0.693359375f), x);
  r = V::fnmadd(nf, V::fset1(-2.12194440e-4f), r);
  F p = V::fset1(1.9875691500e-4f);
  p = V::fma(p, r, V::fset1(1.3981999507e-3f));
  p = V::fma(p, r, V::fset1(8.3334519073e-3f));
  p = V::fma(p, r, V::fset1(4.1665795894e-2f));
  p = V::fma(p, r, V::fset1(1.6666665459e-1f));
  p = V::fma(p, r, V::fset1(5.0000001201e-1f));
  p = V::fma(p, V::fmul(r, r), V::fadd(r, V::fset1(1.0f)));
  return {p, V::as_float(V::template slli<23>(V::add(n, V::set1(127))))};
}

template <typename V>
ORCHARD_INLINE typename V::F vexp(typename V::F x) {
  const ExpParts<V> e = vexp_parts<V>(x);
  return V::fmul(e.p, e.scale);
}

// Rows of floats `stride` apart (one KV head's rows of a cache, or a single vector).
template <typename V>
struct F32Rows {
  const float* base;
  int64_t stride;
  ORCHARD_INLINE typename V::F load(int64_t j, int64_t d) const { return V::fload(base + j * stride + d); }
  ORCHARD_INLINE typename V::F load_n(int64_t j, int64_t d, int n) const { return V::fload_n(base + j * stride + d, n); }
  float at(int64_t j, int64_t d) const { return base[j * stride + d]; }
};

// q . keys[j] over hd values (attention's score), in two independent chains.
template <typename V, typename Rows>
ORCHARD_INLINE float score(const float* q, const Rows& keys, int64_t j, int64_t hd) {
  typename V::F acc0 = V::fzero(), acc1 = V::fzero();
  int64_t d = 0;
  for (; d + 2 * V::L <= hd; d += 2 * V::L) {
    acc0 = V::fma(V::fload(q + d), keys.load(j, d), acc0);
    acc1 = V::fma(V::fload(q + d + V::L), keys.load(j, d + V::L), acc1);
  }
  for (; d + V::L <= hd; d += V::L) acc0 = V::fma(V::fload(q + d), keys.load(j, d), acc0);
  if (d < hd) {
    const int rest = static_cast<int>(hd - d);
    acc1 = V::fma(V::fload_n(q + d, rest), keys.load_n(j, d, rest), acc1);
  }
  return V::freduce(V::fadd(acc0, acc1));
}

template <typename V>
ORCHARD_INLINE float dot(const float* a, const float* b, int64_t n) {
  return score<V>(a, F32Rows<V>{b, 0}, 0, n);
}

// ---- Activation quantization ---------------------------------------------------------------

// One block of 32 values v (kBlock / V::L vectors) of largest magnitude m: its integers into qs
// (and the second level's into lo), its step into info.d; the integers, as floats, summed lane by
// lane over each half block into halves (their lanes are added later, many blocks at once).
template <typename V>
ORCHARD_INLINE void quantize_block(const typename V::F* v, float m, int8_t* qs, int8_t* lo, ActivationBlock& info,
                                   typename V::F (&halves)[2]) {
  constexpr int kVectors = kBlock / V::L;
  const float d = m / 127.0f;
  const typename V::F inv = V::fset1(d > 0.0f ? 127.0f / m : 0.0f);
  halves[0] = halves[1] = V::fzero();
  for (int k = 0; k < kVectors; ++k) {
    const typename V::F scaled = V::fmul(v[k], inv);
    typename V::I qi = V::cvt_round(scaled);
    V::store_i8(qs + k * V::L, qi);
    if (lo) {
      // The remainder, in [-0.5, 0.5] steps, at 1/256 step (+0.5 saturates to 127/256).
      const typename V::F rest = V::fmul(V::fsub(scaled, V::cvt(qi)), V::fset1(256.0f));
      const typename V::I low = V::cvt_round(V::fmin(rest, V::fset1(127.0f)));
      V::store_i8(lo + k * V::L, low);
      qi = V::add(V::template slli<8>(qi), low);
    }
    // Integers below 2^24 (16 of at most 32767 per half): exact as floats.
    halves[k * V::L / 16] = V::fadd(halves[k * V::L / 16], V::cvt(qi));
  }
  info.d = lo ? d / 256.0f : d;
}

// The sums' fields of a block's info from its two half-block sums.
inline void set_sums(ActivationBlock& info, int32_t first_half, int32_t second_half) {
  const int32_t sum = first_half + second_half;
  info.minus_8_sum = -8 * sum;
  info.minus_8_second_half = -8 * second_half;
  info.d_sum = info.d * static_cast<float>(sum);
}

// Blocks [b0, b0 + count) of token t, count <= V::L, checking each block for an inf or NaN (a
// corrupt model's activations): no integer stands for one, so such a block's integers are zero
// and its step NaN, and every output that reads it is NaN, as a float product would be.
template <typename V>
void quantize_blocks_checked(const float* row, int64_t t, int64_t b0, int64_t count, QuantizedActivations& q) {
  constexpr int kVectors = kBlock / V::L;
  for (int64_t b = b0; b < b0 + count; ++b) {
    typename V::F v[kVectors], amax = V::fzero(), zero_times = V::fzero();  // x * 0: NaN where x is inf or NaN
    for (int k = 0; k < kVectors; ++k) {
      v[k] = V::fload(row + b * kBlock + k * V::L);
      amax = V::fmax(amax, V::fabs(v[k]));
      zero_times = V::fadd(zero_times, V::fmul(v[k], V::fzero()));
    }
    const int64_t at = q.at(t, b) * kBlock;
    ActivationBlock& info = q.info[q.at(t, b)];
    if (std::isnan(V::freduce(zero_times))) {
      std::fill_n(q.qs + at, kBlock, int8_t{0});
      if (q.lo) std::fill_n(q.lo + at, kBlock, int8_t{0});
      info = {std::numeric_limits<float>::quiet_NaN(), 0, 0, std::numeric_limits<float>::quiet_NaN()};
      continue;
    }
    typename V::F halves[2];
    quantize_block<V>(v, V::freduce_max(amax), q.qs + at, q.lo ? q.lo + at : nullptr, info, halves);
    set_sums(info, static_cast<int32_t>(V::freduce(halves[0])), static_cast<int32_t>(V::freduce(halves[1])));
  }
}

// Rows [t_begin, t_end) of x, V::L blocks at a time: the half-block sums of a group are added
// lane-wise by two V::freduce_each instead of two horizontal sums per block, and the inf/NaN
// check is one per group (a group that has one goes again, block by block). Measured on one
// core (tokens of 896 and 4864 values, one level), 3 interleaved runs: 0.224 -> 0.201 and 0.226 ->
// 0.184 ns per value; the remaining horizontal max per block is most of the rest.
template <typename V>
void quantize(const float* x, int64_t t_begin, int64_t t_end, QuantizedActivations& q) {
  constexpr int kVectors = kBlock / V::L;
  for (int64_t t = t_begin; t < t_end; ++t) {
    const float* row = x + t * q.in;
    for (int64_t b0 = 0; b0 < q.blocks; b0 += V::L) {
      const int64_t count = std::min<int64_t>(V::L, q.blocks - b0);
      typename V::F halves[2][V::L], zero_times = V::fzero();
      for (int64_t k = 0; k < count; ++k) {
        const int64_t b = b0 + k;
        typename V::F v[kVectors], amax = V::fzero();
        for (int i = 0; i < kVectors; ++i) {
          v[i] = V::fload(row + b * kBlock + i * V::L);
          amax = V::fmax(amax, V::fabs(v[i]));
          zero_times = V::fadd(zero_times, V::fmul(v[i], V::fzero()));
        }
        const int64_t at = q.at(t, b) * kBlock;
        typename V::F block_halves[2];
        quantize_block<V>(v, V::freduce_max(amax), q.qs + at, q.lo ? q.lo + at : nullptr, q.info[q.at(t, b)],
                          block_halves);
        halves[0][k] = block_halves[0];
        halves[1][k] = block_halves[1];
      }
      if (std::isnan(V::freduce(zero_times))) {
        quantize_blocks_checked<V>(row, t, b0, count, q);
        continue;
      }
      for (int64_t k = count; k < V::L; ++k) halves[0][k] = halves[1][k] = V::fzero();
      float first[V::L], second[V::L];
      V::fstore(first, V::freduce_each(halves[0]));
      V::fstore(second, V::freduce_each(halves[1]));
      for (int64_t k = 0; k < count; ++k)
        set_sums(q.info[q.at(t, b0 + k)], static_cast<int32_t>(first[k]), static_cast<int32_t>(second[k]));
    }
  }
}

// ---- Float matmul (unpacked weights of any type) -------------------------------------------

template <typename V>
void row_to_f32(const TensorRef& w, int64_t row, float* dst) {
  const int64_t n = w.row_length();
  const uint8_t* src = w.row(row);
  int64_t i = 0;
  switch (w.type) {
    case DType::F16:
      for (; i + V::L <= n; i += V::L) V::fstore(dst + i, V::load_f16(src + 2 * i));
      break;
    case DType::BF16:
      for (; i + V::L <= n; i += V::L) V::fstore(dst + i, V::load_bf16(src + 2 * i));
      break;
    default:
      dequantize_row(w.type, src, dst, n);
      return;
  }
  if (i < n) dequantize_row(w.type, src + 2 * i, dst + i, n - i);
}

template <typename V>
void matmul_float(const TensorRef& w, const float* x, int64_t n, int64_t row_begin,
                  int64_t row_end, float* y) {
  const int64_t in = w.row_length(), out = w.rows();
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<size_t>(in)) buffer.resize(static_cast<size_t>(in));
  for (int64_t o = row_begin; o < row_end; ++o) {
    const float* row = buffer.data();
    if (w.type == DType::F32 && reinterpret_cast<uintptr_t>(w.row(o)) % alignof(float) == 0)
      row = reinterpret_cast<const float*>(w.row(o));
    else
      row_to_f32<V>(w, o, buffer.data());
    for (int64_t t = 0; t < n; ++t) y[t * out + o] = dot<V>(row, x + t * in, in);
  }
}

// ---- Attention -------------------------------------------------------------------------------
// Flash-attention style. A tile's query rows are some tokens of every query head that shares one
// KV head (grouped-query attention), against keys and values in tiles of kKeyTile positions.
// Softmax online: running max m and sum l per row, the row's output rescaled when m grows.
//
// How a tile's keys and values are read: keys in blocks (kernels.h), f32 or f16, in place; int8
// keys, or keys laid out as rows, converted to f32 blocks once per tile (for all its rows). Values
// are rows: f32 in place; f16 converted as each group of rows loads them (converting a tile to
// float32 once for all its rows cost more than the conversions it saved: a 1000-token prefill's
// attention on the 1.5B shape, one thread, 4.5 against 3.5 ns per query row and key); int8 and
// f16 head sizes off the vector width (no partial f16 loads) converted once per tile.

// The loads of a tile's keys (f16 or f32), its f16 values and its int8 conversions each ask for
// the same element of the next tile (prefetches do not fault past the cache's end): the hardware
// prefetchers alone left decode attention waiting on memory, where each sequence's keys and
// values come from (the weights stream through the caches between layers). A throwaway
// microbenchmark (16 sequences x 24 layers of the 0.5B shape at position 1000, caches evicted
// between steps, 2 threads): 10.0 ms a step with keys as rows, 9.1 with keys in blocks, 8.1 with
// the keys' prefetch, 6.4 with both (keys as rows with both prefetches: 7.6). An int8 cache's
// conversions: the 16-sequence step at 1000-token contexts 28.5 -> 23.2 ms.
constexpr int64_t kQueryRows = 32;
constexpr int64_t kKeyTile = 64;
constexpr int64_t kSharedRows = 8;
static_assert(kKeyTile % kKeyBlock == 0, "tiles start at a block");

// One KV head's rows as f16, converted when loaded (head_dim a multiple of V::L: no partial loads).
template <typename V>
struct F16Rows {
  const uint16_t* base;
  int64_t stride;
  ORCHARD_INLINE typename V::F load(int64_t j, int64_t d) const {
    __builtin_prefetch(base + (j + kKeyTile) * stride + d);  // see kKeyTile
    return V::load_f16(base + j * stride + d);
  }
  ORCHARD_INLINE typename V::F load_n(int64_t, int64_t, int) const { return V::fzero(); }  // never called
  float at(int64_t j, int64_t d) const { return f16_to_f32(base[j * stride + d]); }
};

// Keys in blocks of kKeyBlock (kernels.h) from a tile's first key, T float or f16 (uint16_t):
// load(j, d) is dimension d of keys j .. j + V::L - 1, j a multiple of V::L.
template <typename V, typename T>
struct KeyBlocks {
  static_assert(kKeyBlock % V::L == 0, "a vector of keys lies in one block");
  const T* base;
  int64_t hd;
  ORCHARD_INLINE typename V::F load(int64_t j, int64_t d) const {
    const T* at = base + key_block_offset(j, d, hd);
    __builtin_prefetch(at + kKeyTile * hd);  // see kKeyTile
    if constexpr (std::is_same_v<T, float>) return V::fload(at);
    else return V::load_f16(at);
  }
};

// Keys first .. first+count of one KV head as float32 blocks (KeyBlocks' layout) in `scratch`.
// Blocked int8 keys a vector at a time (each lane its position's scale; the lanes past `count`
// scaled by 0), anything else key by key through key_to_f32, the reference's conversion.
template <typename V>
void keys_to_f32_blocks(const AttentionBatch& a, int64_t kv_head, int64_t first, int64_t count, float* scratch) {
  const int64_t hd = a.head_dim;
  if (a.keys_in_blocks() && a.kv_type == KvType::q8) {
    const int8_t* src = static_cast<const int8_t*>(a.keys) + a.key_offset(first, kv_head, 0);
    for (int64_t b = 0; b < count; b += kKeyBlock) {
      alignas(64) float scale[kKeyBlock] = {};
      for (int64_t j = b; j < std::min(count, b + kKeyBlock); ++j)
        scale[j - b] = a.key_scales[(first + j) * a.n_kv_heads + kv_head];
      for (int64_t d = 0; d < hd; ++d)
        for (int64_t j = 0; j < kKeyBlock; j += V::L) {
          const int64_t at = key_block_offset(b + j, d, hd);
          __builtin_prefetch(src + at + kKeyTile * hd);  // see kKeyTile
          V::fstore(scratch + at, V::fmul(V::fload(scale + j), V::load_s8(src + at)));
        }
    }
    return;
  }
  std::vector<float> row(static_cast<size_t>(hd));
  for (int64_t j = 0; j < count; ++j) {
    key_to_f32(a, first + j, kv_head, row.data());
    for (int64_t d = 0; d < hd; ++d) scratch[key_block_offset(j, d, hd)] = row[d];
  }
}

// Values first .. first+count of one KV head converted to float32 rows of head_dim in `scratch`.
template <typename V>
void values_to_f32(const AttentionBatch& a, int64_t kv_head, int64_t first, int64_t count, float* scratch) {
  const int64_t hd = a.head_dim;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t offset = a.kv_offset(first + j, kv_head);
    float* row = scratch + j * hd;
    int64_t d = 0;
    if (a.kv_type == KvType::f16) {
      const uint16_t* src = static_cast<const uint16_t*>(a.values) + offset;
      for (; d + V::L <= hd; d += V::L) V::fstore(row + d, V::load_f16(src + d));
      for (; d < hd; ++d) row[d] = f16_to_f32(src[d]);
    } else {  // q8: scale * q, as value_to_f32
      const int8_t* src = static_cast<const int8_t*>(a.values) + offset;
      const float scale = a.value_scales[(first + j) * a.n_kv_heads + kv_head];
      const typename V::F s = V::fset1(scale);
      for (; d + V::L <= hd; d += V::L) {
        __builtin_prefetch(src + kKeyTile * a.kv_position_stride() + d);  // see kKeyTile
        V::fstore(row + d, V::fmul(s, V::load_s8(src + d)));
      }
      for (; d < hd; ++d) row[d] = scale * static_cast<float>(src[d]);
    }
  }
}

// out_r[d] = out_r[d] * correction_r + sum over j < n of p_r[j] * values[j][d], for R query rows
// r that see the same n keys. Keys inner, up to eight vectors of d per row held in registers
// across them: out is read and written once per tile, and each value vector loaded serves the R
// rows. Each vector's sum over the keys is a chain of dependent FMAs: eight chains where
// head_dim allows (measured: with four, the FMAs waited on each other's latency, 40% of a
// 512-token prefill's attention time). The order of each element's sum is the same whatever the
// width and R, so a row's output does not depend on the rows beside it.
template <typename V, int R, typename Rows>
void accumulate_values(float* const* out, const float* correction, const float* const* p, const Rows& values,
                       int64_t n, int64_t hd) {
  using F = typename V::F;
  const auto pass = [&]<int W>(int64_t d) {
    F a[R][W];
    ORCHARD_UNROLL
    for (int r = 0; r < R; ++r)
      ORCHARD_UNROLL
      for (int i = 0; i < W; ++i) a[r][i] = V::fmul(V::fset1(correction[r]), V::fload(out[r] + d + i * V::L));
    for (int64_t j = 0; j < n; ++j) {
      F v[W];
      ORCHARD_UNROLL
      for (int i = 0; i < W; ++i) v[i] = values.load(j, d + i * V::L);
      ORCHARD_UNROLL
      for (int r = 0; r < R; ++r) {
        const F pj = V::fset1(p[r][j]);
        ORCHARD_UNROLL
        for (int i = 0; i < W; ++i) a[r][i] = V::fma(pj, v[i], a[r][i]);
      }
    }
    ORCHARD_UNROLL
    for (int r = 0; r < R; ++r)
      ORCHARD_UNROLL
      for (int i = 0; i < W; ++i) V::fstore(out[r] + d + i * V::L, a[r][i]);
  };
  // At most 16 accumulators: R rows of W vectors.
  int64_t d = 0;
  if constexpr (R <= 2)
    for (; d + 8 * V::L <= hd; d += 8 * V::L) pass.template operator()<8>(d);
  if constexpr (R <= 4)
    for (; d + 4 * V::L <= hd; d += 4 * V::L) pass.template operator()<4>(d);
  for (; d + 2 * V::L <= hd; d += 2 * V::L) pass.template operator()<2>(d);
  for (; d + V::L <= hd; d += V::L) pass.template operator()<1>(d);
  for (; d < hd; ++d)
    for (int r = 0; r < R; ++r) {
      float a = out[r][d] * correction[r];
      for (int64_t j = 0; j < n; ++j) a = std::fma(p[r][j], values.at(j, d), a);  // explicit: see attend_tile
      out[r][d] = a;
    }
}

// p_r[j] = scale * (q_r . keys[j]) for j < visible, for R query rows; tile_max[r]: their maximum.
// Keys in blocks (KeyBlocks): each query element, broadcast, multiplies dimension d of V::L keys,
// J vectors of keys at a time (R x J accumulators). Each score is one chain of FMAs over d in
// order whatever R and J, so a row's scores do not depend on the rows beside it. p is written up
// to the next multiple of V::L with copies of a real score, which attend_tile reads but does not
// weigh (the lanes past `visible` load whatever the last block holds there).
template <typename V, int R, typename Keys>
ORCHARD_INLINE void scores(const float* const* q, const Keys& keys, int64_t visible, int64_t hd, float scale,
                           float* const* p, float* tile_max) {
  using F = typename V::F;
  const auto pass = [&]<int J>(int64_t j) {
    F acc[R][J];
    ORCHARD_UNROLL
    for (int r = 0; r < R; ++r)
      ORCHARD_UNROLL
      for (int i = 0; i < J; ++i) acc[r][i] = V::fzero();
    for (int64_t d = 0; d < hd; ++d) {
      F k[J];
      ORCHARD_UNROLL
      for (int i = 0; i < J; ++i) k[i] = keys.load(j + i * V::L, d);
      ORCHARD_UNROLL
      for (int r = 0; r < R; ++r) {
        const F qd = V::fset1(q[r][d]);
        ORCHARD_UNROLL
        for (int i = 0; i < J; ++i) acc[r][i] = V::fma(qd, k[i], acc[r][i]);
      }
    }
    ORCHARD_UNROLL
    for (int r = 0; r < R; ++r)
      ORCHARD_UNROLL
      for (int i = 0; i < J; ++i) V::fstore(p[r] + j + i * V::L, V::fmul(acc[r][i], V::fset1(scale)));
  };
  // Half the registers for accumulators, the keys and the broadcast beside them.
  constexpr int kVectors = std::clamp(V::kFloatRegisters / 2 / R, 1, 4);
  int64_t j = 0;
  for (; j + kVectors * V::L <= visible; j += kVectors * V::L) pass.template operator()<kVectors>(j);
  for (; j < visible; j += V::L) pass.template operator()<1>(j);
  for (int r = 0; r < R; ++r) {
    for (int64_t x = visible; x < j; ++x) p[r][x] = p[r][visible - 1];
    F best = V::fset1(-INFINITY);
    for (int64_t x = 0; x < j; x += V::L) best = V::fmax(best, V::fload(p[r] + x));
    tile_max[r] = V::freduce_max(best);
  }
}

// R query rows that see the same `visible` keys of a tile: scores, the online softmax update,
// values. p: [R][kKeyTile] scratch.
template <typename V, int R, typename Keys, typename Rows>
ORCHARD_INLINE void attend_tile(const float* const* q, const Keys& keys, const Rows& values, int64_t visible,
                                int64_t hd, float scale, float* const* p, float* running_max, float* running_sum,
                                float* const* acc) {
  float tile_max[R], correction[R];
  scores<V, R>(q, keys, visible, hd, scale, p, tile_max);
  for (int r = 0; r < R; ++r) {
    const float new_max = std::max(running_max[r], tile_max[r]);
    correction[r] = std::exp(running_max[r] - new_max);
    typename V::F sum = V::fzero();
    const typename V::F m = V::fset1(new_max);
    for (int64_t j = 0; j < visible; j += V::L) {
      typename V::F e = vexp<V>(V::fsub(V::fload(p[r] + j), m));
      V::fstore(p[r] + j, e);
      if (visible - j < V::L) e = V::fload_n(p[r] + j, static_cast<int>(visible - j));  // the real keys only
      sum = V::fadd(sum, e);
    }
    // One rounding, written out: as a * b + c the compiler fused it in some inlined copies of
    // this function and not in others (the rows reading an f16 cache directly, the rows reading
    // a converted tile), so a row's sum depended on how many rows shared its tile (issue 20).
    running_sum[r] = std::fma(running_sum[r], correction[r], V::freduce(sum));
    running_max[r] = new_max;
  }
  accumulate_values<V, R>(acc, correction, p, values, visible, hd);
}

// Query rows: tokens t_begin .. t_end of heads head_begin .. head_end.
template <typename V>
void attention(const AttentionBatch& a, int64_t head_begin, int64_t head_end, int64_t t_begin,
               int64_t t_end) {
  const int64_t hd = a.head_dim, q_dim = a.n_heads * hd, group = a.n_heads / a.n_kv_heads;
  const int64_t kv_stride = a.kv_position_stride();
  thread_local std::vector<float> scratch;
  const size_t need = static_cast<size_t>(2 * kKeyTile * hd + kQueryRows * hd + 2 * kQueryRows + kSharedRows * kKeyTile);
  if (scratch.size() < need) scratch.resize(need);
  float* key_scratch = scratch.data();
  float* value_scratch = key_scratch + kKeyTile * hd;
  float* acc = value_scratch + kKeyTile * hd;  // [kQueryRows, hd]
  float* running_max = acc + kQueryRows * hd;
  float* running_sum = running_max + kQueryRows;
  float* p = running_sum + kQueryRows;  // [kSharedRows][kKeyTile]

  for (int64_t kv_head = head_begin / group; kv_head * group < head_end; ++kv_head) {
    const int64_t h0 = std::max(head_begin, kv_head * group), h1 = std::min(head_end, (kv_head + 1) * group);
    const int64_t heads = h1 - h0, tokens_per_tile = std::max<int64_t>(1, kQueryRows / heads);
    for (int64_t t0 = t_begin; t0 < t_end; t0 += tokens_per_tile) {
      const int64_t nt = std::min(tokens_per_tile, t_end - t0), rows = std::min(nt * heads, kQueryRows);
      // Row r: token t0 + r / heads of head h0 + r % heads (a tile of one token may hold more
      // heads than kQueryRows: then it goes in several passes, see `first_head`).
      for (int64_t first_head = 0; first_head < heads; first_head += rows) {
        const int64_t nr = nt > 1 ? rows : std::min(rows, heads - first_head);
        auto token_of = [&](int64_t r) { return t0 + (nt > 1 ? r / heads : 0); };
        auto head_of = [&](int64_t r) { return h0 + (nt > 1 ? r % heads : first_head + r); };
        std::fill_n(acc, nr * hd, 0.0f);
        std::fill_n(running_max, nr, -INFINITY);
        std::fill_n(running_sum, nr, 0.0f);
        const bool read_f16 = a.kv_type == KvType::f16 && hd % V::L == 0;
        const int64_t n_keys = a.start + t0 + nt;  // keys the tile's last token sees
        for (int64_t k0 = 0; k0 < n_keys; k0 += kKeyTile) {
          const int64_t nk = std::min(kKeyTile, n_keys - k0);
          // Rows in groups of up to kSharedRows that see the same keys: each key and value vector
          // loaded serves the group (the tile's rows otherwise read it from L2 once each). Groups
          // of 4 rather than pairs: a 1.5B 1000-token prefill 413 -> 450 t/s. Up to 8 (with keys
          // in blocks, 8 rows' scores load one key vector per 8 FMAs): a decode's 7 query heads
          // of one KV head (0.5B) in one group instead of 4 + 2 + 1, its attention from cache
          // 1.22 -> 0.89 ms a step (docs/performance.md, twenty-first session).
          auto attend_rows = [&](const auto& keys, const auto& values) {
            const auto visible = [&](int64_t r) { return std::min(nk, a.start + token_of(r) + 1 - k0); };  // causal
            const auto attend_group = [&]<int R>(int64_t r, int64_t seen) {
              const float* qs[R];
              float* ps[R];
              float* accs[R];
              for (int i = 0; i < R; ++i) {
                qs[i] = a.q + token_of(r + i) * q_dim + head_of(r + i) * hd;
                ps[i] = p + i * kKeyTile;
                accs[i] = acc + (r + i) * hd;
              }
              attend_tile<V, R>(qs, keys, values, seen, hd, a.scale, ps, running_max + r, running_sum + r, accs);
            };
            for (int64_t r = 0; r < nr;) {
              const int64_t seen = visible(r);
              int64_t same = 1;
              while (same < kSharedRows && r + same < nr && visible(r + same) == seen) ++same;
              if (seen > 0)  // else the row sees no key of this tile
                [&]<int... R>(std::integer_sequence<int, R...>) {  // attend_group<same>
                  ((same == R + 1 ? attend_group.template operator()<R + 1>(r, seen) : void()), ...);
                }(std::make_integer_sequence<int, kSharedRows>{});
              else same = 1;
              r += same;
            }
          };
          const int64_t offset = a.kv_offset(k0, kv_head), key_offset = a.key_offset(k0, kv_head, 0);
          if (read_f16 && a.keys_in_blocks()) {
            attend_rows(KeyBlocks<V, uint16_t>{static_cast<const uint16_t*>(a.keys) + key_offset, hd},
                        F16Rows<V>{static_cast<const uint16_t*>(a.values) + offset, kv_stride});
            continue;
          }
          const float* key_blocks = key_scratch;
          if (a.keys_in_blocks() && a.kv_type == KvType::f32) key_blocks = static_cast<const float*>(a.keys) + key_offset;
          else keys_to_f32_blocks<V>(a, kv_head, k0, nk, key_scratch);
          const KeyBlocks<V, float> keys{key_blocks, hd};
          if (a.kv_type == KvType::f32) {
            attend_rows(keys, F32Rows<V>{static_cast<const float*>(a.values) + offset, kv_stride});
          } else if (read_f16) {  // keys laid out as rows
            attend_rows(keys, F16Rows<V>{static_cast<const uint16_t*>(a.values) + offset, kv_stride});
          } else {
            values_to_f32<V>(a, kv_head, k0, nk, value_scratch);
            attend_rows(keys, F32Rows<V>{value_scratch, hd});
          }
        }
        for (int64_t r = 0; r < nr; ++r) {
          float* out = a.out + token_of(r) * q_dim + head_of(r) * hd;
          const float inv = 1.0f / running_sum[r];
          for (int64_t d = 0; d < hd; ++d) out[d] = acc[r * hd + d] * inv;
        }
      }
    }
  }
}

// ---- Element-wise ----------------------------------------------------------------------------

template <typename V>
void rmsnorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  const float mean_square = dot<V>(x, x, n) / static_cast<float>(n);
  const float inv_rms = 1.0f / std::sqrt(mean_square + eps);
  const typename V::F s = V::fset1(inv_rms);
  int64_t i = 0;
  for (; i + V::L <= n; i += V::L) V::fstore(out + i, V::fmul(V::fmul(V::fload(x + i), s), V::fload(weight + i)));
  for (; i < n; ++i) out[i] = x[i] * inv_rms * weight[i];
}

// The tail goes through the same vector formula (masked loads and stores), not a scalar one: n is
// a batch's tokens times ffn_dim, so which elements fall in the tail depends on how many tokens
// share the call, and a token's values must not (batch invariance, issue 20).
template <typename V>
void swiglu(float* gate, const float* up, int64_t n) {
  using F = typename V::F;
  const F one = V::fset1(1.0f);
  const auto silu_times = [&](F g, F u) {
    const ExpParts<V> e = vexp_parts<V>(V::fsub(V::fzero(), g));
    return V::fmul(V::fdiv(g, V::fma(e.p, e.scale, one)), u);  // g / (1 + exp(-g)) * u
  };
  int64_t i = 0;
  for (; i + V::L <= n; i += V::L) V::fstore(gate + i, silu_times(V::fload(gate + i), V::fload(up + i)));
  if (i < n) {
    const int rest = static_cast<int>(n - i);
    V::fstore_n(gate + i, silu_times(V::fload_n(gate + i, rest), V::fload_n(up + i, rest)), rest);
  }
}

// Sums in float over runs of 1024 values, the runs' sums in double: a 150k vocabulary loses no
// more precision than a 1k one.
template <typename V>
double exp_weights(const float* x, int64_t n, float shift, float scale, float* weights) {
  const typename V::F s = V::fset1(shift), c = V::fset1(scale);
  double total = 0;
  for (int64_t i = 0; i < n;) {
    const int64_t run_end = std::min(n, i + 1024);
    typename V::F sum = V::fzero();
    for (; i + V::L <= run_end; i += V::L) {
      const typename V::F e = vexp<V>(V::fmul(V::fsub(V::fload(x + i), s), c));
      V::fstore(weights + i, e);
      sum = V::fadd(sum, e);
    }
    total += V::freduce(sum);
    for (; i < run_end; ++i) total += weights[i] = std::exp((x[i] - shift) * scale);
  }
  return total;
}

template <typename V>
void to_f16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + V::L <= n; i += V::L) V::store_f16(out + i, V::fload(x + i));
  for (; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

template <typename V>
IsaKernels make_isa_kernels(Isa isa) {
  return IsaKernels{isa,          quantize<V>, matmul_packed<V>, matmul_float<V>,
                    attention<V>, rmsnorm<V>,  swiglu<V>,        exp_weights<V>, to_f16<V>,
                    gemm_f32_blocked<V>};
}

}  // namespace
}  // namespace orchard
