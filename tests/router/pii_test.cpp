// PII detection and redaction (src/router/pii.h, issue 19): precision and recall per type on the
// labeled corpus (tests/router/data/pii_labeled.jsonl, written and cross-checked against
// phonenumbers, stdnum and ipaddress by tests/router/pii_corpus.py), the validity rules against
// hand-computed cases, the redaction round trip, and hostile input.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchard/error.h"
#include "router/pii.h"
#include "test_paths.h"

namespace orchard::router {
namespace {

std::vector<std::tuple<std::string, size_t, size_t>> spans_of(const std::vector<PiiMatch>& matches) {
  std::vector<std::tuple<std::string, size_t, size_t>> out;
  for (const PiiMatch& m : matches) out.emplace_back(std::string(pii_type_name(m.type)), m.start, m.end);
  return out;
}

using Spans = std::vector<std::tuple<std::string, size_t, size_t>>;

TEST(Pii, CorpusPrecisionAndRecallPerType) {
  std::ifstream in(test::source_path("tests/router/data/pii_labeled.jsonl"));
  ASSERT_TRUE(in) << "tests/router/data/pii_labeled.jsonl";
  struct Counts {
    int tp = 0, fp = 0, fn = 0;
  };
  std::map<std::string, Counts> counts;
  std::string line;
  int lines = 0;
  std::vector<std::string> examples;  // a few of the errors, to show when the threshold is missed
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++lines;
    nlohmann::json j = nlohmann::json::parse(line);
    const std::string text = j["text"];
    std::set<std::tuple<std::string, size_t, size_t>> gold;
    for (const auto& s : j["spans"]) gold.emplace(s["type"], s["start"], s["end"]);
    std::set<std::tuple<std::string, size_t, size_t>> predicted;
    for (const auto& span : spans_of(find_pii(text))) predicted.insert(span);
    for (const auto& p : predicted) {
      if (gold.count(p)) {
        ++counts[std::get<0>(p)].tp;
      } else {
        ++counts[std::get<0>(p)].fp;
        if (examples.size() < 30)
          examples.push_back("FP " + std::get<0>(p) + " '" +
                             text.substr(std::get<1>(p), std::get<2>(p) - std::get<1>(p)) + "' in: " + text);
      }
    }
    for (const auto& g : gold) {
      if (!predicted.count(g)) {
        ++counts[std::get<0>(g)].fn;
        if (examples.size() < 30)
          examples.push_back("FN " + std::get<0>(g) + " '" +
                             text.substr(std::get<1>(g), std::get<2>(g) - std::get<1>(g)) + "' in: " + text);
      }
    }
  }
  EXPECT_GT(lines, 1000);
  std::printf("[ PII      ] %d lines\n[ PII      ] %-8s %6s %6s %6s %10s %8s\n", lines, "type", "tp", "fp", "fn",
              "precision", "recall");
  for (const char* type : {"email", "phone", "card", "iban", "us_ssn", "ipv4", "ipv6"}) {
    const Counts c = counts[type];
    const double precision = c.tp + c.fp ? double(c.tp) / (c.tp + c.fp) : 0.0;
    const double recall = c.tp + c.fn ? double(c.tp) / (c.tp + c.fn) : 0.0;
    std::printf("[ PII      ] %-8s %6d %6d %6d %10.4f %8.4f\n", type, c.tp, c.fp, c.fn, precision, recall);
    EXPECT_GE(c.tp + c.fn, 100) << type << ": fewer than 100 labeled values";
    EXPECT_GE(precision, 0.97) << type;
    EXPECT_GE(recall, 0.97) << type;
  }
  for (const std::string& e : examples) std::printf("[ PII      ] %s\n", e.c_str());
}

TEST(Pii, Luhn) {
  // 7992739871x: the check digit that makes the doubled-digit sum a multiple of 10 is 3 (sum 67 + 3).
  EXPECT_TRUE(luhn_valid("79927398713"));
  for (char c = '0'; c <= '9'; ++c) {
    if (c != '3') {
      EXPECT_FALSE(luhn_valid(std::string("7992739871") + c)) << c;
    }
  }
  EXPECT_TRUE(luhn_valid("4111111111111111"));   // 4*2=8, 1*2=2 (x7), ones (x8): 8 + 14 + 8 = 30
  EXPECT_FALSE(luhn_valid("4111111111111112"));
  EXPECT_FALSE(luhn_valid(""));
  EXPECT_FALSE(luhn_valid("4111-1111"));
}

TEST(Pii, CardBrands) {
  EXPECT_EQ(card_brand("4111111111111111"), "visa");
  EXPECT_EQ(card_brand("4222222222222"), "visa");        // 13 digits
  EXPECT_EQ(card_brand("411111111111111"), "");          // 15: no Visa length
  EXPECT_EQ(card_brand("5555555555554444"), "mastercard");
  EXPECT_EQ(card_brand("2221000000000009"), "mastercard");
  EXPECT_EQ(card_brand("2720990000000007"), "mastercard");
  EXPECT_EQ(card_brand("2721000000000000"), "");         // past the 2-series
  EXPECT_EQ(card_brand("378282246310005"), "amex");
  EXPECT_EQ(card_brand("3782822463100050"), "");         // Amex is 15 digits
  EXPECT_EQ(card_brand("6011111111111117"), "discover");
  EXPECT_EQ(card_brand("6445000000000000"), "discover");
  EXPECT_EQ(card_brand("3530111333300000"), "jcb");
  EXPECT_EQ(card_brand("6200000000000005"), "unionpay");
  EXPECT_EQ(card_brand("30569309025904"), "diners");
  EXPECT_EQ(card_brand("30669309025904"), "");           // 306 is no Diners prefix
  EXPECT_EQ(card_brand("9111111111111111"), "");
}

TEST(Pii, IbanMod97) {
  // GB82 WEST 1234 5698 7654 32, worked by hand: rearranged WEST12345698765432GB82, letters as
  // W=32 E=14 S=28 T=29 G=16 B=11: 3214282912345698765432161182. In pieces of 9 digits with the
  // remainder carried in front (ISO 7064's piecewise method): 321428291 mod 97 = 70,
  // 702345698 mod 97 = 29, 297654321 mod 97 = 24, 2461182 mod 97 = 1.
  auto piecewise = [](const std::string& digits) {
    std::string carried;
    size_t pos = 0;
    long long rem = 0;
    while (pos < digits.size()) {
      const size_t take = std::min(9 - carried.size(), digits.size() - pos);
      rem = std::stoll(carried + digits.substr(pos, take)) % 97;
      carried = std::to_string(rem);
      pos += take;
    }
    return rem;
  };
  EXPECT_EQ(piecewise("3214282912345698765432161182"), 1);
  EXPECT_TRUE(iban_valid("GB82WEST12345698765432"));
  EXPECT_FALSE(iban_valid("GB83WEST12345698765432"));   // check digit
  EXPECT_FALSE(iban_valid("GB82WEST1234569876543"));    // 21 characters, GB has 22
  EXPECT_TRUE(iban_valid("DE89370400440532013000"));
  EXPECT_FALSE(iban_valid("DE89370400440532013001"));
  EXPECT_FALSE(iban_valid("de89370400440532013000"));   // lower case
  EXPECT_FALSE(iban_valid("US64SVBKUS6S3300958879"));   // no IBAN in the US
  EXPECT_EQ(iban_length("DE"), 22);
  EXPECT_EQ(iban_length("NO"), 15);
  EXPECT_EQ(iban_length("LC"), 32);
  EXPECT_EQ(iban_length("US"), 0);
  // In text: compact and grouped by 4; one character more is a longer word, not an IBAN.
  EXPECT_EQ(spans_of(find_pii("IBAN DE89 3704 0044 0532 0130 00.")), (Spans{{"iban", 5, 32}}));
  EXPECT_EQ(spans_of(find_pii("IBAN DE89370400440532013000")), (Spans{{"iban", 5, 27}}));
  EXPECT_TRUE(find_pii("IBAN DE89 3704 0044 0532 0130 001").empty());
  EXPECT_TRUE(find_pii("IBAN DE89 3704 0044 0532 0130 0").empty());
}

TEST(Pii, SsnRules) {
  EXPECT_TRUE(us_ssn_valid("123456789"));
  EXPECT_TRUE(us_ssn_valid("899991234"));
  EXPECT_TRUE(us_ssn_valid("665011234"));
  EXPECT_FALSE(us_ssn_valid("000123456"));   // area 000
  EXPECT_FALSE(us_ssn_valid("666123456"));   // area 666
  EXPECT_FALSE(us_ssn_valid("900123456"));   // area 9xx
  EXPECT_FALSE(us_ssn_valid("999123456"));
  EXPECT_FALSE(us_ssn_valid("123001234"));   // group 00
  EXPECT_FALSE(us_ssn_valid("123450000"));   // serial 0000
  EXPECT_FALSE(us_ssn_valid("078051120"));   // the Woolworth wallet card
  EXPECT_FALSE(us_ssn_valid("12345678"));
  EXPECT_EQ(spans_of(find_pii("id 123-45-6789 ok")), (Spans{{"us_ssn", 3, 14}}));
  EXPECT_EQ(spans_of(find_pii("id 123 45 6789 ok")), (Spans{{"us_ssn", 3, 14}}));
  EXPECT_TRUE(find_pii("id 123-45-67890").empty());
  EXPECT_TRUE(find_pii("id 666-45-6789").empty());
  // Bare digits only right after the keyword.
  EXPECT_TRUE(find_pii("order 123456789 shipped").empty());
  EXPECT_EQ(spans_of(find_pii("SSN: 123456789")), (Spans{{"us_ssn", 5, 14}}));
  EXPECT_EQ(spans_of(find_pii("Social Security number 123456789")), (Spans{{"us_ssn", 23, 32}}));
  EXPECT_TRUE(find_pii("ssn was mentioned a long long time ago, then: 123456789").empty());
}

TEST(Pii, NanpAndPhoneFormats) {
  EXPECT_TRUE(nanp_valid("2125550123"));
  EXPECT_FALSE(nanp_valid("1125550123"));  // area starting with 1
  EXPECT_FALSE(nanp_valid("0125550123"));  // area starting with 0
  EXPECT_FALSE(nanp_valid("4115550123"));  // N11 area
  EXPECT_FALSE(nanp_valid("2121550123"));  // exchange starting with 1
  EXPECT_FALSE(nanp_valid("2129110123"));  // N11 exchange
  EXPECT_FALSE(nanp_valid("212555012"));
  EXPECT_EQ(spans_of(find_pii("call (212) 555-0123 now")), (Spans{{"phone", 5, 19}}));
  EXPECT_EQ(spans_of(find_pii("call 1-212-555-0123")), (Spans{{"phone", 5, 19}}));
  EXPECT_TRUE(find_pii("call (911) 555-0123 now").empty());
  EXPECT_TRUE(find_pii("call 2125-55-0123 now").empty());   // NANP grouped 3-3-4 only
  EXPECT_EQ(spans_of(find_pii("Tel. +49 30 12345678")), (Spans{{"phone", 5, 20}}));
  EXPECT_EQ(spans_of(find_pii("tél 01 23 45 67 89")), (Spans{{"phone", 5, 19}}));
  EXPECT_EQ(spans_of(find_pii("(02) 1234 5678")), (Spans{{"phone", 0, 14}}));
  EXPECT_TRUE(find_pii("+999 1234 5678").empty());           // no such country code
  EXPECT_TRUE(find_pii("+0 739 7180").empty());              // nor one starting with 0
  EXPECT_EQ(spans_of(find_pii("tel 01.23.45.67.89")), (Spans{{"phone", 4, 18}}));
  EXPECT_TRUE(find_pii("at 141.7.76.53.163").empty());       // dotted, a version or address
  EXPECT_EQ(spans_of(find_pii("Berlin 030 123456")), (Spans{{"phone", 7, 17}}));  // DE: short numbers exist
  // A German mobile whose digits after "+" pass Luhn as a 13-digit Visa: a phone, not a card.
  EXPECT_EQ(spans_of(find_pii("+49 1512 3451986")), (Spans{{"phone", 0, 16}}));
  EXPECT_TRUE(find_pii("id 045-12-0000").empty());          // SSN-shaped: never a phone
  EXPECT_EQ(spans_of(find_pii("Tel: 030/1234567")), (Spans{{"phone", 5, 16}}));
  EXPECT_TRUE(find_pii("am 12/05/2024 10").empty());         // '/' only after a 0-prefixed area code
  EXPECT_EQ(spans_of(find_pii("+44 (0)20 7946 0958")), (Spans{{"phone", 0, 19}}));
  EXPECT_TRUE(find_pii("+44 (0)20 7946 095").empty());       // GB has 10 digits after the 0
  // "电话" is 6 bytes; the number against CJK text on both sides is still found.
  EXPECT_EQ(spans_of(find_pii("电话13812345678。")), (Spans{{"phone", 6, 17}}));
  EXPECT_EQ(spans_of(find_pii("携帯090-1234-5678です")), (Spans{{"phone", 6, 19}}));
  // Not phones: a longer word, a date and time, a version, a dotted quad.
  EXPECT_TRUE(find_pii("id x2125550123").empty());
  EXPECT_TRUE(find_pii("2024-03-05 10:22:01 started").empty());
  EXPECT_TRUE(find_pii("at 2024-03-05 1012").empty());
}

TEST(Pii, IpAddresses) {
  EXPECT_TRUE(ipv4_valid("0.0.0.0"));
  EXPECT_TRUE(ipv4_valid("255.255.255.255"));
  EXPECT_FALSE(ipv4_valid("256.0.0.1"));
  EXPECT_FALSE(ipv4_valid("01.2.3.4"));
  EXPECT_FALSE(ipv4_valid("1.2.3"));
  EXPECT_FALSE(ipv4_valid("1.2.3.4.5"));
  EXPECT_FALSE(ipv4_valid("1..2.3"));
  // Expected values as Python's ipaddress.IPv6Address decides them.
  const std::pair<const char*, bool> v6[] = {
      {"::1", true}, {"::", true}, {"1::", true}, {"2001:db8::", true},
      {"2001:0db8:0000:0000:0000:ff00:0042:8329", true}, {"2001:db8::1::2", false}, {"1:2:3:4:5:6:7:8:9", false},
      {"1:2:3:4:5:6:7", false}, {"::ffff:192.0.2.1", true}, {"::ffff:192.0.2.256", false},
      {"1:2:3:4:5:6:1.2.3.4", true}, {"1:2:3:4:5:6:7:1.2.3.4", false}, {"1.2.3.4::", false}, {"12345::", false},
      {":1:2:3:4:5:6:7", false}, {"1::2:3:4:5:6:7", true}, {"1::2:3:4:5:6:7:8", false}, {"1:2:3:4:5:6:7::", true},
      {"fe80::1:2:3:4:5:6", true}, {"::1.2.3.4", true}, {"1:2:3:4:5:6:7:8:", false}, {"1:::2", false},
  };
  for (const auto& [text, valid] : v6) EXPECT_EQ(ipv6_valid(text), valid) << text;
  EXPECT_EQ(spans_of(find_pii("from 10.0.0.1.")), (Spans{{"ipv4", 5, 13}}));
  EXPECT_TRUE(find_pii("version 1.2.3.4.5 out").empty());
  EXPECT_TRUE(find_pii("v1.2.3.4").empty());
  EXPECT_EQ(spans_of(find_pii("addr:2001:db8::1: refused")), (Spans{{"ipv6", 5, 16}}));
  EXPECT_EQ(spans_of(find_pii("[::ffff:10.1.2.3]:80")), (Spans{{"ipv6", 1, 16}}));  // one match, not two
  EXPECT_TRUE(find_pii("std::string a::b; dead::beef 10:22:01 00:1a:2b:3c:4d:5e").empty());
}

TEST(Pii, EmailsAndOverlaps) {
  EXPECT_EQ(spans_of(find_pii("Mail john.smith+x@mail.example.co.uk.")), (Spans{{"email", 5, 36}}));
  EXPECT_EQ(spans_of(find_pii("x='a@b.com'")), (Spans{{"email", 3, 10}}));
  EXPECT_TRUE(find_pii("a..b@example.com").empty());
  EXPECT_TRUE(find_pii("john@localhost").empty());
  EXPECT_TRUE(find_pii("john@example.c").empty());
  EXPECT_TRUE(find_pii("john@-example.com").empty());
  // The local part holds a phone-shaped number: the e-mail wins, nothing else is reported.
  EXPECT_EQ(spans_of(find_pii("2125550123@example.com")), (Spans{{"email", 0, 22}}));
  // Sorted by start whatever the priority.
  EXPECT_EQ(spans_of(find_pii("10.0.0.1 a@b.de")), (Spans{{"ipv4", 0, 8}, {"email", 9, 15}}));
  PiiOptions only_ip;
  only_ip.types = {PiiType::ipv4};
  EXPECT_EQ(spans_of(find_pii("10.0.0.1 a@b.de", only_ip)), (Spans{{"ipv4", 0, 8}}));
}

TEST(Pii, CustomPatterns) {
  PiiOptions options;
  options.custom = {{"employee id", "EMP-[0-9]{6}"}};
  std::vector<PiiMatch> found = find_pii("ask EMP-123456 or a@b.de", options);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].type, PiiType::custom);
  EXPECT_EQ(found[0].name, "employee id");
  EXPECT_EQ(found[0].start, 4u);
  EXPECT_EQ(found[0].end, 14u);
  // Across window boundaries of a long text: every one found once.
  std::string text;
  std::vector<size_t> starts;
  while (text.size() < 20000) {
    text.append(997, 'x');
    text.push_back(' ');
    starts.push_back(text.size());
    text.append("EMP-654321 ");
  }
  std::vector<size_t> got;
  for (const PiiMatch& m : find_pii(text, options)) got.push_back(m.start);
  EXPECT_EQ(got, starts);
  EXPECT_TRUE(find_pii("", options).empty());
  options.custom = {{"broken", "([a-z"}};
  EXPECT_THROW(find_pii("text", options), Error);
  // Nesting: 32 groups deep compiles, 33 is refused (escaped parentheses are no groups).
  options.custom = {{"deep", std::string(32, '(') + "a" + std::string(32, ')') + "\\(\\(\\("}};
  EXPECT_NO_THROW(find_pii("text", options));
  options.custom = {{"deeper", std::string(33, '(') + "a" + std::string(33, ')')}};
  EXPECT_THROW(find_pii("text", options), Error);
  // Counted repetitions that unroll to a million states: refused (by libstdc++'s state limit), not
  // compiled for seconds into gigabytes.
  options.custom = {{"wide", "((a{100}){100}){100}"}};
  EXPECT_THROW(find_pii("text", options), Error);
  // Numbers libstdc++ would read into a long past its range (undefined behaviour, which the
  // sanitizer build reports): refused by name. Digits that are plain text stay allowed.
  for (const char* huge : {"a{99999999999999999999}", "a{1,99999999999999999999}", "(a)\\99999999999999999999",
                           "a{1234567890}"}) {
    options.custom = {{"huge", huge}};
    std::string error;
    try {
      find_pii("text", options);
    } catch (const Error& e) {
      error = e.what();
    }
    EXPECT_NE(error.find("repetition count or back-reference"), std::string::npos) << huge << ": " << error;
  }
  for (const char* fine : {"ID-12345678901234567890", "[{,]12345678901234567890", "\\{12345678901234567890"}) {
    options.custom = {{"fine", fine}};
    EXPECT_NO_THROW(find_pii("text", options)) << fine;
  }
  // Custom patterns are matched without backtracking, so without back-references: such a pattern
  // is refused when it is compiled. (Checked first: with a backtracking matcher, the next check
  // would hang rather than fail.)
  options.custom = {{"backref", "(a)\\1"}};
  std::string backref_error;
  try {
    find_pii("aa", options);
  } catch (const Error& e) {
    backref_error = e.what();
  }
  ASSERT_NE(backref_error.find("does not compile"), std::string::npos) << backref_error;
  // Stacked quantifiers (found by the fuzzer): backtracking takes time exponential in their
  // number, on any text; without it the run of m's is found at once.
  options.custom = {{"stacked", "m" + std::string(40, '*') + "$"}};
  EXPECT_TRUE(find_pii("x", options).empty());
  const std::vector<PiiMatch> run = find_pii("x mmmm", options);
  ASSERT_EQ(run.size(), 1u);
  EXPECT_EQ(run[0].start, 2u);
  EXPECT_EQ(run[0].end, 6u);
  options.custom = {{"employee id", "EMP-[0-9]{6}"}};
  EXPECT_THROW(find_pii(std::string(options.custom_max_bytes + 1, 'a'), options), Error);
}

TEST(Pii, RedactRestoreRoundTrip) {
  const std::string text = "Mail a@x.com and b@y.org, again a@x.com; call 212-555-0123.";
  std::vector<PiiMatch> found = find_pii(text);
  ASSERT_EQ(found.size(), 4u);
  Redaction r = redact(text, found);
  EXPECT_EQ(r.text, "Mail [EMAIL_1] and [EMAIL_2], again [EMAIL_1]; call [PHONE_1].");
  ASSERT_EQ(r.placeholders.size(), 3u);
  EXPECT_EQ(r.placeholders[0], (std::pair<std::string, std::string>{"[EMAIL_1]", "a@x.com"}));
  EXPECT_EQ(r.placeholders[1], (std::pair<std::string, std::string>{"[EMAIL_2]", "b@y.org"}));
  EXPECT_EQ(r.placeholders[2], (std::pair<std::string, std::string>{"[PHONE_1]", "212-555-0123"}));
  EXPECT_EQ(restore(r.text, r), text);
  EXPECT_EQ(restore("[EMAIL_1], [EMAIL_1] and [EMAIL_1]! [PHONE_1][EMAIL_2] [EMAIL_3] [EMAIL_1", r),
            "a@x.com, a@x.com and a@x.com! 212-555-0123b@y.org [EMAIL_3] [EMAIL_1");
}

TEST(Pii, RedactLeavesTheUsersOwnPlaceholderLookAlikes) {
  const std::string text = "Template [EMAIL_1] and [EMAIL_2]; mine is me@home.org";
  Redaction r = redact(text, find_pii(text));
  EXPECT_EQ(r.text, "Template [EMAIL_1] and [EMAIL_2]; mine is [EMAIL_3]");
  EXPECT_EQ(restore("Use [EMAIL_1] for [EMAIL_3]", r), "Use [EMAIL_1] for me@home.org");
  EXPECT_EQ(restore(r.text, r), text);
  // Custom names make their own placeholders.
  PiiMatch custom{PiiType::custom, 0, 10, "employee id"};
  Redaction c = redact("EMP-123456 x", std::span(&custom, 1));
  EXPECT_EQ(c.text, "[EMPLOYEE_ID_1] x");
  // Out of range fails; overlapping matches keep the first.
  PiiMatch bad{PiiType::email, 5, 50, ""};
  EXPECT_THROW(redact("short", std::span(&bad, 1)), Error);
  std::vector<PiiMatch> overlapping = {{PiiType::ipv4, 0, 7, ""}, {PiiType::phone, 2, 9, ""}};
  EXPECT_EQ(redact("1.2.3.4xx", overlapping).text, "[IPV4_1]xx");
}

TEST(Pii, HostileInputInBoundedTime) {
  const auto begin = std::chrono::steady_clock::now();
  const std::string digits(1 << 20, '7');
  EXPECT_TRUE(find_pii(digits).empty());
  EXPECT_TRUE(find_pii(std::string(1 << 20, '@')).empty());
  std::string at_runs;
  while (at_runs.size() < (1 << 20)) at_runs += "a.b@";
  EXPECT_TRUE(find_pii(at_runs).empty());
  std::string dotted, colons, grouped;
  while (dotted.size() < (1 << 20)) dotted += "1.";
  while (colons.size() < (1 << 20)) colons += "a:";
  while (grouped.size() < (1 << 20)) grouped += "12 ";
  EXPECT_TRUE(find_pii(dotted).empty());
  EXPECT_TRUE(find_pii(colons).empty());
  EXPECT_TRUE(find_pii(grouped).empty());
  std::string ibanish;
  while (ibanish.size() < (1 << 20)) ibanish += "DE89 ";
  EXPECT_TRUE(find_pii(ibanish).empty());
  // Invalid UTF-8 around a value: bytes >= 0x80 are boundaries, never part of a value.
  const std::string bad = std::string("\xff\xfe\xc3") + "a@b.de" + std::string("\x80\xe2\x82");
  EXPECT_EQ(spans_of(find_pii(bad)), (Spans{{"email", 3, 9}}));
  Redaction r = redact(bad, find_pii(bad));
  EXPECT_EQ(restore(r.text, r), bad);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("[ PII      ] 8 MiB of hostile input in %.3f s\n", seconds);
  EXPECT_LT(seconds, 20.0);  // linear scans: well under a second in a release build
}

// Random texts over the bytes the detectors care about (digits, separators, '@', ':', '[', ']',
// letters, non-ASCII): matches stay within the text, sorted and disjoint, and restore(redact(x)) is x
// whatever placeholder look-alikes the text holds.
TEST(Pii, RandomTextsRoundTrip) {
  const std::string alphabet = "0123456789    --..::@@[]()+_ABDEFGSabcdefxz\xc3\xa9\xff";
  std::mt19937 rng(19);
  const char* pieces[] = {"[EMAIL_1]", "[PHONE_2]", "a@b.de", "10.0.0.1", "::1", "212-555-0123", "4111 1111 1111 1111",
                          "DE89 3704 0044 0532 0130 00", "123-45-6789", "[IPV4_1]"};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const int parts = int(rng() % 12);
    for (int k = 0; k < parts; ++k) {
      if (rng() % 3 == 0) {
        text += pieces[rng() % std::size(pieces)];
      } else {
        for (int c = int(rng() % 8); c > 0; --c) text.push_back(alphabet[rng() % alphabet.size()]);
      }
    }
    std::vector<PiiMatch> found = find_pii(text);
    size_t last_end = 0;
    for (const PiiMatch& m : found) {
      ASSERT_LE(last_end, m.start) << text;
      ASSERT_LT(m.start, m.end) << text;
      ASSERT_LE(m.end, text.size()) << text;
      last_end = m.end;
    }
    Redaction r = redact(text, found);
    ASSERT_EQ(restore(r.text, r), text) << text;
    for (const auto& entry : r.placeholders)
      ASSERT_EQ(text.find(entry.first), std::string::npos) << entry.first << " in " << text;
  }
}

// A stream's deltas cut placeholders anywhere: whatever the cut, the output is the original text.
TEST(Pii, RestoreStreamAcrossAnyCut) {
  const std::string original = "Mail a@b.de or [x] call +49 30 1234567; [EMAIL] a@b.de [";
  Redaction r = redact(original, find_pii(original));
  ASSERT_EQ(r.placeholders.size(), 2u);
  ASSERT_EQ(r.text, "Mail [EMAIL_1] or [x] call [PHONE_1]; [EMAIL] [EMAIL_1] [");
  for (size_t a = 0; a <= r.text.size(); ++a)
    for (size_t b = a; b <= r.text.size(); ++b) {
      RestoreStream stream(r);
      std::string out = stream.feed(std::string_view(r.text).substr(0, a));
      out += stream.feed(std::string_view(r.text).substr(a, b - a));
      out += stream.feed(std::string_view(r.text).substr(b));
      out += stream.finish();
      ASSERT_EQ(out, original) << a << " " << b;
    }
  // What may still be a placeholder is held back, and nothing else.
  RestoreStream stream(r);
  EXPECT_EQ(stream.feed("see [EMA"), "see ");
  EXPECT_EQ(stream.feed("IL_1] and [x"), "a@b.de and [x");
  EXPECT_EQ(stream.feed(" [PHONE_"), " ");
  EXPECT_EQ(stream.finish(), "[PHONE_");
}

}  // namespace
}  // namespace orchard::router
