#!/usr/bin/python3
"""The labeled PII corpus of the router's detector (issue 19), and its independent cross-check.

    /usr/bin/python3 tests/router/pii_corpus.py --write tests/router/data/pii_labeled.jsonl
    /usr/bin/python3 tests/router/pii_corpus.py --check tests/router/data/pii_labeled.jsonl

--write generates the corpus deterministically (fixed seed): for each type (email, phone, card, iban,
us_ssn, ipv4, ipv6) at least 100 values that are PII, and near-misses that are not (cards failing Luhn
or with a wrong prefix or length, IBANs with a wrong check or length, impossible SSNs, octets > 255,
malformed IPv6, phone numbers with impossible area codes or country codes, malformed addresses),
placed in sentences in English, German, French, Chinese, Japanese and Spanish, in JSON, code and log
lines, plus lines of distractors (versions, dates, times, prices, hashes, C++ scopes). One JSON object
a line:
    {"text": ..., "spans": [{"type", "start", "end", ["region"]}], "near_misses": [{"type", "start", "end"}]}
offsets in bytes of the UTF-8 text; "region" is the phone's country for a national format.

--check (the ctest router_pii_corpus) reads a corpus and holds every label to validators that share
nothing with Orchard's C++ detector: phonenumbers.is_valid_number (with the span's region for a
national format; a near-miss must be invalid in every region of the list and as E.164),
stdnum.luhn plus a card-brand table, stdnum.iban, stdnum.us.ssn, Python's ipaddress for IPv4 and
IPv6, and a plain rule for e-mail. Spans must hold the value exactly, sit on word boundaries, not
overlap, and be at least 100 a type. Labels that fail are listed and the exit status is 1.
Needs Debian's python3-phonenumbers and python3-stdnum (scripts/packages.txt): run it with
/usr/bin/python3.
"""
import argparse
import ipaddress
import json
import random
import re
import sys

import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.us import ssn as std_ssn

TYPES = ["email", "phone", "card", "iban", "us_ssn", "ipv4", "ipv6"]
REGIONS = ["US", "GB", "DE", "FR", "CN", "JP", "AU"]
MIN_POSITIVES = 100
MIN_NEAR_MISSES = 30

# ---------------------------------------------------------------- independent validators

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def email_ok(s):
    local = s.split("@")[0]
    return bool(EMAIL_RE.match(s)) and ".." not in local and not local.startswith(".") and not local.endswith(".") \
        and len(s) <= 254


# Brand -> (prefix ranges as (low, high) over the first len(str(low)) digits, allowed lengths).
CARD_BRANDS = {
    "visa": ([(4, 4)], {13, 16, 19}),
    "mastercard": ([(51, 55), (2221, 2720)], {16}),
    "amex": ([(34, 34), (37, 37)], {15}),
    "discover": ([(6011, 6011), (644, 649), (65, 65)], {16, 19}),
    "jcb": ([(3528, 3589)], {16, 17, 18, 19}),
    "unionpay": ([(62, 62)], {16, 17, 18, 19}),
    "diners": ([(36, 36), (300, 305)], {14}),
}


def card_brand_ok(digits):
    for ranges, lengths in CARD_BRANDS.values():
        for low, high in ranges:
            k = len(str(low))
            if low <= int(digits[:k]) <= high:
                return len(digits) in lengths
    return False


def card_ok(s):
    digits = re.sub(r"[ -]", "", s)
    return digits.isdigit() and 13 <= len(digits) <= 19 and std_luhn.is_valid(digits) and card_brand_ok(digits)


def phone_ok(s, region):
    try:
        number = phonenumbers.parse(s, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def phone_valid_anywhere(s):
    if s.startswith("+"):
        return phone_ok(s, None)
    return any(phone_ok(s, region) for region in REGIONS)


def iban_ok(s):
    return std_iban.is_valid(s)


def ssn_ok(s):
    digits = re.sub(r"[ -]", "", s)
    return len(digits) == 9 and std_ssn.is_valid(digits)


def ipv4_ok(s):
    try:
        ipaddress.IPv4Address(s)
        return True
    except ValueError:
        return False


def ipv6_ok(s):
    try:
        ipaddress.IPv6Address(s)
        return True
    except ValueError:
        return False


def valid(kind, value, region=None):
    if kind == "email":
        return email_ok(value)
    if kind == "phone":
        return phone_ok(value, region) if region else (phone_ok(value, None) if value.startswith("+") else False)
    if kind == "card":
        return card_ok(value)
    if kind == "iban":
        return iban_ok(value)
    if kind == "us_ssn":
        return ssn_ok(value)
    if kind == "ipv4":
        return ipv4_ok(value)
    if kind == "ipv6":
        return ipv6_ok(value)
    raise ValueError(kind)


def invalid_near_miss(kind, value):
    """A near-miss must not be valid under any reading the validators know."""
    if kind == "phone":
        return not phone_valid_anywhere(value)
    return not valid(kind, value)


# ---------------------------------------------------------------- generators

def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


FIRST = ["john", "maria", "li", "wei", "anna", "pierre", "yuki", "hans", "sofia", "omar", "chen", "lucia", "max",
         "ines", "kenji", "amelie", "carlos", "fatima", "noah", "mei"]
LAST = ["smith", "garcia", "wang", "mueller", "dubois", "tanaka", "rossi", "kim", "lopez", "schmidt", "martin",
        "sato", "novak", "oconnor", "zhang"]
DOMAINS = ["example.com", "mail.example.co.uk", "uni-heidelberg.de", "orange.fr", "163.com", "qq.com",
           "example.co.jp", "test-mail.io", "correo.es", "xn--bcher-kva.de", "sub.domain.example.org",
           "gmx.net", "posteo.de", "company.travel", "a1.example.info"]


def gen_email(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([first, f"{first}.{last}", f"{first}_{last}", f"{first[0]}.{last}",
                        f"{first}{rng.randint(1, 99)}", f"{first}+{rng.choice(['news', 'shop', 'tag'])}",
                        f"{first}-{last}", f"{last}.{first}.{rng.randint(1, 9)}"])
    if rng.random() < 0.15:
        local = local.upper()
    return f"{local}@{rng.choice(DOMAINS)}"


def gen_email_near(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    dom = rng.choice(DOMAINS)
    return rng.choice([
        f"{first}..{last}@{dom}", f"{first}.@{dom}", f"{first}@localhost", f"{first}@example.c",
        f"{first}@-{dom}", f"{first}@{dom.split('.')[0]}..com", f"{first}@example.123", f"{first}@.{dom}",
        f"{first}@{dom.split('.')[0]}", f"{first}@exa_mple.com", f"@{dom}",
    ])


def fmt_phone(number, style):
    return phonenumbers.format_number(number, style)


def gen_phone(rng, region):
    """A valid national number of `region` in one of the shapes people write, and its region."""
    for _ in range(5000):
        if region == "US":
            def part():
                while True:
                    p = str(rng.randint(2, 9)) + digits(rng, 2)
                    if p[1:] != "11":
                        return p
            a, e, s = part(), part(), digits(rng, 4)
            text = rng.choice([f"({a}) {e}-{s}", f"{a}-{e}-{s}", f"{a}.{e}.{s}", f"{a} {e} {s}", f"1-{a}-{e}-{s}",
                               f"{a}{e}{s}"])
        elif region == "GB":
            raw = rng.choice(["07" + rng.choice("12345789") + digits(rng, 8), "020" + digits(rng, 8),
                              "01" + digits(rng, 9), "03" + digits(rng, 9)])
            text = raw
        elif region == "DE":
            raw = rng.choice(["0" + str(rng.randint(2, 9)) + digits(rng, rng.randint(8, 10)),
                              "015" + digits(rng, 1) + digits(rng, rng.choice([7, 8])),
                              "017" + digits(rng, 1) + digits(rng, rng.choice([7, 8])),
                              "016" + digits(rng, 1) + digits(rng, 7)])
            text = raw
        elif region == "FR":
            raw = "0" + str(rng.randint(1, 9)) + digits(rng, 8)
            pairs = [raw[i:i + 2] for i in range(0, 10, 2)]
            text = rng.choice([" ".join(pairs), ".".join(pairs), raw])
        elif region == "CN":
            raw = rng.choice(["1" + str(rng.randint(3, 9)) + digits(rng, 9), "010" + digits(rng, 8),
                              "02" + digits(rng, 9),
                              "0" + str(rng.randint(3, 9)) + digits(rng, 2) + digits(rng, rng.choice([7, 8]))])
            text = raw
        elif region == "JP":
            raw = rng.choice(["0" + rng.choice("789") + "0" + digits(rng, 8),
                              "0" + str(rng.randint(1, 9)) + digits(rng, 8)])
            text = raw
        elif region == "AU":
            raw = rng.choice(["0" + rng.choice("2378") + digits(rng, 8), "04" + digits(rng, 8)])
            text = raw
        else:
            raise ValueError(region)
        if not phone_ok(text, region):
            continue
        if region != "US" and region != "FR":
            number = phonenumbers.parse(text, region)
            if rng.random() < 0.8:
                text = fmt_phone(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            if region == "DE" and rng.random() < 0.25:  # "030/1234567"
                text = text.replace(" ", "/", 1)
            if not phone_ok(text, region):
                continue
        return text
    raise RuntimeError("no valid phone number for " + region)


E164_REGIONS = REGIONS + ["IT", "ES", "NL", "IN", "BR", "CH", "SE", "KR", "MX", "ZA"]


def gen_phone_e164(rng):
    region = rng.choice(E164_REGIONS)
    for _ in range(5000):
        if region in REGIONS:
            number = phonenumbers.parse(gen_phone(rng, region), region)
        else:
            kind = rng.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
            example = phonenumbers.example_number_for_type(region, kind)
            national = str(example.national_number)
            national = national[:-4] + digits(rng, 4)
            number = phonenumbers.parse("+" + str(example.country_code) + national, None)
        if not phonenumbers.is_valid_number(number):
            continue
        style = rng.choice([phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL])
        text = fmt_phone(number, style)
        if region in ("GB", "DE") and rng.random() < 0.3:  # "+44 (0)20 7946 0958": the trunk 0 in parentheses
            cc = "+" + str(number.country_code)
            text = cc + " (0)" + fmt_phone(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)[len(cc) + 1:]
        if phone_ok(text, None):
            return text
    raise RuntimeError("no E.164 number")


def gen_phone_sampled(rng):
    """A number drawn outside the detector's own rules: phonenumbers' example fixed-line or mobile
    number of a region, its last 4 digits randomized, formatted by phonenumbers (national or
    international), kept when valid."""
    region = rng.choice(REGIONS)
    kind = rng.choice([phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE])
    example = phonenumbers.example_number_for_type(region, kind)
    while True:
        national = str(example.national_number)
        national = national[:-4] + digits(rng, 4)
        number = phonenumbers.parse("+" + str(example.country_code) + national, None)
        if not phonenumbers.is_valid_number(number):
            continue
        if rng.random() < 0.5:
            return fmt_phone(number, phonenumbers.PhoneNumberFormat.NATIONAL), region
        return fmt_phone(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL), None


def gen_phone_near(rng):
    while True:
        kind = rng.randrange(6)
        if kind == 0:  # NANP area code N11, or starting with 0 or 1
            a = rng.choice([str(rng.randint(2, 9)) + "11", "1" + digits(rng, 2)])
            text = rng.choice([f"({a}) 555-{digits(rng, 4)}",
                               f"{a}-{rng.randint(2, 9)}{digits(rng, 2)}-{digits(rng, 4)}"])
        elif kind == 1:  # NANP exchange starting with 0 or 1
            text = f"({rng.randint(2, 9)}{digits(rng, 2)}) {rng.choice('01')}{digits(rng, 2)}-{digits(rng, 4)}"
        elif kind == 2:  # unassigned country code
            text = "+" + rng.choice(["999", "888", "801", "292", "0"]) + " " + digits(rng, 3) + " " + digits(rng, 4)
        elif kind == 3:  # too short for any plan
            text = "0" + str(rng.randint(1, 9)) + " " + digits(rng, 3) + " " + digits(rng, 2)
        elif kind == 4:  # too long
            text = "0" + str(rng.randint(1, 9)) + digits(rng, 2) + " " + digits(rng, 5) + " " + digits(rng, 5)
        else:  # CN "mobile" with an impossible second digit
            text = "1" + rng.choice("012") + digits(rng, 1) + " " + digits(rng, 4) + " " + digits(rng, 4)
        if not phone_valid_anywhere(text):
            return text


def luhn_complete(rng, prefix, length):
    body = prefix + digits(rng, length - len(prefix) - 1)
    return body + std_luhn.calc_check_digit(body)


def group_card(rng, d):
    n = len(d)
    if rng.random() < 0.3:
        return d
    sep = rng.choice([" ", "-"])
    if n == 15:
        parts = [d[:4], d[4:10], d[10:]]
    elif n == 14:
        parts = [d[:4], d[4:10], d[10:]]
    else:
        parts = [d[i:i + 4] for i in range(0, n, 4)]
    return sep.join(parts)


def gen_card_digits(rng):
    brand = rng.choice(list(CARD_BRANDS))
    ranges, lengths = CARD_BRANDS[brand]
    low, high = rng.choice(ranges)
    prefix = str(rng.randint(low, high))
    return luhn_complete(rng, prefix, rng.choice(sorted(lengths)))


def gen_card(rng):
    return group_card(rng, gen_card_digits(rng))


def gen_card_near(rng):
    while True:
        kind = rng.randrange(3)
        if kind == 0:  # a real brand and length, the check digit off by one
            d = gen_card_digits(rng)
            d = d[:-1] + str((int(d[-1]) + rng.randint(1, 9)) % 10)
        elif kind == 1:  # Luhn passes, no brand starts so
            d = luhn_complete(rng, rng.choice(["1", "7", "8", "9", "0", "33", "69"]), rng.choice([14, 15, 16]))
        else:  # Luhn passes, a brand's prefix at a length it does not issue
            prefix, length = rng.choice([("4", 15), ("4", 17), ("51", 15), ("53", 17), ("34", 16), ("37", 14),
                                         ("6011", 15), ("36", 16)])
            d = luhn_complete(rng, prefix, length)
        if not card_ok(d):
            return group_card(rng, d)


def iban_layouts():
    """Every country of stdnum's copy of SWIFT's IBAN registry and its BBAN layout ("4!n4!n12!c": n
    digits, a upper-case letters, c either), so that the corpus covers countries independently of
    the C++ detector's length table."""
    import os
    layouts = {}
    with open(os.path.join(os.path.dirname(std_iban.__file__), "iban.dat"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r'^([A-Z]{2}) .*bban="([^"]+)"', line)
            if m:
                layouts[m.group(1)] = m.group(2)
    return layouts


IBAN_LAYOUTS = iban_layouts()


def bban(rng, layout):
    out = []
    for count, cls in re.findall(r"(\d+)!([nac])", layout):
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        alphabet = {"n": "0123456789", "a": letters, "c": "0123456789" + letters}[cls]
        out.append("".join(rng.choice(alphabet) for _ in range(int(count))))
    return "".join(out)


def iban_with_check(cc, b):
    return cc + std_iban.calc_check_digits(cc + "00" + b) + b


def fmt_iban(rng, compact):
    return std_iban.format(compact) if rng.random() < 0.6 else compact


def gen_iban(rng):
    for _ in range(10000):
        cc = rng.choice(sorted(IBAN_LAYOUTS))
        value = iban_with_check(cc, bban(rng, IBAN_LAYOUTS[cc]))
        if iban_ok(value):
            return fmt_iban(rng, value)
    raise RuntimeError("no IBAN")


def gen_iban_near(rng):
    while True:
        cc = rng.choice(sorted(IBAN_LAYOUTS))
        value = iban_with_check(cc, bban(rng, IBAN_LAYOUTS[cc]))
        kind = rng.randrange(3)
        if kind == 0:  # a wrong check digit
            wrong = (int(value[2:4]) + rng.randint(1, 9)) % 100
            value = value[:2] + f"{wrong:02d}" + value[4:]
        elif kind == 1:  # one character short, with check digits that make mod 97 come out right
            value = iban_with_check(cc, value[4:-1])
        else:  # one digit too many, likewise
            value = iban_with_check(cc, value[4:] + digits(rng, 1))
        if not iban_ok(value):
            return fmt_iban(rng, value)


def gen_ssn_parts(rng):
    while True:
        area = rng.randint(1, 899)
        if area == 666:
            continue
        d = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
        if std_ssn.is_valid(d):
            return d


def gen_ssn(rng):
    d = gen_ssn_parts(rng)
    sep = rng.choice(["-", "-", "-", " "])
    return f"{d[:3]}{sep}{d[3:5]}{sep}{d[5:]}"


def gen_ssn_near(rng):
    while True:
        d = gen_ssn_parts(rng)
        kind = rng.randrange(5)
        if kind == 0:
            d = "000" + d[3:]
        elif kind == 1:
            d = "666" + d[3:]
        elif kind == 2:
            d = str(rng.randint(900, 999)) + d[3:]
        elif kind == 3:
            d = d[:3] + "00" + d[5:]
        else:
            d = d[:5] + "0000"
        if not ssn_ok(d):
            return f"{d[:3]}-{d[3:5]}-{d[5:]}"


def gen_ipv4(rng):
    kind = rng.randrange(4)
    if kind == 0:
        octets = [10, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)]
    elif kind == 1:
        octets = [192, 168, rng.randint(0, 255), rng.randint(0, 255)]
    elif kind == 2:
        octets = [rng.randint(1, 223)] + [rng.choice([0, 255, rng.randint(0, 255)]) for _ in range(3)]
    else:
        octets = [rng.randint(0, 255) for _ in range(4)]
    return ".".join(map(str, octets))


def gen_ipv4_near(rng):
    while True:
        octets = [str(rng.randint(0, 255)) for _ in range(4)]
        kind = rng.randrange(4)
        if kind == 0:
            octets[rng.randrange(4)] = str(rng.randint(256, 999))
        elif kind == 1:
            i = rng.randrange(4)
            octets[i] = "0" + str(rng.randint(1, 99))
        elif kind == 2:
            octets.append(str(rng.randint(0, 255)))
        else:
            octets = octets[:3]
        text = ".".join(octets)
        if not ipv4_ok(text):
            return text


def gen_ipv6(rng):
    kind = rng.randrange(6)
    if kind == 0:
        addr = ipaddress.IPv6Address(rng.getrandbits(128))
        return addr.exploded
    if kind == 1:
        groups = [rng.getrandbits(16) for _ in range(8)]
        for i in range(rng.randint(1, 5)):
            groups[rng.randrange(8)] = 0
        return ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups)).compressed
    if kind == 2:
        return f"2001:db8:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"
    if kind == 3:
        return f"fe80::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.randint(1, 9999)}"
    if kind == 4:
        return f"::ffff:{gen_ipv4(rng)}"
    groups = [rng.getrandbits(16) for _ in range(8)]
    groups[rng.randrange(1, 7)] = 0
    groups[rng.randrange(1, 7)] = 0
    return ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups)).compressed.upper()


def gen_ipv6_near(rng):
    while True:
        groups = [f"{rng.getrandbits(16):x}" for _ in range(8)]
        kind = rng.randrange(6)
        if kind == 0:
            text = ":".join(groups + [f"{rng.getrandbits(16):x}"])  # 9 groups
        elif kind == 1:
            text = f"2001:db8::{groups[2]}::{groups[3]}"  # two "::"
        elif kind == 2:
            groups[rng.randrange(8)] = f"{rng.randint(0x10000, 0xfffff):x}"  # 5 hex digits
            text = ":".join(groups)
        elif kind == 3:
            text = ":".join(groups[:7])  # 7 groups, no "::"
        elif kind == 4:
            text = f"::ffff:{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
        else:
            text = f"2001:db8:{groups[0]}::{groups[1]}:{groups[2]}:{groups[3]}:{groups[4]}:{groups[5]}:{groups[6]}"
        if not ipv6_ok(text) and re.search(r"[0-9]", text):
            return text


# ---------------------------------------------------------------- contexts

TEMPLATES = [
    # English
    "Please contact me at {} if anything changes.", "My details: {}.", "Send it to {} by Friday, thanks!",
    "Can you check whether {} is correct?",
    # German
    "Bitte schreiben Sie an {} bis Montag.", "Meine Angabe lautet {}, danke!", "Können Sie {} überprüfen?",
    # French
    "Vous pouvez me joindre au {} demain.", "Voici la valeur : {}.", "Merci d'utiliser {} à l'avenir.",
    # Chinese
    "请联系{}，谢谢。", "我的信息是：{}。", "请把{}添加到记录里",
    # Japanese
    "連絡先は{}です。", "こちらにお願いします：{}", "「{}」を確認してください。",
    # Spanish
    "Por favor, escríbame a {} mañana.", "Mis datos son {}.", "¿Puede verificar {}?",
    # JSON
    '{{"user": "alice", "value": "{}", "id": 42}}', '[{{"field": "contact", "data": "{}"}}]',
    # code
    'const contact = "{}";', "config['field'] = '{}'  # TODO remove", 'assert parse("{}") is not None',
    "    std::string v = \"{}\"; // test fixture",
    # logs
    "2024-03-05 10:22:01.123 INFO  request from {} handled in 12 ms", "[WARN] pid=4211 user={} retry=3",
    "Mar  5 10:22:01 host app[311]: value={} status=ok",
]
PAIR_TEMPLATES = [
    "Contact: {} or {}.", "Kontakt: {} / {}", "联系方式：{}，{}", "{{\"a\": \"{}\", \"b\": \"{}\"}}",
    "log: src={} dst={} bytes=512", "Datos: {} y {}.",
]
SSN_BARE_TEMPLATES = ["SSN: {}", "Social Security Number {} on file", "my ssn is {}, please keep it private",
                      '{{"ssn": "{}"}}', "社会保障号码（SSN）{}"]
DISTRACTORS = [
    "Version 1.2.3.4.5 was released on 2024-01-05.", "Order #12345 total 99.95 EUR, ref 2024-0042.",
    "uuid 550e8400-e29b-41d4-a716-446655440000", "std::vector<int> v; a::b(); // dead::beef",
    "The meeting is at 10:30:00 in room 4.12.", "Preis: 1.234.567,89 € inkl. MwSt.", "MAC 00:1a:2b:3c:4d:5e up",
    "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709", "git v2.43.0-rc1 (build 20240105)", "步骤 3.2.1：重启服务",
    "請求書番号 2024-11-30-007", "pi = 3.14159265358979", "temperature 21.5C, humidity 40%",
    "email me (at) example dot com", "user@host without a dot", "x = 10.0.0; y = 1.2.3.4.5.6",
    "timestamp 1701792000 ok", "ISBN 978-3-16-148410-0", "12:30 - 13:45", "port 8080, pid 31337",
    # Bare 10-digit identifiers that a national numbering plan accepts: the detector reports them as
    # phones (a known false positive: without context the digits are a valid number), kept here so
    # that the measured precision shows it.
    "Order 4839201756 shipped", "Rechnungsnummer 0312345678",
]

GENERATORS = {
    "email": (gen_email, gen_email_near),
    "card": (gen_card, gen_card_near),
    "iban": (gen_iban, gen_iban_near),
    "us_ssn": (gen_ssn, gen_ssn_near),
    "ipv4": (gen_ipv4, gen_ipv4_near),
    "ipv6": (gen_ipv6, gen_ipv6_near),
}


def positive(rng, kind):
    """(value, region or None)."""
    if kind == "phone":
        draw = rng.random()
        if draw < 0.2:
            return gen_phone_e164(rng), None
        if draw < 0.45:
            return gen_phone_sampled(rng)
        region = rng.choice(REGIONS)
        return gen_phone(rng, region), region
    return GENERATORS[kind][0](rng), None


def near_miss(rng, kind):
    if kind == "phone":
        return gen_phone_near(rng)
    return GENERATORS[kind][1](rng)


def line_from(template, items):
    """items: [(kind, value, region, is_positive)]; builds the text and the byte spans."""
    pieces = template.split("{}")
    assert len(pieces) == len(items) + 1, template
    text = b""
    spans, misses = [], []
    for piece, (kind, value, region, pos) in zip(pieces, items):
        text += piece.replace("{{", "{").replace("}}", "}").encode()
        start = len(text)
        text += value.encode()
        entry = {"type": kind, "start": start, "end": len(text)}
        if pos:
            if region:
                entry["region"] = region
            spans.append(entry)
        else:
            misses.append(entry)
    text += pieces[-1].replace("{{", "{").replace("}}", "}").encode()
    return {"text": text.decode(), "spans": spans, "near_misses": misses}


def generate(seed=19, positives=130, near_misses=50):
    rng = random.Random(seed)
    lines = []
    for kind in TYPES:
        for i in range(positives):
            if kind == "us_ssn" and i % 6 == 5:  # bare digits after the keyword
                value = gen_ssn_parts(rng)
                lines.append(line_from(rng.choice(SSN_BARE_TEMPLATES), [(kind, value, None, True)]))
                continue
            value, region = positive(rng, kind)
            if i % 5 == 4:  # two values of different types in one line
                other = rng.choice([t for t in TYPES if t != kind])
                other_value, other_region = positive(rng, other)
                items = [(kind, value, region, True), (other, other_value, other_region, True)]
                if rng.random() < 0.5:
                    items.reverse()
                lines.append(line_from(rng.choice(PAIR_TEMPLATES), items))
            else:
                lines.append(line_from(rng.choice(TEMPLATES), [(kind, value, region, True)]))
        for i in range(near_misses):
            value = near_miss(rng, kind)
            if i % 4 == 3:  # a near-miss beside a real value
                other = rng.choice(TYPES)
                other_value, other_region = positive(rng, other)
                lines.append(line_from(rng.choice(PAIR_TEMPLATES), [(kind, value, None, False),
                                                                     (other, other_value, other_region, True)]))
            else:
                lines.append(line_from(rng.choice(TEMPLATES), [(kind, value, None, False)]))
    for text in DISTRACTORS:
        lines.append({"text": text, "spans": [], "near_misses": []})
    rng.shuffle(lines)
    return lines


# ---------------------------------------------------------------- check

def boundary_ok(raw, start, end):
    def word(b):
        return chr(b).isascii() and chr(b).isalnum()
    return (start == 0 or not word(raw[start - 1])) and (end == len(raw) or not word(raw[end]))


def check(lines):
    errors = []
    counts = {t: [0, 0] for t in TYPES}
    for number, line in enumerate(lines, 1):
        raw = line["text"].encode()
        taken = []
        for field, want_valid in (("spans", True), ("near_misses", False)):
            for span in line.get(field, []):
                kind, start, end = span["type"], span["start"], span["end"]
                where = f"line {number} {field} [{start}, {end}) {kind}"
                if kind not in TYPES or not (0 <= start < end <= len(raw)):
                    errors.append(f"{where}: bad type or range")
                    continue
                try:
                    value = raw[start:end].decode()
                except UnicodeDecodeError:
                    errors.append(f"{where}: not on UTF-8 character boundaries")
                    continue
                if not boundary_ok(raw, start, end):
                    errors.append(f"{where}: {value!r} is inside a longer word")
                if any(s < end and start < e for s, e in taken):
                    errors.append(f"{where}: overlaps another span")
                taken.append((start, end))
                if want_valid:
                    ok = valid(kind, value, span.get("region"))
                    if kind == "us_ssn" and value.isdigit():  # bare digits count only after the keyword
                        before = raw[max(0, start - 32):start].decode(errors="ignore").lower()
                        ok = ok and ("ssn" in before or "social security" in before)
                else:
                    ok = invalid_near_miss(kind, value)
                if not ok:
                    verdict = "not valid" if want_valid else "valid"
                    errors.append(f"{where}: {value!r} is {verdict} by the independent validator")
                counts[kind][0 if want_valid else 1] += 1
    for kind, (pos, neg) in counts.items():
        if pos < MIN_POSITIVES:
            errors.append(f"{kind}: {pos} positives, fewer than {MIN_POSITIVES}")
        if neg < MIN_NEAR_MISSES:
            errors.append(f"{kind}: {neg} near-misses, fewer than {MIN_NEAR_MISSES}")
    return errors, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="PATH")
    group.add_argument("--check", metavar="PATH")
    args = parser.parse_args()
    if args.write:
        lines = generate()
        errors, counts = check(lines)
        if errors:
            print("\n".join(errors), file=sys.stderr)
            return 1
        with open(args.write, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    else:
        with open(args.check, encoding="utf-8") as f:
            lines = [json.loads(text) for text in f if text.strip()]
        errors, counts = check(lines)
        if errors:
            print("\n".join(errors[:50]), file=sys.stderr)
            print(f"pii_corpus: {len(errors)} labels fail", file=sys.stderr)
            return 1
    summary = ", ".join(f"{k} {p}+/{n}-" for k, (p, n) in counts.items())
    print(f"pii_corpus: {len(lines)} lines, every label holds ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
