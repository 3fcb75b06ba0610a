#include "runtime/tool_calls.h"

#include <gtest/gtest.h>

namespace orchard {
namespace {

TEST(ToolCalls, ParsesQwenStyleCalls) {
  const ParsedReply r = parse_tool_calls(
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.tool_calls[0].arguments_json, "{\"city\":\"Paris\",\"days\":2}");
  EXPECT_EQ(r.tool_calls[1].name, "now");
  EXPECT_EQ(r.content, "");
}

TEST(ToolCalls, KeepsTextAndMalformedBlocks) {
  const ParsedReply plain = parse_tool_calls("Just an answer.");
  EXPECT_TRUE(plain.tool_calls.empty());
  EXPECT_EQ(plain.content, "Just an answer.");
  const ParsedReply broken = parse_tool_calls("<tool_call>{\"name\": </tool_call>");
  EXPECT_TRUE(broken.tool_calls.empty());
  EXPECT_EQ(broken.content, "<tool_call>{\"name\": </tool_call>");
  const ParsedReply mixed = parse_tool_calls("Let me check.\n<tool_call>{\"name\": \"f\"}</tool_call>");
  ASSERT_EQ(mixed.tool_calls.size(), 1u);
  EXPECT_EQ(mixed.tool_calls[0].arguments_json, "{}");
  EXPECT_EQ(mixed.content, "Let me check.");
}

TEST(ToolCalls, RecognizesTheStartOfACall) {
  EXPECT_TRUE(may_start_tool_call(""));
  EXPECT_TRUE(may_start_tool_call("\n<tool"));
  EXPECT_TRUE(may_start_tool_call("<tool_call>\n{\"na"));
  EXPECT_FALSE(may_start_tool_call("Hello"));
  EXPECT_FALSE(may_start_tool_call("<tools"));
}

}  // namespace
}  // namespace orchard
