// `orchard template` and the public ChatTemplate API against the expected renders.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "orchard/chat_template.h"
#include "test_paths.h"

namespace orchard {
namespace {

nlohmann::ordered_json expected_case(const std::string& template_file, const std::string& conversation, bool generation) {
  std::ifstream file(test::shared_path("chat_templates/expected_renders.json"));
  const auto all = nlohmann::ordered_json::parse(file);
  for (const auto& c : all.at("cases"))
    if (c.at("template") == template_file && c.at("conversation") == conversation &&
        c.at("add_generation_prompt") == generation)
      return c;
  ADD_FAILURE() << "no case " << template_file << " " << conversation;
  return {};
}

struct CommandResult {
  int exit_code;
  std::string output;
};

CommandResult run_command(const std::string& command) {
  CommandResult result{-1, ""};
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string write_temp(const std::string& name, const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() / ("orchard_template_test_" + std::to_string(getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

TEST(TemplateCli, PrintsTheRenderExactly) {
  const auto c = expected_case("tokenizers/qwen3/tokenizer_config.json", "tools_call_and_result", true);
  auto input = c.at("inputs");
  input["add_generation_prompt"] = true;
  const std::string input_path = write_temp("tools.json", input.dump());
  const auto result = run_command(test::cli_path() + " template --tokenizer-config " +
                                  test::shared_path("tokenizers/qwen3/tokenizer_config.json") + " --input-json " + input_path);
  std::filesystem::remove(input_path);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.output, c.at("expected").get<std::string>());
}

TEST(TemplateCli, TakesSpecialTokensFromTheTokenizerConfigWhenTheInputLacksThem) {
  // The llama3 config's bos_token is <|begin_of_text|>, the one the expected render used.
  const auto c = expected_case("tokenizers/llama3/tokenizer_config.json", "system_multi_turn", false);
  nlohmann::ordered_json input;
  input["messages"] = c.at("inputs").at("messages");
  const std::string input_path = write_temp("llama.json", input.dump());
  const auto result = run_command(test::cli_path() + " template --tokenizer-config " +
                                  test::shared_path("tokenizers/llama3/tokenizer_config.json") + " --input-json " + input_path);
  std::filesystem::remove(input_path);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.output, c.at("expected").get<std::string>());
}

TEST(TemplateCli, TemplateErrorsExitWithCodeTwo) {
  const std::string config_path = write_temp("config.json", R"({"chat_template": "line 1\n{{ raise_exception('no system role') }}"})");
  const std::string input_path = write_temp("input.json", R"({"messages": []})");
  const auto result = run_command(test::cli_path() + " template --tokenizer-config " + config_path + " --input-json " +
                                  input_path + " 2>&1");
  std::filesystem::remove(config_path);
  std::filesystem::remove(input_path);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("line 2"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("no system role"), std::string::npos) << result.output;
}

TEST(TemplateCli, ChoosesTheDefaultFromANamedTemplateListAndPassesExtraKeys) {
  const std::string config_path = write_temp(
      "named.json",
      R"({"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "{{ bos_token }}{{ greeting }} {{ messages|length }}"}], "bos_token": {"content": "<s>"}})");
  const std::string input_path = write_temp("extra.json", R"({"messages": [{"role": "user", "content": "x"}], "greeting": "hi"})");
  const auto result = run_command(test::cli_path() + " template --tokenizer-config " + config_path + " --input-json " + input_path);
  std::filesystem::remove(config_path);
  std::filesystem::remove(input_path);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.output, "<s>hi 1");
}

TEST(PublicChatTemplate, RendersFromTheTokenizerConfig) {
  const auto c = expected_case("tokenizers/qwen3/tokenizer_config.json", "tools_call_and_result", false);
  const auto chat = ChatTemplate::from_tokenizer_config(test::shared_path("tokenizers/qwen3/tokenizer_config.json"));
  EXPECT_EQ(chat.eos_token(), "<|im_end|>");
  EXPECT_EQ(chat.render_chat(c.at("inputs").at("messages").dump(), c.at("inputs").at("tools").dump(), false),
            c.at("expected").get<std::string>());
}

TEST(PublicChatTemplate, ExtraVariablesReachTheTemplate) {
  const auto chat = ChatTemplate::from_tokenizer_config(test::shared_path("tokenizers/qwen3/tokenizer_config.json"));
  const std::string rendered =
      chat.render_chat(R"([{"role": "user", "content": "Hi"}])", "", true, R"({"enable_thinking": false})");
  EXPECT_EQ(rendered, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

}  // namespace
}  // namespace orchard
