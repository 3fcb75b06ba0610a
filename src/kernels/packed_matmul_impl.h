// The packed int8 matmul (weights repacked by packing.h, activations quantized by quantize<V>) as
// templates over vector traits V; included by fast_kernels_impl.h inside each ISA file.
//
// A micro-kernel computes V::L rows (the s-th sub-tile of a 16-row tile) for T tokens from t0
// over a range of the tile's groups. The weights of one 32-input block are 8 vectors w[v] (lane
// r: inputs 4v..4v+3 of row r), each unpacked once per level and multiplied with every token's
// activations, so unpacking is paid once per T tokens.
#pragma once
#include <algorithm>

#include "kernels/isa_kernels.h"

// Fixed-count loops over tokens and weight vectors must be unrolled for their arrays to live in
// registers; GCC's heuristics stop short of that for the nested token x vector loops.
#if defined(__clang__)
#define ORCHARD_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define ORCHARD_UNROLL _Pragma("GCC unroll 16")
#else
#define ORCHARD_UNROLL
#endif
// The helpers of one micro-kernel must inline into it: a call boundary sends its register
// arrays through memory.
#if defined(__GNUC__)
#define ORCHARD_INLINE inline __attribute__((always_inline))
#else
#define ORCHARD_INLINE inline
#endif

namespace orchard {
namespace {

template <typename V>
struct TokenView {
  const QuantizedActivations& x;
  const int8_t* quants(int64_t t, int64_t block) const { return x.qs + x.at(t, block) * kBlock; }
  const int8_t* low(int64_t t, int64_t block) const { return x.lo + x.at(t, block) * kBlock; }
  // Of tokens t, t + 1, ... (consecutive: the layout is block-major).
  const ActivationBlock* info(int64_t t, int64_t block) const { return x.info + x.at(t, block); }
};

// The groups [begin, end) of the tile one call covers; `accumulate`: y already holds the sum over
// the groups before `begin` (the matmul runs long rows in chunks, see matmul_packed_tiles).
struct GroupSpan {
  int64_t begin, end;
  bool accumulate;
};

// dot[t] = sum over v in [first, last) of w[v] . a[4v .. 4v+3], a the integer activation of
// token t0 + t in block b (qs, or 256 * qs + lo when kResidual). Weight vector outer, token
// inner: every step issues T independent dpbusd, so their latency is covered by the other
// tokens' chains instead of by out-of-order reach across T serial chains.
//
// weight(v) gives w[v]; the nibble formats unpack it there, just in time, so that few weight
// vectors are live and the registers go to more tokens (the residual pass unpacks again: an L1
// load and two ALU operations, against T dpbusd).
template <typename V, int T, int first, int last, bool kResidual, typename Weights>
ORCHARD_INLINE void block_dots(const Weights& weight, const TokenView<V>& x, int64_t t0, int64_t b, typename V::I* dot) {
  ORCHARD_UNROLL
  for (int t = 0; t < T; ++t) dot[t] = V::izero();
  const int8_t* quants = x.quants(t0, b);
  if constexpr (!kResidual && T <= 4) {
    // Few tokens on one level (decode): each token's sum in two chains, the block's first and
    // second halves, added at the end (integers: the same sum). One chain would make a decoded
    // token wait on the dpbusd latency eight times in a row per block; the two-level form has
    // its second level's chain beside the first for the same reason.
    constexpr int mid = (first + last) / 2;
    typename V::I second[T];
    ORCHARD_UNROLL
    for (int t = 0; t < T; ++t) second[t] = V::izero();
    ORCHARD_UNROLL
    for (int v = first; v < mid; ++v)
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) {
        dot[t] = V::dpbusd_bcast4(dot[t], weight(v), quants + kBlock * t + 4 * v);
        second[t] = V::dpbusd_bcast4(second[t], weight(v + mid - first), quants + kBlock * t + 4 * (v + mid - first));
      }
    if constexpr ((last - first) % 2 == 1)
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) second[t] = V::dpbusd_bcast4(second[t], weight(last - 1), quants + kBlock * t + 4 * (last - 1));
    ORCHARD_UNROLL
    for (int t = 0; t < T; ++t) dot[t] = V::add(dot[t], second[t]);
    return;
  }
  ORCHARD_UNROLL
  for (int v = first; v < last; ++v)
    ORCHARD_UNROLL
    for (int t = 0; t < T; ++t) dot[t] = V::dpbusd_bcast4(dot[t], weight(v), quants + kBlock * t + 4 * v);
  if constexpr (kResidual) {
    // (sum w . qs) * 256 + sum w . lo: the same integer as sum w . (256 qs + lo), exactly.
    const int8_t* low = x.low(t0, b);
    typename V::I lo[T];
    if constexpr (T <= 4) {
      // Few tokens (decode): the low level in chains of its own, beside the first level's, so
      // that the dpbusd latency is not paid twice in a row.
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) lo[t] = V::izero();
    } else {
      // Enough tokens for independent chains: continue in the same accumulators.
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) dot[t] = V::template slli<8>(dot[t]);
    }
    typename V::I* acc = T <= 4 ? lo : dot;
    ORCHARD_UNROLL
    for (int v = first; v < last; ++v)
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) acc[t] = V::dpbusd_bcast4(acc[t], weight(v), low + kBlock * t + 4 * v);
    if constexpr (T <= 4) {
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) dot[t] = V::add(V::template slli<8>(dot[t]), lo[t]);
    }
  }
}

// w[v] of 32 nibble-packed inputs (4 chunks of 64 bytes): low nibbles of chunk v for v < 4, high
// nibbles of chunk v - 4 after.
template <typename V>
struct NibbleWeights {
  const uint8_t* chunks;  // already offset to sub-tile s
  typename V::I operator()(int v) const {
    const typename V::I raw = V::load(chunks + 64 * (v % 4));
    return V::and_(v < 4 ? raw : V::template srli<4>(raw), V::set1_8(0x0f));
  }
};

// Splits 32 nibble-packed inputs (4 chunks of 64 bytes) into 8 vectors in input order.
template <typename V>
ORCHARD_INLINE void unpack_nibbles(const uint8_t* chunks, int s, typename V::I* w) {
  const typename V::I low4 = V::set1_8(0x0f);
  ORCHARD_UNROLL
  for (int c = 0; c < 4; ++c) {
    const typename V::I raw = V::load(chunks + 64 * c + 4 * V::L * s);
    w[c] = V::and_(raw, low4);
    w[c + 4] = V::and_(V::template srli<4>(raw), low4);
  }
}

// The accumulators of rows row0 .. row0 + V::L for T tokens: zero, or what y holds.
template <typename V, int T>
ORCHARD_INLINE void load_rows(typename V::F* acc, const float* y, int64_t out, int64_t t0, int64_t row0, GroupSpan span) {
  const int64_t valid = std::min<int64_t>(V::L, out - row0);
  ORCHARD_UNROLL
  for (int t = 0; t < T; ++t) {
    acc[t] = V::fzero();
    if (!span.accumulate || valid <= 0) continue;
    const float* src = y + (t0 + t) * out + row0;
    acc[t] = valid == V::L ? V::fload(src) : V::fload_n(src, static_cast<int>(valid));
  }
}

template <typename V, int T>
ORCHARD_INLINE void store_rows(const typename V::F* acc, float* y, int64_t out, int64_t t0, int64_t row0) {
  const int64_t valid = std::min<int64_t>(V::L, out - row0);
  if (valid <= 0) return;
  ORCHARD_UNROLL
  for (int t = 0; t < T; ++t) {
    float* dst = y + (t0 + t) * out + row0;
    if (valid == V::L) V::fstore(dst, acc[t]);
    else V::fstore_n(dst, acc[t], static_cast<int>(valid));
  }
}

// Asks for the weights about 4 KiB ahead of the group being read: measured on Zen 5, the
// hardware prefetchers alone left a matrix larger than the caches streaming at a quarter of the
// memory's bandwidth once the micro-kernels read it for several tokens (the 151936-row output
// matrix of a 0.5B model, 12 tokens: 26.5 ms without, 9.5 ms with). Prefetches never fault, so
// running past the matrix's end is harmless.
ORCHARD_INLINE void prefetch_group_ahead(const uint8_t* group, int64_t group_bytes) {
  constexpr int64_t kAhead = 4096;
  for (int64_t at = 0; at < group_bytes; at += 64) __builtin_prefetch(group + kAhead + at);
}

template <typename V, int T, bool R>
void tile_q4_0(const PackedMatrix& w, const uint8_t* tile, const TokenView<V>& x, int64_t t0,
               int64_t row0, GroupSpan span, float* y) {
  for (int s = 0; s < kTileRows / V::L; ++s) {
    typename V::F acc[T];
    load_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L, span);
    for (int64_t b = span.begin; b < span.end; ++b) {
      const uint8_t* blk = tile + b * w.group_bytes;
      prefetch_group_ahead(blk, w.group_bytes);
      typename V::I dot[T];
      const typename V::F scale = V::load_f16(blk + 256 + 2 * V::L * s);
      block_dots<V, T, 0, 8, R>(NibbleWeights<V>{blk + 4 * V::L * s}, x, t0, b, dot);
      const ActivationBlock* info = x.info(t0, b);
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) {
        // weight = d * (u - 8): subtract 8 * sum(x) once per block.
        const typename V::I dotv = V::sub(dot[t], V::template slli<3>(V::set1(info[t].sum)));
        acc[t] = V::fma(V::cvt(dotv), V::fmul(scale, V::fset1(info[t].d)), acc[t]);
      }
    }
    store_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L);
  }
}

template <typename V, int T, bool R>
void tile_q8_0(const PackedMatrix& w, const uint8_t* tile, const TokenView<V>& x, int64_t t0,
               int64_t row0, GroupSpan span, float* y) {
  for (int s = 0; s < kTileRows / V::L; ++s) {
    typename V::F acc[T];
    load_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L, span);
    for (int64_t b = span.begin; b < span.end; ++b) {
      const uint8_t* blk = tile + b * w.group_bytes;
      prefetch_group_ahead(blk, w.group_bytes);
      typename V::I wv[8], dot[T];
      ORCHARD_UNROLL
      for (int v = 0; v < 8; ++v) wv[v] = V::load(blk + 64 * v + 4 * V::L * s);
      const typename V::F scale = V::load_f16(blk + 512 + 2 * V::L * s);
      block_dots<V, T, 0, 8, R>([&](int v) { return wv[v]; }, x, t0, b, dot);
      const ActivationBlock* info = x.info(t0, b);
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) {
        // weight = d * (u - 128), u = q + 128 stored unsigned for dpbusd.
        const typename V::I dotv = V::sub(dot[t], V::template slli<7>(V::set1(info[t].sum)));
        acc[t] = V::fma(V::cvt(dotv), V::fmul(scale, V::fset1(info[t].d)), acc[t]);
      }
    }
    store_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L);
  }
}

template <typename V, int T, bool R>
void tile_q4_k(const PackedMatrix& w, const uint8_t* tile, const TokenView<V>& x, int64_t t0,
               int64_t row0, GroupSpan span, float* y) {
  for (int s = 0; s < kTileRows / V::L; ++s) {
    typename V::F acc[T];
    load_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L, span);
    for (int64_t g = span.begin; g < span.end; ++g) {
      const uint8_t* sb = tile + g * w.group_bytes;
      prefetch_group_ahead(sb, w.group_bytes);
      const typename V::F d = V::load_f16(sb + 2 * V::L * s);
      const typename V::F dmin = V::load_f16(sb + 32 + 2 * V::L * s);
      for (int j = 0; j < 8; ++j) {
        const int64_t b = g * 8 + j;
        // weight = (d * scale) * u - (dmin * min), rounded as dequantize_row rounds them.
        const typename V::F step = V::fmul(d, V::load_u8(sb + 64 + 16 * j + V::L * s));
        const typename V::F offset = V::fmul(dmin, V::load_u8(sb + 192 + 16 * j + V::L * s));
        typename V::I dot[T];
        block_dots<V, T, 0, 8, R>(NibbleWeights<V>{sb + 320 + 256 * j + 4 * V::L * s}, x, t0, b, dot);
        const ActivationBlock* info = x.info(t0, b);
        ORCHARD_UNROLL
        for (int t = 0; t < T; ++t) {
          acc[t] = V::fma(V::cvt(dot[t]), V::fmul(step, V::fset1(info[t].d)), acc[t]);
          acc[t] = V::fnmadd(offset, V::fset1(info[t].d_sum), acc[t]);
        }
      }
    }
    store_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L);
  }
}

template <typename V, int T, bool R>
void tile_q6_k(const PackedMatrix& w, const uint8_t* tile, const TokenView<V>& x, int64_t t0,
               int64_t row0, GroupSpan span, float* y) {
  using I = typename V::I;
  for (int s = 0; s < kTileRows / V::L; ++s) {
    typename V::F acc[T];
    load_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L, span);
    for (int64_t g = span.begin; g < span.end; ++g) {
      const uint8_t* sb = tile + g * w.group_bytes;
      prefetch_group_ahead(sb, w.group_bytes);
      const typename V::F d = V::load_f16(sb + 2 * V::L * s);
      const I bits45 = V::set1_8(0x30);
      for (int j = 0; j < 8; ++j) {
        const int64_t b = g * 8 + j;
        // Two 16-input sub-blocks per block, each with its own scale: weight = d*scale*(u - 32).
        const typename V::F step0 = V::fmul(d, V::load_s8(sb + 32 + 16 * (2 * j) + V::L * s));
        const typename V::F step1 = V::fmul(d, V::load_s8(sb + 32 + 16 * (2 * j + 1) + V::L * s));
        const uint8_t* blk = sb + 288 + 384 * j;
        I wv[8], dot[T];
        unpack_nibbles<V>(blk, s, wv);
        ORCHARD_UNROLL
        for (int h = 0; h < 2; ++h) {
          const I high = V::load(blk + 256 + 64 * h + 4 * V::L * s);
          wv[4 * h + 0] = V::or_(wv[4 * h + 0], V::and_(V::template slli<4>(high), bits45));
          wv[4 * h + 1] = V::or_(wv[4 * h + 1], V::and_(V::template slli<2>(high), bits45));
          wv[4 * h + 2] = V::or_(wv[4 * h + 2], V::and_(high, bits45));
          wv[4 * h + 3] = V::or_(wv[4 * h + 3], V::and_(V::template srli<2>(high), bits45));
        }
        const ActivationBlock* info = x.info(t0, b);
        const auto weight = [&](int v) { return wv[v]; };
        block_dots<V, T, 0, 4, R>(weight, x, t0, b, dot);
        ORCHARD_UNROLL
        for (int t = 0; t < T; ++t) {
          const I dot0 = V::sub(dot[t], V::template slli<5>(V::set1(info[t].first_half)));
          acc[t] = V::fma(V::cvt(dot0), V::fmul(step0, V::fset1(info[t].d)), acc[t]);
        }
        block_dots<V, T, 4, 8, R>(weight, x, t0, b, dot);
        ORCHARD_UNROLL
        for (int t = 0; t < T; ++t) {
          const I dot1 = V::sub(dot[t], V::template slli<5>(V::set1(info[t].sum - info[t].first_half)));
          acc[t] = V::fma(V::cvt(dot1), V::fmul(step1, V::fset1(info[t].d)), acc[t]);
        }
      }
    }
    store_rows<V, T>(acc, y, w.out, t0, row0 + s * V::L);
  }
}

template <typename V, int T, bool R>
void run_tile(const PackedMatrix& w, int64_t tile, const TokenView<V>& x, int64_t t0, GroupSpan span,
              float* y) {
  const uint8_t* data = w.tile(tile);
  const int64_t row0 = tile * kTileRows;
  switch (w.format) {
    case PackedFormat::q4_0: return tile_q4_0<V, T, R>(w, data, x, t0, row0, span, y);
    case PackedFormat::q8_0: return tile_q8_0<V, T, R>(w, data, x, t0, row0, span, y);
    case PackedFormat::q4_k: return tile_q4_k<V, T, R>(w, data, x, t0, row0, span, y);
    case PackedFormat::q6_k: return tile_q6_k<V, T, R>(w, data, x, t0, row0, span, y);
  }
}

// Tokens [t, t + T) against tiles [tile_begin, tile_end): the tokens' activations stay in L1
// while the tiles' weights stream past from L2.
template <typename V, int T, bool R>
void run_panel(const PackedMatrix& w, int64_t tile_begin, int64_t tile_end, const TokenView<V>& x,
               int64_t t, GroupSpan span, float* y) {
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) run_tile<V, T, R>(w, tile, x, t, span, y);
}

template <typename V, bool R>
void matmul_packed_tiles(const PackedMatrix& w, const QuantizedActivations& q, int64_t t_begin,
                         int64_t t_end, int64_t tile_begin, int64_t tile_end, float* y) {
  const TokenView<V> x{q};
  // Cache blocking: long rows in chunks of about 2048 inputs; tokens in blocks of 64 (their
  // activations for the chunk, <= 256 KiB with the residual level, stay in L2); tiles in panels
  // of about 256 KiB of weights (in L2 beside them). Within a panel the micro-kernels go token
  // group by token group, each over all the panel's tiles, so that the group's activations
  // (<= 32 KiB) stay in L1 while the weights stream from L2: per dpbusd that is fewer bytes
  // from L2 than the other way round, and in fewer, sequential streams.
  constexpr int64_t kTokenBlock = 8 * V::kMaxTokens, kChunkInputs = 2048, kPanelBytes = 256 << 10;
  // Chunks only pay when several micro-kernels reuse a chunk of weights; with one (decode) the
  // weights stream once, best in memory order.
  const int64_t chunks = t_end - t_begin > V::kMaxTokens ? (w.in + kChunkInputs - 1) / kChunkInputs : 1;
  const int64_t chunk_groups = (w.groups + chunks - 1) / chunks;
  const int64_t panel_tiles =
      std::max<int64_t>(1, kPanelBytes / (chunk_groups * static_cast<int64_t>(w.group_bytes)));
  for (int64_t tb = t_begin; tb < t_end; tb += kTokenBlock) {
    const int64_t te = std::min(t_end, tb + kTokenBlock);
    for (int64_t g0 = 0; g0 < w.groups; g0 += chunk_groups) {
      const GroupSpan span{g0, std::min(w.groups, g0 + chunk_groups), g0 > 0};
      for (int64_t p0 = tile_begin; p0 < tile_end; p0 += panel_tiles) {
        const int64_t pe = std::min(tile_end, p0 + panel_tiles);
        int64_t t = tb;
        for (; t + V::kMaxTokens <= te; t += V::kMaxTokens) run_panel<V, V::kMaxTokens, R>(w, p0, pe, x, t, span, y);
        // The rest (< kMaxTokens <= 16) in micro-kernels of 8, 4, 2 and 1 tokens.
        if constexpr (V::kMaxTokens > 8) if (t + 8 <= te) { run_panel<V, 8, R>(w, p0, pe, x, t, span, y); t += 8; }
        // 5-7 tokens in micro-kernels of their own: as 4 + 2 + 1 the weights are unpacked three
        // times, and as a group of 8 over spare rows a compute-bound pass does 8 tokens' work.
        if constexpr (V::kMaxTokens >= 8) {
          if (te - t == 7) run_panel<V, 7, R>(w, p0, pe, x, t, span, y), t = te;
          else if (te - t == 6) run_panel<V, 6, R>(w, p0, pe, x, t, span, y), t = te;
          else if (te - t == 5) run_panel<V, 5, R>(w, p0, pe, x, t, span, y), t = te;
        }
        if constexpr (V::kMaxTokens > 4) if (t + 4 <= te) { run_panel<V, 4, R>(w, p0, pe, x, t, span, y); t += 4; }
        if (t + 2 <= te) { run_panel<V, 2, R>(w, p0, pe, x, t, span, y); t += 2; }
        if (t < te) run_panel<V, 1, R>(w, p0, pe, x, t, span, y);
      }
    }
  }
}

template <typename V>
void matmul_packed(const PackedMatrix& w, const QuantizedActivations& q, int64_t t_begin,
                   int64_t t_end, int64_t tile_begin, int64_t tile_end, float* y) {
  if (q.lo) matmul_packed_tiles<V, true>(w, q, t_begin, t_end, tile_begin, tile_end, y);
  else matmul_packed_tiles<V, false>(w, q, t_begin, t_end, tile_begin, tile_end, y);
}

}  // namespace
}  // namespace orchard
