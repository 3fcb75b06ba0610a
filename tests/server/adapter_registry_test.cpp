// What a request's "model" chooses (AdapterRegistry::resolve, docs/server.md "Adapters"), and the
// refusals of POST/DELETE /v1/adapters that come before any file is read. Loading real adapters
// over HTTP is tests/server/adapters/adapter_test.py.
#include "server/adapter_registry.h"

#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <string>

#include "orchard/model.h"
#include "server/openai_protocol.h"
#include "test_paths.h"

namespace orchard::server {
namespace {

// The status and code of the RequestError `f` throws; {0, ""} when it throws none.
template <typename F>
std::pair<int, std::string> refusal(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const RequestError& e) {
    if (message) *message = e.what();
    return {e.status, e.code};
  }
  return {0, ""};
}

const std::string kBase = "base-model.gguf";

TEST(AdapterNames, ValidNames) {
  EXPECT_TRUE(valid_adapter_name("a"));
  EXPECT_TRUE(valid_adapter_name("sql-v2.1_final"));
  EXPECT_TRUE(valid_adapter_name(std::string(64, 'x')));
  EXPECT_FALSE(valid_adapter_name(""));
  EXPECT_FALSE(valid_adapter_name(std::string(65, 'x')));
  for (const char* bad : {"a:b", "a/b", "a b", "a%20", "é", "a\n"}) EXPECT_FALSE(valid_adapter_name(bad)) << bad;
}

TEST(AdapterRegistryResolve, PlainServerTakesAnyNameAsTheBase) {
  const AdapterRegistry plain(nullptr, kBase, false, false);
  for (const std::optional<std::string>& name :
       {std::optional<std::string>(), std::optional<std::string>(""), std::optional<std::string>(kBase),
        std::optional<std::string>("gpt-4o-mini"), std::optional<std::string>("some:thing")}) {
    const ModelChoice choice = plain.resolve(name);
    EXPECT_EQ(choice.id, kBase) << name.value_or("(none)");
    EXPECT_EQ(choice.adapter, nullptr);
  }
  // Naming an adapter explicitly is a 404 even here: the client asked for an adapter.
  std::string message;
  EXPECT_EQ(refusal([&] { plain.resolve(std::string("base:sql")); }, &message), std::make_pair(404, std::string("model_not_found")));
  EXPECT_NE(message.find("sql"), std::string::npos) << message;
  EXPECT_EQ(refusal([&] { plain.resolve(kBase + ":sql"); }).first, 404);
}

TEST(AdapterRegistryResolve, ServerWithAdaptersRefusesUnknownNames) {
  // --lora given (offers adapters), or --allow-adapter-updates (offers them once loaded): the rule
  // depends on how the server started, not on what is loaded now (nothing, here).
  for (const auto& [offers, updates] : {std::pair{true, false}, std::pair{false, true}}) {
    const AdapterRegistry registry(nullptr, kBase, offers, updates);
    EXPECT_EQ(registry.resolve(std::nullopt).id, kBase);
    EXPECT_EQ(registry.resolve(kBase).id, kBase);
    EXPECT_EQ(registry.resolve(std::string("")).id, kBase);
    std::string message;
    EXPECT_EQ(refusal([&] { registry.resolve(std::string("gpt-4o-mini")); }, &message),
              std::make_pair(404, std::string("model_not_found")));
    EXPECT_NE(message.find("gpt-4o-mini"), std::string::npos) << message;
    EXPECT_EQ(refusal([&] { registry.resolve(std::string("base:x")); }).first, 404);
    EXPECT_EQ(refusal([&] { registry.resolve(std::string("other.gguf:x")); }).first, 404);
  }
}

TEST(AdapterRegistryUpdates, RefusedWithoutTheOption) {
  AdapterRegistry registry(nullptr, kBase, true, false);
  std::string message;
  EXPECT_EQ(refusal([&] { registry.add({.name = "x", .path = "/nonexistent", .scale = 1}); }, &message),
            std::make_pair(403, std::string("adapter_updates_disabled")));
  EXPECT_NE(message.find("--allow-adapter-updates"), std::string::npos) << message;
  EXPECT_EQ(refusal([&] { registry.remove("x"); }).first, 403);
  EXPECT_EQ(refusal([&] { registry.require_updates(); }).first, 403);
  EXPECT_TRUE(registry.list().empty());
}

TEST(AdapterRegistryUpdates, BadRequestsAreRefusedNamingTheField) {
  AdapterRegistry registry(nullptr, kBase, false, true);
  auto field_of = [&](const AdapterSpec& spec) {
    try {
      registry.add(spec);
    } catch (const RequestError& e) {
      EXPECT_EQ(e.status, 400) << e.what();
      return e.param;
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(field_of({.name = "a:b", .path = "/x", .scale = 1}), "name");
  EXPECT_EQ(field_of({.name = "", .path = "/x", .scale = 1}), "name");
  EXPECT_EQ(field_of({.name = kBase, .path = "/x", .scale = 1}), "name");
  EXPECT_EQ(field_of({.name = "base", .path = "/x", .scale = 1}), "name");
  EXPECT_EQ(field_of({.name = "x", .path = "/x", .scale = std::numeric_limits<float>::quiet_NaN()}), "scale");
  EXPECT_EQ(field_of({.name = "x", .path = "/x", .scale = 1e6f}), "scale");
  EXPECT_EQ(field_of({.name = "x", .path = "", .scale = 1}), "path");
  EXPECT_EQ(refusal([&] { registry.remove("never-loaded"); }).first, 404);
  EXPECT_TRUE(registry.list().empty());
}

// A file Adapter::load refuses is a 400 with its message, which names the file.
TEST(AdapterRegistryUpdates, UnloadableFileIsA400NamingIt) {
  const std::string model_path = test::shared_path("models/stories260K/stories260K.gguf");
  AdapterRegistry registry(Model::load(model_path), "stories260K.gguf", false, true);
  const std::string missing = test::shared_path("no-such-adapter-folder");
  std::string message;
  EXPECT_EQ(refusal([&] { registry.add({.name = "x", .path = missing, .scale = 1}); }, &message),
            std::make_pair(400, std::string("invalid_adapter")));
  EXPECT_NE(message.find(missing), std::string::npos) << message;
  // The model itself is no adapter either.
  EXPECT_EQ(refusal([&] { registry.add({.name = "x", .path = model_path, .scale = 1}); }, &message).first, 400);
  EXPECT_NE(message.find(model_path), std::string::npos) << message;
  EXPECT_TRUE(registry.list().empty());
}

}  // namespace
}  // namespace orchard::server
