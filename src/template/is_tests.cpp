#include "template/is_tests.h"

#include <map>

#include "template/fault.h"
#include "template/filters.h"
#include "template/interpreter.h"

namespace orchard::jinja {

namespace {

const Value& only_argument(const CallArgs& args, const char* test) {
  if (args.positional.size() != 1 || !args.keyword.empty()) fault("test '", test, "' takes exactly one argument");
  return args.positional[0];
}

void no_arguments(const CallArgs& args, const char* test) {
  if (!args.positional.empty() || !args.keyword.empty()) fault("test '", test, "' takes no arguments");
}

bool has_cased_letter(const std::string& text, bool want_lower) {
  bool cased = false;
  for (char c : text) {
    if (c >= 'a' && c <= 'z') {
      if (!want_lower) return false;
      cased = true;
    } else if (c >= 'A' && c <= 'Z') {
      if (want_lower) return false;
      cased = true;
    }
  }
  return cased;
}

#define NO_ARGUMENT_TEST(function, test_name, expression)                   \
  bool function(Interpreter&, const Value& value, const CallArgs& args) {   \
    no_arguments(args, test_name);                                          \
    return expression;                                                      \
  }

NO_ARGUMENT_TEST(is_defined, "defined", !value.is_undefined())
NO_ARGUMENT_TEST(is_undefined, "undefined", value.is_undefined())
NO_ARGUMENT_TEST(is_none, "none", value.is_none())
NO_ARGUMENT_TEST(is_boolean, "boolean", value.is_bool())
NO_ARGUMENT_TEST(is_false, "false", value.is_bool() && !value.as_bool())
NO_ARGUMENT_TEST(is_true, "true", value.is_bool() && value.as_bool())
NO_ARGUMENT_TEST(is_integer, "integer", value.is_int())
NO_ARGUMENT_TEST(is_float, "float", value.is_float())
NO_ARGUMENT_TEST(is_number, "number", value.is_number())
NO_ARGUMENT_TEST(is_string, "string", value.is_string())
NO_ARGUMENT_TEST(is_mapping, "mapping", value.is_dict())
// jinja2's Undefined is iterable (empty) and passes its sequence test (len() and __getitem__).
NO_ARGUMENT_TEST(is_iterable, "iterable", value.is_list() || value.is_dict() || value.is_string() || value.is_undefined())
NO_ARGUMENT_TEST(is_sequence, "sequence", value.is_list() || value.is_dict() || value.is_string() || value.is_undefined())
NO_ARGUMENT_TEST(is_callable, "callable", value.is_callable())
NO_ARGUMENT_TEST(is_lower, "lower", value.is_string() && has_cased_letter(value.as_string(), true))
NO_ARGUMENT_TEST(is_upper, "upper", value.is_string() && has_cased_letter(value.as_string(), false))
NO_ARGUMENT_TEST(is_escaped, "escaped", false)

#undef NO_ARGUMENT_TEST

int64_t integer_subject(const Value& value, const char* test) {
  if (!value.is_int() && !value.is_bool()) fault("test '", test, "' needs an integer, got ", value.type_name());
  return value.as_int();
}

bool is_odd(Interpreter&, const Value& value, const CallArgs& args) {
  no_arguments(args, "odd");
  return integer_subject(value, "odd") % 2 != 0;
}

bool is_even(Interpreter&, const Value& value, const CallArgs& args) {
  no_arguments(args, "even");
  return integer_subject(value, "even") % 2 == 0;
}

bool is_divisibleby(Interpreter&, const Value& value, const CallArgs& args) {
  const int64_t divisor = integer_subject(only_argument(args, "divisibleby"), "divisibleby");
  if (divisor == 0) fault("integer division or modulo by zero");
  if (divisor == -1) return true;
  return integer_subject(value, "divisibleby") % divisor == 0;
}

bool is_equal(Interpreter&, const Value& value, const CallArgs& args) { return values_equal(value, only_argument(args, "eq")); }
bool is_not_equal(Interpreter&, const Value& value, const CallArgs& args) { return !values_equal(value, only_argument(args, "ne")); }
bool is_less(Interpreter&, const Value& value, const CallArgs& args) { return compare_values(value, only_argument(args, "lt")) < 0; }
bool is_less_equal(Interpreter&, const Value& value, const CallArgs& args) { return compare_values(value, only_argument(args, "le")) <= 0; }
bool is_greater(Interpreter&, const Value& value, const CallArgs& args) { return compare_values(value, only_argument(args, "gt")) > 0; }
bool is_greater_equal(Interpreter&, const Value& value, const CallArgs& args) { return compare_values(value, only_argument(args, "ge")) >= 0; }
bool is_in(Interpreter&, const Value& value, const CallArgs& args) { return value_contains(only_argument(args, "in"), value); }

// Python's `is`: None, booleans and equal small values are the same object; containers only
// when they share storage.
bool is_sameas(Interpreter&, const Value& value, const CallArgs& args) {
  const Value& other = only_argument(args, "sameas");
  if (value.kind() != other.kind()) return false;
  switch (value.kind()) {
    case Value::Kind::none:
    case Value::Kind::undefined: return true;
    case Value::Kind::boolean: return value.as_bool() == other.as_bool();
    case Value::Kind::list: return &value.items() == &other.items();
    case Value::Kind::dict: return &value.dict_data() == &other.dict_data();
    default: return values_equal(value, other);
  }
}

bool is_filter(Interpreter&, const Value& value, const CallArgs& args) {
  no_arguments(args, "filter");
  return value.is_string() && find_filter(value.as_string()) != nullptr;
}

bool is_test(Interpreter&, const Value& value, const CallArgs& args) {
  no_arguments(args, "test");
  return value.is_string() && find_test(value.as_string()) != nullptr;
}

const std::map<std::string, TestFunction>& test_table() {
  static const std::map<std::string, TestFunction> table = {
      {"defined", is_defined},   {"undefined", is_undefined}, {"none", is_none},
      {"boolean", is_boolean},   {"false", is_false},         {"true", is_true},
      {"integer", is_integer},   {"float", is_float},         {"number", is_number},
      {"string", is_string},     {"mapping", is_mapping},     {"iterable", is_iterable},
      {"sequence", is_sequence}, {"callable", is_callable},   {"lower", is_lower},
      {"upper", is_upper},       {"escaped", is_escaped},     {"odd", is_odd},
      {"even", is_even},         {"divisibleby", is_divisibleby}, {"eq", is_equal},
      {"equalto", is_equal},     {"==", is_equal},            {"ne", is_not_equal},
      {"!=", is_not_equal},      {"lt", is_less},             {"lessthan", is_less},
      {"<", is_less},            {"le", is_less_equal},       {"<=", is_less_equal},
      {"gt", is_greater},        {"greaterthan", is_greater}, {">", is_greater},
      {"ge", is_greater_equal},  {">=", is_greater_equal},    {"in", is_in},
      {"sameas", is_sameas},     {"filter", is_filter},       {"test", is_test},
  };
  return table;
}

}  // namespace

TestFunction find_test(const std::string& name) {
  const auto& table = test_table();
  const auto it = table.find(name);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace orchard::jinja
