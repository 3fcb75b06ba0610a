#include "template/globals.h"

#include <ctime>

#include "template/callable.h"
#include "template/fault.h"
#include "template/interpreter.h"
#include "template/python_format.h"

namespace orchard::jinja {

namespace {

int64_t range_bound(const Value& value) {
  if (!value.is_int() && !value.is_bool())
    fault("range(): '", value.type_name(), "' object cannot be interpreted as an integer");
  return value.as_int();
}

Value range_function(Interpreter& interpreter, const CallArgs& args) {
  if (!args.keyword.empty()) fault("range() takes no keyword arguments");
  if (args.positional.empty() || args.positional.size() > 3)
    fault("range() expected 1 to 3 arguments, got ", args.positional.size());
  int64_t start = 0, stop = 0, step = 1;
  if (args.positional.size() == 1) {
    stop = range_bound(args.positional[0]);
  } else {
    start = range_bound(args.positional[0]);
    stop = range_bound(args.positional[1]);
    if (args.positional.size() == 3) step = range_bound(args.positional[2]);
  }
  if (step == 0) fault("range() arg 3 must not be zero");
  // Python's len(range(...)), computed without overflow.
  const __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  const __int128 magnitude = step > 0 ? step : -static_cast<__int128>(step);
  const __int128 count = span <= 0 ? 0 : (span + magnitude - 1) / magnitude;
  if (count > interpreter.limits().max_range)
    fault("range too big: the sandbox allows at most ", interpreter.limits().max_range, " items");
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  for (__int128 i = 0; i < count; ++i) items.push_back(Value::integer(static_cast<int64_t>(start + i * step)));
  return Value::list(std::move(items));
}

// dict(mapping, **kwargs) and namespace(mapping, **kwargs) start from the same entries.
DictData mapping_from_arguments(const CallArgs& args, const char* function) {
  DictData data;
  if (args.positional.size() > 1) fault(function, "() takes at most 1 positional argument");
  if (args.positional.size() == 1) {
    const Value& source = args.positional[0];
    if (source.is_dict()) {
      data = source.dict_data();
    } else if (source.is_list()) {
      for (const Value& pair : source.items()) {
        if (!pair.is_list() || pair.items().size() != 2) fault(function, "(): sequence elements must be pairs");
        data.set(pair.items()[0], pair.items()[1]);
      }
    } else {
      fault(function, "(): cannot build a mapping from '", source.type_name(), "'");
    }
  }
  for (const auto& [name, value] : args.keyword) data.set(Value::string(name), value);
  return data;
}

Value strftime_now(Interpreter&, const CallArgs& args) {
  auto a = bind_arguments(args, {"format"}, "strftime_now");
  if (!a[0] || !a[0]->is_string()) fault("strftime_now() needs a format string");
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buffer[512];
  const size_t written = std::strftime(buffer, sizeof(buffer), a[0]->as_string().c_str(), &local);
  if (written == 0 && !a[0]->as_string().empty()) fault("strftime_now(): format produced no output or is too long");
  return Value::string(std::string(buffer, written));
}

}  // namespace

const DictData& builtin_globals() {
  static const DictData globals = [] {
    DictData g;
    g.set(Value::string("range"), make_native_function("range", range_function));
    g.set(Value::string("namespace"), make_native_function("namespace", [](Interpreter&, const CallArgs& args) {
            return Value::name_space(mapping_from_arguments(args, "namespace"));
          }));
    g.set(Value::string("dict"), make_native_function("dict", [](Interpreter&, const CallArgs& args) {
            return Value::dict(mapping_from_arguments(args, "dict"));
          }));
    g.set(Value::string("raise_exception"), make_native_function("raise_exception", [](Interpreter&, const CallArgs& args) -> Value {
            auto a = bind_arguments(args, {"message"}, "raise_exception");
            fault("raise_exception: ", a[0] ? python_str(*a[0]) : std::string());
          }));
    g.set(Value::string("strftime_now"), make_native_function("strftime_now", strftime_now));
    return g;
  }();
  return globals;
}

}  // namespace orchard::jinja
