// The compact teacher top-k store (issue 18, "Storage"): bytes per token at k = 20 on Qwen2.5's
// 151,936-token vocabulary, the KD loss from decoded rows against the loss from the raw float64
// log-probabilities, the decoded values against the quantizer's documented error bound, the exact
// bits of a row written by hand from the format's description, every refusal by its message, and a
// fuzz loop (random, truncated and bit-flipped encodings: only success or orchard::Error).
#include "train/teacher_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "test_paths.h"
#include "train/loss.h"

namespace orchard::train {
namespace {

constexpr int64_t kQwenVocab = 151936;
constexpr int64_t kTopK = 20;

// Rows of a teacher: the full logits [n, V] (kept for students built from them), and the top k of
// each row's log-softmax in float64, in rank order as an API returns them.
struct RawRows {
  int64_t n = 0, V = 0, k = 0;
  std::vector<float> logits;
  std::vector<int32_t> ids;
  std::vector<double> logprobs;
};

void add_top_k(RawRows& raw, const float* z) {
  double max = z[0];
  for (int64_t j = 1; j < raw.V; ++j) max = std::max(max, double{z[j]});
  double sum = 0;
  for (int64_t j = 0; j < raw.V; ++j) sum += std::exp(double{z[j]} - max);
  const double lse = max + std::log(sum);
  std::vector<int32_t> order(raw.V);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + raw.k, order.end(),
                    [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  for (int64_t c = 0; c < raw.k; ++c) {
    raw.ids.push_back(order[c]);
    raw.logprobs.push_back(double{z[order[c]]} - lse);
  }
  ++raw.n;
}

// Peaked rows as a language model gives them: noise over the vocabulary and a few tokens far above
// it (1 to 6 of them, 4 to 16 logits up), the peakedness varying from row to row. With
// `frequent_low_ids` the logits also fall with the id (BPE vocabularies put frequent tokens first),
// so the top k cluster at small ids as a trained model's do.
RawRows synthetic_rows(int64_t n, int64_t V, int64_t k, uint32_t seed, bool frequent_low_ids, int64_t keep_logits) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  RawRows raw;
  raw.V = V;
  raw.k = k;
  std::vector<float> z(V);
  for (int64_t i = 0; i < n; ++i) {
    const float scale = 1.0f + 2.0f * uniform(rng);
    for (int64_t j = 0; j < V; ++j) {
      z[j] = scale * normal(rng);
      if (frequent_low_ids) z[j] -= 1.5f * std::log1p(static_cast<float>(j) / 64.0f);
    }
    const int peaks = 1 + static_cast<int>(uniform(rng) * 6);
    for (int p = 0; p < peaks; ++p) {
      const int64_t j = frequent_low_ids ? static_cast<int64_t>(std::pow(uniform(rng), 3.0f) * V) % V
                                         : static_cast<int64_t>(uniform(rng) * V) % V;
      z[j] += 4.0f + 12.0f * uniform(rng);
    }
    add_top_k(raw, z.data());
    if (i < keep_logits) raw.logits.insert(raw.logits.end(), z.begin(), z.end());
  }
  return raw;
}

// Bytes of the rows as the JSONL "teacher" field holds them: [[ids], ...] and [[logprobs], ...], each
// log-probability written in its shortest round-trip form.
size_t json_bytes(const RawRows& raw) {
  size_t bytes = 0;
  char buffer[64];
  for (int64_t i = 0; i < raw.n; ++i) {
    for (int64_t c = 0; c < raw.k; ++c) {
      const auto id = std::to_chars(buffer, buffer + sizeof buffer, raw.ids[i * raw.k + c]);
      bytes += static_cast<size_t>(id.ptr - buffer);
      const auto lp = std::to_chars(buffer, buffer + sizeof buffer, raw.logprobs[i * raw.k + c]);
      bytes += static_cast<size_t>(lp.ptr - buffer);
    }
    bytes += 2 * (raw.k - 1) + 2 * 2 + 2;  // the commas inside both rows, their brackets, a comma after each
  }
  return bytes;
}

std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  in.seekg(0, std::ios::end);
  std::vector<float> out(static_cast<size_t>(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
  return out;
}

// The probabilities from raw log-probabilities, as the JSONL reader makes them: renormalized over
// the k in double from the largest.
std::vector<float> raw_probs(const RawRows& raw) {
  std::vector<float> p(raw.logprobs.size());
  for (int64_t i = 0; i < raw.n; ++i) {
    const double* l = raw.logprobs.data() + i * raw.k;
    const double max = *std::max_element(l, l + raw.k);
    double sum = 0;
    for (int64_t c = 0; c < raw.k; ++c) sum += std::exp(l[c] - max);
    for (int64_t c = 0; c < raw.k; ++c) p[i * raw.k + c] = static_cast<float>(std::exp(l[c] - max) / sum);
  }
  return p;
}

// Decoded rows hold the same id sets, and each log-probability is within the quantizer's bound:
// the max to 1/256 nat; d = max - logprob to half a step of the sqrt(p / p_max) grid, i.e.
// |dd| <= e^(d/2) / 2^Q at the step's far end; d beyond the clamp 2 Q ln 2 reads back as the clamp.
void expect_faithful(const RawRows& raw, const TeacherRows& dec, int Q, const std::string& what) {
  ASSERT_EQ(dec.rows, raw.n) << what;
  ASSERT_EQ(dec.k, raw.k) << what;
  const double clamp = 2.0 * Q * std::log(2.0);
  double worst_d = 0;
  for (int64_t i = 0; i < raw.n; ++i) {
    std::vector<std::pair<int32_t, double>> row;
    for (int64_t c = 0; c < raw.k; ++c) row.emplace_back(raw.ids[i * raw.k + c], raw.logprobs[i * raw.k + c]);
    std::sort(row.begin(), row.end());
    double max = row[0].second;
    for (const auto& entry : row) max = std::max(max, entry.second);
    const double dec_max = *std::max_element(dec.logprobs.begin() + i * raw.k, dec.logprobs.begin() + (i + 1) * raw.k);
    EXPECT_NEAR(dec_max, std::max(max, -4095.0 / 128), 1.0 / 256 + 1e-6) << what << " row " << i;
    double psum = 0;
    for (int64_t c = 0; c < raw.k; ++c) {
      ASSERT_EQ(dec.ids[i * raw.k + c], row[c].first) << what << " row " << i << " entry " << c;
      const double d = max - row[c].second;
      const double dec_d = dec_max - dec.logprobs[i * raw.k + c];
      if (d < clamp) {
        // |dd| <= 2 |du| / (1 - u) at the far end of the step, |du| <= 2^-(Q+1).
        const double bound = std::exp(std::max(d, dec_d) / 2) / std::ldexp(1.0, Q) + 1e-5;
        EXPECT_LE(std::fabs(dec_d - d), bound) << what << " row " << i << " entry " << c << " d " << d;
        worst_d = std::max(worst_d, std::fabs(dec_d - d) / bound);
      } else {
        EXPECT_NEAR(dec_d, clamp, 1e-4) << what << " row " << i << " entry " << c;
      }
      psum += dec.probs[i * raw.k + c];
    }
    EXPECT_NEAR(psum, 1.0, 1e-5) << what << " row " << i;
  }
  std::printf("  %-34s worst |d error| / bound %.3f\n", what.c_str(), worst_d);
}

// The FKL loss of `student` [n, V] against decoded rows and against the raw ones; returns the
// relative difference. Rows are matched by position, ids in whatever order each side keeps.
double kd_relative_error(const RawRows& raw, const TeacherRows& dec, const std::vector<float>& student, int64_t n,
                         double T, double* loss_out) {
  const std::vector<float> p_raw = raw_probs(raw);
  const TeacherTopK t_raw{
      .k = raw.k, .ids = std::span(raw.ids).first(n * raw.k), .probs = std::span(p_raw).first(n * raw.k)};
  const TeacherTopK t_dec{
      .k = dec.k, .ids = std::span(dec.ids).first(n * dec.k), .probs = std::span(dec.probs).first(n * dec.k)};
  const KdOptions options{.divergence = Divergence::forward_kl, .temperature = T};
  const double a = distill_loss(student, n, raw.V, t_raw, options, {}, {});
  const double b = distill_loss(student, n, raw.V, t_dec, options, {}, {});
  *loss_out = a;
  return std::fabs(b - a) / std::fabs(a);
}

// A student near the teacher (its logits plus noise) and one far from it (other logits).
std::vector<float> near_student(const std::vector<float>& teacher, float noise, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, noise);
  std::vector<float> out(teacher);
  for (float& v : out) v += normal(rng);
  return out;
}

TEST(TeacherStore, Qwen151936Top20BytesPerTokenAndKdLoss) {
  const int64_t n = 256, n_loss = 48;
  double worst = 0;
  for (const bool low_ids : {false, true}) {
    const RawRows raw = synthetic_rows(n, kQwenVocab, kTopK, low_ids ? 7 : 5, low_ids, n_loss);
    const std::vector<uint8_t> blob = encode_rows(raw.ids, raw.logprobs, kTopK, kQwenVocab);
    const double per_token = static_cast<double>(blob.size()) / n;
    const char* name = low_ids ? "frequent-low-id rows" : "uniform-id rows";
    std::printf("  %-22s k = 20, V = 151936: %zu bytes for %lld rows = %.2f bytes per token (as JSON: %.1f)\n", name,
                blob.size(), static_cast<long long>(n), per_token, static_cast<double>(json_bytes(raw)) / n);
    EXPECT_LE(per_token, 64.0) << name;
    const TeacherRows dec = decode_rows(blob, {.vocab = kQwenVocab, .k = kTopK, .rows = n});
    expect_faithful(raw, dec, 9, name);

    const std::vector<float> near = near_student(raw.logits, 0.5f, 11);
    std::vector<float> far(raw.logits.size());
    std::mt19937 rng(13);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    for (float& v : far) v = normal(rng);
    for (const double T : {1.0, 2.0}) {
      const std::vector<float>* students[] = {&raw.logits, &near, &far};
      for (const std::vector<float>* student : students) {
        double loss = 0;
        const double err = kd_relative_error(raw, dec, *student, n_loss, T, &loss);
        const char* who = student == &raw.logits ? "teacher itself" : student == &near ? "teacher + noise" : "random";
        std::printf("  %-22s T = %.0f student %-16s FKL %.6f, relative error %.2e\n", name, T, who, loss, err);
        EXPECT_LE(err, 1e-3) << name << " T = " << T << " " << who;
        worst = std::max(worst, err);
      }
    }
  }
  std::printf("  worst relative KD loss error (V = 151936): %.2e\n", worst);
}

// Rows from real (small) models: the golden models' float64 reference logits, vocab 1024; the
// student is another model of the set (a quantized copy of the same weights: a close student).
TEST(TeacherStore, GoldenModelRowsRoundTripAndKdLoss) {
  const struct {
    const char* teacher;
    const char* student;
  } pairs[] = {{"qwen2-f32", "qwen2-q4_0"}, {"llama-f32", "llama-q4_k_m"}, {"qwen3-f32", "qwen3-q4_0"},
               {"qwen2-f32", "llama-f32"}};
  double worst = 0;
  for (const auto& pair : pairs) {
    const std::vector<float> t = read_f32(test::shared_path(std::string("golden/") + pair.teacher + ".long.ref.f32"));
    const std::vector<float> s = read_f32(test::shared_path(std::string("golden/") + pair.student + ".long.ref.f32"));
    const int64_t V = 1024;
    ASSERT_EQ(t.size(), 64u * V) << pair.teacher;
    ASSERT_EQ(s.size(), t.size()) << pair.student;
    RawRows raw;
    raw.V = V;
    raw.k = kTopK;
    for (int64_t i = 0; i < 64; ++i) add_top_k(raw, t.data() + i * V);
    const std::vector<uint8_t> blob = encode_rows(raw.ids, raw.logprobs, kTopK, V);
    const TeacherRows dec = decode_rows(blob, {.vocab = V, .k = kTopK});
    const std::string name = std::string(pair.teacher) + " -> " + pair.student;
    std::printf("  %-28s %.2f bytes per token (V = 1024)\n", name.c_str(), static_cast<double>(blob.size()) / raw.n);
    expect_faithful(raw, dec, 9, name);
    for (const double T : {1.0, 2.0}) {
      double loss = 0;
      const double err = kd_relative_error(raw, dec, s, raw.n, T, &loss);
      std::printf("  %-28s T = %.0f FKL %.6f, relative error %.2e\n", name.c_str(), T, loss, err);
      EXPECT_LE(err, 1e-3) << name << " T = " << T;
      worst = std::max(worst, err);
    }
  }
  std::printf("  worst relative KD loss error (golden models): %.2e\n", worst);
}

// ---- The format written by hand from teacher_store.h's description -------------------------

// Bits least-significant first, as the header says; an independent writer for the tests.
struct SpecBits {
  std::vector<uint8_t> bytes;
  uint64_t n = 0;
  void put(uint64_t v, int bits) {
    for (int i = 0; i < bits; ++i, ++n) {
      if (n % 8 == 0) bytes.push_back(0);
      bytes.back() |= static_cast<uint8_t>(((v >> i) & 1) << (n % 8));
    }
  }
  void rice(uint64_t g, int b) {
    for (uint64_t q = g >> b; q > 0; --q) put(1, 1);
    put(0, 1);
    put(g, b);
  }
};

void varint(std::vector<uint8_t>& out, uint64_t v) {
  do {
    out.push_back(static_cast<uint8_t>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
    v >>= 7;
  } while (v);
}

std::vector<uint8_t> spec_blob(uint64_t vocab, uint64_t k, int Q, uint64_t rows, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out = {'O', 'T', 'K', 'P', 1};
  varint(out, vocab);
  varint(out, k);
  out.push_back(static_cast<uint8_t>(Q));
  varint(out, rows);
  varint(out, payload.size());
  out.insert(out.end(), payload.begin(), payload.end());
  const uint32_t crc = crc32_ieee(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  return out;
}

TEST(TeacherStore, Crc32KnownValue) {
  const std::string text = "123456789";  // the standard check value of CRC-32/IEEE
  EXPECT_EQ(crc32_ieee(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size())), 0xCBF43926u);
}

TEST(TeacherStore, EncodesTheDocumentedBits) {
  // One row, vocab 10, k = 2, Q = 4: ids {7, 3} with log-probabilities {-1.0, -0.25} (rank order).
  // Sorted: (3, -0.25), (7, -1.0); gaps 3, 4: Rice cost b=0: 4+5, b=1: 3+4, b=2: 3+4 -> b = 1 (the
  // smallest of the cheapest). Largest at position 0; m = 0.25 * 128 = 32; the other d = 0.75,
  // code = round(16 * (1 - e^-0.375)) = round(5.003) = 5.
  SpecBits bits;
  bits.put(1, 5);
  bits.rice(3, 1);
  bits.rice(4, 1);
  bits.put(0, 1);
  bits.put(32, 12);
  bits.put(5, 4);
  const std::vector<uint8_t> expected = spec_blob(10, 2, 4, 1, bits.bytes);
  const std::vector<int32_t> ids = {7, 3};
  const std::vector<double> lps = {-1.0, -0.25};
  EXPECT_EQ(encode_rows(ids, lps, 2, 10, {.value_bits = 4}), expected);
  const TeacherRows dec = decode_rows(expected);
  ASSERT_EQ(dec.ids, (std::vector<int32_t>{3, 7}));
  const double d = -2 * std::log(1 - 5.0 / 16);
  EXPECT_NEAR(dec.logprobs[0], -0.25, 1e-6);
  EXPECT_NEAR(dec.logprobs[1], -0.25 - d, 1e-6);
  EXPECT_NEAR(dec.probs[0], 1 / (1 + std::exp(-d)), 1e-6);
}

// ---- Refusals ----------------------------------------------------------------------------

void expect_refused(std::span<const uint8_t> bytes, const std::string& needle, const TeacherExpect& expect = {}) {
  try {
    decode_rows(bytes, expect);
    ADD_FAILURE() << "accepted; expected an error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nwanted: " << needle;
  }
}

TEST(TeacherStore, RefusesBadHeadersAndFraming) {
  const RawRows raw = synthetic_rows(4, 5000, 8, 3, false, 0);
  const std::vector<uint8_t> good = encode_rows(raw.ids, raw.logprobs, 8, 5000);
  ASSERT_NO_THROW(decode_rows(good));
  for (size_t len = 0; len < good.size(); ++len) expect_refused(std::span(good).first(len), "truncated");

  std::vector<uint8_t> bad = good;
  bad[0] = 'X';
  expect_refused(bad, "bad magic");
  bad = good;
  bad[4] = 2;
  expect_refused(bad, "unsupported version 2");
  bad = good;
  bad.push_back(0);
  expect_refused(bad, "1 trailing bytes");
  bad = good;
  bad[good.size() - 6] ^= 0x10;  // a payload bit
  expect_refused(bad, "checksum mismatch");
  expect_refused(good, "k mismatch: the file has k = 8, expected 20", {.k = 20});
  expect_refused(good, "vocabulary size mismatch: the file has 5000, expected 151936", {.vocab = 151936});
  expect_refused(good, "row count mismatch", {.rows = 5});

  // Varints: eleven continuation bytes, and a tenth byte with more than bit 63.
  std::vector<uint8_t> over = {'O', 'T', 'K', 'P', 1};
  over.insert(over.end(), 10, 0xff);
  over.push_back(0x01);
  expect_refused(over, "varint \"vocab\" overflows 64 bits");
  std::vector<uint8_t> over63 = {'O', 'T', 'K', 'P', 1};
  over63.insert(over63.end(), 9, 0xff);
  over63.push_back(0x02);
  expect_refused(over63, "overflows 64 bits");

  const std::vector<uint8_t> none;
  expect_refused(spec_blob(0, 1, 9, 0, none), "vocabulary size 0");
  expect_refused(spec_blob(uint64_t{1} << 31, 1, 9, 0, none), "vocabulary size 2147483648");
  expect_refused(spec_blob(100, 0, 9, 0, none), "k = 0");
  expect_refused(spec_blob(100, 101, 9, 0, none), "k = 101");
  expect_refused(spec_blob(100, 2, 3, 0, none), "value_bits = 3");
  expect_refused(spec_blob(100, 2, 17, 0, none), "value_bits = 17");
  // A row count the payload cannot hold is refused before anything is allocated for it.
  expect_refused(spec_blob(100, 2, 9, uint64_t{1} << 60, std::vector<uint8_t>(4, 0)), "rows cannot fit");
  // Zero rows is a valid, empty file.
  EXPECT_EQ(decode_rows(spec_blob(100, 2, 9, 0, none)).rows, 0);
}

TEST(TeacherStore, RefusesBadRows) {
  // vocab 100, k = 2, Q = 4; each case one row written by hand.
  const auto row = [](int b, std::vector<uint64_t> gaps, uint64_t top, uint64_t m, uint64_t code, int extra_bits = 0) {
    SpecBits bits;
    bits.put(static_cast<uint64_t>(b), 5);
    for (uint64_t g : gaps) bits.rice(g, b);
    bits.put(top, 1);
    bits.put(m, 12);
    bits.put(code, 4);
    for (int i = 0; i < extra_bits; ++i) bits.put(i == extra_bits - 1, 1);
    return spec_blob(100, 2, 4, 1, bits.bytes);
  };
  EXPECT_EQ(decode_rows(row(3, {10, 89}, 1, 0, 15)).ids, (std::vector<int32_t>{10, 99}));
  expect_refused(row(3, {10, 90}, 1, 0, 15), "id 100 is outside the vocabulary [0, 100)");
  expect_refused(row(3, {100, 1}, 1, 0, 15), "id 100 is outside the vocabulary");
  expect_refused(row(3, {10, 0}, 1, 0, 15), "not strictly increasing (id 10 repeats");
  expect_refused(row(25, {1, 1}, 0, 0, 0), "Rice parameter 25");
  expect_refused(row(0, {102, 1}, 0, 0, 0), "gap code overflows the vocabulary");
  {  // k = 3: two bits for the argmax position, 3 is not a position
    SpecBits bits;
    bits.put(2, 5);
    for (uint64_t g : {1, 2, 3}) bits.rice(g, 2);
    bits.put(3, 2);
    bits.put(0, 12);
    bits.put(0, 8);
    expect_refused(spec_blob(100, 3, 4, 1, bits.bytes), "position of the largest value 3 is not below k = 3");
  }
  // A set padding bit; a whole unused byte; a stream that ends inside the row.
  {
    SpecBits bits;
    bits.put(3, 5);
    bits.rice(10, 3);
    bits.rice(5, 3);
    bits.put(0, 1 + 12 + 4);
    const uint64_t used = bits.n;
    ASSERT_NE(used % 8, 0u);
    std::vector<uint8_t> padded = bits.bytes;
    padded.back() |= static_cast<uint8_t>(0x80);
    expect_refused(spec_blob(100, 2, 4, 1, padded), "nonzero padding bits");
    std::vector<uint8_t> longer = bits.bytes;
    longer.push_back(0);
    expect_refused(spec_blob(100, 2, 4, 1, longer), "1 unused payload bytes");
    std::vector<uint8_t> shorter(bits.bytes.begin(), bits.bytes.end() - 1);
    expect_refused(spec_blob(100, 2, 4, 1, shorter), "truncated bit stream in row 0");
  }
}

TEST(TeacherStore, EncodeRefusesBadRows) {
  const auto refused = [](std::vector<int32_t> ids, std::vector<double> lps, int64_t k, int64_t V,
                          const std::string& needle, int Q = 9) {
    try {
      encode_rows(ids, lps, k, V, {.value_bits = Q});
      ADD_FAILURE() << "accepted; expected \"" << needle << "\"";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused({1, 2}, {-1, -2}, 2, 2, "id 2 (row 0, entry 1) is outside [0, 2)");
  refused({1, -1}, {-1, -2}, 2, 10, "id -1 (row 0, entry 1)");
  refused({1, 2, 3, 3}, {-1, -2, -1, -2}, 2, 10, "id 3 repeats in row 1");
  refused({1, 2}, {-1, std::nan("")}, 2, 10, "not finite");
  refused({1, 2}, {-1, -INFINITY}, 2, 10, "not finite");
  refused({1, 2}, {-1}, 2, 10, "2 ids but 1 log-probabilities");
  refused({1, 2, 3}, {-1, -2, -3}, 2, 10, "not a whole number of rows");
  refused({1}, {-1}, 0, 10, "k = 0");
  refused({1, 2}, {-1, -2}, 2, 1, "k = 2");
  refused({1, 2}, {-1, -2}, 2, 10, "value_bits = 3", 3);
}

// ---- Fuzz ---------------------------------------------------------------------------------

// Whatever decode_rows accepts must satisfy what it promises.
void check_accepted(const TeacherRows& rows) {
  ASSERT_EQ(rows.ids.size(), static_cast<size_t>(rows.rows * rows.k));
  for (int64_t i = 0; i < rows.rows; ++i) {
    double sum = 0;
    for (int64_t c = 0; c < rows.k; ++c) {
      const int32_t id = rows.ids[i * rows.k + c];
      ASSERT_TRUE(id >= 0 && id < rows.vocab);
      if (c > 0) {
        ASSERT_GT(id, rows.ids[i * rows.k + c - 1]);
      }
      ASSERT_TRUE(std::isfinite(rows.logprobs[i * rows.k + c]));
      sum += rows.probs[i * rows.k + c];
    }
    ASSERT_NEAR(sum, 1.0, 1e-4);
  }
}

int try_decode(std::span<const uint8_t> bytes) {
  try {
    check_accepted(decode_rows(bytes));
    return 1;
  } catch (const Error&) {
    return 0;
  }
}

// The checksum is set right after each mutation too, so that the checks past it see the damage.
std::vector<uint8_t> reseal(std::vector<uint8_t> blob) {
  if (blob.size() < 4) return blob;
  const uint32_t crc = crc32_ieee(std::span(blob).first(blob.size() - 4));
  for (int i = 0; i < 4; ++i) blob[blob.size() - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
  return blob;
}

TEST(TeacherStore, FuzzRandomTruncatedAndFlippedInputs) {
  const RawRows raw = synthetic_rows(3, kQwenVocab, kTopK, 21, false, 0);
  const std::vector<uint8_t> good = encode_rows(raw.ids, raw.logprobs, kTopK, kQwenVocab);
  std::mt19937 rng(99);
  int accepted = 0, tried = 0;
  for (size_t bit = 0; bit < good.size() * 8; ++bit) {
    std::vector<uint8_t> bad = good;
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    accepted += try_decode(bad);
    accepted += try_decode(reseal(bad));
    tried += 2;
  }
  for (size_t len = 0; len <= good.size(); ++len) {
    accepted += try_decode(std::span(good).first(len));
    accepted += try_decode(reseal(std::vector<uint8_t>(good.begin(), good.begin() + len)));
    tried += 2;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> bad;
    if (i % 3 == 0) {
      bad.resize(static_cast<size_t>(byte(rng)));
      for (auto& b : bad) b = static_cast<uint8_t>(byte(rng));
    } else {  // a valid header prefix with random bytes after, or several random bytes changed
      bad = good;
      if (i % 3 == 1) {
        for (size_t j = 5 + static_cast<size_t>(byte(rng)) % 8; j < bad.size(); ++j)
          bad[j] = static_cast<uint8_t>(byte(rng));
      } else {
        for (int j = 0; j < 1 + i % 7; ++j)
          bad[static_cast<size_t>(rng() % bad.size())] = static_cast<uint8_t>(byte(rng));
      }
      bad = reseal(bad);
    }
    accepted += try_decode(bad);
    ++tried;
  }
  std::printf("  fuzz: %d inputs, %d decoded (checked), the rest refused with orchard::Error\n", tried, accepted);
  EXPECT_GT(accepted, 0);  // resealed value-bit flips decode to other valid rows
  EXPECT_LT(accepted, tried);
}

}  // namespace
}  // namespace orchard::train
