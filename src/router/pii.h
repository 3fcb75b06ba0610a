// PII detection and redaction for the hybrid router (issue 19): what the policy looks for in the text
// of a request before any of it may leave the device, and the placeholders that stand in for it.
//
// Detection scans the text and applies validity rules (checksums, numbering plans, length tables),
// not bare regular expressions. Every built-in detector works on ASCII; a byte >= 0x80 (UTF-8 of any
// script, or invalid UTF-8) is never part of a value and counts as a boundary, so that a number
// written against Chinese or Japanese text ("电话13812345678。") is still found. A match never sits
// inside a longer run of ASCII letters or digits (nor, for numbers, inside a longer run of digits
// joined by the same separators: only whole runs are judged, never a piece of one).
//
//   email  local@domain. Local part: 1-64 of [A-Za-z0-9._%+-] (the subset of RFC 5321's atext that
//          real addresses use; quotes, '=' and '\'' are left out so that `x='a@b.com'` in code yields
//          a@b.com), no leading, trailing or doubled dot. Domain: >= 2 dot-separated labels of
//          [A-Za-z0-9-], 1-63 each, no leading or trailing '-', a last label (TLD) of >= 2 letters,
//          <= 253 in all. A trailing '.' or '-' (end of a sentence) is not part of the domain.
//   phone  A run of digit groups joined by 1-2 of ' ' '-' '.' '(' ')', optionally after '+' or '(';
//          also '/' after a first group of 0 + 2-4 digits (German "030/1234567"), and "(0)" after
//          the country code ("+44 (0)20 7946 0958": the trunk prefix, not dialled).
//          '+': E.164, a country code from ITU's assigned list then 8-15 digits in all; for the
//          seven countries below the national rule applies to the national part as well. Without
//          '+': the national formats of US (NANP: 10 digits or 1 + 10, area and exchange 2-9xx but
//          not N11, grouped 3-3-4 or bare), GB (0 + 10 digits, 01/02/03/07[1-57-9]/08/09), DE
//          (landline 0[2-9] + 7-10 digits, mobile 015x/016x/017x + 7-8 digits), FR (0[1-9] + 8),
//          CN (mobile 1[3-9] + 9, landline 0[1-9] + 9-10), JP (0[1-9] + 8 digits, mobile
//          0[789]0 + 8), AU (0[2378] + 8, mobile 04 + 8). A run of >= 4 dot-joined groups of <= 3
//          digits not all of 2 (an address or a version; 01.23.45.67.89 is French), an ISO date
//          (dddd-dd-dd...), an SSN's shape (ddd-dd-dddd) or one followed by ':' and a digit (a time) is
//          not a phone.
//   card   13-19 digits, bare or in groups joined by single spaces or single dashes (one kind), the
//          first group of >= 4 digits, not after '+' (a phone's country code), passing Luhn, with a
//          brand prefix and one of that brand's lengths (card_brand below).
//   iban   2 upper-case letters, 2 check digits, the BBAN ([A-Z0-9]); the length from the
//          per-country table (iban_length); compact or in groups of 4 joined by single spaces;
//          mod 97 == 1.
//   us_ssn AAA-GG-SSSS or AAA GG SSSS; the bare 9 digits only when "ssn" or "social security"
//          (any case) ends within the 32 bytes before it. Area not 000, 666 or 9xx, group not 00,
//          serial not 0000, and not one of the numbers known to be void (078-05-1120, 219-09-9999,
//          457-55-5462: published in advertising, never valid).
//   ipv4   exactly four octets 0-255 in decimal, no leading zeros ("0" itself is fine), not part of
//          a longer dotted run of digits (1.2.3.4.5, a version string, is no address).
//   ipv6   8 groups of 1-4 hex digits, or fewer with one "::", optionally ending with a dotted IPv4
//          (which counts as 2 groups). Bare "::" and forms without any decimal digit (a::b, dead::beef,
//          which are C++ scopes far more often than addresses) are not reported.
//   custom the caller's patterns, ECMAScript std::regex without back-references (matched without
//          backtracking where the standard library allows it), run over windows of kCustomWindow bytes
//          that overlap by half (a backtracking std::regex recurses per character and must never see
//          a long text at once): a custom match is found when it is at most kCustomWindow / 2 bytes long. Its
//          cost is std::regex's, up to quadratic in the window (each start, a set of states per byte), so
//          a text longer than PiiOptions::custom_max_bytes is refused (an orchard::Error: the
//          caller cannot clear the text, and keeps it on the device) rather than scanned for long.
//
// Overlaps: candidates are accepted in the priority order email, iban, card, us_ssn, ipv6, ipv4,
// phone, custom (custom patterns in the order given), each only if it overlaps nothing accepted
// before it; within one type, leftmost first. So an address's local part never yields a phone, and
// an IPv6 address with an IPv4 tail is one ipv6 match. The result is sorted by start.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace orchard::router {

enum class PiiType { email, phone, card, iban, us_ssn, ipv4, ipv6, custom };

// "email", "phone", "card", "iban", "us_ssn", "ipv4", "ipv6", "custom".
std::string_view pii_type_name(PiiType type);

struct PiiMatch {
  PiiType type = PiiType::email;
  size_t start = 0, end = 0;  // byte offsets into the text, [start, end)
  std::string name;           // the custom pattern's name; empty for the built-in types
};

struct CustomPattern {
  std::string name;   // used in placeholders: [NAME_1], upper-cased, non-alphanumerics as '_'
  std::string regex;  // ECMAScript syntax (std::regex)
};

inline constexpr size_t kCustomWindow = 2048;

struct PiiOptions {
  std::vector<PiiType> types = {PiiType::email, PiiType::phone, PiiType::card,  PiiType::iban,
                                PiiType::us_ssn, PiiType::ipv4, PiiType::ipv6};
  std::vector<CustomPattern> custom;
  size_t custom_max_bytes = 256 * 1024;  // longer texts fail when there are custom patterns
};

// Every match of the enabled types, non-overlapping, sorted by start. Linear in the text's length
// (each detector looks at bounded neighbourhoods of the runs it scans once), except the custom
// patterns, which cost what std::regex costs per window. A custom pattern that does not compile,
// or custom patterns over a text longer than custom_max_bytes, fail with an orchard::Error.
std::vector<PiiMatch> find_pii(std::string_view text, const PiiOptions& options = {});

// The validity rules on their own (the detectors' building blocks; tests hold them to hand-computed
// cases). Digits-only arguments unless said otherwise.
bool luhn_valid(std::string_view digits);
// "visa", "mastercard", "amex", "discover", "jcb", "unionpay", "diners", or "" when the prefix and
// length match no brand: Visa 4 / 13, 16, 19; Mastercard 51-55, 2221-2720 / 16; Amex 34, 37 / 15;
// Discover 6011, 644-649, 65 / 16, 19; JCB 3528-3589 / 16-19; UnionPay 62 / 16-19; Diners 36,
// 300-305 / 14. (65 is Discover's; UnionPay's 62 does not overlap it.)
std::string_view card_brand(std::string_view digits);
// The IBAN length of a country ("DE" -> 22), 0 when the country has no IBAN in the table.
int iban_length(std::string_view country);
// A compact IBAN (no spaces, upper case): length from the table and mod 97 == 1.
bool iban_valid(std::string_view compact);
bool us_ssn_valid(std::string_view nine_digits);
// NANP: 10 digits, area and exchange [2-9]dd, neither N11.
bool nanp_valid(std::string_view ten_digits);
bool ipv4_valid(std::string_view text);
bool ipv6_valid(std::string_view text);

// Redaction: each value becomes a placeholder "[TYPE_N]" (TYPE: EMAIL, PHONE, CARD, IBAN, SSN, IPV4,
// IPV6, or the custom pattern's name), N counted per TYPE from 1 in order of appearance; the same
// value of the same TYPE gets the same placeholder within one redaction. No placeholder is ever a
// string that occurs in the original text: a number whose placeholder the text already contains
// (the user wrote "[EMAIL_1]" themselves) is skipped. So every placeholder in the redacted text is
// one that redact() put there, and restore() leaves the user's own look-alikes as they were.
struct Redaction {
  std::string text;
  std::vector<std::pair<std::string, std::string>> placeholders;  // placeholder -> original
};

// `matches` need not be sorted; one that overlaps an earlier (by start) one is skipped; one that
// runs past the text fails with an orchard::Error.
Redaction redact(std::string_view text, std::span<const PiiMatch> matches);

// Every placeholder of `redaction` found in `answer` (any number of times) replaced by its original.
// Operates on a whole answer: a stream must hold back a trailing "[..." until it closes.
std::string restore(std::string_view answer, const Redaction& redaction);

// restore() over an answer that arrives in pieces (a stream's deltas): a piece's tail that could
// still become a placeholder ("[", "[EMA") is held back until the next piece settles it, so that
// a placeholder split across deltas is restored all the same. The concatenated output of feed()s
// and finish() equals restore() of the concatenated pieces.
class RestoreStream {
 public:
  explicit RestoreStream(const Redaction& redaction);
  std::string feed(std::string_view piece);
  std::string finish();  // what is held back, as it is (the answer ended inside no placeholder)

 private:
  const Redaction& redaction_;
  std::string held_;
};

}  // namespace orchard::router
