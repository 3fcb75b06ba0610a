// The packed int8 matmul (weights repacked by packing.h, activations quantized by quantize<V>) as
// templates over vector traits V; included by fast_kernels_impl.h inside each ISA file.
//
// A micro-kernel computes P row vectors of V::L rows each (a row vector: the s-th sub-tile of a
// 16-row tile) for T tokens from t0 over a range of the tile's groups. The weights of one
// 32-input block are 8 vectors w[v] (lane r: inputs 4v..4v+3 of row r), each unpacked once per
// level and multiplied with every token's activations, so unpacking is paid once per T tokens;
// each token's broadcast activations are multiplied with every row vector's weights.
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
// ORCHARD_INLINE_LAMBDA: the same for a lambda (written after its parameters). ORCHARD_NOINLINE:
// a boundary kept on purpose (super_blocks).
#if defined(__GNUC__)
#define ORCHARD_INLINE inline __attribute__((always_inline))
#define ORCHARD_INLINE_LAMBDA __attribute__((always_inline))
#define ORCHARD_NOINLINE __attribute__((noinline))
#else
#define ORCHARD_INLINE inline
#define ORCHARD_INLINE_LAMBDA
#define ORCHARD_NOINLINE
#endif

namespace orchard {
namespace {

// The activations of tokens t, t + 1, ... in one block (consecutive: the layout is block-major).
struct BlockActivations {
  const int8_t* quants;         // kBlock per token
  const int8_t* low;            // the second level's, or null
  const ActivationBlock* info;  // one per token
};

template <typename V>
struct TokenView {
  const QuantizedActivations& x;
  BlockActivations block(int64_t t, int64_t b) const {
    return {x.qs + x.at(t, b) * kBlock, x.lo ? x.lo + x.at(t, b) * kBlock : nullptr, x.info + x.at(t, b)};
  }
  // The same tokens' next block: a pointer step, where block() multiplies (measured: Q4_0 one
  // token from memory, 8960x1536, 25 against 27 GB/s, see rows_scaled_blocks).
  void next(BlockActivations& a) const {
    a.quants += x.n * kBlock;
    if (a.low) a.low += x.n * kBlock;
    a.info += x.n;
  }
};

// The groups [begin, end) of the tile one call covers; `accumulate`: y already holds the sum over
// the groups before `begin` (the matmul runs long rows in chunks, see matmul_packed_tiles);
// `next_call`: bytes from a group to the same group of the tiles the next micro-kernel takes.
struct GroupSpan {
  int64_t begin, end;
  bool accumulate;
  int64_t next_call;
};

// One step of the dot products: dot[p][t] += w[p] . (token t's 4 activations at a), for
// P row vectors and T tokens (a: token 0's; the next token's lie kBlock bytes on).
template <typename V, int P, int T>
ORCHARD_INLINE void dots_step(typename V::I (&dot)[P][T], const typename V::I* w, const int8_t* a) {
  ORCHARD_UNROLL
  for (int t = 0; t < T; ++t) {
    if constexpr (P == 1) {
      dot[0][t] = V::dpbusd_bcast4(dot[0][t], w[0], a + kBlock * t);
    } else {
      // The broadcast activation serves every row vector from a register: the micro-kernels
      // were bound by loads (one broadcast per dpbusd). Measured on Q4_0 and one core
      // (bench/gemm_bench.cpp, one level, 512 tokens): 12 tokens x 1 row vector 480 int8 GOPS,
      // 6 x 2 630; 4 x 3 and 3 x 4 were slower than 6 x 2.
      const typename V::I at = V::bcast4(a + kBlock * t);
      ORCHARD_UNROLL
      for (int p = 0; p < P; ++p) dot[p][t] = V::dpbusd(dot[p][t], w[p], at);
    }
  }
}

// dot[p][t] = start(t) + sum over v in [first, last) of w[p][v] . a[4v .. 4v+3], for P row
// vectors p and the T tokens of a, a's integer activations (qs, or 256 * qs + lo when kResidual);
// start(t) is the format's offset correction (ActivationBlock). Weight vector outer, token inner:
// every step issues P * T independent dpbusd, so their latency is covered by the other chains
// instead of by out-of-order reach across serial chains.
//
// weight(p, v) gives w[p][v]; the nibble formats unpack it there, just in time, so that few
// weight vectors are live and the registers go to more tokens (the residual pass unpacks again:
// an L1 load and two ALU operations, against T dpbusd).
template <typename V, int P, int T, int first, int last, bool kResidual, typename Weights, typename Start>
ORCHARD_INLINE void block_dots(const Weights& weight, const Start& start, const BlockActivations& a,
                               typename V::I (&dot)[P][T]) {
  using I = typename V::I;
  const auto weights = [&](int v, I* w) {
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p) w[p] = weight(p, v);
  };
  ORCHARD_UNROLL
  for (int t = 0; t < T; ++t) {
    const I s = kResidual ? V::izero() : start(t);
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p) dot[p][t] = s;
  }
  const int8_t* quants = a.quants;
  if constexpr (!kResidual && P * T <= 4) {
    // Few chains on one level (decode): each sum in two chains, the block's first and second
    // halves, added at the end (integers: the same sum). One chain would make a decoded token
    // wait on the dpbusd latency eight times in a row per block; the two-level form has its
    // second level's chain beside the first for the same reason.
    constexpr int mid = (first + last) / 2;
    I second[P][T];
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p)
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) second[p][t] = V::izero();
    ORCHARD_UNROLL
    for (int v = first; v < mid; ++v) {
      I w[P];
      weights(v, w);
      dots_step<V, P, T>(dot, w, quants + 4 * v);
      weights(v + mid - first, w);
      dots_step<V, P, T>(second, w, quants + 4 * (v + mid - first));
    }
    if constexpr ((last - first) % 2 == 1) {
      I w[P];
      weights(last - 1, w);
      dots_step<V, P, T>(second, w, quants + 4 * (last - 1));
    }
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p)
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) dot[p][t] = V::add(dot[p][t], second[p][t]);
    return;
  }
  ORCHARD_UNROLL
  for (int v = first; v < last; ++v) {
    I w[P];
    weights(v, w);
    dots_step<V, P, T>(dot, w, quants + 4 * v);
  }
  if constexpr (kResidual) {
    // (sum w . qs) * 256 + sum w . lo: the same integer as sum w . (256 qs + lo), exactly.
    const int8_t* low = a.low;
    I lo[P][T];
    constexpr bool kOwnChains = P * T <= 4;
    ORCHARD_UNROLL
    for (int t = 0; t < T; ++t) {
      const I s = start(t);
      ORCHARD_UNROLL
      for (int p = 0; p < P; ++p) {
        // Few chains (decode): the low level in chains of its own, beside the first level's,
        // so that the dpbusd latency is not paid twice in a row. Enough for independent
        // chains: continue in the same accumulators.
        if constexpr (kOwnChains) lo[p][t] = s;
        else dot[p][t] = V::add(V::template slli<8>(dot[p][t]), s);
      }
    }
    I (&acc)[P][T] = kOwnChains ? lo : dot;
    ORCHARD_UNROLL
    for (int v = first; v < last; ++v) {
      I w[P];
      weights(v, w);
      dots_step<V, P, T>(acc, w, low + 4 * v);
    }
    if constexpr (kOwnChains)
      ORCHARD_UNROLL
      for (int p = 0; p < P; ++p)
        ORCHARD_UNROLL
        for (int t = 0; t < T; ++t) dot[p][t] = V::add(V::template slli<8>(dot[p][t]), lo[p][t]);
  }
}

// The chain starts of block b's tokens for weights stored with offset 8 << shift (shift 0:
// Q4_0, 4: Q8_0's 128, 2: Q6_K's 32 over a half block), and for formats without one (Q4_K).
template <typename V, int shift, int32_t ActivationBlock::*minus_8_sum>
struct OffsetStart {
  const ActivationBlock* info;  // of the first token; the next tokens' follow
  typename V::I operator()(int t) const {
    const typename V::I start = V::bcast4(&(info[t].*minus_8_sum));
    return shift == 0 ? start : V::template slli<shift>(start);
  }
};
template <typename V>
struct ZeroStart {
  typename V::I operator()(int) const { return V::izero(); }
};

// w[v] of 32 nibble-packed inputs (4 chunks of 64 bytes): low nibbles of chunk v for v < 4, high
// nibbles of chunk v - 4 after.
template <typename V>
ORCHARD_INLINE typename V::I nibble_weights(const uint8_t* chunks, int v) {
  const typename V::I raw = V::load(chunks + 64 * (v % 4));
  return V::and_(v < 4 ? raw : V::template srli<4>(raw), V::set1_8(0x0f));
}

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

// P consecutive row vectors (V::L output rows each) from row vector rv0: row vector r is sub-tile
// r % S of tile r / S, S = kTileRows / V::L. A field of a group is addressed as
// group(p, b) + field offset + (bytes per row) * V::L * s(p).
template <typename V, int P>
struct RowVectors {
  static constexpr int64_t S = kTileRows / V::L;
  const uint8_t* tile[P];
  int64_t row0[P];
  int64_t rv0;
  ORCHARD_INLINE RowVectors(const PackedMatrix& w, int64_t first) : rv0(first) {
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p) {
      tile[p] = w.tile((rv0 + p) / S);
      row0[p] = (rv0 + p) * V::L;
    }
  }
  // The sub-tile of row vector p (a constant 0 where a row vector is a whole tile).
  ORCHARD_INLINE int64_t s(int p) const { return S == 1 ? 0 : (rv0 + p) % S; }
};

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
//
// Then it reads one byte of the group itself, at once. With the prefetches alone a one-token pass
// streamed Q4_0 at 30 GB/s on one core where Q4_K, whose kernel loads its group's scales first,
// streamed at 42; the read closed that gap (gemm_bench --tokens 1 --copies 64, 1536x8960 and
// 8960x1536, medians of 3: Q4_0 30/26 -> 44/43 GB/s, Q8_0 31/31 -> 41/41; 1.5B decode on two
// threads, Q4_0 55 -> 71 t/s). A throwaway microbenchmark showed the same: any early demand load
// of each group's first line, even a scalar one whose value is unused, took a Q4_0-shaped loop
// from 25 to 44 GB/s, and a dependence on such a load is what made the Q4_K-shaped loop fast. This
// VM exposes no performance counters, so the mechanism is a guess: the hardware prefetchers train
// on demand loads that wait for memory, and software prefetches alone leave them idle.
//
// A micro-kernel of several tokens asks for the weights of the next one's tiles instead, at the
// same group (GroupSpan::next_call, at least 4 KiB on): with more tokens than one micro-kernel
// takes, the first pass over a panel streams from memory and the next ones from L2, and 4 KiB
// ahead left that first pass waiting; in the chunks of a long row, 4 KiB ahead also lands in the
// next chunk, read much later. Measured, `orchard bench --batch 16 -p 16 -n 64 -r 3` on the 0.5B
// Q4_0 shape, 3 interleaved runs: 16-sequence step 18.0-19.6 -> 16.6-16.7 ms (a fixed 16 KiB:
// 16.7-17.4; 8 and 32 KiB were slower than 16; two calls ahead no better than one); 8 sequences
// 13.2-14.8 -> 10.1-11.3 ms; 1.5B Q4_K_M, 16 sequences, 51.2-51.7 -> 48.3-50.6 ms; pp512 of the
// 1.5B shape unchanged (a panel is reused by 16 passes).
// A one-token pass keeps 4 KiB: one tile ahead measured slower (1.5B Q4_0 decode, 76.5% of a
// plain read against 83-85%).
constexpr int64_t kPrefetchAhead = 4096;
ORCHARD_INLINE void prefetch_group_ahead(const uint8_t* group, int64_t group_bytes, int64_t ahead) {
  for (int64_t at = 0; at < group_bytes; at += 64) __builtin_prefetch(group + ahead + at);
  (void)*static_cast<const volatile uint8_t*>(group);
}
// How far ahead a micro-kernel of P row vectors x T tokens asks: a one-token pass (at most 4
// chains) keeps 4 KiB, several tokens the next micro-kernel's tiles.
template <int P, int T>
ORCHARD_INLINE int64_t prefetch_ahead(const GroupSpan& span) {
  return P * T <= 4 ? kPrefetchAhead : span.next_call;
}

// The micro-kernels: P row vectors (RowVectors) x T tokens from t0, over the groups of `span`.
// A group's prefetch is asked by its sub-tile 0, for the whole tile.
//
// Q4_0, Q5_0 and Q8_0: per 32-input block and row, one f16 scale at `scale_at` bytes into the
// group and weight = scale * (u - (8 << offset_shift)); Q4_1 and Q5_1 (min_at >= 0): weight =
// scale * u + min, the f16 min at `min_at`, whose products sum to min * (the activations' sum).
// weight(group of row vector p, its sub-tile, v) gives w[v].
template <typename V, int P, int T, bool R, int offset_shift, int scale_at, int min_at, typename Weight>
ORCHARD_INLINE void rows_scaled_blocks(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                       int64_t t0, GroupSpan span, float* y, const Weight& weight) {
  typename V::F acc[P][T];
  ORCHARD_UNROLL
  for (int p = 0; p < P; ++p) load_rows<V, T>(acc[p], y, w.out, t0, r.row0[p], span);
  // With few tokens (decode: the pass waits on memory) the weights are asked for 8 groups at a
  // time, not group by group. Measured on one core, one token, weights from memory
  // (bench/gemm_bench.cpp --tokens 1 --copies 64), 1536x8960 and 8960x1536: Q4_0 26/24 ->
  // 30/27 GB/s, Q8_0 24/23 -> 29/30; 1.5B decode, tg128, medians of 3 interleaved runs in four
  // sets: Q4_0 +2 to +12%, Q8_0 +4 to +15%. With more tokens the bursts cost more than they gain
  // (512 tokens from cache, Q4_0: 555 against 600 int8 GOPS), so those keep one group at a time.
  // Since prefetch_group_ahead also reads its group's first byte, the bursts matter more: group by
  // group, one token, the same shapes streamed at 30/21 GB/s against 43/42 (bursts of 16: 42/39).
  constexpr int64_t kPrefetchBlocks = P * T <= 4 ? 8 : 1;
  const uint8_t* blk[P];  // block b's group, of row vector p's tile
  ORCHARD_UNROLL
  for (int p = 0; p < P; ++p) blk[p] = r.tile[p] + span.begin * w.group_bytes;
  BlockActivations a = x.block(t0, span.begin);
  for (int64_t b = span.begin; b < span.end; ++b, x.next(a)) {
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p)
      if (r.s(p) == 0 && (b - span.begin) % kPrefetchBlocks == 0)
        prefetch_group_ahead(blk[p], kPrefetchBlocks * w.group_bytes, prefetch_ahead<P, T>(span));
    const ActivationBlock* info = a.info;
    typename V::I dot[P][T];
    const auto weights = [&](int p, int v) { return weight(blk[p], r.s(p), v); };
    if constexpr (min_at < 0)
      block_dots<V, P, T, 0, 8, R>(weights, OffsetStart<V, offset_shift, &ActivationBlock::minus_8_sum>{info}, a, dot);
    else
      block_dots<V, P, T, 0, 8, R>(weights, ZeroStart<V>{}, a, dot);
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p) {
      const typename V::F scale = V::load_f16(blk[p] + scale_at + 2 * V::L * r.s(p));
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) acc[p][t] = V::fma(V::cvt(dot[p][t]), V::fmul(scale, V::fset1(info[t].d)), acc[p][t]);
      if constexpr (min_at >= 0) {
        const typename V::F min = V::load_f16(blk[p] + min_at + 2 * V::L * r.s(p));
        ORCHARD_UNROLL
        for (int t = 0; t < T; ++t) acc[p][t] = V::fma(min, V::fset1(info[t].d_sum), acc[p][t]);
      }
      blk[p] += w.group_bytes;
    }
  }
  ORCHARD_UNROLL
  for (int p = 0; p < P; ++p) store_rows<V, T>(acc[p], y, w.out, t0, r.row0[p]);
}

// weight = d * (u - 8), nibbles.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_q4_0(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  rows_scaled_blocks<V, P, T, R, 0, 256, -1>(w, r, x, t0, span, y, [](const uint8_t* blk, int64_t s, int v) {
    return nibble_weights<V>(blk + 4 * V::L * s, v);
  });
}

// weight = d * u + m, nibbles.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_q4_1(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  rows_scaled_blocks<V, P, T, R, 0, 256, 288>(w, r, x, t0, span, y, [](const uint8_t* blk, int64_t s, int v) {
    return nibble_weights<V>(blk + 4 * V::L * s, v);
  });
}

// Bit `to` of weight vector v's u from a bit-plane chunk (packing.h): bit v of each byte, moved to
// bit `to` (a 32-bit lane shift of under 8 keeps it in its byte) and masked.
template <typename V, int to>
ORCHARD_INLINE typename V::I bit_plane(const uint8_t* chunk, int v) {
  using I = typename V::I;
  const I raw = V::load(chunk);
  I at;
  switch (to - v) {
    case 7: at = V::template slli<7>(raw); break;
    case 6: at = V::template slli<6>(raw); break;
    case 5: at = V::template slli<5>(raw); break;
    case 4: at = V::template slli<4>(raw); break;
    case 3: at = V::template slli<3>(raw); break;
    case 2: at = V::template slli<2>(raw); break;
    case 1: at = V::template slli<1>(raw); break;
    case 0: at = raw; break;
    case -1: at = V::template srli<1>(raw); break;
    case -2: at = V::template srli<2>(raw); break;
    case -3: at = V::template srli<3>(raw); break;
    case -4: at = V::template srli<4>(raw); break;
    case -5: at = V::template srli<5>(raw); break;
    case -6: at = V::template srli<6>(raw); break;
    default: at = V::template srli<7>(raw); break;
  }
  return V::and_(at, V::set1_8(1 << to));
}

// Bit 4 of weight vector v's u (Q5_0, Q5_1, Q5_K).
template <typename V>
ORCHARD_INLINE typename V::I fifth_bits(const uint8_t* chunk, int v) {
  return bit_plane<V, 4>(chunk, v);
}

// The low 2 bits of weight vector v's u from 2 chunks of bit pairs (Q3_K, Q2_K): bits 2(v % 4).. of
// chunk v / 4.
template <typename V>
ORCHARD_INLINE typename V::I low_pairs(const uint8_t* chunks, int v) {
  using I = typename V::I;
  const I raw = V::load(chunks + 64 * (v / 4));
  I at;
  switch (v % 4) {
    case 0: at = raw; break;
    case 1: at = V::template srli<2>(raw); break;
    case 2: at = V::template srli<4>(raw); break;
    default: at = V::template srli<6>(raw); break;
  }
  return V::and_(at, V::set1_8(0x03));
}

// weight = d * (u - 16), u: Q4_0's nibbles and the fifth bits.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_q5_0(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  rows_scaled_blocks<V, P, T, R, 1, 320, -1>(w, r, x, t0, span, y, [](const uint8_t* blk, int64_t s, int v) {
    return V::or_(nibble_weights<V>(blk + 4 * V::L * s, v), fifth_bits<V>(blk + 256 + 4 * V::L * s, v));
  });
}

// weight = d * u + m, u of 5 bits as Q5_0's.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_q5_1(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  rows_scaled_blocks<V, P, T, R, 0, 320, 352>(w, r, x, t0, span, y, [](const uint8_t* blk, int64_t s, int v) {
    return V::or_(nibble_weights<V>(blk + 4 * V::L * s, v), fifth_bits<V>(blk + 256 + 4 * V::L * s, v));
  });
}

// weight = d * (u - 128), u = q + 128 stored unsigned for dpbusd.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_q8_0(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  rows_scaled_blocks<V, P, T, R, 4, 512, -1>(w, r, x, t0, span, y, [](const uint8_t* blk, int64_t s, int v) {
    return V::load(blk + 64 * v + 4 * V::L * s);
  });
}

// The loop of the super-block formats (K-quants, IQ4_XS): for each super-block g of each row
// vector's tile, its address (asked for ahead by sub-tile 0, for the whole tile), its f16 d per
// row and, with kMin, the f16 dmin 32 bytes on; then `block(acc, sb, d, dmin, j, a)` adds the
// products of its 32-input block j, whose activations are a.
//
// On two levels (R) with more than 8 chains, each block's work is a call of its own
// (call_apart), the float sums in memory across it: one L1 load and store per token and block.
// Inlined there, the float sums, the dot products, the weights and the unpacking's constants
// need more than the 32 vector registers, and GCC 12 spills inside the dpbusd loops, where it
// likes: the same Q5_K source ran at 270 or 380 int8 GOPS depending on what else was compiled
// into the function.
// Measured, ORCHARD_ACTIVATIONS=residual orchard bench -p 512 -n 0 on the 1.5B files, 3
// interleaved runs, medians, inlined -> apart (with each rows_* a function of its own): Q4_K_M
// 176.6 -> 214.3 t/s, Q3_K_M 169.6 -> 204.0, Q2_K 158.8 -> 183.9, IQ4_XS 257.2 -> 254.6, Q5_K_M
// 226.7 -> 215.1 (its lucky inlined allocation above). One level, and fewer chains, stay inline:
// one token on two levels, from cache, ran 25-40% slower apart (gemm_bench --tokens 1 --shape
// 1536x8960: Q4_K 225 -> 165 int8 GOPS, Q2_K 201 -> 149).
template <typename Block, typename... Args>
ORCHARD_NOINLINE void call_apart(const Block& block, Args&&... args) {
  block(args...);
}
template <typename V, int P, int T, bool R, bool kMin, typename Block>
ORCHARD_INLINE void super_blocks(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x, int64_t t0,
                                 GroupSpan span, float* y, const Block& block) {
  using F = typename V::F;
  constexpr bool kApart = R && P * T > 8;  // the residual level, 9-12 chains
  F acc[P][T];
  ORCHARD_UNROLL
  for (int p = 0; p < P; ++p) load_rows<V, T>(acc[p], y, w.out, t0, r.row0[p], span);
  for (int64_t g = span.begin; g < span.end; ++g) {
    const uint8_t* sb[P];
    F d[P], dmin[P];
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p) {
      sb[p] = r.tile[p] + g * w.group_bytes;
      if (r.s(p) == 0) prefetch_group_ahead(sb[p], w.group_bytes, prefetch_ahead<P, T>(span));
      d[p] = V::load_f16(sb[p] + 2 * V::L * r.s(p));
      if constexpr (kMin) dmin[p] = V::load_f16(sb[p] + 32 + 2 * V::L * r.s(p));
    }
    for (int j = 0; j < 8; ++j) {
      if constexpr (kApart) call_apart(block, acc, sb, d, dmin, j, x.block(t0, g * 8 + j));
      else block(acc, sb, d, dmin, j, x.block(t0, g * 8 + j));
    }
  }
  ORCHARD_UNROLL
  for (int p = 0; p < P; ++p) store_rows<V, T>(acc[p], y, w.out, t0, r.row0[p]);
}

// The step of sub-block k (d * its scale) for the K-quants whose scales are i8 bytes (Q6_K, Q3_K,
// IQ4_XS): row r's at byte 32 + 16k + r of the super-block.
template <typename V>
ORCHARD_INLINE typename V::F i8_step(typename V::F d, const uint8_t* sb, int k, int64_t s) {
  return V::fmul(d, V::load_s8(sb + 32 + 16 * k + V::L * s));
}

// acc[p][t] += dot[p][t] * step[p] * token t's activation step.
template <typename V, int P, int T>
ORCHARD_INLINE void add_products(typename V::F (&acc)[P][T], const typename V::I (&dot)[P][T],
                                 const typename V::F (&step)[P], const ActivationBlock* info) {
  ORCHARD_UNROLL
  for (int p = 0; p < P; ++p)
    ORCHARD_UNROLL
    for (int t = 0; t < T; ++t) acc[p][t] = V::fma(V::cvt(dot[p][t]), V::fmul(step[p], V::fset1(info[t].d)), acc[p][t]);
}

// weight = (d * scale) * u - dmin * min per 32-input sub-block; kFifth: Q5_K, u's bit 4 from the
// sub-block's fifth-bit chunk.
template <typename V, int P, int T, bool R, bool kFifth>
ORCHARD_NOINLINE void rows_q4_k(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  using F = typename V::F;
  super_blocks<V, P, T, R, true>(
      w, r, x, t0, span, y,
      [&](F (&acc)[P][T], const uint8_t* const (&sb)[P], const F (&d)[P], const F (&dmin)[P], int j,
          const BlockActivations& a) ORCHARD_INLINE_LAMBDA {
    typename V::I dot[P][T];
    block_dots<V, P, T, 0, 8, R>(
        [&](int p, int v) {
          const typename V::I low = nibble_weights<V>(sb[p] + 320 + 256 * j + 4 * V::L * r.s(p), v);
          if constexpr (!kFifth) return low;
          else return V::or_(low, fifth_bits<V>(sb[p] + 2368 + 64 * j + 4 * V::L * r.s(p), v));
        },
        ZeroStart<V>{}, a, dot);
    const ActivationBlock* info = a.info;
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p) {
      // weight = (d * scale) * u - (dmin * min), rounded as dequantize_row rounds them.
      const F step = V::fmul(d[p], V::load_u8(sb[p] + 64 + 16 * j + V::L * r.s(p)));
      const F offset = V::fmul(dmin[p], V::load_u8(sb[p] + 192 + 16 * j + V::L * r.s(p)));
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) {
        acc[p][t] = V::fma(V::cvt(dot[p][t]), V::fmul(step, V::fset1(info[t].d)), acc[p][t]);
        acc[p][t] = V::fnmadd(offset, V::fset1(info[t].d_sum), acc[p][t]);
      }
    }
  });
}

// Q6_K unpacks a block's 8 weight vectors at once (the high bits of four of them share a load):
// one row vector per call, its registers are taken.
template <typename V, int T, bool R>
ORCHARD_NOINLINE void rows_q6_k(const PackedMatrix& w, const RowVectors<V, 1>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  using F = typename V::F;
  using I = typename V::I;
  const int64_t s = r.s(0);
  super_blocks<V, 1, T, R, false>(
      w, r, x, t0, span, y,
      [&](F (&acc)[1][T], const uint8_t* const (&sbs)[1], const F (&d)[1], const F (&)[1], int j,
          const BlockActivations& a) ORCHARD_INLINE_LAMBDA {
    const uint8_t* sb = sbs[0];
    // Two 16-input sub-blocks per block, each with its own scale: weight = d*scale*(u - 32).
    const F step0[1] = {i8_step<V>(d[0], sb, 2 * j, s)}, step1[1] = {i8_step<V>(d[0], sb, 2 * j + 1, s)};
    const uint8_t* blk = sb + 288 + 384 * j;
    const I bits45 = V::set1_8(0x30);
    I wv[8], dot[1][T];
    unpack_nibbles<V>(blk, s, wv);
    ORCHARD_UNROLL
    for (int h = 0; h < 2; ++h) {
      const I high = V::load(blk + 256 + 64 * h + 4 * V::L * s);
      wv[4 * h + 0] = V::or_(wv[4 * h + 0], V::and_(V::template slli<4>(high), bits45));
      wv[4 * h + 1] = V::or_(wv[4 * h + 1], V::and_(V::template slli<2>(high), bits45));
      wv[4 * h + 2] = V::or_(wv[4 * h + 2], V::and_(high, bits45));
      wv[4 * h + 3] = V::or_(wv[4 * h + 3], V::and_(V::template srli<2>(high), bits45));
    }
    const ActivationBlock* info = a.info;
    const auto weight = [&](int, int v) { return wv[v]; };
    // -32 * the first half's sum: -8 * (sum - second half), times 4.
    const auto first_half_start = [&](int t) {
      return V::template slli<2>(V::sub(V::set1(info[t].minus_8_sum), V::set1(info[t].minus_8_second_half)));
    };
    block_dots<V, 1, T, 0, 4, R>(weight, first_half_start, a, dot);
    add_products<V, 1, T>(acc, dot, step0, info);
    block_dots<V, 1, T, 4, 8, R>(weight, OffsetStart<V, 2, &ActivationBlock::minus_8_second_half>{info}, a, dot);
    add_products<V, 1, T>(acc, dot, step1, info);
  });
}

// Q3_K: weight = (d * scale) * (u - 4) per 16-input sub-block, u = the low 2 bits | the third
// bit << 2, unpacked just in time as Q4_0's nibbles are.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_q3_k(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  using F = typename V::F;
  super_blocks<V, P, T, R, false>(
      w, r, x, t0, span, y,
      [&](F (&acc)[P][T], const uint8_t* const (&sb)[P], const F (&d)[P], const F (&)[P], int j,
          const BlockActivations& a) ORCHARD_INLINE_LAMBDA {
    const ActivationBlock* info = a.info;
    const auto weight = [&](int p, int v) {
      const uint8_t* blk = sb[p] + 288 + 192 * j + 4 * V::L * r.s(p);
      return V::or_(low_pairs<V>(blk, v), bit_plane<V, 2>(blk + 128, v));
    };
    // -4 * each half's activation sum: half of -8 times it.
    const auto first_half_start = [&](int t) { return V::set1((info[t].minus_8_sum - info[t].minus_8_second_half) / 2); };
    const auto second_half_start = [&](int t) { return V::set1(info[t].minus_8_second_half / 2); };
    typename V::I dot[P][T];
    ORCHARD_UNROLL
    for (int h = 0; h < 2; ++h) {
      if (h == 0) block_dots<V, P, T, 0, 4, R>(weight, first_half_start, a, dot);
      else block_dots<V, P, T, 4, 8, R>(weight, second_half_start, a, dot);
      F step[P];
      ORCHARD_UNROLL
      for (int p = 0; p < P; ++p) step[p] = i8_step<V>(d[p], sb[p], 2 * j + h, r.s(p));
      add_products<V, P, T>(acc, dot, step, info);
    }
  });
}

// Q2_K: weight = (d * scale) * u - (dmin * min) per 16-input sub-block, u the 2-bit quant; the
// scale and min 4-bit halves of the file's byte, split here (once per sub-block, not per token).
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_q2_k(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                int64_t t0, GroupSpan span, float* y) {
  using F = typename V::F;
  using I = typename V::I;
  super_blocks<V, P, T, R, true>(
      w, r, x, t0, span, y,
      [&](F (&acc)[P][T], const uint8_t* const (&sb)[P], const F (&d)[P], const F (&dmin)[P], int j,
          const BlockActivations& a) ORCHARD_INLINE_LAMBDA {
    const ActivationBlock* info = a.info;
    const auto weight = [&](int p, int v) { return low_pairs<V>(sb[p] + 320 + 128 * j + 4 * V::L * r.s(p), v); };
    I dot[P][T];
    ORCHARD_UNROLL
    for (int h = 0; h < 2; ++h) {
      if (h == 0) block_dots<V, P, T, 0, 4, R>(weight, ZeroStart<V>{}, a, dot);
      else block_dots<V, P, T, 4, 8, R>(weight, ZeroStart<V>{}, a, dot);
      // The half block's activation sum times its step: -1/8 of the recorded -8 * sums.
      F half_d_sum[T];
      ORCHARD_UNROLL
      for (int t = 0; t < T; ++t) {
        const int32_t minus_8 = h == 0 ? info[t].minus_8_sum - info[t].minus_8_second_half : info[t].minus_8_second_half;
        half_d_sum[t] = V::fset1(info[t].d * static_cast<float>(-minus_8 / 8));
      }
      ORCHARD_UNROLL
      for (int p = 0; p < P; ++p) {
        const I packed = V::cvt_round(V::load_u8(sb[p] + 64 + 16 * (2 * j + h) + V::L * r.s(p)));
        const F step = V::fmul(d[p], V::cvt(V::and_(packed, V::set1(0x0f))));
        const F offset = V::fmul(dmin[p], V::cvt(V::template srli<4>(packed)));
        ORCHARD_UNROLL
        for (int t = 0; t < T; ++t) {
          acc[p][t] = V::fma(V::cvt(dot[p][t]), V::fmul(step, V::fset1(info[t].d)), acc[p][t]);
          acc[p][t] = V::fnmadd(offset, half_d_sum[t], acc[p][t]);
        }
      }
    }
  });
}

// IQ4_NL's and IQ4_XS's grid (kIq4Values, tensor/dequantize.h) plus 128: unsigned for dpbusd,
// the offset taken off as Q8_0's is.
alignas(16) constexpr uint8_t kIq4Unsigned[16] = {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241};

// weight = d * (grid[nibble] + 128 - 128): Q4_0's layout, the nibbles looked up.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_iq4_nl(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                  int64_t t0, GroupSpan span, float* y) {
  const typename V::I grid = V::table16(kIq4Unsigned);
  rows_scaled_blocks<V, P, T, R, 4, 256, -1>(w, r, x, t0, span, y, [grid](const uint8_t* blk, int64_t s, int v) {
    return V::lookup16(grid, nibble_weights<V>(blk + 4 * V::L * s, v));
  });
}

// IQ4_XS: weight = (d * scale) * (grid[nibble] + 128 - 128) per 32-input sub-block.
template <typename V, int P, int T, bool R>
ORCHARD_NOINLINE void rows_iq4_xs(const PackedMatrix& w, const RowVectors<V, P>& r, const TokenView<V>& x,
                                  int64_t t0, GroupSpan span, float* y) {
  using F = typename V::F;
  const typename V::I grid = V::table16(kIq4Unsigned);
  super_blocks<V, P, T, R, false>(
      w, r, x, t0, span, y,
      [&](F (&acc)[P][T], const uint8_t* const (&sb)[P], const F (&d)[P], const F (&)[P], int j,
          const BlockActivations& a) ORCHARD_INLINE_LAMBDA {
    const ActivationBlock* info = a.info;
    typename V::I dot[P][T];
    block_dots<V, P, T, 0, 8, R>(
        [&](int p, int v) { return V::lookup16(grid, nibble_weights<V>(sb[p] + 160 + 256 * j + 4 * V::L * r.s(p), v)); },
        OffsetStart<V, 4, &ActivationBlock::minus_8_sum>{info}, a, dot);
    F step[P];
    ORCHARD_UNROLL
    for (int p = 0; p < P; ++p) step[p] = i8_step<V>(d[p], sb[p], j, r.s(p));
    add_products<V, P, T>(acc, dot, step, info);
  });
}

// Each rows_* is a function of its own (ORCHARD_NOINLINE): inlined into run_rows, all formats
// share one function and one register allocation, and a change in one format's kernel moved
// another's speed (see super_blocks). A call per micro-kernel and span costs nothing measurable.
template <typename V, int P, int T, bool R>
void run_rows(const PackedMatrix& w, int64_t rv0, const TokenView<V>& x, int64_t t0, GroupSpan span, float* y) {
  const RowVectors<V, P> r(w, rv0);
  switch (w.format) {
    case PackedFormat::q4_0: return rows_q4_0<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::q8_0: return rows_q8_0<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::q5_0: return rows_q5_0<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::q4_1: return rows_q4_1<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::q5_1: return rows_q5_1<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::q4_k: return rows_q4_k<V, P, T, R, false>(w, r, x, t0, span, y);
    case PackedFormat::q5_k: return rows_q4_k<V, P, T, R, true>(w, r, x, t0, span, y);
    case PackedFormat::q3_k: return rows_q3_k<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::q2_k: return rows_q2_k<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::iq4_nl: return rows_iq4_nl<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::iq4_xs: return rows_iq4_xs<V, P, T, R>(w, r, x, t0, span, y);
    case PackedFormat::q6_k:
      if constexpr (P == 1) return rows_q6_k<V, T, R>(w, r, x, t0, span, y);
      break;  // matmul_packed sends Q6_K to P = 1
  }
}

// Tokens [t, t + T) against the row vectors of tiles [tile_begin, tile_end), P at a time: the
// tokens' activations stay in L1 while the tiles' weights stream past from L2.
template <typename V, int P, int T, bool R>
void run_panel(const PackedMatrix& w, int64_t tile_begin, int64_t tile_end, const TokenView<V>& x,
               int64_t t, GroupSpan span, float* y) {
  constexpr int64_t S = RowVectors<V, P>::S;
  int64_t rv = tile_begin * S;
  for (; rv + P <= tile_end * S; rv += P) run_rows<V, P, T, R>(w, rv, x, t, span, y);
  for (; rv < tile_end * S; ++rv) run_rows<V, 1, T, R>(w, rv, x, t, span, y);
}

// kMaxTokens tokens x P row vectors per micro-kernel: the format's register tile.
template <typename V, int P, int kMaxTokens, bool R>
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
  const int64_t chunks = t_end - t_begin > kMaxTokens ? (w.in + kChunkInputs - 1) / kChunkInputs : 1;
  const int64_t chunk_groups = (w.groups + chunks - 1) / chunks;
  const int64_t panel_tiles =
      std::max<int64_t>(1, kPanelBytes / (chunk_groups * static_cast<int64_t>(w.group_bytes)));
  const int64_t next_call =
      std::max<int64_t>(kPrefetchAhead, std::max<int64_t>(1, P * V::L / kTileRows) * static_cast<int64_t>(w.tile_bytes));
  for (int64_t tb = t_begin; tb < t_end; tb += kTokenBlock) {
    const int64_t te = std::min(t_end, tb + kTokenBlock);
    for (int64_t g0 = 0; g0 < w.groups; g0 += chunk_groups) {
      const GroupSpan span{g0, std::min(w.groups, g0 + chunk_groups), g0 > 0, next_call};
      for (int64_t p0 = tile_begin; p0 < tile_end; p0 += panel_tiles) {
        const int64_t pe = std::min(tile_end, p0 + panel_tiles);
        // The first pass over a panel reads it from memory, the next ones from L2; those ask for
        // the next panel, whose first pass then finds it in L2 too.
        GroupSpan later = span;
        if (pe < tile_end) later.next_call = (pe - p0) * static_cast<int64_t>(w.tile_bytes);
        const auto pass = [&](int64_t t) -> const GroupSpan& { return t == tb ? span : later; };
        int64_t t = tb;
        for (; t + kMaxTokens <= te; t += kMaxTokens) run_panel<V, P, kMaxTokens, R>(w, p0, pe, x, t, pass(t), y);
        // The rest (< kMaxTokens <= 16) in micro-kernels of 8, 4, 2 and 1 tokens.
        if constexpr (kMaxTokens > 8) if (t + 8 <= te) { run_panel<V, P, 8, R>(w, p0, pe, x, t, pass(t), y); t += 8; }
        // 5-7 tokens in micro-kernels of their own: as 4 + 2 + 1 the weights are unpacked three
        // times, and as a group of 8 over spare rows a compute-bound pass does 8 tokens' work.
        if constexpr (kMaxTokens > 7) if (te - t == 7) run_panel<V, P, 7, R>(w, p0, pe, x, t, pass(t), y), t = te;
        if constexpr (kMaxTokens > 6) if (te - t == 6) run_panel<V, P, 6, R>(w, p0, pe, x, t, pass(t), y), t = te;
        if constexpr (kMaxTokens > 5) if (te - t == 5) run_panel<V, P, 5, R>(w, p0, pe, x, t, pass(t), y), t = te;
        if constexpr (kMaxTokens > 4) if (t + 4 <= te) { run_panel<V, P, 4, R>(w, p0, pe, x, t, pass(t), y); t += 4; }
        if (t + 2 <= te) { run_panel<V, P, 2, R>(w, p0, pe, x, t, pass(t), y); t += 2; }
        if (t < te) run_panel<V, P, 1, R>(w, p0, pe, x, t, pass(t), y);
      }
    }
  }
}

template <typename V>
void matmul_packed(const PackedMatrix& w, const QuantizedActivations& q, int64_t t_begin,
                   int64_t t_end, int64_t tile_begin, int64_t tile_end, float* y) {
  // K-quants keep one row vector per micro-kernel: Q6_K's unpacking takes the registers
  // (rows_q6_k), and Q4_K measured slower on two (its four float operations per block and token
  // against Q4_0's two: 475 int8 GOPS on one core against 490 on one row vector; Q2_K and Q3_K
  // have as many). IQ4_XS, with Q4_0's two, takes two (1.5B pp512, 3 runs: 178-183 -> 231-240
  // t/s). Fewer than 4 tokens (decode) keep one too: those passes wait on memory, not on loads,
  // and two row vectors measured no faster there (Q4_0 1.5B tg64: 33.7 against 34.4 t/s, noisy).
  //
  // Q8_0 up to 16 tokens (a batched decode step) goes on one row vector too. Its passes read
  // twice Q4_0's bytes per weight, and a pass over weights from memory waits on them: 16 tokens
  // are 12 + 4 on one row vector against 6 + 6 + 4 on two, 7-12 one pass against two. One core,
  // the 0.5B shape's output matrix (gemm_bench --type q8_0 --activations int8 --shape 896x151936),
  // int8 GOPS on two -> one row vector: 4 tokens 245 -> 275, 6 420 -> 502, 7 382 -> 556, 8 428
  // -> 678, 12 590 -> 702, 16 540 -> 616 (24 tokens: 636 -> 621, kept on two). Q4_0 (896x4864 and
  // 4864x896, --copies 64) measured no better on one: 8 tokens 698/709 -> 717/712, 10 699/730 ->
  // 638/646, 12 776/810 -> 752/762, 16 760/766 -> 708/711. With the residual level, whose passes
  // do twice the work per byte, Q8_0 stops at 12 (8 tokens 348 -> 398, 16 372 -> 344).
  constexpr int P = V::kRowVectors, kPairTokens = V::kMaxTokens / V::kRowVectors;
  const int64_t n = t_end - t_begin;
  const bool one = w.format == PackedFormat::q6_k || w.format == PackedFormat::q4_k || w.format == PackedFormat::q5_k ||
                   w.format == PackedFormat::q3_k || w.format == PackedFormat::q2_k || P == 1 || n < 4 ||
                   (w.format == PackedFormat::q8_0 && n <= V::kMaxTokens + (q.lo ? 0 : 4));
  if (q.lo) {
    if (one) matmul_packed_tiles<V, 1, V::kMaxTokens, true>(w, q, t_begin, t_end, tile_begin, tile_end, y);
    else matmul_packed_tiles<V, P, kPairTokens, true>(w, q, t_begin, t_end, tile_begin, tile_end, y);
  } else {
    if (one) matmul_packed_tiles<V, 1, V::kMaxTokens, false>(w, q, t_begin, t_end, tile_begin, tile_end, y);
    else matmul_packed_tiles<V, P, kPairTokens, false>(w, q, t_begin, t_end, tile_begin, tile_end, y);
  }
}

}  // namespace
}  // namespace orchard
