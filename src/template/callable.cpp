#include "template/callable.h"

#include <memory>

#include "template/fault.h"

namespace orchard::jinja {

std::vector<std::optional<Value>> bind_arguments(const CallArgs& args,
                                                 std::initializer_list<const char*> parameter_names,
                                                 const std::string& function_name) {
  const std::vector<const char*> names(parameter_names);
  std::vector<std::optional<Value>> bound(names.size());
  if (args.positional.size() > names.size())
    fault(function_name, "() takes at most ", names.size(), " argument(s), ", args.positional.size(),
          " given");
  for (size_t i = 0; i < args.positional.size(); ++i) bound[i] = args.positional[i];
  for (const auto& [keyword, value] : args.keyword) {
    size_t index = 0;
    while (index < names.size() && keyword != names[index]) ++index;
    if (index == names.size()) fault(function_name, "() got an unexpected keyword argument '", keyword, "'");
    if (bound[index]) fault(function_name, "() got multiple values for argument '", keyword, "'");
    bound[index] = value;
  }
  return bound;
}

Value make_native_function(std::string name, NativeFunction::Body body) {
  return Value::callable(std::make_shared<NativeFunction>(std::move(name), std::move(body)));
}

}  // namespace orchard::jinja
