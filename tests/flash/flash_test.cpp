// Limited-memory mode: the budget parser, the bounded buffer pool, and logits bitwise identical
// to the mapped model when the weights stream from storage under a budget smaller than them.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "flash/buffer_pool.h"
#include "flash/flash_layout.h"
#include "flash/flash_weights.h"
#include "flash/memory_budget.h"
#include "flash/residency.h"
#include "golden.h"
#include "model/model_impl.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

TEST(MemoryBudget, ParsesSizes) {
  EXPECT_EQ(parse_memory_budget("800M"), 800ull << 20);
  EXPECT_EQ(parse_memory_budget("1.5G"), 3ull << 29);
  EXPECT_EQ(parse_memory_budget("512k"), 512ull << 10);
  EXPECT_EQ(parse_memory_budget("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_memory_budget("100MB"), 100ull << 20);
  EXPECT_EQ(parse_memory_budget("4096"), 4096u);
}

TEST(MemoryBudget, BadValuesNameTheOption) {
  for (const char* bad : {"", "abc", "-1G", "0", "1.2.3G", "5X", "G", "1e9", "99999999999999999999T"}) {
    try {
      parse_memory_budget(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--memory-budget"), std::string::npos) << e.what();
    }
  }
}

TEST(BufferPool, NeverHoldsMoreThanItsCapacity) {
  BufferPool pool(3 * BufferPool::kAlignment, "test pool");
  BufferPool::Buffer a = pool.allocate(100);  // rounds up to a page
  BufferPool::Buffer b = pool.allocate(BufferPool::kAlignment + 1);
  EXPECT_EQ(pool.in_use(), 3 * BufferPool::kAlignment);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % BufferPool::kAlignment, 0u);
  std::memset(b.data(), 1, b.size());
  EXPECT_THROW(pool.allocate(1), Error);
  a.reset();
  BufferPool::Buffer c = pool.allocate(BufferPool::kAlignment);  // room again once released
  EXPECT_THROW(pool.allocate(1), Error);
  EXPECT_LE(pool.peak(), pool.capacity());
  b = std::move(c);  // move-assign releases b's old pages
  EXPECT_EQ(pool.in_use(), BufferPool::kAlignment);
}

uint64_t matrix_bytes(const Model& m) {
  uint64_t n = 0;
  const ModelWeights& w = m.impl().weights;
  n += w.output.nbytes;
  if (w.token_embedding.data != w.output.data) n += w.token_embedding.nbytes;
  for (const LayerWeights& l : w.layers)
    for (int i = 0; i < kLayerMatrices; ++i) n += layer_matrix(l, i).nbytes;
  return n;
}

// Prefill of the short golden sequence, then three tokens decoded one at a time.
std::vector<float> run(std::shared_ptr<const Model> model, KernelChoice kernels, FlashStats* stats = nullptr) {
  const std::vector<int32_t> tokens = test::golden_sequence("short");
  Context ctx(model, {.n_ctx = static_cast<int64_t>(tokens.size()) + 4, .kernels = kernels, .n_threads = 2});
  std::vector<float> logits = ctx.eval(tokens);
  for (int32_t t : {tokens[1], tokens[2], tokens[0]}) {
    const std::vector<float> next = ctx.eval(std::span<const int32_t>(&t, 1));
    logits.insert(logits.end(), next.begin(), next.end());
  }
  if (stats) *stats = ctx.flash_stats();
  return logits;
}

struct StreamCase {
  std::string model;
  KernelChoice kernels;
};

class FlashStreaming : public ::testing::TestWithParam<StreamCase> {};

TEST_P(FlashStreaming, LogitsBitwiseIdenticalToMapped) {
  const StreamCase& c = GetParam();
  const std::string path = test::shared_path("golden/" + c.model);
  // Two activation levels everywhere, as limited-memory mode has (LoadOptions::measure_activation_levels).
  auto mapped = Model::load(path, {.kernels = c.kernels, .measure_activation_levels = false});
  const std::vector<float> expected = run(mapped, c.kernels);
  const ModelWeights& w = mapped->impl().weights;
  const bool pack = c.kernels == KernelChoice::fast;
  const uint64_t weights = matrix_bytes(*mapped);
  // Everything streamed but the vectors, and (one byte short of the weights) most resident.
  const uint64_t minimum = minimum_memory_budget(w, mapped->impl().files.front()->data(), pack);
  // With the fast kernels, both ways of streaming: packed matrices read from the flash layout
  // (built in a fresh folder), and packed as they are read.
  const test::TempDir cache;
  const bool packable = pack && packed_format_for(w.layers.front().wq.type).has_value();
  for (const bool layout : {true, false})
    for (const uint64_t budget : {minimum, weights - 1}) {
      SCOPED_TRACE("budget " + std::to_string(budget) + " of weights " + std::to_string(weights) +
                   (layout ? ", flash layout" : ", no flash layout"));
      ASSERT_LT(budget, weights);
      auto streamed = Model::load(path, {.kernels = c.kernels, .memory_budget = budget, .flash_layout = layout,
                                         .flash_layout_dir = cache.path()});
      FlashStats stats;
      const std::vector<float> actual = run(streamed, c.kernels, &stats);
      EXPECT_TRUE(stats.active);
      EXPECT_EQ(stats.flash_layout, layout && packable);
      EXPECT_GT(stats.bytes_read, 0u);
      EXPECT_LE(stats.resident_bytes + stats.stream_buffer_bytes, budget);
      ASSERT_EQ(actual.size(), expected.size());
      EXPECT_EQ(std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)), 0);
      if (budget == minimum) {
        EXPECT_GE(stats.bytes_read, 4 * stats.streamed_bytes_per_pass);  // 4 passes, each reads it all
      }
    }
}

INSTANTIATE_TEST_SUITE_P(Golden, FlashStreaming,
                         ::testing::Values(StreamCase{"llama-q4_0.gguf", KernelChoice::reference},
                                           StreamCase{"llama-q4_0.gguf", KernelChoice::fast},
                                           StreamCase{"qwen2-q4_k_m.gguf", KernelChoice::reference},
                                           // (qwen2-q4_k_m packed: two layers in flight already
                                           // take more than its two layers, so no budget below
                                           // its weights streams; the untied llama one does.)
                                           StreamCase{"llama-q4_k_m.gguf", KernelChoice::fast},
                                           StreamCase{"qwen3-f32.gguf", KernelChoice::reference},
                                           StreamCase{"qwen3-f32.gguf", KernelChoice::fast}),
                         [](const auto& info) {
                           std::string name = info.param.model.substr(0, info.param.model.find('.'));
                           for (char& ch : name)
                             if (ch == '-') ch = '_';
                           return name + (info.param.kernels == KernelChoice::fast ? "_fast" : "_reference");
                         });

// The output matrix streamed in chunks of 48 rows (the tiny models' output is smaller than a
// layer, so it is otherwise one chunk): each logit lands in its place, bitwise.
TEST(FlashStreaming, OutputInChunks) {
  for (const KernelChoice kernels : {KernelChoice::reference, KernelChoice::fast}) {
    const std::string path = test::shared_path("golden/qwen2-q4_0.gguf");
    auto mapped = Model::load(path, {.kernels = kernels, .measure_activation_levels = false});
    const std::vector<float> expected = run(mapped, kernels);
    ::setenv("ORCHARD_FLASH_CHUNK_ROWS", "48", 1);
    const uint64_t minimum = minimum_memory_budget(mapped->impl().weights, mapped->impl().files.front()->data(),
                                                   kernels == KernelChoice::fast);
    std::shared_ptr<const Model> streamed;
    try {
      streamed = Model::load(path, {.kernels = kernels, .memory_budget = minimum});
    } catch (...) {
      ::unsetenv("ORCHARD_FLASH_CHUNK_ROWS");
      throw;
    }
    ::unsetenv("ORCHARD_FLASH_CHUNK_ROWS");
    EXPECT_GT(flash_weights(streamed->impl())->plan.units.size(), 2 + 1024 / 48u);  // 2 layers, 22 chunks
    const std::vector<float> actual = run(streamed, kernels);
    ASSERT_EQ(actual.size(), expected.size());
    EXPECT_EQ(std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)), 0);
  }
}

// The smallest budget that streams `path` with the fast kernels, with or without a flash layout.
uint64_t minimum_budget(const std::string& path) {
  auto mapped = Model::load(path);
  return minimum_memory_budget(mapped->impl().weights, mapped->impl().files.front()->data(), true);
}

// The flash layout is built once, reused by the next load, and rebuilt when its file is damaged
// (cut short, or a header that does not match): every time with the mapped model's logits.
TEST(FlashLayout, BuiltOnceReusedAndRebuiltWhenDamaged) {
  const std::string path = test::shared_path("golden/llama-q4_0.gguf");
  const std::vector<float> expected = run(Model::load(path, {.measure_activation_levels = false}), KernelChoice::fast);
  const test::TempDir cache;
  const auto load = [&] {
    auto model = Model::load(path, {.memory_budget = minimum_budget(path), .flash_layout_dir = cache.path()});
    EXPECT_EQ(run(model, KernelChoice::fast), expected);
    return model;
  };
  const auto built_now = [](const std::shared_ptr<const Model>& m) {
    return m->impl().flash && flash_weights(m->impl())->layout && flash_weights(m->impl())->layout->built_now();
  };
  auto first = load();
  ASSERT_TRUE(built_now(first));
  const std::string file = flash_weights(first->impl())->layout->path();
  EXPECT_EQ(std::filesystem::path(file).parent_path(), std::filesystem::path(cache.path()));
  EXPECT_FALSE(built_now(load()));

  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 4096);
  EXPECT_TRUE(built_now(load()));
  {
    std::fstream header(file, std::ios::in | std::ios::out | std::ios::binary);
    header.seekp(9);
    header.put('\x7f');
  }
  EXPECT_TRUE(built_now(load()));
  EXPECT_FALSE(built_now(load()));
  // No temporary files left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(cache.path()), {}), 1);
}

// Flipped bytes inside the packed tiles, header and size intact (once used silently: logits off by
// up to 1.3): the tile checksums find them and the damaged layout is never used. A resident
// matrix is read at load, which then rebuilds the layout; a streamed one fails its pass with an
// error naming the file, which is removed so that the next load rebuilds it. Either way no logits
// from damaged bytes.
TEST(FlashLayout, FlippedTileBytesAreFoundAndNeverUsed) {
  const std::string path = test::shared_path("golden/llama-q4_0.gguf");
  const std::vector<float> expected = run(Model::load(path, {.measure_activation_levels = false}), KernelChoice::fast);
  const test::TempDir cache;
  const uint64_t budget = minimum_budget(path);
  const auto load = [&] { return Model::load(path, {.memory_budget = budget, .flash_layout_dir = cache.path()}); };
  std::string file;
  {
    auto first = load();
    ASSERT_TRUE(first->impl().flash && flash_weights(first->impl())->layout);
    file = flash_weights(first->impl())->layout->path();
    EXPECT_EQ(run(first, KernelChoice::fast), expected);
  }
  int refused = 0, rebuilt = 0;
  for (int eighth = 1; eighth < 8; ++eighth) {
    const uint64_t size = std::filesystem::file_size(file);
    const uint64_t at = size * static_cast<uint64_t>(eighth) / 8 + 123;
    {
      std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(static_cast<std::streamoff>(at));
      const char byte = static_cast<char>(f.get());
      f.seekp(static_cast<std::streamoff>(at));
      f.put(static_cast<char>(byte ^ 0x5a));
    }
    try {
      auto model = load();
      if (flash_weights(model->impl())->layout->built_now()) ++rebuilt;
      EXPECT_EQ(run(model, KernelChoice::fast), expected) << "damage at " << at << " of " << size;
    } catch (const Error& e) {
      ++refused;
      const std::string message = e.what();
      EXPECT_NE(message.find(file), std::string::npos) << message;
      EXPECT_NE(message.find("damaged"), std::string::npos) << message;
      EXPECT_FALSE(std::filesystem::exists(file)) << "a damaged layout was kept";
      auto again = load();
      EXPECT_TRUE(flash_weights(again->impl())->layout->built_now());
      EXPECT_EQ(run(again, KernelChoice::fast), expected);
    }
  }
  // Most flips land in tiles (a few may hit the padding between matrices, which nothing reads).
  EXPECT_GE(refused + rebuilt, 4) << refused << " refused, " << rebuilt << " rebuilt";
}

// The checksum is cheap enough to verify every read: it must run well above storage speeds.
TEST(FlashLayout, TileHashIsFastAndSensitive) {
  std::vector<uint8_t> bytes(8u << 20);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  const uint64_t h = layout_tile_hash(bytes.data(), bytes.size(), 7);
  EXPECT_NE(layout_tile_hash(bytes.data(), bytes.size(), 8), h);  // the seed (tile's place) counts
  for (size_t at : {size_t{0}, size_t{31}, bytes.size() / 2 + 5, bytes.size() - 1}) {
    bytes[at] ^= 1;
    EXPECT_NE(layout_tile_hash(bytes.data(), bytes.size(), 7), h) << at;
    bytes[at] ^= 1;
  }
  const auto start = std::chrono::steady_clock::now();
  uint64_t sink = 0;
  for (int r = 0; r < 8; ++r) sink += layout_tile_hash(bytes.data(), bytes.size(), static_cast<uint64_t>(r));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double gb_per_s = 8.0 * static_cast<double>(bytes.size()) / seconds / 1e9;
  std::printf("layout_tile_hash: %.1f GB/s (%llx)\n", gb_per_s, static_cast<unsigned long long>(sink));
  EXPECT_GT(gb_per_s, 1.0);  // loose: sanitizer and emulated builds are slow
}

TEST(FlashLayout, UnwritableFolderFallsBackToPackingOnRead) {
  const std::string path = test::shared_path("golden/llama-q4_0.gguf");
  const std::vector<float> expected = run(Model::load(path, {.measure_activation_levels = false}), KernelChoice::fast);
  const test::TempDir cache;
  const std::string not_a_folder = cache.write("file", "x");
  auto model = Model::load(path, {.memory_budget = minimum_budget(path), .flash_layout_dir = not_a_folder + "/cache"});
  FlashStats stats;
  EXPECT_EQ(run(model, KernelChoice::fast, &stats), expected);
  EXPECT_TRUE(stats.active);
  EXPECT_FALSE(stats.flash_layout);
  EXPECT_FALSE(flash_weights(model->impl())->layout_note.empty());
}

TEST(FlashStreaming, BudgetTooSmallNamesTheOption) {
  const std::string path = test::shared_path("golden/llama-q4_0.gguf");
  try {
    Model::load(path, {.kernels = KernelChoice::reference, .memory_budget = 1024});
    FAIL() << "a 1 KiB budget was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--memory-budget"), std::string::npos) << e.what();
  }
}

TEST(FlashStreaming, BudgetAboveTheWeightsKeepsThemMapped) {
  auto model = Model::load(test::shared_path("golden/llama-q4_0.gguf"),
                           {.kernels = KernelChoice::reference, .memory_budget = 1ull << 40});
  FlashStats stats;
  run(model, KernelChoice::reference, &stats);
  EXPECT_FALSE(stats.active);
}

}  // namespace
}  // namespace orchard
