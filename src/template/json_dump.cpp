#include "template/json_dump.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "template/fault.h"
#include "template/python_format.h"
#include "template/utf8.h"

namespace orchard::jinja {

namespace {

// Stands in for json.dumps's circular-reference check (only namespaces can form cycles).
constexpr int kMaxJsonDepth = 500;

void append_unicode_escape(std::string& out, uint32_t unit) {
  char escape[16];
  std::snprintf(escape, sizeof(escape), "\\u%04x", unit);
  out += escape;
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonDumpOptions& options) : options_(options) {
    item_separator_ = options.item_separator.value_or(options.indent ? "," : ", ");
  }

  void write(const Value& value, int level) {
    if (level > kMaxJsonDepth) fault("tojson: value nested too deeply (circular reference?)");
    switch (value.kind()) {
      case Value::Kind::none: out_ += "null"; return;
      case Value::Kind::boolean: out_ += value.as_bool() ? "true" : "false"; return;
      case Value::Kind::integer: out_ += std::to_string(value.as_int()); return;
      case Value::Kind::floating: out_ += float_text(value.as_double()); return;
      case Value::Kind::string: out_ += json_quote(value.as_string(), options_.ensure_ascii); return;
      case Value::Kind::list: write_list(value.items(), level); return;
      case Value::Kind::dict: write_dict(value.dict_data(), level); return;
      default: fault("tojson: Object of type ", value.type_name(), " is not JSON serializable");
    }
  }

  std::string take() { return std::move(out_); }

 private:
  static std::string float_text(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value < 0 ? "-Infinity" : "Infinity";
    return python_float_repr(value);
  }

  // json.dumps turns non-string keys into strings.
  static std::string key_text(const Value& key) {
    switch (key.kind()) {
      case Value::Kind::string: return key.as_string();
      case Value::Kind::none: return "null";
      case Value::Kind::boolean: return key.as_bool() ? "true" : "false";
      case Value::Kind::integer: return std::to_string(key.as_int());
      case Value::Kind::floating: return float_text(key.as_double());
      default: fault("tojson: keys must be str, int, float, bool or None, not ", key.type_name());
    }
  }

  void open_level(int level) {
    if (options_.indent) {
      out_ += '\n';
      for (int i = 0; i < level; ++i) out_ += *options_.indent;
    }
  }

  void write_list(const std::vector<Value>& items, int level) {
    if (items.empty()) {
      out_ += "[]";
      return;
    }
    out_ += '[';
    open_level(level + 1);
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) {
        out_ += item_separator_;
        open_level(level + 1);
      }
      write(items[i], level + 1);
    }
    open_level(level);
    out_ += ']';
  }

  void write_dict(const DictData& dict, int level) {
    if (dict.entries.empty()) {
      out_ += "{}";
      return;
    }
    std::vector<std::pair<std::string, const Value*>> entries;
    for (const auto& [key, value] : dict.entries) {
      if (options_.sort_keys && !key.is_string())
        fault("tojson: sort_keys needs string keys, got ", key.type_name());
      entries.emplace_back(key_text(key), &value);
    }
    if (options_.sort_keys)
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
    out_ += '{';
    open_level(level + 1);
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i) {
        out_ += item_separator_;
        open_level(level + 1);
      }
      out_ += json_quote(entries[i].first, options_.ensure_ascii);
      out_ += options_.key_separator;
      write(*entries[i].second, level + 1);
    }
    open_level(level);
    out_ += '}';
  }

  const JsonDumpOptions& options_;
  std::string item_separator_;
  std::string out_;
};

}  // namespace

std::string json_quote(const std::string& text, bool ensure_ascii) {
  std::string out = "\"";
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const uint32_t c = decode_code_point(text, pos);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
      if (c >= 0x10000) {  // ensure_ascii writes astral code points as a surrogate pair
        const uint32_t v = c - 0x10000;
        append_unicode_escape(out, 0xd800 | (v >> 10));
        append_unicode_escape(out, 0xdc00 | (v & 0x3ff));
      } else {
        append_unicode_escape(out, c);
      }
    } else {
      out.append(text, start, pos - start);
    }
  }
  out += '"';
  return out;
}

std::string json_dumps(const Value& value, const JsonDumpOptions& options) {
  JsonWriter writer(options);
  writer.write(value, 0);
  return writer.take();
}

}  // namespace orchard::jinja
