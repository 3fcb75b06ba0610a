// Python's arithmetic and concatenation on template values: int stays int (overflow is an
// error rather than a bigint), `/` always gives a float, `//` and `%` floor like Python, `+`
// joins strings and lists, `*` repeats them, `~` joins the str() of both sides.
#pragma once
#include "template/ast.h"
#include "template/limits.h"
#include "template/value.h"

namespace orchard::jinja {

Value binary_operation(Operator op, const Value& left, const Value& right, const RenderLimits& limits);
Value unary_operation(Operator op, const Value& operand);

}  // namespace orchard::jinja
