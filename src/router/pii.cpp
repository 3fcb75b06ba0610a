#include "router/pii.h"

#include <algorithm>
#include <array>
#include <map>
#include <regex>
#include <set>
#include <unordered_map>

#include "base/error.h"

namespace orchard::router {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
char lower(char c) { return is_upper(c) ? char(c - 'A' + 'a') : c; }

// Whether the byte before `pos` (if any) is an ASCII letter or digit: a value must not start there.
bool alnum_before(std::string_view text, size_t pos) { return pos > 0 && is_alnum(text[pos - 1]); }
bool alnum_at(std::string_view text, size_t pos) { return pos < text.size() && is_alnum(text[pos]); }

struct Candidate {
  size_t start, end;
};

// ---- e-mail ----

bool local_char(char c) { return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'; }
bool domain_char(char c) { return is_alnum(c) || c == '.' || c == '-'; }

bool valid_domain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  size_t labels = 0, pos = 0;
  std::string_view last;
  while (true) {
    size_t dot = domain.find('.', pos);
    std::string_view label = domain.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!is_alnum(c) && c != '-') return false;
    ++labels;
    last = label;
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  if (labels < 2 || last.size() < 2) return false;
  return std::all_of(last.begin(), last.end(), is_alpha);
}

void find_emails(std::string_view text, std::vector<Candidate>& out) {
  const size_t n = text.size();
  for (size_t at = text.find('@'); at != std::string_view::npos; at = text.find('@', at + 1)) {
    // The local part: at most 64 bytes; a longer run of local characters is not an address.
    size_t s = at;
    while (s > 0 && local_char(text[s - 1]) && at - s <= 64) --s;
    if (s > 0 && local_char(text[s - 1])) continue;
    if (s > 0 && text[s - 1] == '@') continue;
    while (s < at && text[s] == '.') ++s;  // "...john@x.com": the dots are punctuation
    if (s == at || at - s > 64 || text[at - 1] == '.') continue;
    if (text.substr(s, at - s).find("..") != std::string_view::npos) continue;
    size_t e = at + 1;
    while (e < n && domain_char(text[e]) && e - at - 1 <= 253) ++e;
    if (e < n && domain_char(text[e])) continue;
    if (e < n && text[e] == '@') continue;
    while (e > at + 1 && (text[e - 1] == '.' || text[e - 1] == '-')) --e;  // end of a sentence
    if (!valid_domain(text.substr(at + 1, e - at - 1))) continue;
    out.push_back({s, e});
  }
}

// ---- numbers joined by separators ----

// A run of digit groups: the groups (their digits and offsets) and the separators between them.
struct DigitRun {
  size_t start = 0, end = 0;  // from the first byte ('+', '(' or a digit) to the last digit
  std::string digits;         // at most kMaxDigits, `overflow` when there were more
  std::vector<size_t> group_sizes;
  std::string seps;  // every separator byte, in order
  bool plus = false, overflow = false;
};
constexpr size_t kMaxDigits = 24;

bool phone_sep(char c) { return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')'; }

// The maximal phone-shaped run at `pos` (which holds '+', '(' or a digit): digit groups joined by 1-2
// separator bytes. Returns the position where scanning resumes (past the run).
size_t phone_run(std::string_view text, size_t pos, DigitRun& run) {
  const size_t n = text.size();
  run = {};
  run.start = pos;
  size_t p = pos;
  if (text[p] == '+') {
    run.plus = true;
    ++p;
  }
  if (p < n && text[p] == '(') ++p;
  if (p >= n || !is_digit(text[p])) return std::max(p, pos + 1);
  while (true) {
    size_t g = p;
    while (p < n && is_digit(text[p])) {
      if (run.digits.size() < kMaxDigits) run.digits.push_back(text[p]);
      else run.overflow = true;
      ++p;
    }
    // "+44 (0)20 7946 0958": the trunk prefix written after the country code is not dialled.
    const bool trunk = run.plus && run.group_sizes.size() == 1 && p - g == 1 && text[g] == '0' &&
                       text[g - 1] == '(' && p < n && text[p] == ')';
    if (trunk && !run.overflow) run.digits.pop_back();
    if (!trunk) run.group_sizes.push_back(p - g);
    run.end = p;
    size_t q = p;
    while (q < n && q - p < 3 && phone_sep(text[q])) ++q;
    // "030/1234567": Germany's slash after the area code, only there.
    if (q == p && q < n && text[q] == '/' && !run.plus && run.seps.empty() && run.group_sizes.size() == 1 &&
        text[g] == '0' && p - g >= 3 && p - g <= 5)
      ++q;
    if (q == p || q - p > 2 || q >= n || !is_digit(text[q])) break;
    run.seps.append(text.substr(p, q - p));
    p = q;
  }
  return run.end;
}

// An address or version written with dots (10.0.0.1, 141.7.76.53.163): four or more groups of at most
// 3 digits joined by single dots, not all of 2 digits (France writes 01.23.45.67.89).
bool dotted_number(const DigitRun& run) {
  const auto& g = run.group_sizes;
  if (g.size() < 4 || run.seps != std::string(g.size() - 1, '.')) return false;
  if (!std::all_of(g.begin(), g.end(), [](size_t n) { return n <= 3; })) return false;
  return !std::all_of(g.begin(), g.end(), [](size_t n) { return n == 2; });
}

bool nanp_grouped(const DigitRun& run) {
  std::vector<size_t> g = run.group_sizes;
  if (run.digits.size() == 11) {  // a leading 1: bare "1" group, or attached ("12125550123")
    if (g.front() == 1) g.erase(g.begin());
    else if (g.size() == 1) g[0] = 10;
    else return false;
  }
  return g == std::vector<size_t>{10} || g == std::vector<size_t>{3, 3, 4} || g == std::vector<size_t>{3, 7};
}

bool in(char c, char lo, char hi) { return c >= lo && c <= hi; }

bool gb_national(std::string_view d) {
  if (d.size() != 11 || d[0] != '0') return false;
  char a = d[1];
  return a == '1' || a == '2' || a == '3' || a == '8' || a == '9' || (a == '7' && d[2] != '0' && d[2] != '6');
}
bool de_national(std::string_view d) {
  if (d.size() < 9 || d.size() > 12 || d[0] != '0') return false;
  if (d[1] == '1') return in(d[2], '5', '7') && d.size() >= 11;
  return in(d[1], '2', '9');
}
bool fr_national(std::string_view d) { return d.size() == 10 && d[0] == '0' && in(d[1], '1', '9'); }
bool cn_national(std::string_view d) {
  if (d.size() == 11 && d[0] == '1') return in(d[1], '3', '9');
  return (d.size() == 11 || d.size() == 12) && d[0] == '0' && in(d[1], '1', '9');
}
bool jp_national(std::string_view d) {
  if (d.size() == 10) return d[0] == '0' && in(d[1], '1', '9');
  return d.size() == 11 && d[0] == '0' && in(d[1], '7', '9') && d[2] == '0';
}
bool au_national(std::string_view d) {
  return d.size() == 10 && d[0] == '0' && (d[1] == '2' || d[1] == '3' || d[1] == '4' || d[1] == '7' || d[1] == '8');
}

// ITU-T E.164 country codes in service (prefix-free, so at most one prefix of a number is one).
constexpr std::array<int, 206> kCountryCodes = {
    1,   7,   20,  27,  30,  31,  32,  33,  34,  36,  39,  40,  41,  43,  44,  45,  46,  47,  48,  49,  51,  52,
    53,  54,  55,  56,  57,  58,  60,  61,  62,  63,  64,  65,  66,  81,  82,  84,  86,  90,  91,  92,  93,  94,
    95,  98,  211, 212, 213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234,
    235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255, 256,
    257, 258, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297, 298, 299, 350, 351, 352, 353, 354,
    355, 356, 357, 358, 359, 370, 371, 372, 373, 374, 375, 376, 377, 378, 380, 381, 382, 383, 385, 386, 387, 389,
    420, 421, 423, 500, 501, 502, 503, 504, 505, 506, 507, 508, 509, 590, 591, 592, 593, 594, 595, 596, 597, 598,
    599, 670, 672, 673, 674, 675, 676, 677, 678, 679, 680, 681, 682, 683, 685, 686, 687, 688, 689, 690, 691, 692,
    850, 852, 853, 855, 856, 880, 886, 960, 961, 962, 963, 964, 965, 966, 967, 968, 970, 971, 972, 973, 974, 975,
    976, 977, 992, 993, 994, 995, 996, 998};

bool e164_valid(std::string_view d) {
  if (d.size() < 8 || d.size() > 15 || d[0] == '0') return false;  // no country code starts with 0
  for (size_t len = 1; len <= 3; ++len) {
    int cc = std::stoi(std::string(d.substr(0, len)));
    if (!std::binary_search(kCountryCodes.begin(), kCountryCodes.end(), cc)) continue;
    std::string_view national = d.substr(len);
    std::string trunk(1, '0');  // the national form of the countries with trunk prefix 0
    trunk.append(national);
    switch (cc) {
      case 1: return nanp_valid(national);
      case 44: return gb_national(trunk);
      case 49: return de_national(trunk);
      case 33: return fr_national(trunk);
      case 86: return (national.size() == 11 && national[0] == '1') ? cn_national(national) : cn_national(trunk);
      case 81: return jp_national(trunk);
      case 61: return au_national(trunk);
      default: return national.size() >= 6;
    }
  }
  return false;
}

bool national_valid(const DigitRun& run) {
  std::string_view d = run.digits;
  if ((d.size() == 10 && nanp_valid(d)) || (d.size() == 11 && d[0] == '1' && nanp_valid(d.substr(1)))) {
    if (nanp_grouped(run)) return true;
  }
  return gb_national(d) || de_national(d) || fr_national(d) || cn_national(d) || jp_national(d) || au_national(d);
}

void find_phones(std::string_view text, std::vector<Candidate>& out) {
  const size_t n = text.size();
  size_t i = 0;
  DigitRun run;
  while (i < n) {
    char c = text[i];
    if (!(is_digit(c) || c == '+' || c == '(')) {
      ++i;
      continue;
    }
    size_t next = phone_run(text, i, run);
    bool ok = !run.digits.empty() && !run.overflow && !alnum_before(text, i) && !alnum_at(text, run.end);
    if (ok && run.end + 1 < n && text[run.end] == ':' && is_digit(text[run.end + 1])) ok = false;  // a time
    if (ok && dotted_number(run)) ok = false;
    if (ok && run.group_sizes == std::vector<size_t>{3, 2, 4} && run.seps == "--") ok = false;  // an SSN's shape
    if (ok && run.group_sizes.size() >= 3 && run.group_sizes[0] == 4 && run.group_sizes[1] == 2 &&
        run.group_sizes[2] == 2 && run.seps.substr(0, 2) == "--")
      ok = false;  // an ISO date
    if (ok) ok = run.plus ? e164_valid(run.digits) : national_valid(run);
    if (ok) out.push_back({run.start, run.end});
    i = next;
  }
}

// ---- cards ----

void find_cards(std::string_view text, std::vector<Candidate>& out) {
  const size_t n = text.size();
  size_t i = 0;
  std::string digits;
  while (i < n) {
    if (!is_digit(text[i])) {
      ++i;
      continue;
    }
    size_t start = i, p = i, first_group = 0;
    char sep = 0;
    bool mixed = false;
    digits.clear();
    while (true) {
      while (p < n && is_digit(text[p])) {
        if (digits.size() <= 19) digits.push_back(text[p]);
        ++p;
      }
      if (first_group == 0) first_group = p - start;
      if (p + 1 < n && (text[p] == ' ' || text[p] == '-') && is_digit(text[p + 1])) {
        if (sep && sep != text[p]) mixed = true;
        sep = text[p];
        ++p;
        continue;
      }
      break;
    }
    i = p;
    if (mixed || digits.size() < 13 || digits.size() > 19 || alnum_before(text, start) || alnum_at(text, p)) continue;
    if (first_group < 4 || (start > 0 && text[start - 1] == '+')) continue;  // "+49 1512 3451986" is a phone
    if (luhn_valid(digits) && !card_brand(digits).empty()) out.push_back({start, p});
  }
}

// ---- IBAN ----

struct IbanCountry {
  const char* cc;
  int length;
};
// The SWIFT IBAN registry's lengths: every country in it (82; SEPA and the others).
constexpr IbanCountry kIbanCountries[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22},
    {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DJ", 27},
    {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22},
    {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23},
    {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21},
    {"LT", 20}, {"LU", 20}, {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MR", 27},
    {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29},
    {"RO", 24}, {"RS", 22}, {"RU", 33}, {"SA", 24}, {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24},
    {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24},
    {"XK", 20},
};

bool iban_char(char c) { return is_upper(c) || is_digit(c); }

void find_ibans(std::string_view text, std::vector<Candidate>& out) {
  const size_t n = text.size();
  std::string compact;
  for (size_t i = 0; i + 4 <= n; ++i) {
    if (!is_upper(text[i]) || !is_upper(text[i + 1]) || alnum_before(text, i)) continue;
    const size_t length = size_t(iban_length(text.substr(i, 2)));
    if (length == 0 || !is_digit(text[i + 2]) || !is_digit(text[i + 3])) continue;
    // Compact: `length` IBAN characters, then a boundary.
    size_t p = i;
    while (p < n && p - i < length && iban_char(text[p])) ++p;
    if (p - i == length && !alnum_at(text, p)) {
      if (iban_valid(text.substr(i, length))) out.push_back({i, p});
      continue;
    }
    // In groups of 4 joined by single spaces.
    compact.clear();
    p = i;
    while (p < n && compact.size() < length) {
      if (compact.size() > 0 && compact.size() % 4 == 0) {
        if (text[p] != ' ') break;
        ++p;
        if (p >= n) break;
      }
      if (!iban_char(text[p])) break;
      compact.push_back(text[p++]);
    }
    if (compact.size() == length && !alnum_at(text, p) && iban_valid(compact)) out.push_back({i, p});
  }
}

// ---- US SSN ----

bool keyword_before(std::string_view text, size_t pos) {
  const size_t from = pos > 48 ? pos - 48 : 0;
  std::string window;
  for (size_t k = from; k < pos; ++k) window.push_back(lower(text[k]));
  for (std::string_view key : {std::string_view("ssn"), std::string_view("social security")}) {
    for (size_t at = window.find(key); at != std::string::npos; at = window.find(key, at + 1))
      if (from + at + key.size() + 32 >= pos) return true;
  }
  return false;
}

void find_ssns(std::string_view text, std::vector<Candidate>& out) {
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (!is_digit(text[i])) {
      ++i;
      continue;
    }
    size_t run_end = i;
    while (run_end < n && is_digit(text[run_end])) ++run_end;
    const size_t start = i;
    i = run_end;
    if (alnum_before(text, start)) continue;
    // Not the continuation of a grouped number ("555-123-45-6789").
    if (start >= 2 && (text[start - 1] == '-' || text[start - 1] == ' ') && is_digit(text[start - 2])) continue;
    if (run_end - start == 3 && run_end + 8 <= n) {
      char sep = text[run_end];
      std::string_view t = text.substr(start, 11);
      if ((sep == '-' || sep == ' ') && is_digit(t[4]) && is_digit(t[5]) && t[6] == sep &&
          std::all_of(t.begin() + 7, t.end(), is_digit)) {
        const size_t end = start + 11;
        bool longer = alnum_at(text, end) || (end + 1 < n && text[end] == sep && is_digit(text[end + 1]));
        std::string nine = std::string(t.substr(0, 3)) + std::string(t.substr(4, 2)) + std::string(t.substr(7, 4));
        if (!longer && us_ssn_valid(nine)) out.push_back({start, end});
        i = end;
      }
    } else if (run_end - start == 9 && !alnum_at(text, run_end) && keyword_before(text, start) &&
               us_ssn_valid(text.substr(start, 9))) {
      out.push_back({start, run_end});
    }
  }
}

// ---- IP addresses ----

void find_ipv4(std::string_view text, std::vector<Candidate>& out) {
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (!is_digit(text[i]) && text[i] != '.') {
      ++i;
      continue;
    }
    size_t run_end = i;
    while (run_end < n && (is_digit(text[run_end]) || text[run_end] == '.')) ++run_end;
    size_t s = i, e = run_end;
    const bool boundary = !alnum_before(text, i) && !alnum_at(text, run_end);
    i = run_end;
    while (s < e && text[s] == '.') ++s;      // leading punctuation
    while (e > s && text[e - 1] == '.') --e;  // the end of a sentence
    if (boundary && e - s <= 15 && ipv4_valid(text.substr(s, e - s))) out.push_back({s, e});
  }
}

void find_ipv6(std::string_view text, std::vector<Candidate>& out) {
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    char c = text[i];
    if (!is_hex(c) && c != ':' && c != '.') {
      ++i;
      continue;
    }
    size_t run_end = i;
    size_t colons = 0;
    while (run_end < n && (is_hex(text[run_end]) || text[run_end] == ':' || text[run_end] == '.'))
      colons += text[run_end++] == ':';
    size_t s = i, e = run_end;
    i = run_end;
    if (colons < 2) continue;
    while (e > s && text[e - 1] == '.') --e;
    if (e - s >= 2 && text[s] == ':' && text[s + 1] != ':') ++s;          // "addr:2001:db8::1"
    if (e - s >= 2 && text[e - 1] == ':' && text[e - 2] != ':') --e;      // "2001:db8::1: refused"
    if (alnum_before(text, s) || alnum_at(text, run_end)) continue;
    std::string_view addr = text.substr(s, e - s);
    if (addr.size() > 45 || addr == "::" || std::none_of(addr.begin(), addr.end(), is_digit)) continue;
    if (ipv6_valid(addr)) out.push_back({s, e});
  }
}

// ---- custom patterns ----

// std::regex compiles groups by recursion: a pattern nested deeper than any real one is refused
// before it can exhaust the stack.
constexpr int kMaxPatternNesting = 32;
// libstdc++ reads a repetition count ("a{n,m}") or a back-reference ("\n") into a long with no
// overflow check (undefined behaviour at 20 digits, found by fuzz/router_config_fuzz.cpp): a
// number longer than this is refused first.
constexpr size_t kMaxPatternNumberDigits = 9;
// libstdc++ matches by backtracking unless told otherwise, and a pattern of stacked quantifiers
// ("m*****...", found by fuzz/router_config_fuzz.cpp) then takes time exponential in their number
// even on a one-byte text. Its Thompson-NFA executor (the __polynomial option) keeps a set of
// states per position instead: at most quadratic in the window, and no back-references (a pattern
// with one is refused as not compiling). Other standard libraries have no such option.
#if defined(__GLIBCXX__)
constexpr auto kCustomSyntax = std::regex::ECMAScript | std::regex_constants::__polynomial;
#else
constexpr auto kCustomSyntax = std::regex::ECMAScript;
#endif

// Refuses what std::regex cannot be trusted to refuse itself. (Counted repetitions that unroll too
// far, "((a{1000}){1000}){1000}", libstdc++ does refuse: its NFA is capped at
// _GLIBCXX_REGEX_STATE_LIMIT states, and find_custom catches the regex_error.)
void check_custom_pattern(const CustomPattern& pattern) {
  const std::string& r = pattern.regex;
  auto check_number_at = [&](size_t i) {
    size_t digits = 0;
    while (i + digits < r.size() && is_digit(r[i + digits])) ++digits;
    if (digits > kMaxPatternNumberDigits)
      fail("custom PII pattern '", pattern.name, "': a repetition count or back-reference of more than ",
           kMaxPatternNumberDigits, " digits");
  };
  int depth = 0;
  bool in_class = false, in_count = false;  // inside [...], inside {...}
  for (size_t i = 0; i < r.size(); ++i) {
    const char c = r[i];
    if (c == '\\') {
      check_number_at(i + 1);
      ++i;
    } else if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
    } else if (c == '{' || (c == ',' && in_count)) {
      in_count = true;
      check_number_at(i + 1);
    } else if (c == '}') {
      in_count = false;
    } else if (c == '(' && ++depth > kMaxPatternNesting) {
      fail("custom PII pattern '", pattern.name, "': groups nested deeper than ", kMaxPatternNesting);
    } else if (c == ')') {
      --depth;
    }
  }
}

void find_custom(std::string_view text, const CustomPattern& pattern, std::vector<Candidate>& out) {
  check_custom_pattern(pattern);
  std::regex re;
  try {
    re = std::regex(pattern.regex, kCustomSyntax);
  } catch (const std::regex_error& e) {
    fail("custom PII pattern '", pattern.name, "': the regular expression does not compile (", e.what(), ")");
  }
  const size_t n = text.size(), half = kCustomWindow / 2;
  std::set<std::pair<size_t, size_t>> seen;
  for (size_t a = 0;; a += half) {
    const size_t b = std::min(n, a + kCustomWindow);
    const bool last = b == n;
    auto flags = std::regex_constants::match_default;
    if (a > 0) flags |= std::regex_constants::match_prev_avail;
    if (!last) flags |= std::regex_constants::match_not_eol;
    try {
      for (std::cregex_iterator it(text.data() + a, text.data() + b, re, flags), end; it != end; ++it) {
        const size_t s = a + size_t(it->position(0)), e = s + size_t(it->length(0));
        if (e == s) continue;
        if (!last && (s >= a + half || e >= b)) continue;  // the next window sees it whole
        if (seen.insert({s, e}).second) out.push_back({s, e});
      }
    } catch (const std::regex_error& e) {  // error_complexity, error_stack
      fail("custom PII pattern '", pattern.name, "': the regular expression gave up on the text (", e.what(), ")");
    }
    if (last) break;
  }
}

std::string placeholder_prefix(const PiiMatch& m) {
  switch (m.type) {
    case PiiType::email: return "EMAIL";
    case PiiType::phone: return "PHONE";
    case PiiType::card: return "CARD";
    case PiiType::iban: return "IBAN";
    case PiiType::us_ssn: return "SSN";
    case PiiType::ipv4: return "IPV4";
    case PiiType::ipv6: return "IPV6";
    case PiiType::custom: break;
  }
  std::string prefix;
  for (char c : m.name) prefix.push_back(is_alnum(c) ? (is_alpha(c) ? char(c & ~0x20) : c) : '_');
  return prefix.empty() ? "CUSTOM" : prefix;
}

}  // namespace

std::string_view pii_type_name(PiiType type) {
  switch (type) {
    case PiiType::email: return "email";
    case PiiType::phone: return "phone";
    case PiiType::card: return "card";
    case PiiType::iban: return "iban";
    case PiiType::us_ssn: return "us_ssn";
    case PiiType::ipv4: return "ipv4";
    case PiiType::ipv6: return "ipv6";
    case PiiType::custom: return "custom";
  }
  return "?";
}

bool luhn_valid(std::string_view digits) {
  if (digits.empty()) return false;
  int sum = 0;
  bool twice = false;
  for (size_t k = digits.size(); k-- > 0;) {
    if (!is_digit(digits[k])) return false;
    int d = digits[k] - '0';
    if (twice) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

std::string_view card_brand(std::string_view d) {
  if (d.size() < 13 || !std::all_of(d.begin(), d.end(), is_digit)) return "";
  const size_t len = d.size();
  auto prefix = [&](size_t k) { return std::stoi(std::string(d.substr(0, k))); };
  const int p2 = prefix(2), p3 = prefix(3), p4 = prefix(4);
  if (d[0] == '4') return (len == 13 || len == 16 || len == 19) ? "visa" : "";
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return len == 16 ? "mastercard" : "";
  if (p2 == 34 || p2 == 37) return len == 15 ? "amex" : "";
  if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65) return (len == 16 || len == 19) ? "discover" : "";
  if (p4 >= 3528 && p4 <= 3589) return (len >= 16 && len <= 19) ? "jcb" : "";
  if (p2 == 62) return (len >= 16 && len <= 19) ? "unionpay" : "";
  if (p2 == 36 || (p3 >= 300 && p3 <= 305)) return len == 14 ? "diners" : "";
  return "";
}

int iban_length(std::string_view country) {
  for (const IbanCountry& c : kIbanCountries)
    if (country == c.cc) return c.length;
  return 0;
}

bool iban_valid(std::string_view iban) {
  if (iban.size() < 5 || int(iban.size()) != iban_length(iban.substr(0, 2))) return false;
  if (!is_digit(iban[2]) || !is_digit(iban[3])) return false;
  // Rearranged (BBAN, then country and check digits), letters as 10..35, the number mod 97.
  int rem = 0;
  for (size_t k = 0; k < iban.size(); ++k) {
    char c = iban[(k + 4) % iban.size()];
    if (is_digit(c)) rem = (rem * 10 + (c - '0')) % 97;
    else if (is_upper(c)) rem = (rem * 100 + (c - 'A' + 10)) % 97;
    else return false;
  }
  return rem == 1;
}

bool us_ssn_valid(std::string_view d) {
  if (d.size() != 9 || !std::all_of(d.begin(), d.end(), is_digit)) return false;
  std::string_view area = d.substr(0, 3), group = d.substr(3, 2), serial = d.substr(5, 4);
  if (area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000") return false;
  return d != "078051120" && d != "219099999" && d != "457555462";
}

bool nanp_valid(std::string_view d) {
  if (d.size() != 10 || !std::all_of(d.begin(), d.end(), is_digit)) return false;
  auto ok = [](std::string_view three) { return three[0] >= '2' && !(three[1] == '1' && three[2] == '1'); };
  return ok(d.substr(0, 3)) && ok(d.substr(3, 3));
}

bool ipv4_valid(std::string_view s) {
  int parts = 0;
  size_t pos = 0;
  while (true) {
    size_t dot = s.find('.', pos);
    std::string_view part = s.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    if (part.empty() || part.size() > 3 || !std::all_of(part.begin(), part.end(), is_digit)) return false;
    if (part.size() > 1 && part[0] == '0') return false;
    if (std::stoi(std::string(part)) > 255) return false;
    if (++parts > 4) return false;
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  return parts == 4;
}

bool ipv6_valid(std::string_view s) {
  if (s.size() < 2 || s.size() > 45) return false;
  const size_t gap = s.find("::");
  if (gap != std::string_view::npos && s.find("::", gap + 1) != std::string_view::npos) return false;
  // Counts the groups of one side of "::" (or of the whole address); -1 when malformed. The dotted
  // IPv4 tail may only end the address, and counts as two groups.
  auto groups = [](std::string_view side, bool may_end_in_ipv4) -> int {
    if (side.empty()) return 0;
    int count = 0;
    size_t pos = 0;
    while (true) {
      size_t colon = side.find(':', pos);
      std::string_view g = side.substr(pos, colon == std::string_view::npos ? std::string_view::npos : colon - pos);
      if (colon == std::string_view::npos && may_end_in_ipv4 && g.find('.') != std::string_view::npos) {
        if (!ipv4_valid(g)) return -1;
        return count + 2;
      }
      if (g.empty() || g.size() > 4 || !std::all_of(g.begin(), g.end(), is_hex)) return -1;
      ++count;
      if (colon == std::string_view::npos) return count;
      pos = colon + 1;
    }
  };
  if (gap == std::string_view::npos) return groups(s, true) == 8;
  std::string_view head = s.substr(0, gap), tail = s.substr(gap + 2);
  int h = groups(head, false), t = groups(tail, true);
  return h >= 0 && t >= 0 && h + t <= 7;
}

std::vector<PiiMatch> find_pii(std::string_view text, const PiiOptions& options) {
  auto enabled = [&](PiiType t) {
    return std::find(options.types.begin(), options.types.end(), t) != options.types.end();
  };
  std::map<size_t, size_t> taken;  // start -> end of the accepted matches
  std::vector<PiiMatch> result;
  auto accept = [&](PiiType type, const std::string& name, std::vector<Candidate>& found) {
    std::stable_sort(found.begin(), found.end(),
                     [](const Candidate& a, const Candidate& b) { return a.start < b.start; });
    for (const Candidate& c : found) {
      auto after = taken.lower_bound(c.start);
      if (after != taken.end() && after->first < c.end) continue;
      if (after != taken.begin() && std::prev(after)->second > c.start) continue;
      taken.emplace(c.start, c.end);
      result.push_back({type, c.start, c.end, name});
    }
    found.clear();
  };
  if (text.empty()) return result;
  std::vector<Candidate> found;
  struct Detector {
    PiiType type;
    void (*find)(std::string_view, std::vector<Candidate>&);
  };
  static constexpr Detector kDetectors[] = {
      {PiiType::email, find_emails}, {PiiType::iban, find_ibans}, {PiiType::card, find_cards},
      {PiiType::us_ssn, find_ssns},  {PiiType::ipv6, find_ipv6},  {PiiType::ipv4, find_ipv4},
      {PiiType::phone, find_phones},
  };
  for (const Detector& d : kDetectors) {
    if (!enabled(d.type)) continue;
    d.find(text, found);
    accept(d.type, "", found);
  }
  if (!options.custom.empty() && text.size() > options.custom_max_bytes)
    fail("PII detection: the text of ", text.size(), " bytes is longer than the ", options.custom_max_bytes,
         " that custom patterns are run over");
  for (const CustomPattern& pattern : options.custom) {
    find_custom(text, pattern, found);
    accept(PiiType::custom, pattern.name, found);
  }
  std::sort(result.begin(), result.end(), [](const PiiMatch& a, const PiiMatch& b) { return a.start < b.start; });
  return result;
}

Redaction redact(std::string_view text, std::span<const PiiMatch> matches) {
  std::vector<const PiiMatch*> order;
  for (const PiiMatch& m : matches) {
    if (m.start >= m.end || m.end > text.size())
      fail("redact: match [", m.start, ", ", m.end, ") of type ", pii_type_name(m.type), " is not within the text of ",
           text.size(), " bytes");
    order.push_back(&m);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const PiiMatch* a, const PiiMatch* b) { return a->start < b->start; });
  Redaction out;
  std::map<std::string, int> counters;                               // prefix -> last number used
  std::map<std::pair<std::string, std::string>, std::string> given;  // (prefix, value) -> placeholder
  size_t copied = 0;
  for (const PiiMatch* m : order) {
    if (m->start < copied) continue;  // overlaps the previous one
    std::string prefix = placeholder_prefix(*m);
    std::string value(text.substr(m->start, m->end - m->start));
    auto [it, fresh] = given.try_emplace({prefix, value});
    if (fresh) {
      int& number = counters[prefix];
      do it->second = "[" + prefix + "_" + std::to_string(++number) + "]";
      while (text.find(it->second) != std::string_view::npos);  // the user's own "[EMAIL_1]" stays theirs
      out.placeholders.emplace_back(it->second, value);
    }
    out.text.append(text.substr(copied, m->start - copied));
    out.text.append(it->second);
    copied = m->end;
  }
  out.text.append(text.substr(copied));
  return out;
}

std::string restore(std::string_view answer, const Redaction& redaction) {
  std::unordered_map<std::string_view, std::string_view> originals;
  size_t longest = 0;
  for (const auto& [placeholder, original] : redaction.placeholders) {
    originals.emplace(placeholder, original);
    longest = std::max(longest, placeholder.size());
  }
  std::string out;
  out.reserve(answer.size());
  size_t pos = 0;
  while (pos < answer.size()) {
    size_t open = answer.find('[', pos);
    if (open == std::string_view::npos) break;
    out.append(answer.substr(pos, open - pos));
    size_t close = answer.substr(open, longest).find(']');
    if (close != std::string_view::npos) {
      auto it = originals.find(answer.substr(open, close + 1));
      if (it != originals.end()) {
        out.append(it->second);
        pos = open + close + 1;
        continue;
      }
    }
    out.push_back('[');
    pos = open + 1;
  }
  out.append(answer.substr(std::min(pos, answer.size())));
  return out;
}

RestoreStream::RestoreStream(const Redaction& redaction) : redaction_(redaction) {}

std::string RestoreStream::feed(std::string_view piece) {
  held_.append(piece);
  // The earliest '[' whose rest is a proper prefix of some placeholder starts what is held back.
  size_t hold = held_.size();
  for (size_t open = held_.find('['); open != std::string::npos; open = held_.find('[', open + 1)) {
    const std::string_view rest = std::string_view(held_).substr(open);
    const bool prefix = std::any_of(redaction_.placeholders.begin(), redaction_.placeholders.end(),
                                    [&](const auto& p) { return p.first.size() > rest.size() && p.first.starts_with(rest); });
    if (prefix) {
      hold = open;
      break;
    }
  }
  std::string out = restore(std::string_view(held_).substr(0, hold), redaction_);
  held_.erase(0, hold);
  return out;
}

std::string RestoreStream::finish() {
  std::string out = restore(held_, redaction_);
  held_.clear();
  return out;
}

}  // namespace orchard::router
