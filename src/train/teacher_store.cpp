#include "train/teacher_store.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "base/error.h"

namespace orchard::train {
namespace {

constexpr std::array<uint8_t, 4> kMagic = {'O', 'T', 'K', 'P'};
constexpr uint8_t kVersion = 1;
constexpr int64_t kMaxK = 65536;
constexpr int64_t kMaxVocab = 2147483647;
constexpr int kRiceBits = 5;
constexpr int kMaxRice = 24;
constexpr int kMaxBits = 12;           // the row's largest log-probability: -m / kMaxScale
constexpr double kMaxScale = 128;

int argmax_bits(int64_t k) {
  int bits = 0;
  while ((int64_t{1} << bits) < k) ++bits;
  return bits;
}

// Bits least-significant first into a byte vector.
class BitWriter {
 public:
  void put(uint64_t value, int bits) {
    for (int i = 0; i < bits; ++i) put_bit((value >> i) & 1);
  }
  void put_bit(unsigned bit) {
    if (used_ % 8 == 0) bytes_.push_back(0);
    if (bit) bytes_.back() |= static_cast<uint8_t>(1u << (used_ % 8));
    ++used_;
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t used_ = 0;
};

// Reads the bits BitWriter wrote, refusing any read past the payload.
class BitReader {
 public:
  explicit BitReader(std::span<const uint8_t> bytes) : bytes_(bytes), limit_(uint64_t{bytes.size()} * 8) {}
  unsigned bit(int64_t row) {
    if (pos_ >= limit_)
      fail("teacher store: truncated bit stream in row ", row, " (", bytes_.size(), " payload bytes)");
    const unsigned b = (bytes_[pos_ / 8] >> (pos_ % 8)) & 1u;
    ++pos_;
    return b;
  }
  uint64_t get(int bits, int64_t row) {
    if (pos_ + static_cast<uint64_t>(bits) > limit_)
      fail("teacher store: truncated bit stream in row ", row, " (", bytes_.size(), " payload bytes)");
    uint64_t value = 0;
    for (int i = 0; i < bits; ++i) value |= uint64_t{bit(row)} << i;
    return value;
  }
  uint64_t position() const { return pos_; }

 private:
  std::span<const uint8_t> bytes_;
  uint64_t limit_;
  uint64_t pos_ = 0;
};

void put_varint(std::vector<uint8_t>& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<uint8_t>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<uint8_t>(value));
}

uint64_t get_varint(std::span<const uint8_t> bytes, size_t& pos, const char* field) {
  uint64_t value = 0;
  for (int i = 0; i < 10; ++i) {
    if (pos >= bytes.size()) fail("teacher store: truncated header (in the varint \"", field, "\")");
    const uint8_t byte = bytes[pos++];
    // The tenth byte holds bit 63 only: anything more (a higher bit, or an eleventh byte) overflows.
    if (i == 9 && byte > 1) fail("teacher store: varint \"", field, "\" overflows 64 bits");
    value |= uint64_t{byte & 0x7fu} << (7 * i);
    if (!(byte & 0x80)) return value;
  }
  fail("teacher store: varint \"", field, "\" overflows 64 bits");  // not reached: the tenth byte ends it
}

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int j = 0; j < 8; ++j) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// Bits of the Rice codes of `gaps` with parameter b.
uint64_t rice_cost(std::span<const uint64_t> gaps, int b) {
  uint64_t bits = 0;
  for (uint64_t g : gaps) bits += (g >> b) + 1 + static_cast<uint64_t>(b);
  return bits;
}

}  // namespace

uint32_t crc32_ieee(std::span<const uint8_t> bytes) {
  const auto& table = crc_table();
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t byte : bytes) c = table[(c ^ byte) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::vector<uint8_t> encode_rows(std::span<const int32_t> ids, std::span<const double> logprobs, int64_t k,
                                 int64_t vocab, const TeacherStoreOptions& options) {
  if (vocab < 1 || vocab > kMaxVocab) fail("teacher store: vocabulary size ", vocab, " is not in [1, 2^31 - 1]");
  if (k < 1 || k > std::min(vocab, kMaxK)) fail("teacher store: k = ", k, " is not in [1, min(vocab, ", kMaxK, ")]");
  const int Q = options.value_bits;
  if (Q < 4 || Q > 16) fail("teacher store: value_bits = ", Q, " is not in [4, 16]");
  if (ids.size() != logprobs.size())
    fail("teacher store: ", ids.size(), " ids but ", logprobs.size(), " log-probabilities");
  if (ids.size() % static_cast<size_t>(k) != 0)
    fail("teacher store: ", ids.size(), " ids are not a whole number of rows of k = ", k);
  const int64_t n = static_cast<int64_t>(ids.size()) / k;
  const double levels = std::ldexp(1.0, Q);
  const int index_bits = argmax_bits(k);

  BitWriter bits;
  std::vector<std::pair<int32_t, double>> row(static_cast<size_t>(k));
  std::vector<uint64_t> gaps(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const int32_t id = ids[r * k + c];
      const double lp = logprobs[r * k + c];
      if (id < 0 || id >= vocab)
        fail("teacher store: id ", id, " (row ", r, ", entry ", c, ") is outside [0, ", vocab, ")");
      if (!std::isfinite(lp))
        fail("teacher store: log-probability ", lp, " (row ", r, ", entry ", c, ") is not finite");
      row[c] = {id, lp};
    }
    std::sort(row.begin(), row.end());
    for (int64_t c = 1; c < k; ++c)
      if (row[c].first == row[c - 1].first) fail("teacher store: id ", row[c].first, " repeats in row ", r);

    for (int64_t c = 0; c < k; ++c)
      gaps[c] = static_cast<uint64_t>(c == 0 ? row[0].first : row[c].first - row[c - 1].first);
    int best_b = 0;
    uint64_t best_cost = rice_cost(gaps, 0);
    for (int b = 1; b <= kMaxRice; ++b) {
      const uint64_t cost = rice_cost(gaps, b);
      if (cost < best_cost) best_cost = cost, best_b = b;
    }
    bits.put(static_cast<uint64_t>(best_b), kRiceBits);
    for (uint64_t g : gaps) {
      for (uint64_t q = g >> best_b; q > 0; --q) bits.put_bit(1);
      bits.put_bit(0);
      bits.put(g, best_b);
    }

    int64_t top = 0;
    for (int64_t c = 1; c < k; ++c)
      if (row[c].second > row[top].second) top = c;
    const double max = row[top].second;
    bits.put(static_cast<uint64_t>(top), index_bits);
    const double m = std::clamp(std::round(-max * kMaxScale), 0.0, std::ldexp(1.0, kMaxBits) - 1);
    bits.put(static_cast<uint64_t>(m), kMaxBits);
    for (int64_t c = 0; c < k; ++c) {
      if (c == top) continue;
      const double d = max - row[c].second;  // >= 0
      const double code = std::min(std::round(levels * -std::expm1(-d / 2)), levels - 1);
      bits.put(static_cast<uint64_t>(code), Q);
    }
  }

  std::vector<uint8_t> out(kMagic.begin(), kMagic.end());
  out.push_back(kVersion);
  put_varint(out, static_cast<uint64_t>(vocab));
  put_varint(out, static_cast<uint64_t>(k));
  out.push_back(static_cast<uint8_t>(Q));
  put_varint(out, static_cast<uint64_t>(n));
  put_varint(out, bits.bytes().size());
  out.insert(out.end(), bits.bytes().begin(), bits.bytes().end());
  const uint32_t crc = crc32_ieee(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  return out;
}

TeacherRows decode_rows(std::span<const uint8_t> bytes, const TeacherExpect& expect) {
  if (bytes.size() < kMagic.size() + 1) fail("teacher store: truncated (", bytes.size(), " bytes, no header)");
  if (!std::equal(kMagic.begin(), kMagic.end(), bytes.begin()))
    fail("teacher store: bad magic (not a teacher top-k file; expected \"OTKP\")");
  if (bytes[4] != kVersion)
    fail("teacher store: unsupported version ", int{bytes[4]}, " (this build reads version ", int{kVersion}, ")");
  size_t pos = 5;
  const uint64_t vocab = get_varint(bytes, pos, "vocab");
  const uint64_t k = get_varint(bytes, pos, "k");
  if (pos >= bytes.size()) fail("teacher store: truncated header (no value_bits)");
  const int Q = bytes[pos++];
  const uint64_t n = get_varint(bytes, pos, "rows");
  const uint64_t payload = get_varint(bytes, pos, "payload");
  if (vocab < 1 || vocab > static_cast<uint64_t>(kMaxVocab))
    fail("teacher store: vocabulary size ", vocab, " in the header is not in [1, 2^31 - 1]");
  if (k < 1 || k > std::min<uint64_t>(vocab, kMaxK))
    fail("teacher store: k = ", k, " in the header is not in [1, min(vocab = ", vocab, ", ", kMaxK, ")]");
  if (Q < 4 || Q > 16) fail("teacher store: value_bits = ", Q, " in the header is not in [4, 16]");
  if (expect.vocab != 0 && static_cast<uint64_t>(expect.vocab) != vocab)
    fail("teacher store: vocabulary size mismatch: the file has ", vocab, ", expected ", expect.vocab);
  if (expect.k != 0 && static_cast<uint64_t>(expect.k) != k)
    fail("teacher store: k mismatch: the file has k = ", k, ", expected ", expect.k);
  if (expect.rows != 0 && static_cast<uint64_t>(expect.rows) != n)
    fail("teacher store: row count mismatch: the file has ", n, " rows, expected ", expect.rows);
  const size_t left = bytes.size() - pos;
  if (payload > left || left - payload < 4)
    fail("teacher store: truncated (the header announces ", payload, " payload bytes and a 4-byte checksum, ", left,
         " bytes follow)");
  if (left - payload > 4) fail("teacher store: ", left - payload - 4, " trailing bytes after the checksum");
  const size_t crc_at = pos + payload;
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= uint32_t{bytes[crc_at + i]} << (8 * i);
  if (crc32_ieee(bytes.first(crc_at)) != stored) fail("teacher store: checksum mismatch (the file is corrupt)");

  // Every row takes at least this many bits, so the row count is bounded by the payload before
  // anything is allocated.
  const int index_bits = argmax_bits(static_cast<int64_t>(k));
  const uint64_t min_row_bits = kRiceBits + k + index_bits + kMaxBits + (k - 1) * static_cast<uint64_t>(Q);
  if (n > payload * 8 / min_row_bits)
    fail("teacher store: ", n, " rows cannot fit in ", payload, " payload bytes (truncated or corrupt)");

  TeacherRows out;
  out.vocab = static_cast<int64_t>(vocab);
  out.k = static_cast<int64_t>(k);
  out.rows = static_cast<int64_t>(n);
  out.ids.resize(n * k);
  out.logprobs.resize(n * k);
  out.probs.resize(n * k);
  const double levels = std::ldexp(1.0, Q);
  BitReader in(bytes.subspan(pos, payload));
  std::vector<double> d(k);
  for (uint64_t r = 0; r < n; ++r) {
    const int64_t row = static_cast<int64_t>(r);
    const int b = static_cast<int>(in.get(kRiceBits, row));
    if (b > kMaxRice) fail("teacher store: row ", r, " has Rice parameter ", b, " (at most ", kMaxRice, ")");
    const uint64_t max_q = (vocab >> b) + 1;
    int64_t id = 0;
    for (uint64_t c = 0; c < k; ++c) {
      uint64_t q = 0;
      while (in.bit(row)) {
        if (++q > max_q)
          fail("teacher store: row ", r, " entry ", c, ": gap code overflows the vocabulary (", q, " << ", b, ")");
      }
      const uint64_t gap = (q << b) | in.get(b, row);
      if (c > 0 && gap == 0)
        fail("teacher store: row ", r, ": ids are not strictly increasing (id ", id, " repeats at entry ", c, ")");
      const uint64_t next = static_cast<uint64_t>(id) + gap;
      if (next >= vocab)
        fail("teacher store: row ", r, " entry ", c, ": id ", next, " is outside the vocabulary [0, ", vocab, ")");
      id = static_cast<int64_t>(next);
      out.ids[r * k + c] = static_cast<int32_t>(id);
    }
    const uint64_t top = in.get(index_bits, row);
    if (top >= k) fail("teacher store: row ", r, ": position of the largest value ", top, " is not below k = ", k);
    const double max = -static_cast<double>(in.get(kMaxBits, row)) / kMaxScale;
    for (uint64_t c = 0; c < k; ++c) {
      d[c] = c == top ? 0.0 : -2.0 * std::log1p(-static_cast<double>(in.get(Q, row)) / levels);
    }
    // Renormalized over the k in double, from the largest (d = 0) so that nothing overflows.
    double sum = 0;
    for (uint64_t c = 0; c < k; ++c) sum += std::exp(-d[c]);
    for (uint64_t c = 0; c < k; ++c) {
      out.logprobs[r * k + c] = static_cast<float>(max - d[c]);
      out.probs[r * k + c] = static_cast<float>(std::exp(-d[c]) / sum);
    }
  }
  const uint64_t used = in.position();
  if ((used + 7) / 8 != payload)
    fail("teacher store: ", payload - (used + 7) / 8, " unused payload bytes after row ", n == 0 ? 0 : n - 1);
  for (uint64_t bit = used; bit < payload * 8; ++bit)
    if ((bytes[pos + bit / 8] >> (bit % 8)) & 1) fail("teacher store: nonzero padding bits after the last row");
  return out;
}

}  // namespace orchard::train
