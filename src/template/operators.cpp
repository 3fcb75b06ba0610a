#include "template/operators.h"

#include <cmath>

#include "template/fault.h"
#include "template/python_format.h"

namespace orchard::jinja {

namespace {

const char* symbol(Operator op) {
  switch (op) {
    case Operator::add: return "+";
    case Operator::subtract: return "-";
    case Operator::multiply: return "*";
    case Operator::divide: return "/";
    case Operator::floor_divide: return "//";
    case Operator::modulo: return "%";
    case Operator::power: return "**";
    default: return "?";
  }
}

[[noreturn]] void unsupported(Operator op, const Value& left, const Value& right) {
  if (left.is_undefined()) fault(left.undefined_description());
  if (right.is_undefined()) fault(right.undefined_description());
  fault("unsupported operand type(s) for ", symbol(op), ": '", left.type_name(), "' and '", right.type_name(), "'");
}

template <typename Operation>
Value checked(Operation operation, int64_t a, int64_t b) {
  int64_t result = 0;
  if (operation(a, b, &result)) fault("integer overflow in template arithmetic");
  return Value::integer(result);
}

int64_t floor_div(int64_t a, int64_t b) {
  if (a == INT64_MIN && b == -1) fault("integer overflow in template arithmetic");
  int64_t quotient = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --quotient;
  return quotient;
}

Value repeat(const Value& sequence, int64_t times, const RenderLimits& limits) {
  if (times < 0) times = 0;
  if (sequence.is_string()) {
    const std::string& text = sequence.as_string();
    if (!text.empty() && static_cast<uint64_t>(times) > limits.max_string_bytes / text.size())
      fault("string repetition would exceed ", limits.max_string_bytes, " bytes");
    std::string out;
    out.reserve(text.size() * static_cast<size_t>(times));
    for (int64_t i = 0; i < times; ++i) out += text;
    return Value::string(std::move(out));
  }
  const auto& items = sequence.items();
  if (!items.empty() && static_cast<uint64_t>(times) > limits.max_list_items / items.size())
    fault("list repetition would exceed ", limits.max_list_items, " items");
  std::vector<Value> out;
  out.reserve(items.size() * static_cast<size_t>(times));
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::list(std::move(out), sequence.is_tuple());
}

Value arithmetic(Operator op, const Value& left, const Value& right) {
  const bool as_float = left.is_float() || right.is_float();
  if (as_float) {
    const double a = left.as_double(), b = right.as_double();
    switch (op) {
      case Operator::add: return Value::floating(a + b);
      case Operator::subtract: return Value::floating(a - b);
      case Operator::multiply: return Value::floating(a * b);
      case Operator::divide:
        if (b == 0.0) fault("float division by zero");
        return Value::floating(a / b);
      case Operator::floor_divide:
        if (b == 0.0) fault("float floor division by zero");
        return Value::floating(std::floor(a / b));
      case Operator::modulo: {
        if (b == 0.0) fault("float modulo by zero");
        double r = std::fmod(a, b);
        if (r != 0.0 && ((r < 0) != (b < 0))) r += b;
        return Value::floating(r);
      }
      case Operator::power: return Value::floating(std::pow(a, b));
      default: break;
    }
  }
  const int64_t a = left.as_int(), b = right.as_int();
  switch (op) {
    case Operator::add: return checked([](int64_t x, int64_t y, int64_t* r) { return __builtin_add_overflow(x, y, r); }, a, b);
    case Operator::subtract: return checked([](int64_t x, int64_t y, int64_t* r) { return __builtin_sub_overflow(x, y, r); }, a, b);
    case Operator::multiply: return checked([](int64_t x, int64_t y, int64_t* r) { return __builtin_mul_overflow(x, y, r); }, a, b);
    case Operator::divide:
      if (b == 0) fault("division by zero");
      return Value::floating(static_cast<double>(a) / static_cast<double>(b));
    case Operator::floor_divide:
      if (b == 0) fault("integer division or modulo by zero");
      return Value::integer(floor_div(a, b));
    case Operator::modulo:
      if (b == 0) fault("integer division or modulo by zero");
      if (b == -1) return Value::integer(0);
      return Value::integer(a - floor_div(a, b) * b);
    case Operator::power: {
      if (b < 0) return Value::floating(std::pow(static_cast<double>(a), static_cast<double>(b)));
      int64_t value = 1;
      for (int64_t i = 0; i < b; ++i) {
        if (__builtin_mul_overflow(value, a, &value)) fault("integer overflow in template arithmetic");
        if (value == 0 || value == 1) break;  // 0**n and 1**n settle at once
        if (value == -1) {  // (-1)**n alternates
          value = ((b - i - 1) % 2 == 0) ? -1 : 1;
          break;
        }
      }
      return Value::integer(value);
    }
    default: break;
  }
  fault("unsupported arithmetic operator");
}

}  // namespace

Value binary_operation(Operator op, const Value& left, const Value& right, const RenderLimits& limits) {
  if (op == Operator::concat) {
    std::string text = python_str(left) + python_str(right);
    if (text.size() > limits.max_string_bytes) fault("string would exceed ", limits.max_string_bytes, " bytes");
    return Value::string(std::move(text));
  }
  if (left.is_number() && right.is_number()) return arithmetic(op, left, right);
  if (op == Operator::add) {
    if (left.is_string() && right.is_string()) {
      if (left.as_string().size() + right.as_string().size() > limits.max_string_bytes)
        fault("string would exceed ", limits.max_string_bytes, " bytes");
      return Value::string(left.as_string() + right.as_string());
    }
    if (left.is_list() && right.is_list() && left.is_tuple() == right.is_tuple()) {
      if (left.items().size() + right.items().size() > limits.max_list_items)
        fault("list would exceed ", limits.max_list_items, " items");
      std::vector<Value> items = left.items();
      items.insert(items.end(), right.items().begin(), right.items().end());
      return Value::list(std::move(items), left.is_tuple());
    }
  }
  if (op == Operator::multiply) {
    if ((left.is_string() || left.is_list()) && (right.is_int() || right.is_bool()))
      return repeat(left, right.as_int(), limits);
    if ((right.is_string() || right.is_list()) && (left.is_int() || left.is_bool()))
      return repeat(right, left.as_int(), limits);
  }
  unsupported(op, left, right);
}

Value unary_operation(Operator op, const Value& operand) {
  if (op == Operator::logical_not) return Value::boolean(!operand.truthy());
  if (operand.is_undefined()) fault(operand.undefined_description());
  if (!operand.is_number()) fault("bad operand type for unary ", op == Operator::negate ? "-" : "+", ": '", operand.type_name(), "'");
  if (op == Operator::plus) return operand.is_bool() ? Value::integer(operand.as_int()) : operand;
  if (operand.is_float()) return Value::floating(-operand.as_double());
  if (operand.as_int() == INT64_MIN) fault("integer overflow in template arithmetic");
  return Value::integer(-operand.as_int());
}

}  // namespace orchard::jinja
