#include "template/methods.h"

#include <functional>
#include <map>

#include "template/callable.h"
#include "template/fault.h"
#include "template/python_format.h"
#include "template/utf8.h"

namespace orchard::jinja {

namespace {

using Method = std::function<Value(const Value& self, const CallArgs& args)>;

const std::string& string_argument(const std::optional<Value>& value, const char* method, const char* parameter) {
  if (!value || !value->is_string())
    fault(method, "(): argument '", parameter, "' must be a string, not ", value ? value->type_name() : "missing");
  return value->as_string();
}

int64_t int_argument(const std::optional<Value>& value, int64_t fallback, const char* method) {
  if (!value || value->is_none()) return fallback;
  if (!value->is_int() && !value->is_bool()) fault(method, "(): expected an integer, got ", value->type_name());
  return value->as_int();
}

// startswith/endswith take one prefix or a tuple of them.
bool matches_affix(const std::string& text, const Value& affixes, bool at_start, const char* method) {
  auto matches = [&](const Value& affix) {
    if (!affix.is_string()) fault(method, "(): expected a string or a tuple of strings, got ", affix.type_name());
    const std::string& a = affix.as_string();
    if (a.size() > text.size()) return false;
    return at_start ? text.compare(0, a.size(), a) == 0 : text.compare(text.size() - a.size(), a.size(), a) == 0;
  };
  if (affixes.is_list()) {
    for (const Value& affix : affixes.items())
      if (matches(affix)) return true;
    return false;
  }
  return matches(affixes);
}

Value strings_to_list(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (const auto& part : parts) items.push_back(Value::string(part));
  return Value::list(std::move(items));
}

std::vector<std::string> split_on(const std::string& text, const std::string& separator, int64_t max_split) {
  if (separator.empty()) fault("split(): empty separator");
  std::vector<std::string> parts;
  size_t start = 0;
  while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
    const size_t found = text.find(separator, start);
    if (found == std::string::npos) break;
    parts.push_back(text.substr(start, found - start));
    start = found + separator.size();
  }
  parts.push_back(text.substr(start));
  return parts;
}

std::vector<std::string> rsplit_on(const std::string& text, const std::string& separator, int64_t max_split) {
  if (separator.empty()) fault("rsplit(): empty separator");
  std::vector<std::string> parts;
  size_t end = text.size();
  while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
    if (end < separator.size()) break;
    const size_t found = text.rfind(separator, end - separator.size());
    if (found == std::string::npos) break;
    parts.insert(parts.begin(), text.substr(found + separator.size(), end - found - separator.size()));
    end = found;
  }
  parts.insert(parts.begin(), text.substr(0, end));
  return parts;
}

int64_t code_point_index(const std::string& text, size_t byte_offset) {
  return static_cast<int64_t>(code_point_count(std::string_view(text).substr(0, byte_offset)));
}

// str.format with automatic ({}), numbered ({0}) and named ({name}) fields; no format specs.
std::string python_format_method(const std::string& format, const CallArgs& args) {
  std::string out;
  size_t automatic = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fault("format(): single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos) fault("format(): single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    bool use_repr = false;
    if (field.size() >= 2 && field[field.size() - 2] == '!') {
      use_repr = field.back() == 'r';
      if (!use_repr && field.back() != 's') fault("format(): unknown conversion '!", field.back(), "'");
      field.resize(field.size() - 2);
    }
    if (field.find(':') != std::string::npos || field.find('.') != std::string::npos ||
        field.find('[') != std::string::npos)
      fault("format(): format specs and field attributes are not supported ('{", field, "}')");
    const Value* value = nullptr;
    if (field.empty() || std::isdigit(static_cast<unsigned char>(field[0]))) {
      size_t index = 0;
      if (field.empty()) {
        index = automatic++;
      } else {
        for (char digit : field) {
          if (!std::isdigit(static_cast<unsigned char>(digit)) || index > 1'000'000) fault("format(): bad field '{", field, "}'");
          index = index * 10 + static_cast<size_t>(digit - '0');
        }
      }
      if (index >= args.positional.size()) fault("format(): replacement index ", index, " out of range");
      value = &args.positional[index];
    } else {
      for (const auto& [name, argument] : args.keyword)
        if (name == field) value = &argument;
      if (!value) fault("format(): no argument named '", field, "'");
    }
    out += use_repr ? python_repr(*value) : python_str(*value);
  }
  return out;
}

std::string python_title_method(const std::string& text) {
  std::string out(text);
  bool previous_is_letter = false;
  for (char& c : out) {
    const bool is_letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (is_letter) c = previous_is_letter ? static_cast<char>(std::tolower(c)) : static_cast<char>(std::toupper(c));
    previous_is_letter = is_letter;
  }
  return out;
}

template <typename Predicate>
bool all_code_points(const std::string& text, Predicate predicate) {
  if (text.empty()) return false;
  for (size_t pos = 0; pos < text.size();)
    if (!predicate(decode_code_point(text, pos))) return false;
  return true;
}

const std::map<std::string, Method>& string_methods() {
  static const std::map<std::string, Method> methods = {
      {"startswith", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"prefix"}, "startswith");
         if (!a[0]) fault("startswith() takes exactly one argument");
         return Value::boolean(matches_affix(self.as_string(), *a[0], true, "startswith"));
       }},
      {"endswith", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"suffix"}, "endswith");
         if (!a[0]) fault("endswith() takes exactly one argument");
         return Value::boolean(matches_affix(self.as_string(), *a[0], false, "endswith"));
       }},
      {"split", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"sep", "maxsplit"}, "split");
         const int64_t max_split = int_argument(a[1], -1, "split");
         if (!a[0] || a[0]->is_none()) return strings_to_list(python_split_whitespace(self.as_string(), max_split));
         return strings_to_list(split_on(self.as_string(), string_argument(a[0], "split", "sep"), max_split));
       }},
      {"rsplit", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"sep", "maxsplit"}, "rsplit");
         const int64_t max_split = int_argument(a[1], -1, "rsplit");
         if (!a[0] || a[0]->is_none()) {
           if (max_split >= 0) fault("rsplit() on whitespace with maxsplit is not supported");
           return strings_to_list(python_split_whitespace(self.as_string(), -1));
         }
         return strings_to_list(rsplit_on(self.as_string(), string_argument(a[0], "rsplit", "sep"), max_split));
       }},
      {"splitlines", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"keepends"}, "splitlines");
         return strings_to_list(python_splitlines(self.as_string(), a[0] && a[0]->truthy()));
       }},
      {"strip", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"chars"}, "strip");
         const bool given = a[0] && !a[0]->is_none();
         return Value::string(python_strip(self.as_string(), given ? &string_argument(a[0], "strip", "chars") : nullptr, StripSide::both));
       }},
      {"lstrip", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"chars"}, "lstrip");
         const bool given = a[0] && !a[0]->is_none();
         return Value::string(python_strip(self.as_string(), given ? &string_argument(a[0], "lstrip", "chars") : nullptr, StripSide::left));
       }},
      {"rstrip", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"chars"}, "rstrip");
         const bool given = a[0] && !a[0]->is_none();
         return Value::string(python_strip(self.as_string(), given ? &string_argument(a[0], "rstrip", "chars") : nullptr, StripSide::right));
       }},
      {"upper", [](const Value& self, const CallArgs& args) {
         bind_arguments(args, {}, "upper");
         return Value::string(ascii_upper(self.as_string()));
       }},
      {"lower", [](const Value& self, const CallArgs& args) {
         bind_arguments(args, {}, "lower");
         return Value::string(ascii_lower(self.as_string()));
       }},
      {"title", [](const Value& self, const CallArgs& args) {
         bind_arguments(args, {}, "title");
         return Value::string(python_title_method(self.as_string()));
       }},
      {"capitalize", [](const Value& self, const CallArgs& args) {
         bind_arguments(args, {}, "capitalize");
         return Value::string(python_capitalize(self.as_string()));
       }},
      {"replace", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"old", "new", "count"}, "replace");
         return Value::string(python_replace(self.as_string(), string_argument(a[0], "replace", "old"),
                                             string_argument(a[1], "replace", "new"), int_argument(a[2], -1, "replace")));
       }},
      {"find", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"sub"}, "find");
         const size_t found = self.as_string().find(string_argument(a[0], "find", "sub"));
         return Value::integer(found == std::string::npos ? -1 : code_point_index(self.as_string(), found));
       }},
      {"rfind", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"sub"}, "rfind");
         const size_t found = self.as_string().rfind(string_argument(a[0], "rfind", "sub"));
         return Value::integer(found == std::string::npos ? -1 : code_point_index(self.as_string(), found));
       }},
      {"index", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"sub"}, "index");
         const size_t found = self.as_string().find(string_argument(a[0], "index", "sub"));
         if (found == std::string::npos) fault("index(): substring not found");
         return Value::integer(code_point_index(self.as_string(), found));
       }},
      {"count", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"sub"}, "count");
         const std::string& sub = string_argument(a[0], "count", "sub");
         const std::string& text = self.as_string();
         if (sub.empty()) return Value::integer(static_cast<int64_t>(code_point_count(text)) + 1);
         int64_t count = 0;
         for (size_t at = text.find(sub); at != std::string::npos; at = text.find(sub, at + sub.size())) ++count;
         return Value::integer(count);
       }},
      {"join", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"iterable"}, "join");
         if (!a[0]) fault("join() takes exactly one argument");
         std::string out;
         bool first = true;
         for (const Value& item : iterate_value(*a[0])) {
           if (!item.is_string()) fault("join(): sequence item: expected str instance, ", item.type_name(), " found");
           if (!first) out += self.as_string();
           first = false;
           out += item.as_string();
         }
         return Value::string(std::move(out));
       }},
      {"format", [](const Value& self, const CallArgs& args) {
         return Value::string(python_format_method(self.as_string(), args));
       }},
      {"isspace", [](const Value& self, const CallArgs&) {
         return Value::boolean(all_code_points(self.as_string(), is_python_space));
       }},
      {"isdigit", [](const Value& self, const CallArgs&) {
         return Value::boolean(all_code_points(self.as_string(), [](uint32_t c) { return c >= '0' && c <= '9'; }));
       }},
      {"isalpha", [](const Value& self, const CallArgs&) {
         return Value::boolean(all_code_points(self.as_string(), [](uint32_t c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
         }));
       }},
      {"isalnum", [](const Value& self, const CallArgs&) {
         return Value::boolean(all_code_points(self.as_string(), [](uint32_t c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
         }));
       }},
  };
  return methods;
}

const std::map<std::string, Method>& dict_methods() {
  static const std::map<std::string, Method> methods = {
      {"get", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"key", "default"}, "get");
         if (!a[0]) fault("get() expected at least 1 argument");
         if (const Value* found = self.dict_data().find(*a[0])) return *found;
         return a[1] ? *a[1] : Value::none();
       }},
      {"items", [](const Value& self, const CallArgs& args) {
         bind_arguments(args, {}, "items");
         std::vector<Value> pairs;
         for (const auto& [key, value] : self.dict_data().entries) pairs.push_back(Value::list({key, value}, true));
         return Value::list(std::move(pairs));
       }},
      {"keys", [](const Value& self, const CallArgs& args) {
         bind_arguments(args, {}, "keys");
         return Value::list(iterate_value(self));
       }},
      {"values", [](const Value& self, const CallArgs& args) {
         bind_arguments(args, {}, "values");
         std::vector<Value> values;
         for (const auto& entry : self.dict_data().entries) values.push_back(entry.second);
         return Value::list(std::move(values));
       }},
  };
  return methods;
}

const std::map<std::string, Method>& list_methods() {
  static const std::map<std::string, Method> methods = {
      {"index", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"value"}, "index");
         if (!a[0]) fault("index() takes exactly one argument");
         for (size_t i = 0; i < self.items().size(); ++i)
           if (values_equal(self.items()[i], *a[0])) return Value::integer(static_cast<int64_t>(i));
         fault("index(): value is not in list");
       }},
      {"count", [](const Value& self, const CallArgs& args) {
         auto a = bind_arguments(args, {"value"}, "count");
         if (!a[0]) fault("count() takes exactly one argument");
         int64_t count = 0;
         for (const Value& item : self.items()) count += values_equal(item, *a[0]) ? 1 : 0;
         return Value::integer(count);
       }},
  };
  return methods;
}

}  // namespace

Value find_method(const Value& object, const std::string& name) {
  const std::map<std::string, Method>* table = nullptr;
  if (object.is_string()) table = &string_methods();
  else if (object.is_dict()) table = &dict_methods();
  else if (object.is_list()) table = &list_methods();
  if (!table) return Value::undefined();
  const auto it = table->find(name);
  if (it == table->end()) return Value::undefined();
  Method method = it->second;
  return make_native_function(object.type_name() + "." + name,
                              [self = object, method](Interpreter&, const CallArgs& args) { return method(self, args); });
}

std::vector<std::string> python_splitlines(const std::string& text, bool keep_ends) {
  std::vector<std::string> lines;
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    const size_t at = pos;
    const uint32_t c = decode_code_point(text, pos);
    const bool is_break = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
                          c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!is_break) continue;
    if (c == '\r' && pos < text.size() && text[pos] == '\n') ++pos;
    lines.push_back(text.substr(start, (keep_ends ? pos : at) - start));
    start = pos;
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

std::string python_replace(const std::string& text, const std::string& old_text, const std::string& new_text,
                           int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old_text.empty()) {  // Python inserts `new` before every code point and at the end
    size_t pos = 0;
    while (pos < text.size()) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      const size_t start = pos;
      decode_code_point(text, pos);
      out.append(text, start, pos - start);
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    const size_t found = text.find(old_text, start);
    if (found == std::string::npos) break;
    out.append(text, start, found - start);
    out += new_text;
    start = found + old_text.size();
    ++done;
  }
  out.append(text, start, std::string::npos);
  return out;
}

std::string python_capitalize(const std::string& text) {
  std::string out = ascii_lower(text);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

}  // namespace orchard::jinja
