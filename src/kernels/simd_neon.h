// Vector traits for 64-bit ARM NEON: 4 lanes of int32 / float. `dpbusd` (unsigned weights times
// signed activations, 4 per lane) is one USDOT where the CPU has the int8 matrix-multiply
// extension (i8mm); with only the dot-product extension it is an SDOT of the weights shifted to
// signed (u - 128) plus 128 times the activations' sum, which is exact. Include only from files
// built with the matching -march flags.
#pragma once
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

namespace orchard::simd {
namespace {

struct NeonDotprod {
  static constexpr int L = 4;
  static constexpr int kFloatRegisters = 32;  // vector registers of L floats
  static constexpr int kMaxTokens = 8;  // 32 vector registers: 8 int32 + 8 float accumulators and the weights
  static constexpr int kRowVectors = 1;
  using I = int32x4_t;
  using F = float32x4_t;

  static I izero() { return vdupq_n_s32(0); }
  static I load(const void* p) { return vreinterpretq_s32_u8(vld1q_u8(static_cast<const uint8_t*>(p))); }
  static I and_(I a, I b) { return vandq_s32(a, b); }
  static I or_(I a, I b) { return vorrq_s32(a, b); }
  template <int n> static I srli(I a) { return vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(a), n)); }
  template <int n> static I slli(I a) { return vshlq_n_s32(a, n); }
  static I set1_8(uint8_t v) { return vreinterpretq_s32_u8(vdupq_n_u8(v)); }
  static I set1(int32_t v) { return vdupq_n_s32(v); }
  static I bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return vdupq_n_s32(v);
  }
  static I add(I a, I b) { return vaddq_s32(a, b); }
  // The 16 bytes at p, and each byte of idx (0..15) looked up in them.
  static I table16(const void* p) { return load(p); }
  static I lookup16(I table, I idx) {
    return vreinterpretq_s32_u8(vqtbl1q_u8(vreinterpretq_u8_s32(table), vreinterpretq_u8_s32(idx)));
  }
  static I sub(I a, I b) { return vsubq_s32(a, b); }
  // acc[l] += sum_{i<4} u8(u.byte[4l+i]) * s8(s.byte[4l+i])
  static I dpbusd(I acc, I u, I s) {
    const int8x16_t u_signed = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_s32(u), vdupq_n_u8(0x80)));
    const int8x16_t sv = vreinterpretq_s8_s32(s);
    const int32x4_t s_sums = vdotq_s32(vdupq_n_s32(0), vdupq_n_s8(1), sv);
    return vaddq_s32(vdotq_s32(acc, u_signed, sv), vshlq_n_s32(s_sums, 7));
  }
  // dpbusd(acc, u, bcast4(p)).
  static I dpbusd_bcast4(I acc, I u, const void* p) { return dpbusd(acc, u, bcast4(p)); }
  static I cvt_round(F a) { return vcvtnq_s32_f32(a); }  // nearest, ties to even
  static void store_i8(int8_t* p, I a) {
    const int8x8_t narrow = vqmovn_s16(vcombine_s16(vqmovn_s32(a), vdup_n_s16(0)));
    int32_t four;
    std::memcpy(&four, &narrow, 4);
    std::memcpy(p, &four, 4);
  }
  static F as_float(I a) { return vreinterpretq_f32_s32(a); }

  static F fzero() { return vdupq_n_f32(0.0f); }
  static F fset1(float v) { return vdupq_n_f32(v); }
  static F fload(const float* p) { return vld1q_f32(p); }
  static void fstore(float* p, F a) { vst1q_f32(p, a); }
  static F fload_n(const float* p, int n) {
    float v[L] = {};
    std::memcpy(v, p, sizeof(float) * static_cast<size_t>(n));
    return vld1q_f32(v);
  }
  static void fstore_n(float* p, F a, int n) {
    float v[L];
    vst1q_f32(v, a);
    std::memcpy(p, v, sizeof(float) * static_cast<size_t>(n));
  }
  static F cvt(I a) { return vcvtq_f32_s32(a); }
  static F fadd(F a, F b) { return vaddq_f32(a, b); }
  static F fsub(F a, F b) { return vsubq_f32(a, b); }
  static F fmul(F a, F b) { return vmulq_f32(a, b); }
  static F fdiv(F a, F b) { return vdivq_f32(a, b); }
  static F fma(F a, F b, F c) { return vfmaq_f32(c, a, b); }     // a*b + c
  static F fnmadd(F a, F b, F c) { return vfmsq_f32(c, a, b); }  // c - a*b
  static F fmax(F a, F b) { return vmaxq_f32(a, b); }
  static F fmin(F a, F b) { return vminq_f32(a, b); }
  static F fabs(F a) { return vabsq_f32(a); }
  static float freduce(F a) { return vaddvq_f32(a); }
  static float freduce_max(F a) { return vmaxvq_f32(a); }
  // Lane j of the result: the sum of v[j]'s lanes.
  static F freduce_each(const F* v) { return vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3])); }
  static F load_f16(const void* p) {
    uint16_t h[L];
    std::memcpy(h, p, sizeof h);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
  }
  static void store_f16(void* p, F a) {
    const uint16x4_t h = vreinterpret_u16_f16(vcvt_f16_f32(a));
    std::memcpy(p, &h, sizeof h);
  }
  static F load_bf16(const void* p) {
    uint16_t h[L];
    std::memcpy(h, p, sizeof h);
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(h), 16));
  }
  static F load_u8(const void* p) {
    uint8_t b[8] = {};
    std::memcpy(b, p, L);
    return vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vld1_u8(b)))));
  }
  static F load_s8(const void* p) {
    int8_t b[8] = {};
    std::memcpy(b, p, L);
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vld1_s8(b)))));
  }
};

#if defined(__ARM_FEATURE_MATMUL_INT8)
struct NeonI8mm : NeonDotprod {
  static I dpbusd(I acc, I u, I s) {
    return vusdotq_s32(acc, vreinterpretq_u8_s32(u), vreinterpretq_s8_s32(s));
  }
  static I dpbusd_bcast4(I acc, I u, const void* p) { return dpbusd(acc, u, bcast4(p)); }
};
#endif

}  // namespace
}  // namespace orchard::simd
