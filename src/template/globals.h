// Names every template sees: jinja2's range, namespace and dict, and the helpers transformers
// adds (raise_exception, strftime_now).
#pragma once
#include "template/value.h"

namespace orchard::jinja {

const DictData& builtin_globals();

}  // namespace orchard::jinja
