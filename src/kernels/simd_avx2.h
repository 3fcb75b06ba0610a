// Vector traits for AVX2 + FMA + F16C: 8 lanes. A 16-row weight tile is processed as two halves.
// Include only from files built with those flags.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace orchard::simd {
namespace {

struct Avx2 {
  static constexpr int L = 8;
  static constexpr int kFloatRegisters = 16;  // vector registers of L floats
  static constexpr int kMaxTokens = 4;  // 16 registers: 4 accumulators + 8 weight vectors
  static constexpr int kRowVectors = 1;  // per micro-kernel (packed_matmul_impl.h)
  using I = __m256i;
  using F = __m256;

  static I izero() { return _mm256_setzero_si256(); }
  static I load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static I or_(I a, I b) { return _mm256_or_si256(a, b); }
  template <int n> static I srli(I a) { return _mm256_srli_epi32(a, n); }
  template <int n> static I slli(I a) { return _mm256_slli_epi32(a, n); }
  static I set1_8(uint8_t v) { return _mm256_set1_epi8(static_cast<char>(v)); }
  static I set1(int32_t v) { return _mm256_set1_epi32(v); }
  static I bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub(I a, I b) { return _mm256_sub_epi32(a, b); }
  // 16 bytes repeated in every 128-bit lane, and each byte of idx (0..15) looked up in them.
  static I table16(const void* p) { return _mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
  static I lookup16(I table, I idx) { return _mm256_shuffle_epi8(table, idx); }
  static I dpbusd(I acc, I u, I s) {
    const I even_mask = _mm256_set1_epi32(0x00ff00ff);
    const I u_even = _mm256_and_si256(u, even_mask), u_odd = _mm256_srli_epi16(u, 8);
    const I s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), s_odd = _mm256_srai_epi16(s, 8);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even),
                                                  _mm256_madd_epi16(u_odd, s_odd)));
  }
  // dpbusd(acc, u, bcast4(p)): one instruction where the ISA broadcasts from memory.
  static I dpbusd_bcast4(I acc, I u, const void* p) { return dpbusd(acc, u, bcast4(p)); }
  static I cvt_round(F a) { return _mm256_cvtps_epi32(a); }
  static void store_i8(int8_t* p, I a) {
    // int32 -> int16 -> int8 with saturation; packs works within 128-bit lanes, so reorder.
    const __m128i lo = _mm256_castsi256_si128(a), hi = _mm256_extracti128_si256(a, 1);
    const __m128i w = _mm_packs_epi32(lo, hi);
    const __m128i b = _mm_packs_epi16(w, w);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
  }
  static F as_float(I a) { return _mm256_castsi256_ps(a); }

  static F fzero() { return _mm256_setzero_ps(); }
  static F fset1(float v) { return _mm256_set1_ps(v); }
  static F fload(const float* p) { return _mm256_loadu_ps(p); }
  static void fstore(float* p, F a) { _mm256_storeu_ps(p, a); }
  static I tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F fload_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static void fstore_n(float* p, F a, int n) { _mm256_maskstore_ps(p, tail_mask(n), a); }
  static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static F fadd(F a, F b) { return _mm256_add_ps(a, b); }
  static F fsub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F fmul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fdiv(F a, F b) { return _mm256_div_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static F fmax(F a, F b) { return _mm256_max_ps(a, b); }
  static F fmin(F a, F b) { return _mm256_min_ps(a, b); }
  static F fabs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static float freduce(F a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float freduce_max(F a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Lane j of the result: the sum of v[j]'s lanes.
  static F freduce_each(const F* v) {
    // Per 128-bit half: the sums of v[0..3] (and v[4..7]) over that half's lanes.
    const F low = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const F high = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31));
  }
  static F load_f16(const void* p) { return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
  static void store_f16(void* p, F a) {
    _mm_storeu_si128(static_cast<__m128i*>(p), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
  }
  static F load_bf16(const void* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))), 16));
  }
  static F load_u8(const void* p) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p)))); }
  static F load_s8(const void* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p)))); }
};

}  // namespace
}  // namespace orchard::simd
