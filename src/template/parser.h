// Builds the statement tree from lexer tokens with jinja2's grammar and operator precedence.
// Syntax errors are orchard::Error naming the template line and column.
#pragma once
#include <vector>

#include "template/ast.h"
#include "template/lexer.h"

namespace orchard::jinja {

Body parse_template(const std::vector<Token>& tokens);

}  // namespace orchard::jinja
