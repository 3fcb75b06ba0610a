// Portable vector traits: 8 lanes as plain arrays, for CPUs without a hand-written path (and
// for checking the templates themselves). The compiler vectorizes what it can.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "base/half.h"

namespace orchard::simd {
namespace {

struct Generic {
  static constexpr int L = 8;
  static constexpr int kFloatRegisters = 16;  // vector registers of L floats
  static constexpr int kMaxTokens = 4;
  static constexpr int kRowVectors = 1;
  struct I { int32_t v[L]; };
  struct F { float v[L]; };

  template <typename Op> static I imap(I a, I b, Op op) {
    I r;
    for (int l = 0; l < L; ++l) r.v[l] = op(a.v[l], b.v[l]);
    return r;
  }
  template <typename Op> static F fmap(F a, F b, Op op) {
    F r;
    for (int l = 0; l < L; ++l) r.v[l] = op(a.v[l], b.v[l]);
    return r;
  }

  static I izero() { return I{}; }
  static I load(const void* p) {
    I r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static I and_(I a, I b) { return imap(a, b, [](int32_t x, int32_t y) { return x & y; }); }
  static I or_(I a, I b) { return imap(a, b, [](int32_t x, int32_t y) { return x | y; }); }
  template <int n> static I srli(I a) {
    for (int32_t& x : a.v) x = static_cast<int32_t>(static_cast<uint32_t>(x) >> n);
    return a;
  }
  template <int n> static I slli(I a) {
    for (int32_t& x : a.v) x = static_cast<int32_t>(static_cast<uint32_t>(x) << n);
    return a;
  }
  static I set1_8(uint8_t v) { return set1(static_cast<int32_t>(v * 0x01010101u)); }
  static I set1(int32_t v) {
    I r;
    for (int32_t& x : r.v) x = v;
    return r;
  }
  static I bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return set1(v);
  }
  static I add(I a, I b) { return imap(a, b, [](int32_t x, int32_t y) { return x + y; }); }
  static I sub(I a, I b) { return imap(a, b, [](int32_t x, int32_t y) { return x - y; }); }
  // The 16 bytes at p (in the first 4 lanes), and each byte of idx (0..15) looked up in them.
  static I table16(const void* p) {
    I r{};
    std::memcpy(r.v, p, 16);
    return r;
  }
  static I lookup16(I table, I idx) {
    uint8_t t[sizeof(table.v)], b[sizeof(idx.v)];
    std::memcpy(t, table.v, sizeof(t));
    std::memcpy(b, idx.v, sizeof(b));
    for (uint8_t& x : b) x = t[x & 0x0f];
    std::memcpy(idx.v, b, sizeof(b));
    return idx;
  }
  static I dpbusd(I acc, I u, I s) {
    for (int l = 0; l < L; ++l) {
      uint8_t ub[4];
      int8_t sb[4];
      std::memcpy(ub, &u.v[l], 4);
      std::memcpy(sb, &s.v[l], 4);
      for (int i = 0; i < 4; ++i) acc.v[l] += ub[i] * sb[i];
    }
    return acc;
  }
  // dpbusd(acc, u, bcast4(p)): one instruction where the ISA broadcasts from memory.
  static I dpbusd_bcast4(I acc, I u, const void* p) { return dpbusd(acc, u, bcast4(p)); }
  static I cvt_round(F a) {
    I r;
    for (int l = 0; l < L; ++l) r.v[l] = static_cast<int32_t>(std::nearbyint(a.v[l]));
    return r;
  }
  static void store_i8(int8_t* p, I a) {
    for (int l = 0; l < L; ++l) p[l] = static_cast<int8_t>(a.v[l] > 127 ? 127 : a.v[l] < -128 ? -128 : a.v[l]);
  }
  static F as_float(I a) {
    F r;
    std::memcpy(r.v, a.v, sizeof(r.v));
    return r;
  }

  static F fzero() { return F{}; }
  static F fset1(float v) {
    F r;
    for (float& x : r.v) x = v;
    return r;
  }
  static F fload(const float* p) {
    F r;
    std::memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static void fstore(float* p, F a) { std::memcpy(p, a.v, sizeof(a.v)); }
  static F fload_n(const float* p, int n) {
    F r{};
    std::memcpy(r.v, p, sizeof(float) * static_cast<size_t>(n));
    return r;
  }
  static void fstore_n(float* p, F a, int n) { std::memcpy(p, a.v, sizeof(float) * static_cast<size_t>(n)); }
  static F cvt(I a) {
    F r;
    for (int l = 0; l < L; ++l) r.v[l] = static_cast<float>(a.v[l]);
    return r;
  }
  static F fadd(F a, F b) { return fmap(a, b, [](float x, float y) { return x + y; }); }
  static F fsub(F a, F b) { return fmap(a, b, [](float x, float y) { return x - y; }); }
  static F fmul(F a, F b) { return fmap(a, b, [](float x, float y) { return x * y; }); }
  static F fdiv(F a, F b) { return fmap(a, b, [](float x, float y) { return x / y; }); }
  static F fma(F a, F b, F c) {
    for (int l = 0; l < L; ++l) c.v[l] = std::fma(a.v[l], b.v[l], c.v[l]);
    return c;
  }
  static F fnmadd(F a, F b, F c) {
    for (int l = 0; l < L; ++l) c.v[l] = std::fma(-a.v[l], b.v[l], c.v[l]);
    return c;
  }
  static F fmax(F a, F b) { return fmap(a, b, [](float x, float y) { return x > y ? x : y; }); }
  static F fmin(F a, F b) { return fmap(a, b, [](float x, float y) { return x < y ? x : y; }); }
  static F fabs(F a) {
    for (float& x : a.v) x = std::fabs(x);
    return a;
  }
  static float freduce(F a) {
    float s = 0;
    for (float x : a.v) s += x;
    return s;
  }
  static float freduce_max(F a) {
    float m = a.v[0];
    for (float x : a.v) m = x > m ? x : m;
    return m;
  }
  // Lane j of the result: the sum of v[j]'s lanes.
  static F freduce_each(const F* v) {
    F r;
    for (int j = 0; j < L; ++j) r.v[j] = freduce(v[j]);
    return r;
  }
  static F load_f16(const void* p) {
    uint16_t h[L];
    std::memcpy(h, p, sizeof(h));
    F r;
    for (int l = 0; l < L; ++l) r.v[l] = f16_to_f32(h[l]);
    return r;
  }
  static void store_f16(void* p, F a) {
    uint16_t h[L];
    for (int l = 0; l < L; ++l) h[l] = f32_to_f16(a.v[l]);
    std::memcpy(p, h, sizeof(h));
  }
  static F load_bf16(const void* p) {
    uint16_t h[L];
    std::memcpy(h, p, sizeof(h));
    F r;
    for (int l = 0; l < L; ++l) r.v[l] = bf16_to_f32(h[l]);
    return r;
  }
  static F load_u8(const void* p) {
    const auto* b = static_cast<const uint8_t*>(p);
    F r;
    for (int l = 0; l < L; ++l) r.v[l] = b[l];
    return r;
  }
  static F load_s8(const void* p) {
    const auto* b = static_cast<const int8_t*>(p);
    F r;
    for (int l = 0; l < L; ++l) r.v[l] = b[l];
    return r;
  }
};

}  // namespace
}  // namespace orchard::simd
