// Bad Hugging Face folders: malformed or inconsistent config.json and damaged safetensors.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "orchard/error.h"
#include "orchard/model.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

const std::string kGolden = "golden/qwen2-hf-f32";

nlohmann::json golden_config() {
  return nlohmann::json::parse(test::read_text(test::shared_path(kGolden + "/config.json")));
}

// Loads a folder holding `config` and `weights`; returns the error message ("" if it loaded).
std::string load_folder(const std::string& config, const std::vector<uint8_t>& weights) {
  test::TempDir dir;
  dir.write("config.json", config);
  dir.write("model.safetensors", weights);
  try {
    Model::load(dir.path());
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::vector<uint8_t> golden_weights() {
  return test::read_bytes(test::shared_path(kGolden + "/model.safetensors"));
}

void expect_config_refused(const std::function<void(nlohmann::json&)>& edit, const std::string& needle) {
  nlohmann::json config = golden_config();
  edit(config);
  const std::string message = load_folder(config.dump(), golden_weights());
  EXPECT_NE(message.find(needle), std::string::npos) << "expected '" << needle << "' in: " << message;
  EXPECT_NE(message.find("config.json"), std::string::npos) << message;
}

TEST(CorruptHf, GoldenFolderLoads) { EXPECT_EQ(load_folder(golden_config().dump(), golden_weights()), ""); }

TEST(CorruptHf, MalformedConfigIsRefused) {
  EXPECT_NE(load_folder("{\"hidden_size\": 256,", golden_weights()).find("not valid JSON"), std::string::npos);
  EXPECT_NE(load_folder("[1, 2]", golden_weights()).find("JSON object"), std::string::npos);
  expect_config_refused([](auto& c) { c.erase("hidden_size"); }, "hidden_size");
  expect_config_refused([](auto& c) { c["hidden_size"] = "256"; }, "hidden_size");
  expect_config_refused([](auto& c) { c["num_hidden_layers"] = -2; }, "num_hidden_layers");
  // More layers than the safetensors hold: an error naming the field, not std::bad_alloc.
  expect_config_refused([](auto& c) { c["num_hidden_layers"] = int64_t{1} << 31; }, "num_hidden_layers");
  expect_config_refused([](auto& c) { c["num_hidden_layers"] = 1 << 20; }, "num_hidden_layers");
  expect_config_refused([](auto& c) { c["architectures"] = {"GPT2LMHeadModel"}; c.erase("model_type"); }, "GPT2LMHeadModel");
  expect_config_refused([](auto& c) { c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }, "yarn");
  expect_config_refused([](auto& c) { c["rms_norm_eps"] = "small"; }, "rms_norm_eps");
  expect_config_refused([](auto& c) { c["tie_word_embeddings"] = "yes"; }, "tie_word_embeddings");
}

TEST(CorruptHf, ConfigInconsistentWithWeightsIsRefused) {
  auto refused = [](const std::function<void(nlohmann::json&)>& edit, const std::string& needle) {
    nlohmann::json config = golden_config();
    edit(config);
    const std::string message = load_folder(config.dump(), golden_weights());
    EXPECT_NE(message.find(needle), std::string::npos) << "expected '" << needle << "' in: " << message;
  };
  refused([](auto& c) { c["num_attention_heads"] = 3; }, "num_attention_heads");
  refused([](auto& c) { c["num_key_value_heads"] = 3; }, "head count");
  refused([](auto& c) { c["intermediate_size"] = 500; }, "shape");
  refused([](auto& c) { c["vocab_size"] = 1000; }, "shape");
  // 3 layers need at least 27 tensors; the 2-layer folder has 26: refused naming the field.
  refused([](auto& c) { c["num_hidden_layers"] = 3; }, "num_hidden_layers = 3");
}

TEST(CorruptHf, DamagedSafetensorsAreRefused) {
  const std::string config = golden_config().dump();
  const std::vector<uint8_t> whole = golden_weights();
  for (size_t cut : {size_t{0}, size_t{7}, size_t{8}, size_t{100}, whole.size() / 2, whole.size() - 1}) {
    const std::string message = load_folder(config, std::vector<uint8_t>(whole.begin(), whole.begin() + static_cast<long>(cut)));
    EXPECT_NE(message.find("model.safetensors"), std::string::npos) << "cut " << cut << ": " << message;
  }
  std::vector<uint8_t> huge_header = whole;
  const uint64_t length = uint64_t{1} << 60;
  std::memcpy(huge_header.data(), &length, 8);
  EXPECT_NE(load_folder(config, huge_header).find("header length"), std::string::npos);

  // Swap a dtype for one Orchard does not read, keeping the header length.
  std::vector<uint8_t> wrong_dtype = whole;
  const std::string from = "\"dtype\":\"F32\"", to = "\"dtype\":\"I64\"";
  auto it = std::search(wrong_dtype.begin(), wrong_dtype.end(), from.begin(), from.end());
  ASSERT_NE(it, wrong_dtype.end());
  std::copy(to.begin(), to.end(), it);
  EXPECT_NE(load_folder(config, wrong_dtype).find("unsupported dtype I64"), std::string::npos);
}

TEST(CorruptHf, MissingFilesAreNamed) {
  test::TempDir dir;
  try {
    Model::load(dir.path());
    FAIL() << "empty folder loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  dir.write("config.json", golden_config().dump());
  try {
    Model::load(dir.path());
    FAIL() << "folder without weights loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace orchard
