// API keys (SHA-256 against FIPS 180-4's examples and Python's hashlib, the constant-time compare,
// the Authorization header, key files) and the built-in chat templates, each rendered to the
// text its format describes, written out by hand.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <string>

#include <nlohmann/json.hpp>

#include "orchard/error.h"
#include "runtime/tool_calls.h"
#include "server/api_keys.h"
#include "server/builtin_chat_templates.h"
#include "template/chat_template.h"

namespace orchard::server {
namespace {

using json = nlohmann::ordered_json;

std::string hex(const Sha256Digest& d) {
  std::string out;
  char buf[3];
  for (uint8_t b : d) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

TEST(Sha256, KnownDigests) {
  // FIPS 180-4's examples (one block, two blocks), the empty message and a million 'a'.
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex(sha256(std::string(1000000, 'a'))), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Lengths around the padding's block boundary (Python's hashlib.sha256(b'a' * n)).
  const std::pair<size_t, const char*> around[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"}};
  for (const auto& [n, digest] : around) EXPECT_EQ(hex(sha256(std::string(n, 'a'))), digest) << n;
}

TEST(ApiKeys, BearerTokensAgainstEveryKey) {
  Sha256Digest a = sha256("x"), b = a;
  EXPECT_TRUE(digests_equal(a, b));
  b[31] ^= 1;
  EXPECT_FALSE(digests_equal(a, b));
  b = a;
  b[0] ^= 0x80;
  EXPECT_FALSE(digests_equal(a, b));

  const ApiKeys none;
  EXPECT_FALSE(none.enabled());
  const ApiKeys keys({"sk-one", "sk-two"});
  EXPECT_TRUE(keys.enabled());
  EXPECT_TRUE(keys.accepts("Bearer sk-one"));
  EXPECT_TRUE(keys.accepts("Bearer sk-two"));
  EXPECT_TRUE(keys.accepts("bearer sk-two"));
  EXPECT_TRUE(keys.accepts("BEARER   sk-one  "));
  EXPECT_FALSE(keys.accepts(std::nullopt));
  EXPECT_FALSE(keys.accepts(""));
  EXPECT_FALSE(keys.accepts("Bearer"));
  EXPECT_FALSE(keys.accepts("Bearer "));
  EXPECT_FALSE(keys.accepts("sk-one"));
  EXPECT_FALSE(keys.accepts("Basic sk-one"));
  EXPECT_FALSE(keys.accepts("Bearer sk-on"));
  EXPECT_FALSE(keys.accepts("Bearer sk-one1"));
  EXPECT_FALSE(keys.accepts("Bearer sk-three"));
  EXPECT_FALSE(keys.accepts(std::string_view("Bearer sk-one\0", 14)));
}

TEST(ApiKeys, KeyFilesAndBadKeys) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("orchard_api_keys_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  EXPECT_EQ(read_api_key_file(write("ok", "# the team's keys\nsk-a\n\n  sk-b  \r\nsk-c")), (std::vector<std::string>{"sk-a", "sk-b", "sk-c"}));
  try {
    read_api_key_file(write("space", "sk-a\nsk b\n"));
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("space:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_api_key_file(write("empty", "# none\n\n")), Error);
  EXPECT_THROW(read_api_key_file((dir / "missing").string()), Error);
  EXPECT_THROW(check_api_key("", "--api-key"), Error);
  EXPECT_THROW(check_api_key("a\x01", "--api-key"), Error);
  EXPECT_THROW(check_api_key(std::string(4097, 'a'), "--api-key"), Error);
  EXPECT_NO_THROW(check_api_key("sk-proj_ABC.123~x", "--api-key"));
  std::filesystem::remove_all(dir);
}

// ---- the built-in chat templates, each against its format's text written out by hand ----

std::string render(const std::string& name, const json& messages, const json& tools = nullptr, const std::string& bos = "") {
  return render_chat(builtin_chat_template(name), messages, tools, true, bos, "");
}

const json kConversation = json::array({{{"role", "system"}, {"content", "Be brief."}},
                                        {{"role", "user"}, {"content", "Hi"}},
                                        {{"role", "assistant"}, {"content", "Hello!"}},
                                        {{"role", "user"}, {"content", "Bye"}}});

TEST(BuiltinChatTemplates, ChatML) {
  EXPECT_EQ(render("chatml", kConversation),
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Without the generation prompt, and an assistant message without content.
  EXPECT_EQ(render_chat(builtin_chat_template("chatml"), json::array({{{"role", "user"}, {"content", "a"}}, {{"role", "assistant"}}}),
                        nullptr, false, "", ""),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n");
}

TEST(BuiltinChatTemplates, Llama3) {
  json messages = kConversation;
  messages[1]["content"] = "  Hi \n";  // content is trimmed, as Meta's template does
  EXPECT_EQ(render("llama3", messages, nullptr, "<|begin_of_text|>"),
            "<|begin_of_text|>"
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(BuiltinChatTemplates, QwenWithToolsCallsAndResults) {
  EXPECT_EQ(render("qwen", json::array({{{"role", "user"}, {"content", "Hi"}}})), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render("qwen", kConversation), render("chatml", kConversation));  // without tools: ChatML

  const json tools = json::array({{{"type", "function"},
                                   {"function", {{"name", "get_weather"},
                                                 {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}}});
  const json messages = json::array(
      {{{"role", "system"}, {"content", "Be brief."}},
       {{"role", "user"}, {"content", "Weather in Paris?"}},
       {{"role", "assistant"}, {"content", ""},
        {"tool_calls", json::array({{{"id", "c1"}, {"type", "function"},
                                     {"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}})}},
       {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "18 C"}},
       {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "clear"}}});
  const std::string text = render("qwen", messages, tools);
  EXPECT_EQ(text,
            "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou can call the functions described inside <tools></tools>:\n<tools>\n"
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
            "\"properties\": {\"city\": {\"type\": \"string\"}}}}}\n</tools>\n\n"
            "To call a function, answer with a JSON object of its name and arguments inside <tool_call></tool_call> tags:\n"
            "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n18 C\n</tool_response>\n<tool_response>\nclear\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n");
  // The call as the template writes it is what the server parses out of a reply.
  const size_t at = text.find("<|im_start|>assistant\n<tool_call>") + std::string("<|im_start|>assistant\n").size();
  const ParsedReply reply = parse_tool_calls(text.substr(at, text.find("<|im_end|>", at) - at));
  ASSERT_EQ(reply.tool_calls.size(), 1u);
  EXPECT_EQ(reply.tool_calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(reply.tool_calls[0].arguments_json), json({{"city", "Paris"}}));
  EXPECT_EQ(reply.content, "");

  // Text before the calls, two calls, arguments given as a string; tools without a system message.
  const json two = json::array(
      {{{"role", "user"}, {"content", "Go"}},
       {{"role", "assistant"}, {"content", "Sure."},
        {"tool_calls", json::array({{{"function", {{"name", "a"}, {"arguments", "{\"x\": 1}"}}}}, {{"function", {{"name", "b"}}}}})}}});
  const std::string t2 = render("qwen", two, tools);
  EXPECT_EQ(t2.substr(t2.find("<|im_start|>user")),
            "<|im_start|>user\nGo<|im_end|>\n"
            "<|im_start|>assistant\nSure.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n"
            "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call><|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t2.rfind("<|im_start|>system\n# Tools\n\n", 0), 0u);
}

TEST(BuiltinChatTemplates, NamesAndFiles) {
  EXPECT_EQ(builtin_chat_template_names(), (std::vector<std::string>{"chatml", "llama3", "qwen"}));
  try {
    builtin_chat_template("vicuna");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chatml, llama3, qwen"), std::string::npos) << e.what();
  }
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("orchard_templates_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string good = (dir / "good.jinja").string(), bad = (dir / "bad.jinja").string();
  std::ofstream(good) << "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}";
  std::ofstream(bad) << "line one\n{% for m in messages %}\n{{ m.content }\n";
  EXPECT_EQ(render_chat(read_chat_template_file(good), kConversation, nullptr, true, "", ""),
            "[system] Be brief.\n[user] Hi\n[assistant] Hello!\n[user] Bye\n");
  for (const std::string& path : {bad, (dir / "missing.jinja").string()}) {
    try {
      read_chat_template_file(path);
      ADD_FAILURE() << path << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--chat-template-file " + path), std::string::npos) << e.what();
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace orchard::server
