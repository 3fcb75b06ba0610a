// Vector traits for AVX-512 (F, BW, VL, DQ): 16 lanes of int32 / float. `dpbusd` is emulated
// with exact 16-bit multiplies (vpmaddubsw would saturate for 8-bit weights); the VNNI traits
// replace it with the single instruction. Include only from files built with AVX-512 flags.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace orchard::simd {
namespace {

struct Avx512 {
  static constexpr int L = 16;
  static constexpr int kFloatRegisters = 32;  // vector registers of L floats
  // Tokens per micro-kernel: the 16-bit emulation of dpbusd needs registers of its own (measured:
  // 4 tokens beat 6 and 8 here).
  static constexpr int kMaxTokens = 4;
  static constexpr int kRowVectors = 1;
  using I = __m512i;
  using F = __m512;

  static I izero() { return _mm512_setzero_si512(); }
  static I load(const void* p) { return _mm512_loadu_si512(p); }  // 4 bytes per lane
  static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static I or_(I a, I b) { return _mm512_or_si512(a, b); }
  template <int n> static I srli(I a) { return _mm512_srli_epi32(a, n); }
  template <int n> static I slli(I a) { return _mm512_slli_epi32(a, n); }
  static I set1_8(uint8_t v) { return _mm512_set1_epi8(static_cast<char>(v)); }
  static I set1(int32_t v) { return _mm512_set1_epi32(v); }
  static I bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub(I a, I b) { return _mm512_sub_epi32(a, b); }
  // 16 bytes repeated in every 128-bit lane, and each byte of idx (0..15) looked up in them.
  static I table16(const void* p) { return _mm512_broadcast_i32x4(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
  static I lookup16(I table, I idx) { return _mm512_shuffle_epi8(table, idx); }
  // acc[l] += sum_{i<4} u8(u.byte[4l+i]) * s8(s.byte[4l+i])
  static I dpbusd(I acc, I u, I s) {
    const I even_mask = _mm512_set1_epi32(0x00ff00ff);
    const I u_even = _mm512_and_si512(u, even_mask), u_odd = _mm512_srli_epi16(u, 8);
    const I s_even = _mm512_srai_epi16(_mm512_slli_epi16(s, 8), 8), s_odd = _mm512_srai_epi16(s, 8);
    return _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_madd_epi16(u_even, s_even),
                                                  _mm512_madd_epi16(u_odd, s_odd)));
  }
  // dpbusd(acc, u, bcast4(p)): one instruction where the ISA broadcasts from memory.
  static I dpbusd_bcast4(I acc, I u, const void* p) { return dpbusd(acc, u, bcast4(p)); }
  static I cvt_round(F a) { return _mm512_cvtps_epi32(a); }  // nearest, ties to even
  static void store_i8(int8_t* p, I a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtsepi32_epi8(a)); }
  static F as_float(I a) { return _mm512_castsi512_ps(a); }

  static F fzero() { return _mm512_setzero_ps(); }
  static F fset1(float v) { return _mm512_set1_ps(v); }
  static F fload(const float* p) { return _mm512_loadu_ps(p); }
  static void fstore(float* p, F a) { _mm512_storeu_ps(p, a); }
  static F fload_n(const float* p, int n) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p); }
  static void fstore_n(float* p, F a, int n) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), a); }
  static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static F fadd(F a, F b) { return _mm512_add_ps(a, b); }
  static F fsub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F fmul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fdiv(F a, F b) { return _mm512_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }      // a*b + c
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
  static F fmax(F a, F b) { return _mm512_max_ps(a, b); }
  static F fmin(F a, F b) { return _mm512_min_ps(a, b); }
  static F fabs(F a) { return _mm512_abs_ps(a); }
  static float freduce(F a) { return _mm512_reduce_add_ps(a); }
  static float freduce_max(F a) { return _mm512_reduce_max_ps(a); }
  // Lane j of the result: the sum of v[j]'s lanes. Each level halves the number of vectors and
  // the lanes each sum is spread over (256-bit halves, 128-bit quarters, pairs, lanes); the last
  // level leaves key q + 4m in lane 4q + m, so the vectors are taken in that transposed order.
  static F freduce_each(const F* v) {
    F halves[8], quarters[4], pairs[2];
    for (int i = 0; i < 8; ++i) {
      const F a = v[4 * ((2 * i) % 4) + (2 * i) / 4], b = v[4 * ((2 * i + 1) % 4) + (2 * i + 1) / 4];
      halves[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    for (int i = 0; i < 4; ++i) {
      const F a = halves[2 * i], b = halves[2 * i + 1];
      quarters[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    for (int i = 0; i < 2; ++i) {
      const F a = quarters[2 * i], b = quarters[2 * i + 1];
      pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    const __m512d a = _mm512_castps_pd(pairs[0]), b = _mm512_castps_pd(pairs[1]);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  static F load_f16(const void* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
  static void store_f16(void* p, F a) {
    _mm256_storeu_si256(static_cast<__m256i*>(p), _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
  }
  static F load_bf16(const void* p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(static_cast<const __m256i*>(p))), 16));
  }
  static F load_u8(const void* p) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p)))); }
  static F load_s8(const void* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p)))); }
};

struct Avx512Vnni : Avx512 {
  // 12 int32 + 12 float accumulators: enough independent dpbusd chains to cover its latency,
  // as 6 tokens x 2 row vectors (each broadcast activation feeds two dpbusd from a register;
  // 12 x 1 was bound by the loads of one broadcast per dpbusd) for the formats that can
  // (Q6_K: 12 x 1). kMaxTokens counts the chains: tokens x row vectors.
  static constexpr int kMaxTokens = 12;
  static constexpr int kRowVectors = 2;
  static I dpbusd(I acc, I u, I s) { return _mm512_dpbusd_epi32(acc, u, s); }
  // The embedded-broadcast form (m32bcst): GCC does not fold set1 of a loaded int into it, and
  // the separate vpbroadcastd per dpbusd doubles the instructions of the micro-kernels.
  static I dpbusd_bcast4(I acc, I u, const void* p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*static_cast<const int32_t*>(p)));
    return acc;
  }
};

}  // namespace
}  // namespace orchard::simd
