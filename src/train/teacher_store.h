// A compact binary form of a teacher's top-k log-probabilities (issue 18, "Storage"): a sequence of
// rows, one per completion token, each k (id, log-probability) pairs. An OpenAI-compatible teacher
// gives k <= 20; as JSON that is ~25 bytes an entry, here under 64 bytes a row at k = 20 on a
// 151,936-token vocabulary (docs/training.md, "Compact teacher log-probabilities", has the
// measurements). The KD losses use only the probabilities renormalized over the k, so the row's
// order is not kept and each value is stored relative to the row's largest.
//
// Format, version 1 (all multi-byte integers little-endian; varint = unsigned LEB128, at most 10 bytes):
//
//   magic       4 bytes  "OTKP"
//   version     1 byte   1
//   vocab       varint   V, 1 <= V <= 2^31 - 1
//   k           varint   1 <= k <= min(V, 65536)
//   value_bits  1 byte   Q, 4 <= Q <= 16
//   rows        varint   n
//   payload     varint   bytes of the bit stream that follows
//   bit stream  payload bytes, bits written least-significant first; the last byte's unused bits are 0
//   crc32       4 bytes  CRC-32 (IEEE, as zlib) of every byte before it
//
// Each row in the bit stream, with its pairs sorted by id ascending:
//   b           5 bits   Rice parameter of the row's id gaps, b <= 24 (the encoder: the smallest cheapest)
//   k gaps      Rice codes: g_0 = id_0, g_i = id_i - id_{i-1} (>= 1); a code is q = g >> b as q one
//               bits and a zero bit, then the b low bits of g. Ids are delta-coded because sorted top-k
//               ids of a large vocabulary are ~V/k apart: ~15 bits an id instead of 18 raw or ~17 as
//               LEB128 varints.
//   argmax      ceil(log2 k) bits: the position (in id order) of the row's largest log-probability
//   max         12 bits  m: the largest log-probability is -m / 128 (clamped into (-32, 0])
//   k - 1 codes Q bits each, the other positions in id order: with d = max - logprob >= 0 (nats),
//               code = round(2^Q * (1 - exp(-d / 2))), at most 2^Q - 1, read back as
//               d = -2 ln(1 - code / 2^Q).
//
// The value quantizer is uniform in sqrt(p / p_max), not in log p: a KD loss's error from one entry
// is about p_c times the error in log p_c, so the large probabilities need fine steps and the small
// ones do not. At Q = 9 the step in d is 2^-8 nats at the top (relative error in p <= 0.2%), 0.08
// nats at d = 6 (p = 0.25% of the top), and d clamps at 2 Q ln 2 = 12.5 nats (p < 4e-6 of the top;
// never 0, so reverse KL stays finite).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "train/loss.h"

namespace orchard::train {

struct TeacherStoreOptions {
  int value_bits = 9;  // Q above
};

// The rows decoded: ids [n, k] ascending within each row, the dequantized log-probabilities [n, k]
// (the same order) and the probabilities renormalized over each row's k, as TeacherTopK wants them.
struct TeacherRows {
  int64_t vocab = 0;
  int64_t k = 0;
  int64_t rows = 0;
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  std::vector<float> probs;

  TeacherTopK teacher() const { return {.k = k, .ids = ids, .probs = probs}; }
};

// What decode_rows checks against the header besides the format; 0 = anything.
struct TeacherExpect {
  int64_t vocab = 0;
  int64_t k = 0;
  int64_t rows = 0;
};

// ids [n, k] and log-probabilities [n, k] (any order within a row; each row's ids distinct and in
// [0, vocab), log-probabilities finite). Throws orchard::Error naming the row and entry otherwise.
std::vector<uint8_t> encode_rows(std::span<const int32_t> ids, std::span<const double> logprobs, int64_t k,
                                 int64_t vocab, const TeacherStoreOptions& options = {});

// Reads what encode_rows wrote. Any bytes that are not such a blob (truncated, bad magic, version or
// checksum, an id outside the vocabulary or not strictly increasing, a header that disagrees with
// `expect`, an over-long varint or Rice code, trailing bytes) throw orchard::Error saying what; no
// input reads outside `bytes` or allocates more than its size can justify.
TeacherRows decode_rows(std::span<const uint8_t> bytes, const TeacherExpect& expect = {});

// The CRC-32 (IEEE 802.3, reflected, as zlib's crc32) of `bytes`.
uint32_t crc32_ieee(std::span<const uint8_t> bytes);

}  // namespace orchard::train
