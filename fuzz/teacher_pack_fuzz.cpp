// The teacher's data as the trainer reads it (distill/teacher_data.h): the input, written to a
// scratch file, goes to distill::read_pack (the compact "OTKD" side file) and to
// distill::read_records (collect's JSONL). A pack read_pack accepts must be one write_pack can
// write again (at the finest value_bits), and that copy must read back to the same tokens, masks,
// teacher ids, weights and lines: the reader may not accept what the writer would refuse. A pack
// whose closing CRC-32 is wrong is also read with it corrected, so that mutations reach past the
// checksum (the teacher rows inside keep their own, as train/teacher_store's target fuzzes them).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "distill/teacher_data.h"
#include "fuzz_support.h"
#include "orchard/error.h"
#include "tokenizer/api_token_text.h"
#include "train/teacher_store.h"

using namespace orchard;

namespace {

void check_pack(const std::string& path, const uint8_t* data) {
  std::vector<train::Example> examples;
  try {
    examples = distill::read_pack(path, 0);
  } catch (const Error&) {
    return;
  }
  if (!distill::is_teacher_pack(path)) std::abort();
  // The pack's vocabulary: the varint after the magic and the version (read_pack checked it).
  uint64_t vocab = 0;
  for (size_t at = 5, shift = 0; shift < 64; ++at, shift += 7) {
    vocab |= static_cast<uint64_t>(data[at] & 0x7f) << shift;
    if (!(data[at] & 0x80)) break;
  }
  const std::string copy = fuzz::ScratchDir::get().path("copy.otkd");
  try {
    distill::write_pack(copy, examples, static_cast<int64_t>(vocab), nullptr, 16);
  } catch (const Error&) {
    std::abort();  // read_pack accepted examples that write_pack refuses
  }
  std::vector<train::Example> back;
  try {
    back = distill::read_pack(copy, static_cast<int64_t>(vocab));
  } catch (const Error&) {
    std::abort();
  }
  if (back.size() != examples.size()) std::abort();
  for (size_t n = 0; n < back.size(); ++n) {
    const train::Example &a = examples[n], &b = back[n];
    if (a.tokens != b.tokens || a.targets != b.targets || a.ce_mask != b.ce_mask || a.kd_mask != b.kd_mask ||
        a.teacher_k != b.teacher_k || a.rationale != b.rationale || a.line != b.line ||
        static_cast<float>(a.weight) != static_cast<float>(b.weight))
      std::abort();
    // Ids sit in each KD row in ascending order on both sides; the padding of the other rows is 0.
    if (a.teacher_ids != b.teacher_ids) std::abort();
  }
}

void check_records(const std::string& path) {
  try {
    const std::vector<distill::TeacherRecord> records = distill::read_records(path);
    for (const distill::TeacherRecord& r : records) {
      if (r.tokens.size() != r.logprobs.size()) std::abort();
      if (!r.top.empty() && r.top.size() != r.tokens.size()) std::abort();
      for (const std::string& t : r.tokens) (void)api_token_bytes(t);
    }
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::ScratchDir::get().write("input", fuzz::as_text(data, size));
  check_pack(path, data);
  check_records(path);
  if (size >= 4 + 4 && std::memcmp(data, "OTKD", 4) == 0) {
    std::string fixed(fuzz::as_text(data, size));
    const uint32_t crc = train::crc32_ieee(std::span<const uint8_t>(data, size - 4));
    for (int i = 0; i < 4; ++i) fixed[size - 4 + i] = static_cast<char>(crc >> (8 * i));
    if (fixed.compare(size - 4, 4, fuzz::as_text(data + size - 4, 4)) != 0)
      check_pack(fuzz::ScratchDir::get().write("input", fixed), data);
  }
  return 0;
}
