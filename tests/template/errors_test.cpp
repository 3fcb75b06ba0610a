// Malformed and hostile templates: each fails with an orchard::Error that names the template
// line (and says what was wrong) instead of crashing, hanging or exhausting memory.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "orchard/chat_template.h"
#include "orchard/error.h"
#include "template/chat_template.h"

namespace orchard {
namespace {

// The error message of rendering `source`, or a note that it rendered.
std::string error_of(const std::string& source, jinja::RenderLimits limits = {}) {
  try {
    JinjaTemplate compiled(source, limits);
    compiled.render(nlohmann::ordered_json::object());
  } catch (const Error& e) {
    return e.what();
  }
  return "(rendered without error)";
}

void expect_error(const std::string& source, const std::string& line_part, const std::string& what_part) {
  const std::string message = error_of(source);
  EXPECT_NE(message.find(line_part), std::string::npos) << "source: " << source << "\nmessage: " << message;
  EXPECT_NE(message.find(what_part), std::string::npos) << "source: " << source << "\nmessage: " << message;
}

TEST(TemplateSyntaxErrors, UnclosedBlockNamesTheOpeningLineAndTheMissingTag) {
  expect_error("a\n{% if x %}\nb\n", "line 2", "endif");
  expect_error("{% for m in messages %}\n{{ m }}", "line 1", "endfor");
  expect_error("x\n\n{% set y %}never closed", "line 3", "endset");
}

TEST(TemplateSyntaxErrors, UnclosedTagsCommentsAndStrings) {
  expect_error("ok\n{{ x ", "line 2", "unclosed tag");
  expect_error("ok\nok\n{% if x", "line 3", "unclosed tag");
  expect_error("{# comment", "line 1", "unclosed comment");
  expect_error("\n{{ 'abc }}", "line 2", "unclosed string");
}

TEST(TemplateSyntaxErrors, UnknownAndMisplacedTags) {
  expect_error("a\nb\n{% frobnicate %}", "line 3", "unknown tag 'frobnicate'");
  expect_error("{% endfor %}", "line 1", "endfor");
  expect_error("{% for x in y %}\n{% endif %}{% endfor %}", "line 2", "endif");
  expect_error("\n{% include 'other.jinja' %}", "line 2", "not supported");
}

TEST(TemplateSyntaxErrors, BadExpressions) {
  expect_error("{{ 1 + }}", "line 1", "expected an expression");
  expect_error("\n\n{{ messages[0 }}", "line 3", "'[' before it is not closed");
  expect_error("{{ messages[0 }}\n{{ x }}", "line 1", "'[' before it is not closed");
  expect_error("{{ f(1, 2 }}", "line 1", "'(' before it is not closed");
  expect_error("{{ x ) }}", "line 1", "unexpected ')'");
  expect_error("{% set = 3 %}", "line 1", "variable name");
  expect_error("{{ a $ b }}", "line 1", "unexpected character '$'");
  expect_error("{% for x y %}{% endfor %}", "line 1", "'in'");
}

TEST(TemplateRuntimeErrors, UnknownFiltersAndTestsNameTheLine) {
  expect_error("line one\n{{ 'x' | no_such_filter }}", "line 2", "unknown filter 'no_such_filter'");
  expect_error("\n\n{% if x is no_such_test %}{% endif %}", "line 3", "unknown test 'no_such_test'");
}

TEST(TemplateRuntimeErrors, RaiseExceptionCarriesTheMessage) {
  expect_error("{% if true %}\n  {{ raise_exception('Only user and assistant roles are supported!') }}\n{% endif %}",
               "line 2", "Only user and assistant roles are supported!");
}

TEST(TemplateRuntimeErrors, TypeErrorsAndUndefinedAccess) {
  expect_error("\n{{ 1 + 'a' }}", "line 2", "unsupported operand");
  expect_error("{{ missing.attribute }}", "line 1", "'missing' is undefined");
  expect_error("{% set x = 1 %}{{ x.y.z }}", "line 1", "has no attribute 'y'");
  expect_error("{% for x in 42 %}{% endfor %}", "line 1", "not iterable");
  expect_error("{% set s = 'text' %}{% set s.attr = 1 %}", "line 1", "namespace");
}

TEST(HostileTemplates, UnboundedMacroRecursionStops) {
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}", "line 1", "nested more than");
}

TEST(HostileTemplates, HugeRangesAreRefused) {
  expect_error("{% for i in range(1000000000) %}x{% endfor %}", "line 1", "range too big");
}

TEST(HostileTemplates, RunawayNestedLoopsStopAtTheStepBudget) {
  jinja::RenderLimits limits;
  limits.max_steps = 200'000;  // the default is larger; a small one keeps the sanitizer build quick
  const std::string message =
      error_of("{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}", limits);
  EXPECT_NE(message.find("evaluation steps"), std::string::npos) << message;
}

TEST(HostileTemplates, ExponentialStringGrowthIsRefused) {
  expect_error("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
               "line 1", "exceed");
  expect_error("{{ 'x' * 100000000000 }}", "line 1", "exceed");
}

TEST(HostileTemplates, DeepNestingIsRefusedWithoutExhaustingTheStack) {
  const std::string parens(100000, '(');
  expect_error("{{ " + parens + "1" + std::string(100000, ')') + " }}", "line 1", "nested too deeply");
  std::string ifs;
  for (int i = 0; i < 20000; ++i) ifs += "{% if true %}";
  expect_error(ifs, "line 1", "nested too deeply");
  expect_error("{{ " + std::string(100000, '-') + "1 }}", "line 1", "nested too deeply");
}

// Flat chains are parsed by loops but make trees as tall as they are long; 50,000 links crashed
// `orchard template`, `orchard run` and the server (evaluation and destruction recurse per link).
TEST(HostileTemplates, LongFlatChainsAreRefusedWithoutExhaustingTheStack) {
  const int links = 50000;
  std::string sum = "1", filters = "'a'", attributes = "x", items = "x", calls = "range", concat = "'a'";
  for (int i = 0; i < links; ++i) {
    sum += " + 1";
    filters += "|upper";
    attributes += ".a";
    items += "[0]";
    calls += "()";
    concat += " ~ 'a'";
  }
  for (const std::string& chain : {sum, filters, attributes, items, calls, concat})
    expect_error("{{ " + chain + " }}", "line 1", "nested too deeply");
  expect_error("{% if " + sum + " %}x{% endif %}", "line 1", "nested too deeply");
  expect_error("{% set y = " + filters + " %}", "line 1", "nested too deeply");
}

TEST(HostileTemplates, ChainsWithinTheBoundStillRender) {
  std::string sum = "1";
  for (int i = 1; i < 200; ++i) sum += " + 1";
  JinjaTemplate compiled("{{ " + sum + " }}");
  EXPECT_EQ(compiled.render(nlohmann::ordered_json::object()), "200");
}

// Each bound alone is safe, but they multiply: 60 macro calls, each inside 100 blocks, each
// evaluating a 200-level expression would need tens of megabytes of native stack.
TEST(HostileTemplates, BoundsThatMultiplyStopAtTheStackBudget) {
  std::string opens, closes, sum = "(f(n + 1) if n < 60 else 0)";
  for (int i = 0; i < 100; ++i) {
    opens += "{% if true %}";
    closes += "{% endif %}";
  }
  for (int i = 0; i < 200; ++i) sum += " + 1";
  expect_error("{% macro f(n) %}" + opens + "{{ " + sum + " }}" + closes + "{% endmacro %}{{ f(0) }}", "line 1",
               "KiB of stack");
}

// Values can nest without their source nesting; copying, comparing and freeing them recurses.
TEST(HostileTemplates, ValuesNestedByLoopsAreBounded) {
  expect_error("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
               "line 1", "value nested more than 512 levels deep");
  expect_error("{% set ns = namespace(x={}) %}{% for i in range(100000) %}{% set ns.x = {'a': ns.x} %}{% endfor %}",
               "line 1", "value nested more than 512 levels deep");
  expect_error("{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = namespace(y=ns.x) %}{% endfor %}",
               "line 1", "value nested more than 512 levels deep");
  JinjaTemplate within("{% set ns = namespace(x=[]) %}{% for i in range(500) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|length }}");
  EXPECT_EQ(within.render(nlohmann::ordered_json::object()), "1");
}

// Found by the chat_template fuzzer: a number beyond a double's range is nlohmann's out_of_range,
// not its parse_error, and escaped as std::terminate.
TEST(HostileTemplates, OutOfRangeNumbersInJsonArgumentsAreErrors) {
  const ChatTemplate chat("{{ messages }}");
  for (const std::string json : {"1e400", "[1e400]", "{\"a\": -1e400}"}) {
    EXPECT_THROW(chat.render_chat(json), Error) << json;
    EXPECT_THROW(chat.render_chat("[]", json), Error) << json;
    EXPECT_THROW(chat.render(json), Error) << json;
  }
}

}  // namespace
}  // namespace orchard
