// Bad model files: every corrupted variant of a golden file must be refused with an
// orchard::Error (or, for a flip that leaves the file valid, load and run) — never crash, and
// never read outside the bytes (the files are loaded from exact-size heap buffers, so
// AddressSanitizer sees any read past the end).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "orchard/error.h"
#include "orchard/model.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

std::vector<uint8_t> golden_bytes(const std::string& name) {
  return test::read_bytes(test::shared_path("golden/" + name));
}

// Loads `bytes`; if that works, also runs two tokens through the model. Returns the error text,
// or "" when the file loaded and ran.
std::string load_and_run(std::vector<uint8_t> bytes) {
  try {
    auto model = Model::load_from_memory(std::move(bytes), "corrupt.gguf");
    Context context(model, {.n_ctx = 8, .kernels = KernelChoice::reference});
    const std::vector<int32_t> tokens = {1, 2};
    context.eval(tokens);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

void expect_refused(std::vector<uint8_t> bytes, const std::string& what, const std::string& needle = "") {
  const std::string message = load_and_run(std::move(bytes));
  EXPECT_NE(message, "") << what << ": loaded without an error";
  EXPECT_EQ(message.find('\n'), std::string::npos) << what << ": message is not one line";
  EXPECT_NE(message.find("corrupt.gguf"), std::string::npos) << what << ": message does not name the file: " << message;
  if (!needle.empty()) {
    EXPECT_NE(message.find(needle), std::string::npos) << what << ": " << message;
  }
}

// Offset of the tensor-table entry of `name` (just after its name), found by its bytes.
size_t tensor_entry(const std::vector<uint8_t>& bytes, const std::string& name) {
  std::string needle(8, '\0');
  const uint64_t length = name.size();
  std::memcpy(needle.data(), &length, 8);
  needle += name;
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  if (it == bytes.end()) throw std::runtime_error("tensor entry not found: " + name);
  return static_cast<size_t>(it - bytes.begin()) + needle.size();
}

template <typename T>
void put(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

TEST(CorruptGguf, TruncatedAtManyOffsetsIsRefused) {
  for (const char* name : {"llama-q4_k_m.gguf", "qwen2-q8_0.gguf", "qwen3-q4_0.gguf"}) {
    const std::vector<uint8_t> whole = golden_bytes(name);
    std::vector<size_t> cuts = {0, 1, 3, 4, 5, 8, 12, 16, 20, 24, 31, 40, whole.size() - 1, whole.size() - 100};
    for (size_t cut = 41; cut < 70000 && cut < whole.size(); cut += 211) cuts.push_back(cut);
    for (size_t cut = 70000; cut < whole.size(); cut += whole.size() / 23) cuts.push_back(cut);
    for (size_t cut : cuts) {
      std::vector<uint8_t> bytes(whole.begin(), whole.begin() + static_cast<long>(cut));
      expect_refused(std::move(bytes), std::string(name) + " truncated at " + std::to_string(cut));
    }
  }
}

TEST(CorruptGguf, FlippedHeaderFieldsAreRefused) {
  const std::vector<uint8_t> whole = golden_bytes("llama-q4_0.gguf");
  auto variant = [&](auto edit) {
    std::vector<uint8_t> b = whole;
    edit(b);
    return b;
  };
  expect_refused(variant([](auto& b) { b[0] = 'X'; }), "magic", "magic");
  expect_refused(variant([](auto& b) { put<uint32_t>(b, 4, 1); }), "version 1", "version");
  expect_refused(variant([](auto& b) { put<uint32_t>(b, 4, 7); }), "version 7", "version");
  expect_refused(variant([](auto& b) { put<uint32_t>(b, 4, 0x03000000); }), "big-endian");
  expect_refused(variant([](auto& b) { put<uint64_t>(b, 8, ~uint64_t{0}); }), "tensor count", "tensor count");
  expect_refused(variant([](auto& b) { put<uint64_t>(b, 16, uint64_t{1} << 40); }), "kv count", "metadata count");
  expect_refused(variant([](auto& b) { put<uint64_t>(b, 24, uint64_t{1} << 50); }), "first key length", "truncated");
  // The first key is general.architecture; its value type follows the key.
  const size_t first_type = 24 + 8 + std::string("general.architecture").size();
  expect_refused(variant([&](auto& b) { put<uint32_t>(b, first_type, 99); }), "value type", "unknown value type");
  expect_refused(variant([&](auto& b) { std::memcpy(b.data() + first_type + 12, "gpt9x", 5); }),
                 "architecture", "unknown architecture");

  const size_t q = tensor_entry(whole, "blk.0.attn_q.weight");  // n_dims, dims..., type, offset
  expect_refused(variant([&](auto& b) { put<uint32_t>(b, q, 5); }), "n_dims 5", "dimensions");
  expect_refused(variant([&](auto& b) { put<uint32_t>(b, q, 0); }), "n_dims 0", "dimensions");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 4, 0); }), "zero extent");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 4, uint64_t{1} << 62); }), "huge extent");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 12, 1u << 20); }), "rows beyond file", "past the end");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 4, 128); }), "shape mismatch", "shape");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 4, 100); }), "row not a block multiple", "block size");
  expect_refused(variant([&](auto& b) { put<uint32_t>(b, q + 20, 99); }), "unknown type", "tensor type");
  expect_refused(variant([&](auto& b) { put<uint32_t>(b, q + 20, 26); }), "I32 weight", "cannot hold weights");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 24, ~uint64_t{0} - 31); }), "offset overflow", "past the end");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 24, 64 * 1024 * 1024); }), "offset beyond", "past the end");
  expect_refused(variant([&](auto& b) { put<uint64_t>(b, q + 24, 3); }), "unaligned offset", "aligned");

  // A missing tensor: rename one so that the model lacks it.
  expect_refused(variant([&](auto& b) { b[q - 8] = 'X'; }), "missing tensor", "missing tensor");
}

// A layer count the tensor table cannot hold is refused before anything is sized by it, with an
// error naming the file and the key (2^31 blocks ended in std::bad_alloc: no file, no field).
TEST(CorruptGguf, BlockCountBeyondTheTensorTableIsRefused) {
  const std::vector<uint8_t> whole = golden_bytes("llama-q4_0.gguf");
  const std::string key = "llama.block_count";
  const auto at = std::search(whole.begin(), whole.end(), key.begin(), key.end());
  ASSERT_NE(at, whole.end());
  const size_t value = static_cast<size_t>(at - whole.begin()) + key.size() + 4;  // after the u32 type
  for (uint32_t blocks : {3u, 1u << 22, 1u << 31}) {
    std::vector<uint8_t> b = whole;
    put<uint32_t>(b, value, blocks);
    expect_refused(std::move(b), "block_count " + std::to_string(blocks), "block_count");
  }
}

// The same for a llama2.c header: 2^24 layers used to make 150 million tensor entries before the
// size check.
TEST(CorruptLlama2c, LayerCountBeyondTheFileIsRefusedBeforeAllocating) {
  std::vector<uint8_t> b = test::read_bytes(test::source_path("models/stories260K/stories260K.bin"));
  put<int32_t>(b, 8, 1 << 24);
  expect_refused(std::move(b), "2^24 layers", "truncated");
}

TEST(CorruptGguf, VocabOnlyGgufIsATokenizerNotAModel) {
  expect_refused(test::read_bytes(test::shared_path("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf")),
                 "vocab-only", "vocab-only");
}

TEST(CorruptGguf, RandomByteFlipsNeverCrash) {
  const std::vector<uint8_t> whole = golden_bytes("qwen2-q4_k_m.gguf");
  std::mt19937 rng(1234);
  // Header, metadata and tensor table live in the first ~40 KB; flips there change structure.
  std::uniform_int_distribution<size_t> where(0, std::min<size_t>(whole.size() - 1, 45000));
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<uint8_t> bytes = whole;
    for (int k = 0; k < 3; ++k) bytes[where(rng)] ^= static_cast<uint8_t>(1u << (rng() % 8));
    const std::string message = load_and_run(std::move(bytes));
    if (!message.empty()) { EXPECT_EQ(message.find('\n'), std::string::npos) << message; }
  }
}

TEST(CorruptLlama2c, TruncatedAndInconsistentCheckpointsAreRefused) {
  const std::vector<uint8_t> whole = test::read_bytes(test::source_path("models/stories260K/stories260K.bin"));
  for (size_t cut : {size_t{0}, size_t{4}, size_t{27}, size_t{28}, size_t{1000}, whole.size() / 2, whole.size() - 4})
    expect_refused(std::vector<uint8_t>(whole.begin(), whole.begin() + static_cast<long>(cut)),
                   "llama2.c truncated at " + std::to_string(cut));
  std::vector<uint8_t> extra = whole;
  extra.resize(extra.size() + 16);
  expect_refused(extra, "trailing bytes", "trailing");
  for (int field = 0; field < 7; ++field) {
    std::vector<uint8_t> b = whole;
    put<int32_t>(b, 4 * field, field == 5 ? 0 : -3);
    expect_refused(b, "llama2.c header field " + std::to_string(field));
  }
  std::vector<uint8_t> heads = whole;
  put<int32_t>(heads, 12, 7);  // dim 64 is not a multiple of 7 heads
  expect_refused(heads, "heads", "inconsistent");
}

}  // namespace
}  // namespace orchard
