// Loading models from every source format, and what the loaders must agree on.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "golden.h"
#include "model/model_impl.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

std::vector<float> logits_of(const std::string& path, const std::vector<int32_t>& tokens) {
  Context context(Model::load(path), {.kernels = KernelChoice::reference});
  return context.eval(tokens);
}

TEST(ModelLoad, Llama3RopeFactorsFromConfigEqualGgufRopeFreqs) {
  auto hf = Model::load(test::shared_path("golden/llama-hf-f32"));
  auto gguf = GgufFile::open(test::shared_path("golden/llama-f32.gguf"));
  const GgufTensor* freqs = gguf->find_tensor("rope_freqs.weight");
  ASSERT_NE(freqs, nullptr);
  std::vector<float> expected(static_cast<size_t>(freqs->element_count()));
  dequantize_row(freqs->type, freqs->data, expected.data(), freqs->element_count());
  const std::vector<float>& computed = hf->rope_freq_factors();
  ASSERT_EQ(computed.size(), expected.size());
  // Both sides round a float64 computation to float32: allow one unit in the last place.
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(computed[i], expected[i], expected[i] * 1.2e-7f) << "pair " << i;
  // The scaling must actually do something on this model (factor 8 at low frequencies).
  EXPECT_FLOAT_EQ(expected.back(), 8.0f);
  EXPECT_FLOAT_EQ(expected.front(), 1.0f);
}

TEST(ModelLoad, DescribesGoldenArchitectures) {
  auto llama = Model::load(test::shared_path("golden/llama-q4_k_m.gguf"));
  EXPECT_EQ(llama->config().architecture, "llama");
  EXPECT_EQ(llama->config().rope_style, RopeStyle::interleaved);
  EXPECT_TRUE(llama->config().has_rope_freq_factors);
  EXPECT_FALSE(llama->config().tied_output);
  auto qwen2 = Model::load(test::shared_path("golden/qwen2-f16.gguf"));
  EXPECT_EQ(qwen2->config().rope_style, RopeStyle::neox);
  EXPECT_TRUE(qwen2->config().qkv_bias);
  EXPECT_TRUE(qwen2->config().tied_output);
  auto qwen3 = Model::load(test::shared_path("golden/qwen3-hf-f32"));
  EXPECT_EQ(qwen3->config().head_dim, 96);
  EXPECT_TRUE(qwen3->config().qk_norm);
  EXPECT_EQ(qwen3->config().n_vocab, 1024);
  auto hf_llama = Model::load(test::shared_path("golden/llama-hf-bf16/config.json"));
  EXPECT_EQ(hf_llama->config().rope_style, RopeStyle::neox);
}

TEST(ModelLoad, Stories260KGgufAndLlama2cCheckpointGiveIdenticalLogits) {
  const std::vector<int32_t> tokens = {1, 403, 407, 261, 378, 10, 300, 511, 0, 2};
  const auto from_gguf = logits_of(test::source_path("models/stories260K/stories260K.gguf"), tokens);
  const auto from_bin = logits_of(test::source_path("models/stories260K/stories260K.bin"), tokens);
  ASSERT_EQ(from_gguf.size(), tokens.size() * 512);
  EXPECT_EQ(from_gguf, from_bin);
}

// Writes a safetensors file holding `tensors` (names as stored, shapes contiguous-first).
void write_safetensors(const std::string& path, const std::vector<TensorRef>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const TensorRef& t : tensors) {
    std::vector<int64_t> shape(t.shape.rbegin(), t.shape.rend());
    header[t.name] = {{"dtype", std::string(dtype_name(t.type))}, {"shape", shape},
                      {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  const std::string text = header.dump();
  std::ofstream out(path, std::ios::binary);
  const uint64_t length = text.size();
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << text;
  for (const TensorRef& t : tensors)
    out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
}

TEST(ModelLoad, ShardedSafetensorsMatchTheSingleFile) {
  const std::string original = test::shared_path("golden/qwen2-hf-f32");
  SafetensorsSet set = load_safetensors_folder(original);
  ASSERT_GT(set.tensors.size(), 4u);
  test::TempDir dir;
  dir.write("config.json", test::read_text(original + "/config.json"));
  const size_t half = set.tensors.size() / 2;
  std::vector<TensorRef> first(set.tensors.begin(), set.tensors.begin() + half);
  std::vector<TensorRef> second(set.tensors.begin() + half, set.tensors.end());
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), first);
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), second);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (size_t i = 0; i < set.tensors.size(); ++i)
    index["weight_map"][set.tensors[i].name] =
        i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  dir.write("model.safetensors.index.json", index.dump());

  const auto tokens = test::golden_sequence("short");
  EXPECT_EQ(logits_of(dir.path(), tokens), logits_of(original, tokens));
}

}  // namespace
}  // namespace orchard
