#include "template/python_format.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "template/callable.h"
#include "template/fault.h"
#include "template/utf8.h"

namespace orchard::jinja {

namespace {

// Self-referencing namespaces could otherwise recurse forever.
constexpr int kMaxPrintDepth = 500;

// Code points Python's repr() escapes because str.isprintable() is false for them: C0/C1
// controls, and the separator and format characters that occur in practice.
bool python_unprintable(uint32_t c) {
  return c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) ||
         (c >= 0x205f && c <= 0x206f) || c == 0x3000 || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb) ||
         (c >= 0xd800 && c <= 0xdfff);
}

void append_repr(std::string& out, const Value& value, int depth);

void append_items(std::string& out, const std::vector<Value>& items, int depth) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    append_repr(out, items[i], depth + 1);
  }
}

void append_dict(std::string& out, const DictData& dict, int depth) {
  out += '{';
  bool first = true;
  for (const auto& [key, item] : dict.entries) {
    if (!first) out += ", ";
    first = false;
    append_repr(out, key, depth + 1);
    out += ": ";
    append_repr(out, item, depth + 1);
  }
  out += '}';
}

void append_repr(std::string& out, const Value& value, int depth) {
  if (depth > kMaxPrintDepth) fault("value nested too deeply to print");
  switch (value.kind()) {
    case Value::Kind::undefined: out += "Undefined"; return;
    case Value::Kind::none: out += "None"; return;
    case Value::Kind::boolean: out += value.as_bool() ? "True" : "False"; return;
    case Value::Kind::integer: out += std::to_string(value.as_int()); return;
    case Value::Kind::floating: out += python_float_repr(value.as_double()); return;
    case Value::Kind::string: out += python_string_repr(value.as_string()); return;
    case Value::Kind::list:
      out += value.is_tuple() ? '(' : '[';
      append_items(out, value.items(), depth);
      if (value.is_tuple() && value.items().size() == 1) out += ',';
      out += value.is_tuple() ? ')' : ']';
      return;
    case Value::Kind::dict: append_dict(out, value.dict_data(), depth); return;
    case Value::Kind::name_space:
      out += "<Namespace ";
      append_dict(out, value.namespace_data(), depth);
      out += '>';
      return;
    case Value::Kind::callable: out += value.function()->repr(); return;
  }
}

}  // namespace

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  // Shortest round-trip digits in scientific form, e.g. "-1.2345e+02", then laid out by
  // Python's repr rules.
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string scientific(buffer, result.ptr);
  std::string sign;
  if (scientific[0] == '-') {
    sign = "-";
    scientific.erase(0, 1);
  }
  const size_t e = scientific.find('e');
  std::string digits = scientific.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exponent = std::stoi(scientific.substr(e + 1));
  const int point = exponent + 1;  // digits before the decimal point
  const int n = static_cast<int>(digits.size());

  std::string out = sign;
  if (point <= -4 || point > 16) {
    out += digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    char exponent_text[16];
    std::snprintf(exponent_text, sizeof(exponent_text), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exponent_text;
  } else if (point <= 0) {
    out += "0." + std::string(static_cast<size_t>(-point), '0') + digits;
  } else if (point >= n) {
    out += digits + std::string(static_cast<size_t>(point - n), '0') + ".0";
  } else {
    out += digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
  }
  return out;
}

std::string python_string_repr(const std::string& text) {
  const bool has_single = text.find('\'') != std::string::npos;
  const bool has_double = text.find('"') != std::string::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const uint32_t c = decode_code_point(text, pos);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<uint32_t>(quote)) {
      out += '\\';
      out += quote;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (python_unprintable(c)) {
      char escape[16];
      if (c <= 0xff)
        std::snprintf(escape, sizeof(escape), "\\x%02x", c);
      else
        std::snprintf(escape, sizeof(escape), "\\u%04x", c);
      out += escape;
    } else {
      out.append(text, start, pos - start);
    }
  }
  out += quote;
  return out;
}

std::string python_str(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::undefined: return "";
    case Value::Kind::string: return value.as_string();
    default: {
      std::string out;
      append_repr(out, value, 0);
      return out;
    }
  }
}

std::string python_repr(const Value& value) {
  std::string out;
  append_repr(out, value, 0);
  return out;
}

}  // namespace orchard::jinja
