// Every fast kernel against its scalar reference, on every ISA path this CPU runs, on awkward
// shapes: row counts that are not a multiple of the 16-row tile, a single row, a single token,
// token counts past the micro-kernel and token-block widths, contexts longer than a key tile.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/half.h"
#include "kernels/isa_kernels.h"
#include "kernels/kernels.h"
#include "kernels/packing.h"
#include "kernels/thread_pool.h"
#include "model/kv_cache.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

std::string isa_label(const ::testing::TestParamInfo<Isa>& info) { return std::string(isa_name(info.param)); }

// Byte offsets of the f16 scale fields in one block of `type`: random bytes elsewhere are valid
// quants, but scales must be finite and moderate.
std::vector<int> f16_fields(DType type) {
  switch (type) {
    case DType::Q4_0: case DType::Q8_0: case DType::Q5_0: case DType::IQ4_NL: case DType::IQ4_XS: return {0};
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::Q6_K: return {208};
    default: return {};
  }
}

struct RandomMatrix {
  std::vector<uint8_t> bytes;
  TensorRef ref;
};

RandomMatrix random_matrix(DType type, int64_t in, int64_t out, std::mt19937& rng) {
  RandomMatrix m;
  const DTypeTraits t = traits(type);
  m.bytes.resize(row_bytes(type, in) * static_cast<size_t>(out));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f), value(-1.0f, 1.0f);
  for (uint8_t& b : m.bytes) b = static_cast<uint8_t>(byte(rng));
  auto put_f16 = [&](size_t at, float v) {
    const uint16_t h = f32_to_f16(v);
    m.bytes[at] = static_cast<uint8_t>(h);
    m.bytes[at + 1] = static_cast<uint8_t>(h >> 8);
  };
  if (type == DType::F16) {
    for (size_t i = 0; i < m.bytes.size(); i += 2) put_f16(i, value(rng));
  } else if (type == DType::F32) {
    for (size_t i = 0; i < m.bytes.size(); i += 4) {
      const float v = value(rng);
      std::memcpy(&m.bytes[i], &v, 4);
    }
  } else {
    for (size_t block = 0; block < m.bytes.size(); block += t.block_bytes)
      for (int field : f16_fields(type)) put_f16(block + static_cast<size_t>(field), scale(rng));
  }
  m.ref = TensorRef{"w", type, {in, out}, m.bytes.data(), m.bytes.size()};
  return m;
}

std::vector<float> random_floats(size_t n, std::mt19937& rng, float range = 1.0f) {
  std::uniform_real_distribution<float> d(-range, range);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Round-to-nearest-even int8 quantization per block of 32, as the kernels define it (see
// QuantizedActivations): plain, or with the residual second int8 at 1/256 of the step.
std::vector<float> quantize_dequantize(const std::vector<float>& x, bool residual) {
  std::vector<float> out(x.size());
  for (size_t b = 0; b < x.size(); b += kBlock) {
    float amax = 0;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (int i = 0; i < kBlock; ++i) {
      const float scaled = x[b + i] * inv, q = std::nearbyint(scaled);
      const float lo = std::nearbyint(std::min((scaled - q) * 256.0f, 127.0f));
      out[b + i] = residual ? d / 256.0f * (256.0f * q + lo) : d * q;
    }
  }
  return out;
}

class FastKernels : public ::testing::TestWithParam<Isa> {};

TEST_P(FastKernels, ActivationQuantizationMatchesScalar) {
  std::mt19937 rng(1);
  const IsaKernels& k = isa_kernels(GetParam());
  // 37 blocks a token: whole groups of V::L blocks (quantize sums them together) and a part one.
  const int64_t n = 3, in = 37 * 32;
  std::vector<float> x = random_floats(n * in, rng, 3.0f);
  std::fill_n(x.begin() + 32, 32, 0.0f);  // an all-zero block
  for (bool residual : {false, true}) {
    std::vector<int8_t> qs(n * in), lo(n * in);
    std::vector<ActivationBlock> info(n * in / 32);
    QuantizedActivations q{n, in, in / 32, qs.data(), residual ? lo.data() : nullptr, info.data()};
    k.quantize(x.data(), 0, n, q);
    const std::vector<float> expect = quantize_dequantize(x, residual);
    // Element i of token t (layout [blocks, n, 32]).
    auto value = [&](int64_t t, int64_t i) {
      const int64_t at = q.at(t, i / 32) * 32 + i % 32;
      return residual ? 256 * qs[at] + lo[at] : qs[at];
    };
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < in; ++i) {
        const int64_t e = t * in + i;
        EXPECT_EQ(info[q.at(t, i / 32)].d * static_cast<float>(value(t, i)), expect[e]) << e;
        EXPECT_NEAR(expect[e], x[e], residual ? 3.0f / 127 / 256 : 3.0f / 127 / 2 + 1e-6f);
      }
    for (int64_t t = 0; t < n; ++t)
      for (int64_t b = 0; b < in / 32; ++b) {
        int32_t halves[2] = {0, 0};
        for (int i = 0; i < 32; ++i) halves[i / 16] += value(t, b * 32 + i);
        const ActivationBlock& a = info[q.at(t, b)];
        EXPECT_EQ(a.minus_8_second_half, -8 * halves[1]);
        EXPECT_EQ(a.minus_8_sum, -8 * (halves[0] + halves[1]));
        EXPECT_EQ(a.d_sum, a.d * static_cast<float>(halves[0] + halves[1]));
      }
  }
}

struct MatmulCase {
  DType type;
  int64_t in, out, n;
};

TEST_P(FastKernels, MatmulMatchesReference) {
  const Kernels& fast = fast_kernels(GetParam());
  ThreadPool pool(2);
  std::mt19937 rng(2);
  const std::vector<MatmulCase> cases = {
      {DType::Q4_0, 64, 1, 1},   {DType::Q4_0, 96, 17, 3},  {DType::Q4_0, 32, 40, 75},
      {DType::Q8_0, 64, 33, 1},  {DType::Q8_0, 160, 16, 9}, {DType::Q8_0, 32, 5, 70},
      {DType::Q4_K, 256, 1, 2},  {DType::Q4_K, 512, 23, 1}, {DType::Q4_K, 256, 48, 67},
      {DType::Q6_K, 256, 7, 1},  {DType::Q6_K, 512, 31, 5}, {DType::Q6_K, 256, 16, 66},
      {DType::F16, 40, 9, 3},    {DType::F32, 33, 5, 2},    {DType::Q5_K, 256, 3, 4},
      {DType::Q4_1, 64, 5, 2},   {DType::Q2_K, 256, 2, 1},  {DType::Q3_K, 256, 3, 2},
      // 5, 6 and 7 tokens: the micro-kernels of a speculative pass of 1 + 4, 5 or 6 drafts.
      {DType::Q4_0, 96, 20, 5},  {DType::Q8_0, 64, 33, 6},  {DType::Q4_K, 256, 9, 7},
      {DType::Q6_K, 256, 17, 5}, {DType::Q4_0, 64, 3, 7},   {DType::Q8_0, 32, 40, 13},
      // Rows long enough to run in several input chunks, more tiles than one weight panel,
      // several token blocks, and token counts that leave every tail micro-kernel.
      {DType::Q4_0, 4160, 350, 13}, {DType::Q4_K, 2560, 40, 203}, {DType::Q6_K, 2304, 17, 25},
      {DType::Q8_0, 2080, 20, 100},
      // Decode over long rows: the weights asked for in bursts of 8 blocks, 130 and 65 blocks
      // leaving a partial last burst.
      {DType::Q4_0, 4160, 35, 1},   {DType::Q8_0, 2080, 33, 2},
      // A batched step's 16 tokens: Q8_0 on one row vector (12 + 4) on one level, on two (6 + 6 +
      // 4) with the residual one; Q4_0 on two.
      {DType::Q8_0, 96, 35, 16},    {DType::Q4_0, 96, 35, 16},
      // Q5_0 (the fallback of K-quant files for rows of 896: Qwen2.5-0.5B): every micro-kernel.
      {DType::Q5_0, 32, 1, 1},      {DType::Q5_0, 96, 17, 3},     {DType::Q5_0, 64, 40, 75},
      {DType::Q5_0, 2080, 35, 1},   {DType::Q5_0, 4160, 33, 13},  {DType::Q5_0, 96, 20, 7},
      // Q5_K (Q5_K_M files): one token, a speculative pass, several token blocks and chunks.
      {DType::Q5_K, 512, 23, 1},    {DType::Q5_K, 256, 17, 7},    {DType::Q5_K, 2560, 40, 203},
      // Q4_1 and Q5_1 (a per-block min): one token, a speculative pass, token blocks and chunks.
      {DType::Q4_1, 2080, 35, 1},   {DType::Q4_1, 96, 20, 7},     {DType::Q4_1, 4160, 33, 13},
      {DType::Q5_1, 96, 17, 1},     {DType::Q5_1, 64, 40, 75},    {DType::Q5_1, 2080, 20, 100},
      // Q3_K (Q3_K_M files): one token over long rows, a speculative pass, token blocks and chunks.
      {DType::Q3_K, 2560, 35, 1},   {DType::Q3_K, 256, 17, 7},    {DType::Q3_K, 2304, 40, 203},
      // Q2_K (Q2_K files): likewise.
      {DType::Q2_K, 2560, 35, 1},   {DType::Q2_K, 256, 17, 7},    {DType::Q2_K, 2304, 40, 203},
      // IQ4_NL (the fallback of Q2_K/Q3_K files for rows of 896) and IQ4_XS: likewise.
      {DType::IQ4_NL, 32, 1, 1},    {DType::IQ4_NL, 2080, 35, 1}, {DType::IQ4_NL, 96, 20, 7},
      {DType::IQ4_NL, 4160, 33, 13}, {DType::IQ4_NL, 64, 40, 75},
      {DType::IQ4_XS, 2560, 35, 1}, {DType::IQ4_XS, 256, 17, 7},  {DType::IQ4_XS, 2304, 40, 203},
  };
  for (const MatmulCase& c : cases) {
    SCOPED_TRACE(std::string(dtype_name(c.type)) + " in " + std::to_string(c.in) + " out " +
                 std::to_string(c.out) + " n " + std::to_string(c.n));
    RandomMatrix w = random_matrix(c.type, c.in, c.out, rng);
    const std::vector<float> x = random_floats(c.n * c.in, rng);
    std::optional<PackedMatrix> packed;
    if (auto format = packed_format_for(c.type)) {
      packed = allocate_packed(w.ref, *format);
      pack_tiles(w.ref, *packed, 0, packed->tiles);
    }
    // Packed paths quantize activations, on two levels or, for a matrix measured to take it
    // (PackedMatrix::single_level), one: the reference gets the same quantized activations, so
    // the two differ only by float summation order.
    for (const bool single_level : {false, true}) {
      if (single_level && !packed) continue;
      SCOPED_TRACE(single_level ? "one level" : "two levels");
      if (packed) packed->single_level = single_level;
      const std::vector<float> x_ref = packed ? quantize_dequantize(x, /*residual=*/!single_level) : x;
      std::vector<float> expect(c.n * c.out), got(c.n * c.out, NAN), magnitude(c.n * c.out);
      reference_kernels().matmul({w.ref, nullptr}, x_ref.data(), c.n, expect.data(), pool);
      fast.matmul({w.ref, packed ? &*packed : nullptr}, x.data(), c.n, got.data(), pool);
      std::vector<float> row(c.in);
      for (int64_t o = 0; o < c.out; ++o) {
        dequantize_row(c.type, w.ref.row(o), row.data(), c.in);
        for (int64_t t = 0; t < c.n; ++t)
          for (int64_t i = 0; i < c.in; ++i) magnitude[t * c.out + o] += std::fabs(row[i] * x_ref[t * c.in + i]);
      }
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], expect[i], 2e-5f * magnitude[i] + 1e-6f) << "output " << i;
    }
  }
}

// An inf or NaN among a token's activations (a corrupt model's) has no int8 form: that token's
// outputs are NaN, on one level and on two, and the other tokens' are untouched.
TEST_P(FastKernels, NonFiniteActivationsGiveNaNOutputs) {
  const Kernels& fast = fast_kernels(GetParam());
  ThreadPool pool(2);
  std::mt19937 rng(12);
  for (const DType type :
       {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q3_K, DType::Q2_K,
        DType::IQ4_NL, DType::IQ4_XS}) {
    const int64_t in = 256, out = 21, n = 3;
    RandomMatrix w = random_matrix(type, in, out, rng);
    PackedMatrix packed = allocate_packed(w.ref, *packed_format_for(type));
    pack_tiles(w.ref, packed, 0, packed.tiles);
    std::vector<float> x = random_floats(n * in, rng);
    x[1 * in + 5] = INFINITY;
    x[2 * in + 200] = NAN;
    for (const bool single_level : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(type)) + (single_level ? " one level" : " two levels"));
      packed.single_level = single_level;
      std::vector<float> y(n * out, 0.0f);
      fast.matmul({w.ref, &packed}, x.data(), n, y.data(), pool);
      for (int64_t o = 0; o < out; ++o) {
        EXPECT_TRUE(std::isfinite(y[o])) << o;
        EXPECT_TRUE(std::isnan(y[out + o])) << o;
        EXPECT_TRUE(std::isnan(y[2 * out + o])) << o;
      }
    }
  }
}

// Weights that read one input (q, k, v) quantize it once and split their tiles together: the
// same outputs as one matmul each, bit for bit, with two threads splitting the tiles unevenly
// across the matrices; and with one matrix not packed (F16), each on its own path.
TEST_P(FastKernels, SharedInputMatmulsMatchSeparateOnes) {
  const Kernels& fast = fast_kernels(GetParam());
  ThreadPool pool(2);
  std::mt19937 rng(6);
  for (const DType third : {DType::Q8_0, DType::F16}) {
    const int64_t in = 96, n = 13;
    RandomMatrix a = random_matrix(DType::Q4_0, in, 40, rng), b = random_matrix(DType::Q8_0, in, 7, rng),
                 c = random_matrix(third, in, 23, rng);
    std::vector<PackedMatrix> packed;
    packed.reserve(3);
    std::vector<MatmulWeight> ws;
    for (RandomMatrix* m : {&a, &b, &c}) {
      const PackedMatrix* p = nullptr;
      if (auto format = packed_format_for(m->ref.type)) {
        packed.push_back(allocate_packed(m->ref, *format));
        pack_tiles(m->ref, packed.back(), 0, packed.back().tiles);
        p = &packed.back();
      }
      ws.push_back({m->ref, p});
    }
    const std::vector<float> x = random_floats(n * in, rng);
    std::vector<std::vector<float>> expect, got;
    for (const MatmulWeight& w : ws) {
      expect.emplace_back(n * w.ref.rows());
      got.emplace_back(n * w.ref.rows(), NAN);
      fast.matmul(w, x.data(), n, expect.back().data(), pool);
    }
    float* const outs[] = {got[0].data(), got[1].data(), got[2].data()};
    fast.matmul_shared_input(ws.data(), 3, x.data(), n, outs, pool);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got[i], expect[i]) << "matrix " << i << ", third " << dtype_name(third);
  }
}

TEST_P(FastKernels, AttentionMatchesReference) {
  const Kernels& fast = fast_kernels(GetParam());
  ThreadPool pool(2);
  std::mt19937 rng(3);
  // Head counts whose groups the two threads split unevenly (9 of 3), and one KV head shared by
  // more query heads than a tile holds (80 of 1, 40 a thread); head sizes off the vector width;
  // rows that share their key loads 1 to 8 at a time: decode groups of 3, 5, 6 and 7 (Qwen2.5-0.5B's),
  // and prefill tiles whose tokens all see a whole key tile (groups of 8).
  struct Case { int64_t head_dim, n_tokens, start, n_heads, n_kv; };
  for (const Case& c : {Case{64, 1, 0, 6, 2}, Case{96, 5, 3, 6, 2}, Case{8, 70, 0, 6, 2}, Case{64, 1, 150, 6, 2},
                        Case{16, 40, 90, 6, 2}, Case{200, 3, 70, 9, 3}, Case{24, 37, 5, 9, 3}, Case{64, 2, 80, 80, 1},
                        Case{64, 1, 100, 14, 2}, Case{96, 9, 20, 14, 2}, Case{32, 1, 40, 10, 2}, Case{64, 1, 100, 12, 2},
                        Case{64, 5, 150, 14, 2}}) {
    SCOPED_TRACE("head_dim " + std::to_string(c.head_dim) + " n " + std::to_string(c.n_tokens) + " start " +
                 std::to_string(c.start) + " heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv));
    const int64_t n_heads = c.n_heads, n_kv = c.n_kv, kv_dim = n_kv * c.head_dim, n_ctx = c.start + c.n_tokens;
    const std::vector<float> q = random_floats(c.n_tokens * n_heads * c.head_dim, rng, 2.0f);
    std::vector<float> k = random_floats(n_ctx * kv_dim, rng, 2.0f), v = random_floats(n_ctx * kv_dim, rng);
    std::vector<uint16_t> k16(k.size()), v16(v.size());
    for (size_t i = 0; i < k.size(); ++i) {
      k16[i] = f32_to_f16(k[i]);
      v16[i] = f32_to_f16(v[i]);
      k[i] = f16_to_f32(k16[i]);  // the reference sees the same rounded cache
      v[i] = f16_to_f32(v16[i]);
    }
    std::vector<float> expect(q.size());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    AttentionBatch a{q.data(), k.data(), v.data(), KvType::f32, c.n_tokens, c.start, n_heads, n_kv,
                     c.head_dim, scale, expect.data()};
    reference_kernels().attention({&a, 1}, pool);
    for (const KvType type : {KvType::f16, KvType::f32}) {
      SCOPED_TRACE(type == KvType::f16 ? "f16 cache" : "f32 cache");
      std::vector<float> got(q.size(), NAN);
      AttentionBatch rows = a;  // keys laid out as rows
      rows.keys = type == KvType::f16 ? static_cast<const void*>(k16.data()) : k.data();
      rows.values = type == KvType::f16 ? static_cast<const void*>(v16.data()) : v.data();
      rows.kv_type = type;
      rows.out = got.data();
      fast.attention({&rows, 1}, pool);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], expect[i], 1e-5f) << i;

      // KvCache's layout: keys in blocks, read in place (a last block part-filled).
      KvCache cache(1, n_ctx, n_kv, c.head_dim, type);
      for (int64_t p = 0; p < n_ctx; ++p) cache.store(0, p, &k[p * kv_dim], &v[p * kv_dim]);
      const AttentionBatch blocks{q.data(), cache.keys(0), cache.values(0), type, c.n_tokens, c.start, n_heads, n_kv,
                                  c.head_dim, scale, got.data(), nullptr, nullptr, cache.position_stride(),
                                  cache.head_stride(), cache.key_head_stride()};
      std::fill(got.begin(), got.end(), NAN);
      fast.attention({&blocks, 1}, pool);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], expect[i], 1e-5f) << "in blocks, " << i;
    }
  }
}

// The sequences of a batched pass go to the kernel together (one task list over every sequence's
// heads and row tiles): each sequence's output is bitwise what it gets alone, whatever the mix of
// decode rows and prompts, and matches the reference.
TEST_P(FastKernels, AttentionOfSeveralSequencesInOneCallIsEachAlone) {
  const Kernels& fast = fast_kernels(GetParam());
  ThreadPool pool(2);
  std::mt19937 rng(11);
  const int64_t n_heads = 7, n_kv = 1, hd = 24, kv_dim = n_kv * hd;  // 7 heads: no even split over 2 threads
  struct Seq { int64_t n_tokens, start; };
  const std::vector<Seq> seqs = {{1, 0}, {1, 37}, {45, 0}, {3, 9}, {1, 100}, {33, 20}};
  std::vector<std::vector<float>> q, k, v, alone, together, expect;
  std::vector<KvCache> caches;  // f16, keys in blocks: the transformer's layout
  std::vector<AttentionBatch> batches;
  for (const Seq& s : seqs) {
    const int64_t n_ctx = s.start + s.n_tokens;
    q.push_back(random_floats(s.n_tokens * n_heads * hd, rng, 2.0f));
    k.push_back(random_floats(n_ctx * kv_dim, rng, 2.0f));
    v.push_back(random_floats(n_ctx * kv_dim, rng));
    for (size_t i = 0; i < k.back().size(); ++i) {  // the reference sees the same rounded cache
      k.back()[i] = f16_to_f32(f32_to_f16(k.back()[i])), v.back()[i] = f16_to_f32(f32_to_f16(v.back()[i]));
    }
    caches.emplace_back(1, n_ctx, n_kv, hd, KvType::f16);
    for (int64_t p = 0; p < n_ctx; ++p) caches.back().store(0, p, &k.back()[p * kv_dim], &v.back()[p * kv_dim]);
    alone.emplace_back(q.back().size(), NAN);
    together.emplace_back(q.back().size(), NAN);
    expect.emplace_back(q.back().size(), NAN);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t i = 0; i < seqs.size(); ++i) {
    const KvCache& cache = caches[i];
    AttentionBatch a{q[i].data(), cache.keys(0), cache.values(0), KvType::f16, seqs[i].n_tokens, seqs[i].start,
                     n_heads, n_kv, hd, scale, alone[i].data(), nullptr, nullptr, cache.position_stride(),
                     cache.head_stride(), cache.key_head_stride()};
    fast.attention({&a, 1}, pool);
    a.out = together[i].data();
    batches.push_back(a);
    AttentionBatch r{q[i].data(), k[i].data(), v[i].data(), KvType::f32, seqs[i].n_tokens, seqs[i].start,
                     n_heads, n_kv, hd, scale, expect[i].data()};
    reference_kernels().attention({&r, 1}, pool);
  }
  fast.attention(batches, pool);
  for (size_t i = 0; i < seqs.size(); ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i));
    for (size_t j = 0; j < alone[i].size(); ++j) {
      ASSERT_EQ(std::memcmp(&together[i][j], &alone[i][j], sizeof(float)), 0) << j;
      ASSERT_NEAR(together[i][j], expect[i][j], 1e-5f) << j;
    }
  }
}

// The int8 KV cache: rows stored with a scale per position and KV head; the fast attention reads
// it as the reference does, and each element is within half a step of what was stored.
TEST_P(FastKernels, AttentionOverInt8CacheMatchesReference) {
  const Kernels& fast = fast_kernels(GetParam());
  ThreadPool pool(2);
  std::mt19937 rng(5);
  struct Case { int64_t head_dim, n_tokens, start; };
  for (const Case& c : {Case{64, 1, 0}, Case{96, 5, 3}, Case{8, 70, 0}, Case{64, 1, 150}, Case{20, 40, 90}}) {
    SCOPED_TRACE("head_dim " + std::to_string(c.head_dim) + " n " + std::to_string(c.n_tokens) +
                 " start " + std::to_string(c.start));
    const int64_t n_heads = 6, n_kv = 2, kv_dim = n_kv * c.head_dim, n_ctx = c.start + c.n_tokens;
    const std::vector<float> q = random_floats(c.n_tokens * n_heads * c.head_dim, rng, 2.0f);
    const std::vector<float> k = random_floats(n_ctx * kv_dim, rng, 2.0f), v = random_floats(n_ctx * kv_dim, rng);
    KvCache cache(1, n_ctx, n_kv, c.head_dim, KvType::q8);
    for (int64_t p = 0; p < n_ctx; ++p) cache.store(0, p, &k[p * kv_dim], &v[p * kv_dim]);
    const int64_t key_positions = (n_ctx + 15) / 16 * 16;  // whole blocks of 16
    EXPECT_EQ(cache.bytes(), static_cast<size_t>((key_positions + n_ctx) * kv_dim + 2 * n_ctx * n_kv * 4));
    EXPECT_EQ(cache.bytes(), KvCache::bytes_for(1, n_ctx, n_kv, c.head_dim, KvType::q8));
    std::vector<float> expect(q.size()), got(q.size(), NAN);
    AttentionBatch a{q.data(), cache.keys(0), cache.values(0), KvType::q8, c.n_tokens, c.start, n_heads, n_kv,
                     c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim)), expect.data(),
                     cache.key_scales(0), cache.value_scales(0), cache.position_stride(), cache.head_stride(),
                     cache.key_head_stride()};
    std::vector<float> row(c.head_dim);
    for (int64_t p = 0; p < n_ctx; ++p)
      for (int64_t h = 0; h < n_kv; ++h) {
        key_to_f32(a, p, h, row.data());
        const float step = cache.key_scales(0)[p * n_kv + h];
        for (int64_t d = 0; d < c.head_dim; ++d) ASSERT_LE(std::fabs(row[d] - k[p * kv_dim + h * c.head_dim + d]), 0.5f * step * 1.0001f);
      }
    reference_kernels().attention({&a, 1}, pool);
    a.out = got.data();
    fast.attention({&a, 1}, pool);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], expect[i], 1e-5f) << i;
  }
}

TEST_P(FastKernels, ElementwiseMatchReference) {
  const Kernels& fast = fast_kernels(GetParam());
  ThreadPool pool(2);
  std::mt19937 rng(4);
  for (int64_t n : {1, 7, 16, 37, 9000}) {
    const std::vector<float> x = random_floats(n, rng, 4.0f), weight = random_floats(n, rng);
    std::vector<float> expect(n), got(n);
    reference_kernels().rmsnorm(x.data(), weight.data(), n, 1e-6f, expect.data());
    fast.rmsnorm(x.data(), weight.data(), n, 1e-6f, got.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], expect[i], 1e-5f * (1 + std::fabs(expect[i])));

    std::vector<float> gate = random_floats(n, rng, 20.0f), gate2 = gate;
    const std::vector<float> up = random_floats(n, rng);
    reference_kernels().swiglu(gate.data(), up.data(), n, pool);
    fast.swiglu(gate2.data(), up.data(), n, pool);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(gate2[i], gate[i], 1e-5f * (1 + std::fabs(gate[i])));
  }
}

// The sampler's softmax numerators: logits spread over 60 (so that some weights underflow),
// masked (-inf) entries, lengths off the vector width and past one 1024-value run.
TEST_P(FastKernels, ExpWeightsMatchReference) {
  const Kernels& fast = fast_kernels(GetParam());
  std::mt19937 rng(5);
  for (int64_t n : {1, 7, 16, 37, 1024, 1025, 151936}) {
    std::vector<float> x = random_floats(n, rng, 30.0f);
    for (int64_t i = 1; i < n; i += 5) x[i] = -INFINITY;
    const float best = *std::max_element(x.begin(), x.end());
    for (const float scale : {1.0f, 0.5f, 3.0f}) {
      std::vector<float> expect(n), got(n);
      const double expect_total = reference_kernels().exp_weights(x.data(), n, best, scale, expect.data());
      const double total = fast.exp_weights(x.data(), n, best, scale, got.data());
      ASSERT_NEAR(total, expect_total, 1e-5 * expect_total) << n;
      for (int64_t i = 0; i < n; ++i) {
        if (x[i] == -INFINITY) ASSERT_LT(got[i], 2e-38f) << i;
        else ASSERT_NEAR(got[i], expect[i], 5e-6f * expect[i] + 1e-37f) << i;  // float arguments up to 60
      }
    }
  }
}

// The KV cache's float16 rounding: bit for bit the scalar conversion, ties, subnormals, values
// that round to infinity and infinities included (NaNs only need to stay NaN).
TEST_P(FastKernels, ToF16MatchesScalarRounding) {
  const Kernels& fast = fast_kernels(GetParam());
  std::mt19937 rng(8);
  std::vector<float> x = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.0f, 65520.0f, 1e6f, -1e6f, INFINITY, -INFINITY,
                          5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f, 6.09e-5f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, NAN};
  std::uniform_real_distribution<float> exponent(-30.0f, 17.0f);
  std::uniform_int_distribution<int> sign(0, 1);
  while (x.size() < 1037) x.push_back((sign(rng) ? -1.0f : 1.0f) * std::exp2(exponent(rng)));
  std::vector<uint16_t> got(x.size());
  fast.to_f16(x.data(), static_cast<int64_t>(x.size()), got.data());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) EXPECT_TRUE(std::isnan(f16_to_f32(got[i])));
    else ASSERT_EQ(got[i], f32_to_f16(x[i])) << "x " << x[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, FastKernels, ::testing::ValuesIn(supported_isas()), isa_label);

TEST(Packing, RowsDecodeBitIdenticalToDequantize) {
  std::mt19937 rng(5);
  for (DType type : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K,
                     DType::Q6_K, DType::Q3_K, DType::Q2_K, DType::IQ4_NL, DType::IQ4_XS}) {
    const int64_t in = 512, out = 21;
    RandomMatrix w = random_matrix(type, in, out, rng);
    PackedMatrix p = allocate_packed(w.ref, *packed_format_for(type));
    pack_tiles(w.ref, p, 0, p.tiles);
    std::vector<float> expect(in), got(in);
    for (int64_t r = 0; r < out; ++r) {
      dequantize_row(type, w.ref.row(r), expect.data(), in);
      packed_row_to_f32(p, r, got.data());
      ASSERT_EQ(0, std::memcmp(expect.data(), got.data(), sizeof(float) * in)) << dtype_name(type) << " row " << r;
    }
  }
}

// Weight memory comes zeroed and writable to its last byte; from 2 MiB up it starts on a 2 MiB
// boundary (huge pages cover whole aligned 2 MiB ranges only), and a slice of it kept alone
// keeps the whole allocation alive.
TEST(Packing, WeightMemoryIsZeroedAndAlignedForHugePages) {
  for (size_t bytes : {size_t{1}, size_t{4096}, size_t{3} << 20, (size_t{5} << 20) + 123}) {
    std::shared_ptr<uint8_t> slice;
    {
      const std::shared_ptr<uint8_t> memory = allocate_weight_memory(bytes);
      ASSERT_NE(memory.get(), nullptr);
      if (bytes >= (size_t{2} << 20)) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(memory.get()) % (size_t{2} << 20), 0u) << bytes;
      }
      EXPECT_EQ(memory.get()[0], 0);
      EXPECT_EQ(memory.get()[bytes - 1], 0);
      EXPECT_EQ(memory.get()[bytes / 2], 0);
      memory.get()[bytes - 1] = 7;
      slice = std::shared_ptr<uint8_t>(memory, memory.get() + bytes - 1);
    }
    EXPECT_EQ(*slice, 7) << bytes;
  }
}

TEST(ThreadPool, EveryIndexOnceAcrossManyRuns) {
  ThreadPool pool(3);
  for (int run = 0; run < 200; ++run) {
    const int64_t n = run % 17;
    const int pieces = run % 3 == 0 ? 1 : run % 3 == 1 ? 4 : 8;  // per thread
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> calls{0};
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      ASSERT_LT(b, e);
      ++calls;
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    }, pieces);
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    if (pieces == 1) {
      EXPECT_LE(calls.load(), std::min<int64_t>(n, 3)) << "n " << n;
    }
  }
}

// Pieces are at most 1/pieces_per_thread of a thread's range, never cross into another thread's
// range, and shrink as a range runs out: the last piece taken of each range is one index (so the
// threads finish within about one index's work of each other).
TEST(ThreadPool, PiecesShrinkToOneIndexAtTheEndOfEachRange) {
  ThreadPool pool(2);
  constexpr int64_t n = 128, half = n / 2;  // 8 pieces per thread: at most 8 indices each
  for (int run = 0; run < 20; ++run) {
    std::mutex mutex;
    std::vector<std::pair<int64_t, int64_t>> taken;
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lock(mutex);
      taken.emplace_back(b, e);
    }, 8);
    for (int64_t range = 0; range < 2; ++range) {
      std::vector<int64_t> sizes;
      for (auto [b, e] : taken) {
        ASSERT_EQ(b / half, (e - 1) / half) << "piece [" << b << ", " << e << ") crosses two ranges";
        if (b / half == range) sizes.push_back(e - b);
      }
      ASSERT_FALSE(sizes.empty());
      EXPECT_EQ(*std::min_element(sizes.begin(), sizes.end()), 1) << "range " << range << ": no piece of one index";
      for (int64_t size : sizes) EXPECT_LE(size, 8) << "range " << range;
    }
  }
}

// A thread held up in its first piece (as by another process on its core) does not hold up the
// rest of its range: another thread takes those pieces from the back, and a thread's own
// pieces run in order.
TEST(ThreadPool, PiecesOfAHeldUpThreadAreTakenByTheOthers) {
  ThreadPool pool(2);
  constexpr int64_t n = 16;  // 8 pieces per thread: thread 0 owns [0, 8), thread 1 [8, 16)
  std::atomic<bool> taken_by_other{false}, caller_started{false};
  std::vector<int64_t> order_on_caller, taken_from_caller;
  const std::thread::id caller = std::this_thread::get_id();
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    ASSERT_EQ(e, b + 1);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    if (std::this_thread::get_id() == caller) {
      order_on_caller.push_back(b);
      caller_started = true;
      // Wait (at most 10 s) for the other thread to take one of this range's pieces.
      while (b == 0 && !taken_by_other && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    } else {
      // The caller takes its first piece before the other thread starts: a caller descheduled
      // that long (seen under qemu) would otherwise find every piece of its range taken.
      while (!caller_started && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
      if (b < 8) {
        taken_from_caller.push_back(b);
        taken_by_other = true;
      }
    }
  }, 8);
  EXPECT_TRUE(taken_by_other) << "the other thread never took a piece of the held-up thread's range";
  ASSERT_FALSE(taken_from_caller.empty());
  for (size_t i = 0; i < taken_from_caller.size(); ++i)
    EXPECT_EQ(taken_from_caller[i], 7 - static_cast<int64_t>(i)) << "taken from the back of the range";
  ASSERT_FALSE(order_on_caller.empty());
  EXPECT_EQ(order_on_caller.front(), 0);
  for (size_t i = 1; i < order_on_caller.size(); ++i)
    if (order_on_caller[i] < 8) {
      EXPECT_EQ(order_on_caller[i], order_on_caller[i - 1] + 1) << "own pieces in order";
    }
}

}  // namespace
}  // namespace orchard
