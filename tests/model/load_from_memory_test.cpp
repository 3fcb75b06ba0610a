// Model::load_from_memory takes the same LoadOptions as Model::load: each one is honoured as
// load honours it, or refused with an error, never dropped in silence.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "orchard/error.h"
#include "orchard/model.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

const std::vector<int32_t> kTokens = {1, 5, 9, 2, 7, 3};

std::vector<float> logits(const std::shared_ptr<const Model>& model, KernelChoice kernels) {
  Context context(model, {.n_ctx = 16, .kernels = kernels, .n_threads = 1});
  return context.eval(kTokens);
}

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what;
}

// Every field of LoadOptions, named: a new option makes this fail to compile until
// load_from_memory handles it and a test here covers it.
TEST(LoadFromMemory, TheOptionsCoveredHereAreAllTheOptions) {
  [[maybe_unused]] const auto& [kernels, on_progress, memory_budget, flash_layout, flash_layout_dir,
                                 measure_activation_levels] = LoadOptions{};
  SUCCEED();
}

// The kernels option: with the fast kernels the matrices are packed as Model::load packs them
// (so the fast path gives the same bits), and packing keeps the original tensors readable (the
// reference kernels and the embedding lookup still use them: pages of bytes in memory must not
// be released as a mapped file's are).
TEST(LoadFromMemory, KernelsAreHonouredAsModelLoadHonoursThem) {
  for (const char* relative : {"golden/llama-q4_k_m.gguf", "golden/qwen2-q8_0.gguf", "golden/qwen3-q4_0.gguf",
                               "models/tiny-chat/tiny-qwen2-chat-q8_0.gguf", "models/stories260K/stories260K.bin"}) {
    const std::string path = test::shared_path(relative);
    for (KernelChoice load_kernels : {KernelChoice::fast, KernelChoice::reference}) {
      const std::string what = std::string(relative) + (load_kernels == KernelChoice::fast ? " fast" : " reference");
      const auto from_file = Model::load(path, {.kernels = load_kernels});
      const auto from_memory = Model::load_from_memory(test::read_bytes(path), path, {.kernels = load_kernels});
      for (KernelChoice run : {KernelChoice::fast, KernelChoice::reference})
        expect_same_bits(logits(from_file, run), logits(from_memory, run),
                         what + (run == KernelChoice::fast ? ", run fast" : ", run reference"));
    }
  }
}

// The activation levels: measured (the default) or two everywhere, as Model::load chooses them; on
// qwen3-q4_0 the measured choice is a mix, so the two loads differ.
TEST(LoadFromMemory, ActivationLevelsAreChosenAsModelLoadChoosesThem) {
  const std::string path = test::shared_path("golden/qwen3-q4_0.gguf");
  std::vector<float> measured, two;
  for (const bool measure : {true, false}) {
    const auto from_file = Model::load(path, {.measure_activation_levels = measure});
    const auto from_memory = Model::load_from_memory(test::read_bytes(path), path, {.measure_activation_levels = measure});
    const Model::MatmulWork work = from_memory->matmul_work();
    EXPECT_EQ(work.layer_single_level_macs > 0, measure);
    EXPECT_EQ(from_file->matmul_work().layer_single_level_macs, work.layer_single_level_macs);
    (measure ? measured : two) = logits(from_memory, KernelChoice::fast);
    expect_same_bits(logits(from_file, KernelChoice::fast), measure ? measured : two, measure ? "measured" : "two");
  }
  EXPECT_NE(measured, two);
}

TEST(LoadFromMemory, ProgressIsReportedUpToOne) {
  const std::string path = test::shared_path("golden/llama-q4_0.gguf");
  for (KernelChoice kernels : {KernelChoice::fast, KernelChoice::reference}) {
    std::vector<double> seen;
    Model::load_from_memory(test::read_bytes(path), path,
                            {.kernels = kernels, .on_progress = [&](double f) { seen.push_back(f); }});
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back(), 1.0);
    for (size_t i = 1; i < seen.size(); ++i) EXPECT_LE(seen[i - 1], seen[i]);
  }
}

// Limited-memory mode reads weights from a file: bytes in memory cannot honour a budget, so it
// is refused. Its flash_layout options only apply under a budget.
TEST(LoadFromMemory, AMemoryBudgetIsRefusedNamingTheModel) {
  const std::string path = test::shared_path("golden/llama-q4_0.gguf");
  try {
    Model::load_from_memory(test::read_bytes(path), "in-memory.gguf", {.memory_budget = 1 << 20});
    FAIL() << "a memory budget was accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("in-memory.gguf"), std::string::npos) << message;
    EXPECT_NE(message.find("memory budget"), std::string::npos) << message;
  }
  EXPECT_THROW(Model::load_from_memory(test::read_bytes(path), "x.gguf", {.memory_budget = 1, .flash_layout = false}),
               Error);
}

}  // namespace
}  // namespace orchard
