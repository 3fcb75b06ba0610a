// The compact teacher rows (train/teacher_store.h, "OTKP"): the input is a blob for
// train::decode_rows. A blob it accepts must hang together (ids [rows, k] strictly increasing
// within a row and inside the vocabulary, log-probabilities finite and <= 0, each row's
// probabilities summing to 1) and survive a round trip: encode_rows of what it decoded, at the
// blob's own value_bits, decodes to the same ids and, since the decoded values sit on the
// quantizer's grid, to the same log-probabilities within a float's rounding. The CRC-32 at the end
// would stop nearly every mutation at the checksum, so an input whose checksum is wrong is also
// read with it corrected: the mutations then reach the header and the bit stream.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "train/teacher_store.h"

using namespace orchard;

namespace {

void check(const uint8_t* data, size_t size) {
  train::TeacherRows rows;
  try {
    rows = train::decode_rows(std::span<const uint8_t>(data, size));
  } catch (const Error&) {
    return;
  }
  const size_t n = static_cast<size_t>(rows.rows * rows.k);
  if (rows.k < 1 || rows.rows < 0 || rows.vocab < rows.k) std::abort();
  if (rows.ids.size() != n || rows.logprobs.size() != n || rows.probs.size() != n) std::abort();
  for (int64_t r = 0; r < rows.rows; ++r) {
    double sum = 0;
    for (int64_t c = 0; c < rows.k; ++c) {
      const size_t i = static_cast<size_t>(r * rows.k + c);
      if (rows.ids[i] < 0 || rows.ids[i] >= rows.vocab || (c > 0 && rows.ids[i] <= rows.ids[i - 1])) std::abort();
      if (!std::isfinite(rows.logprobs[i]) || rows.logprobs[i] > 0) std::abort();
      sum += rows.probs[i];
    }
    if (std::fabs(sum - 1) > 1e-4) std::abort();
  }

  // The blob's value_bits: the byte after the magic, version and two varints.
  size_t at = 5;
  for (int varint = 0; varint < 2; ++varint)
    while (data[at++] & 0x80) {
    }
  const int value_bits = data[at];
  const std::vector<double> logprobs(rows.logprobs.begin(), rows.logprobs.end());
  std::vector<uint8_t> again;
  try {
    again = train::encode_rows(rows.ids, logprobs, rows.k, rows.vocab, {.value_bits = value_bits});
  } catch (const Error&) {
    std::abort();  // what decode_rows gives must be encodable
  }
  train::TeacherRows back;
  try {
    back = train::decode_rows(again, {.vocab = rows.vocab, .k = rows.k, .rows = rows.rows});
  } catch (const Error&) {
    std::abort();
  }
  if (back.ids != rows.ids) std::abort();
  for (size_t i = 0; i < n; ++i)
    if (std::fabs(back.logprobs[i] - rows.logprobs[i]) > 1e-3f * (1 + std::fabs(rows.logprobs[i]))) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check(data, size);
  if (size < 4) return 0;
  std::vector<uint8_t> fixed(data, data + size);
  const uint32_t crc = train::crc32_ieee(std::span<const uint8_t>(data, size - 4));
  for (int i = 0; i < 4; ++i) fixed[size - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
  if (std::memcmp(fixed.data() + size - 4, data + size - 4, 4) != 0) check(fixed.data(), size);
  return 0;
}
