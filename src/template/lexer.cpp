#include "template/lexer.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "template/utf8.h"

namespace orchard::jinja {

namespace {

// Python's regex \s and str.isspace() agree; both count Unicode whitespace.
bool all_python_space(std::string_view text) {
  for (size_t pos = 0; pos < text.size();)
    if (!is_python_space(decode_code_point(text, pos))) return false;
  return true;
}

// Length of the run of whitespace starting at `pos`.
size_t whitespace_run(std::string_view text, size_t pos) {
  size_t end = pos;
  while (end < text.size()) {
    size_t next = end;
    if (!is_python_space(decode_code_point(text, next))) break;
    end = next;
  }
  return end - pos;
}

char closing_bracket(char open) { return open == '(' ? ')' : (open == '[' ? ']' : '}'); }

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Operators, longest first so that `//` wins over `/`.
constexpr const char* kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~",
                                      "[",  "]",  "(",  ")",  "{",  "}",  ">", "<", "=", ".", ":", "|",
                                      ",",  ";"};

class Lexer {
 public:
  explicit Lexer(std::string source) : source_(std::move(source)) {
    for (size_t i = 0; i < source_.size(); ++i)
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    // jinja2's lstrip_blocks also strips indentation before a tag on the template's first line.
    bool line_starting = true;
    while (pos < source_.size()) {
      const size_t tag = find_tag_start(pos);
      if (tag == std::string::npos) {
        emit_text(pos, source_.substr(pos));
        break;
      }
      const char type = source_[tag + 1];
      char sign = 0;
      if (tag + 2 < source_.size() && (source_[tag + 2] == '-' || source_[tag + 2] == '+')) sign = source_[tag + 2];
      emit_text(pos, strip_before_tag(source_.substr(pos, tag - pos), sign, type != '{', line_starting));
      const size_t inner = tag + 2 + (sign ? 1 : 0);
      if (type == '#') {
        pos = lex_comment(tag, inner);
      } else if (type == '%' && is_raw_begin(inner)) {
        pos = lex_raw(tag, inner);
      } else {
        pos = lex_tag(tag, inner, type == '%');
      }
      line_starting = pos > 0 && source_[pos - 1] == '\n';
    }
    Token end;
    end.kind = TokenKind::end_of_input;
    locate(end, source_.size());
    tokens_.push_back(end);
    return std::move(tokens_);
  }

 private:
  size_t find_tag_start(size_t from) const {
    for (size_t i = source_.find('{', from); i != std::string::npos; i = source_.find('{', i + 1)) {
      if (i + 1 < source_.size() && (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#'))
        return i;
    }
    return std::string::npos;
  }

  // Whitespace control on the text before a tag: `{%-` strips all trailing whitespace;
  // lstrip_blocks strips spaces and tabs between the line start and a block or comment tag
  // (not a `{{`), unless the tag opens with `{%+`.
  static std::string strip_before_tag(std::string text, char sign, bool is_block_or_comment,
                                      bool line_starting) {
    if (sign == '-') return python_strip(text, nullptr, StripSide::right);
    if (sign == '+' || !is_block_or_comment) return text;
    const size_t newline = text.rfind('\n');
    const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    if ((line_start > 0 || line_starting) && line_start < text.size() &&
        all_python_space(std::string_view(text).substr(line_start)))
      text.resize(line_start);
    return text;
  }

  // After a block or comment closes: `-%}` eats all following whitespace, `+%}` keeps it, and
  // trim_blocks eats a single newline.
  size_t skip_after_tag(size_t after, char sign, bool trims_newline) const {
    if (sign == '-') return after + whitespace_run(source_, after);
    if (sign != '+' && trims_newline && after < source_.size() && source_[after] == '\n') return after + 1;
    return after;
  }

  size_t lex_comment(size_t tag, size_t inner) {
    const size_t close = source_.find("#}", inner);
    if (close == std::string::npos) fail_at(tag, "unclosed comment: '{#' has no matching '#}'");
    const char sign = (close > inner && (source_[close - 1] == '-' || source_[close - 1] == '+')) ? source_[close - 1] : 0;
    return skip_after_tag(close + 2, sign, true);
  }

  // `{% raw %}` (optionally with whitespace control) — its body is emitted verbatim.
  bool is_raw_begin(size_t inner) const {
    size_t p = inner + whitespace_run(source_, inner);
    if (source_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    p += whitespace_run(source_, p);
    return source_.compare(p, 2, "%}") == 0 || source_.compare(p, 3, "-%}") == 0;
  }

  size_t lex_raw(size_t tag, size_t inner) {
    size_t p = inner + whitespace_run(source_, inner) + 3;
    p += whitespace_run(source_, p);
    // jinja2 applies no trim_blocks newline after `{% raw %}`, only `-%}` stripping.
    const size_t body = source_[p] == '-' ? p + 3 + whitespace_run(source_, p + 3) : p + 2;
    for (size_t candidate = source_.find("{%", body); candidate != std::string::npos;
         candidate = source_.find("{%", candidate + 2)) {
      size_t q = candidate + 2;
      char sign = 0;
      if (q < source_.size() && (source_[q] == '-' || source_[q] == '+')) sign = source_[q++];
      q += whitespace_run(source_, q);
      if (source_.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      q += whitespace_run(source_, q);
      char end_sign = 0;
      if (q < source_.size() && (source_[q] == '-' || source_[q] == '+')) end_sign = source_[q++];
      if (source_.compare(q, 2, "%}") != 0) continue;
      const bool line_starting = body > 0 && source_[body - 1] == '\n';
      emit_text(body, strip_before_tag(source_.substr(body, candidate - body), sign, true, line_starting));
      return skip_after_tag(q + 2, end_sign, true);
    }
    fail_at(tag, "unclosed raw block: '{% raw %}' has no matching '{% endraw %}'");
  }

  // Expression tokens up to the closing delimiter. Inside brackets a `}}` or `%}` is not a
  // closer (jinja2 balances brackets the same way), so `{{ {'a': {'b': 1}} }}` works.
  size_t lex_tag(size_t tag, size_t inner, bool is_block) {
    const char* opener = is_block ? "{%" : "{{";
    push(is_block ? TokenKind::block_begin : TokenKind::variable_begin, opener, tag);
    std::vector<size_t> open_brackets;  // positions of unclosed ( [ {
    size_t pos = inner;
    while (true) {
      if (pos >= source_.size()) {
        if (!open_brackets.empty())
          fail_at(open_brackets.back(), "'", source_[open_brackets.back()], "' was never closed");
        fail_at(tag, "unclosed tag: '", opener, "' has no matching '", is_block ? "%}" : "}}", "'");
      }
      if (open_brackets.empty()) {
        if (size_t after = match_closer(pos, is_block); after != std::string::npos) {
          push(is_block ? TokenKind::block_end : TokenKind::variable_end, is_block ? "%}" : "}}", pos);
          return after;
        }
      }
      const char c = source_[pos];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        ++pos;
      } else if (c == '\'' || c == '"') {
        pos = lex_string(pos);
      } else if (is_digit(c)) {
        pos = lex_number(pos);
      } else if (is_name_start(c)) {
        size_t end = pos + 1;
        while (end < source_.size() && (is_name_start(source_[end]) || is_digit(source_[end]))) ++end;
        push(TokenKind::name, source_.substr(pos, end - pos), pos);
        pos = end;
      } else {
        pos = lex_operator(pos, open_brackets);
      }
    }
  }

  // Position after the closer at `pos` (with its whitespace control applied), or npos.
  size_t match_closer(size_t pos, bool is_block) const {
    if (is_block) {
      if (source_.compare(pos, 3, "+%}") == 0) return pos + 3;
      if (source_.compare(pos, 3, "-%}") == 0) return skip_after_tag(pos + 3, '-', true);
      if (source_.compare(pos, 2, "%}") == 0) return skip_after_tag(pos + 2, 0, true);
    } else {
      if (source_.compare(pos, 3, "-}}") == 0) return skip_after_tag(pos + 3, '-', false);
      if (source_.compare(pos, 2, "}}") == 0) return pos + 2;
    }
    return std::string::npos;
  }

  size_t lex_operator(size_t pos, std::vector<size_t>& open_brackets) {
    for (const char* op : kOperators) {
      const size_t length = std::strlen(op);
      if (source_.compare(pos, length, op) != 0) continue;
      if (length == 1) {
        const char c = op[0];
        if (c == '(' || c == '[' || c == '{') open_brackets.push_back(pos);
        if (c == ')' || c == ']' || c == '}') {
          const char expected = open_brackets.empty() ? 0 : closing_bracket(source_[open_brackets.back()]);
          if (c != expected) {
            if (open_brackets.empty()) fail_at(pos, "unexpected '", c, "'");
            fail_at(pos, "unexpected '", c, "': the '", source_[open_brackets.back()], "' before it is not closed");
          }
          open_brackets.pop_back();
        }
      }
      push(TokenKind::op, op, pos);
      return pos + length;
    }
    size_t end = pos;
    decode_code_point(source_, end);
    fail_at(pos, "unexpected character '", source_.substr(pos, end - pos), "' in tag");
  }

  // Numbers as jinja2 reads them: a float needs a fraction or an exponent; a float cannot start
  // right after a '.', so `x.0.1` is item 0 then item 1.
  size_t lex_number(size_t pos) {
    size_t end = pos;
    while (end < source_.size() && is_digit(source_[end])) ++end;
    bool is_float = false;
    const bool after_dot = pos > 0 && source_[pos - 1] == '.';
    if (!after_dot) {
      if (end + 1 < source_.size() && source_[end] == '.' && is_digit(source_[end + 1])) {
        is_float = true;
        ++end;
        while (end < source_.size() && is_digit(source_[end])) ++end;
      }
      if (end < source_.size() && (source_[end] == 'e' || source_[end] == 'E')) {
        size_t exponent = end + 1;
        if (exponent < source_.size() && (source_[exponent] == '+' || source_[exponent] == '-')) ++exponent;
        if (exponent < source_.size() && is_digit(source_[exponent])) {
          is_float = true;
          end = exponent;
          while (end < source_.size() && is_digit(source_[end])) ++end;
        }
      }
    }
    const std::string text = source_.substr(pos, end - pos);
    Token token;
    locate(token, pos);
    token.value = text;
    if (is_float) {
      token.kind = TokenKind::floating;
      token.float_value = std::strtod(text.c_str(), nullptr);  // overflow gives inf, as in Python
    } else {
      token.kind = TokenKind::integer;
      errno = 0;
      const unsigned long long parsed = std::strtoull(text.c_str(), nullptr, 10);
      if (errno == ERANGE || parsed > static_cast<unsigned long long>(INT64_MAX))
        fail_at(pos, "integer literal ", text, " is too large");
      token.int_value = static_cast<int64_t>(parsed);
    }
    tokens_.push_back(token);
    return end;
  }

  // String literals decode like Python's unicode-escape codec, as jinja2 does.
  size_t lex_string(size_t pos) {
    const char quote = source_[pos];
    std::string value;
    size_t p = pos + 1;
    while (true) {
      if (p >= source_.size()) fail_at(pos, "unclosed string literal");
      const char c = source_[p];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++p;
        continue;
      }
      if (p + 1 >= source_.size()) fail_at(pos, "unclosed string literal");
      const char e = source_[p + 1];
      p += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t digits = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          if (p + digits > source_.size() || !std::all_of(source_.begin() + p, source_.begin() + p + digits, is_hex))
            fail_at(p - 2, "truncated \\", e, " escape in string literal");
          const uint32_t code_point = static_cast<uint32_t>(std::stoul(source_.substr(p, digits), nullptr, 16));
          if (code_point > 0x10ffff) fail_at(p - 2, "\\U escape out of range in string literal");
          append_code_point(value, code_point);
          p += digits;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t code_point = static_cast<uint32_t>(e - '0');
            for (int i = 0; i < 2 && p < source_.size() && source_[p] >= '0' && source_[p] <= '7'; ++i)
              code_point = code_point * 8 + static_cast<uint32_t>(source_[p++] - '0');
            append_code_point(value, code_point);
          } else {  // unknown escapes stay as written
            value += '\\';
            value += e;
          }
      }
    }
    push(TokenKind::string, value, pos);
    return p + 1;
  }

  void emit_text(size_t pos, std::string text) {
    if (!text.empty()) push(TokenKind::text, std::move(text), pos);
  }

  void push(TokenKind kind, std::string value, size_t pos) {
    Token token;
    token.kind = kind;
    token.value = std::move(value);
    locate(token, pos);
    tokens_.push_back(std::move(token));
  }

  void locate(Token& token, size_t pos) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    token.line = static_cast<int>(it - line_starts_.begin());
    token.column = static_cast<int>(pos - *(it - 1)) + 1;
  }

  template <typename... Parts>
  [[noreturn]] void fail_at(size_t pos, Parts&&... parts) const {
    Token where;
    locate(where, pos);
    fail("template line ", where.line, ", column ", where.column, ": ", std::forward<Parts>(parts)...);
  }

  std::string source_;
  std::vector<size_t> line_starts_{0};
  std::vector<Token> tokens_;
};

// jinja2 reads any line ending as "\n" and drops one trailing newline (keep_trailing_newline
// is off in transformers).
std::string normalize_newlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

std::vector<Token> tokenize_template(const std::string& source) {
  return Lexer(normalize_newlines(source)).run();
}

std::string describe_token(const Token& token) {
  switch (token.kind) {
    case TokenKind::text: return "template text";
    case TokenKind::end_of_input: return "end of template";
    case TokenKind::string: return "string literal";
    case TokenKind::integer:
    case TokenKind::floating: return "number " + token.value;
    default: return "'" + token.value + "'";
  }
}

}  // namespace orchard::jinja
