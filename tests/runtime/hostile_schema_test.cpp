// Schemas that ask for huge automata are refused while they are built, with an error naming the
// keyword, in bounded time and memory. Before: minLength 1e9 built until the OOM killer came,
// 1,000 optional properties took 47 s and 1.1 GB, 10,000 over 170 s and 4.4 GB.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "constraint_test_support.h"
#include "orchard/error.h"

namespace orchard {
namespace {

using Clock = std::chrono::steady_clock;

// The error of compiling `schema` against the tiny vocabulary ("" if it compiled) and how long
// it took in seconds.
std::pair<std::string, double> compile_error(const std::string& schema, const SchemaOptions& options = {}) {
  const auto start = Clock::now();
  std::string message;
  try {
    test::compile_tiny(schema, options);
  } catch (const Error& e) {
    message = e.what();
  }
  return {message, std::chrono::duration<double>(Clock::now() - start).count()};
}

void expect_refused(const std::string& schema, const std::string& needle) {
  const auto [message, seconds] = compile_error(schema);
  EXPECT_NE(message.find(needle), std::string::npos) << "expected '" << needle << "' in: " << message;
  // Generous for the sanitizer build on a loaded machine; the plain build takes well under 1 s.
  EXPECT_LT(seconds, 20.0) << schema.substr(0, 200);
}

TEST(HostileSchema, HugeLengthsAreRefusedWhileBuildingAndNameTheKeyword) {
  expect_refused(R"({"type":"string","minLength":1000000000})", "$.minLength: the schema needs more than");
  expect_refused(R"({"type":"string","maxLength":1000000000})", "$.maxLength:");
  expect_refused(R"({"type":"object","properties":{"a":{"type":"array","minItems":1000000000}}})",
                 "$.properties.a.minItems:");
  expect_refused(R"({"type":"array","items":{"type":"string","maxLength":100000},"maxItems":3})",
                 "$.items.maxLength:");
}

std::string optional_properties(int n) {
  std::string schema = R"({"type":"object","properties":{)";
  for (int i = 0; i < n; ++i) schema += (i ? "," : "") + std::string("\"property_") + std::to_string(i) + "\":{\"type\":\"integer\"}";
  return schema + "}}";
}

TEST(HostileSchema, ManyOptionalPropertiesAreRefusedQuickly) {
  for (int n : {101, 1000, 10000}) {
    const auto [message, seconds] = compile_error(optional_properties(n));
    EXPECT_NE(message.find("$.properties: more than 100 optional properties"), std::string::npos) << n << ": " << message;
    EXPECT_LT(seconds, 20.0) << n;
  }
}

// The determinization's own budget, for blow-ups no single keyword shows: nested optional
// properties under alternatives.
TEST(HostileSchema, TheDeterminizationIsBoundedToo) {
  std::string alternatives;
  for (int i = 0; i < 8; ++i) alternatives += (i ? "," : "") + optional_properties(90);
  // A budget below the default keeps the sanitizer build quick; the default (4M entries) is
  // reached in about a second by the plain build.
  SchemaOptions options;
  options.max_subset_entries = 200000;
  const auto [message, seconds] = compile_error(R"({"anyOf":[)" + alternatives + "]}", options);
  EXPECT_NE(message.find("grows too large (more than 200000 state-set entries"), std::string::npos) << message;
  EXPECT_LT(seconds, 20.0);
}

TEST(HostileSchema, RealisticSchemasStillCompile) {
  EXPECT_EQ(compile_error(optional_properties(40)).first, "");
  EXPECT_EQ(compile_error(R"({"type":"string","maxLength":2000})").first, "");
  EXPECT_EQ(compile_error(R"({"type":"array","items":{"type":"integer"},"maxItems":200})").first, "");
}

TEST(HostileSchema, CompilationStopsWhenCancelled) {
  SchemaOptions options;
  int asked = 0;
  options.cancelled = [&] { return ++asked > 2; };
  const auto [message, seconds] = compile_error(optional_properties(60), options);
  EXPECT_NE(message.find("cancelled"), std::string::npos) << message;
  EXPECT_GT(asked, 2);
}

TEST(HostileSchema, CompilationStopsAtItsTimeLimit) {
  SchemaOptions options;
  options.time_limit = std::chrono::milliseconds(0);
  const auto [message, seconds] = compile_error(optional_properties(60), options);
  EXPECT_NE(message.find("took too long"), std::string::npos) << message;
}

}  // namespace
}  // namespace orchard
