// The qwen3 and llama3 chat templates rendered as Python jinja2 (transformers) renders them.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "template/chat_template.h"
#include "template/chat_template_config.h"
#include "test_paths.h"

namespace orchard {
namespace {

nlohmann::ordered_json read_json(const std::string& path) {
  std::ifstream file(path);
  EXPECT_TRUE(file.good()) << path;
  return nlohmann::ordered_json::parse(file);
}

TEST(ExpectedRenders, AllCasesMatchPythonByteForByte) {
  const auto expected = read_json(test::shared_path("chat_templates/expected_renders.json"));
  const auto& cases = expected.at("cases");
  ASSERT_EQ(cases.size(), 16u);
  for (const auto& c : cases) {
    const std::string label = c.at("template").get<std::string>() + " / " + c.at("conversation").get<std::string>() +
                              (c.at("add_generation_prompt").get<bool>() ? " +gen" : "");
    ASSERT_TRUE(c.at("error").is_null()) << label;
    const auto config = read_chat_template_config(test::shared_path(c.at("template").get<std::string>()));
    const auto& inputs = c.at("inputs");
    const std::string rendered =
        render_chat(config.chat_template, inputs.at("messages"), inputs.value("tools", nlohmann::ordered_json()),
                    c.at("add_generation_prompt").get<bool>(), inputs.at("bos_token").get<std::string>(),
                    inputs.at("eos_token").get<std::string>());
    EXPECT_EQ(rendered, c.at("expected").get<std::string>()) << label;
  }
}

}  // namespace
}  // namespace orchard
