#include "cloud/signed_note.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>
#include <utility>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/openssl_owner.h"

namespace orchard::cloud {
namespace {

constexpr std::string_view kSignaturePrefix = "\xE2\x80\x94 ";  // U+2014 em dash, space
constexpr std::string_view kSignerPrefix = "PRIVATE+KEY+";
constexpr size_t kKeyIdSize = 4;

[[noreturn]] void openssl_fail(const char* what) { cloud::openssl_fail("signed note", what); }

std::string hex_id(uint32_t id) {
  char text[9];
  std::snprintf(text, sizeof text, "%08x", id);
  return text;
}

uint32_t read_u32(ByteView b) {
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | uint32_t{b[3]};
}

void put_u32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// One code point from s[i]; the number of bytes it took, or 0 where the bytes are not UTF-8
// (truncated, overlong, a surrogate, above U+10FFFF): the same rejections as Go's utf8 package.
size_t decode_utf8(std::string_view s, size_t i, char32_t& cp) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t length;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, min = 0x80, cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, min = 0x800, cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (s.size() - i < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return length;
}

// Unicode's White_Space property (what Go's unicode.IsSpace tests).
bool unicode_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Signed notes are UTF-8 with no ASCII control character (below U+0020) but newline.
void check_text(std::string_view s, const char* what) {
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    const size_t n = decode_utf8(s, i, cp);
    if (n == 0) fail(what, ": invalid UTF-8 at byte ", i);
    if (cp < 0x20 && cp != '\n') fail(what, ": control character 0x", hex_id(cp).substr(6), " at byte ", i);
    i += n;
  }
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// base64_decode with the error prefixed by what was being read.
Bytes decode_field(std::string_view text, std::string_view what) {
  try {
    return base64_decode(text);
  } catch (const Error& e) {
    fail(what, ": ", e.what());
  }
}

uint32_t parse_hex_id(std::string_view text, std::string_view what) {
  if (text.size() != 8) fail(what, ": the key id must be 8 hex digits");
  uint32_t id = 0;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;  // Go's ParseUint takes either case
    else fail(what, ": the key id must be 8 hex digits");
    id = id << 4 | static_cast<uint32_t>(d);
  }
  return id;
}

// name+hex(id)+base64(type || key), the shape shared by verifier and (after PRIVATE+KEY+) signer
// keys. The base64 may itself hold '+', so only the first two split the string.
struct KeyString {
  std::string_view name;
  uint32_t id = 0;
  std::string_view key64;
};

KeyString split_key(std::string_view s, std::string_view what) {
  KeyString out;
  const size_t plus = s.find('+');
  if (plus == std::string_view::npos) fail(what, ": expected name+keyid+key");
  out.name = s.substr(0, plus);
  if (!valid_key_name(out.name))
    fail(what, ": the name is not a valid key name (empty, or has white space, a control character or bad UTF-8)");
  s.remove_prefix(plus + 1);
  if (s.size() < 9 || s[8] != '+') fail(what, ": expected name+keyid+key with an 8-digit key id");
  out.id = parse_hex_id(s.substr(0, 8), what);
  out.key64 = s.substr(9);
  return out;
}

Pkey ed25519_private(ByteView seed) {
  if (seed.size() != kEd25519SeedSize)
    fail("signed note: Ed25519 seed is ", seed.size(), " bytes, expected ", kEd25519SeedSize);
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  if (!key) openssl_fail("Ed25519 private key import");
  return key;
}

// Names and lines that parse_note would refuse are refused before they are written.
void check_signature_fields(const NoteSignature& sig) {
  if (!valid_key_name(sig.name)) fail("signed note: signature name is not a valid key name");
  if (sig.signature.empty()) fail("signed note: signature by ", sig.name, " is empty");
}

void check_note_text(std::string_view text) {
  if (text.empty() || text.back() != '\n') fail("signed note: the text does not end with a newline");
  if (text.size() > kMaxNoteSize) fail("signed note: the text is ", text.size(), " bytes, more than ", kMaxNoteSize);
  check_text(text, "signed note");
}

NoteSignature parse_signature_line(std::string_view line, size_t number) {
  if (line.substr(0, kSignaturePrefix.size()) != kSignaturePrefix)
    fail("signed note: signature line ", number, " does not start with an em dash and a space");
  line.remove_prefix(kSignaturePrefix.size());
  const size_t space = line.find(' ');
  if (space == std::string_view::npos) fail("signed note: signature line ", number, " has no space after the name");
  NoteSignature sig;
  sig.name = line.substr(0, space);
  if (!valid_key_name(sig.name)) fail("signed note: signature line ", number, " has an invalid key name");
  const std::string_view b64 = line.substr(space + 1);
  Bytes raw = decode_field(b64, str_cat("signed note: signature line ", number));
  if (raw.size() <= kKeyIdSize)
    fail("signed note: signature line ", number, " has ", raw.size(), " bytes, less than a key id and a signature");
  sig.key_id = read_u32(raw);
  sig.signature.assign(raw.begin() + kKeyIdSize, raw.end());
  return sig;
}

}  // namespace

std::string base64_encode(ByteView bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = uint32_t{bytes[i]} << 16 | uint32_t{bytes[i + 1]} << 8 | bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[v >> shift & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t{bytes[i]} << 16;
    if (rest == 2) v |= uint32_t{bytes[i + 1]} << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += rest == 2 ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

Bytes base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) fail("base64 text of ", text.size(), " characters is not a multiple of 4");
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  Bytes out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const size_t digits = last ? 4 - pad : 4;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      int d = 0;
      if (k < digits) {
        // '=' before the final padding lands here too, as a character outside the alphabet.
        d = base64_value(text[i + k]);
        if (d < 0) fail("base64 text has a character outside the alphabet at ", i + k);
      }
      v = v << 6 | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<uint8_t>(v >> 16));
    if (digits > 2) out.push_back(static_cast<uint8_t>(v >> 8));
    if (digits > 3) out.push_back(static_cast<uint8_t>(v));
    // The bits below the last byte must be zero; otherwise several texts would decode alike.
    if ((digits == 2 && (v & 0xFFFF) != 0) || (digits == 3 && (v & 0xFF) != 0))
      fail("base64 text has nonzero bits after its last byte");
  }
  return out;
}

bool valid_key_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size();) {
    char32_t cp;
    const size_t n = decode_utf8(name, i, cp);
    if (n == 0 || cp < 0x20 || cp == '+' || unicode_space(cp)) return false;
    i += n;
  }
  return true;
}

uint32_t ed25519_key_id(std::string_view name, ByteView public_key) {
  Bytes input(name.begin(), name.end());
  input.push_back('\n');
  input.push_back(kNoteEd25519);
  put_bytes(input, public_key);
  return read_u32(sha256(input));
}

NoteVerifier NoteVerifier::parse(std::string_view vkey) {
  constexpr std::string_view what = "verifier key";
  const KeyString parts = split_key(vkey, what);
  const Bytes key = decode_field(parts.key64, what);
  if (key.empty()) fail(what, ": the key is empty");
  if (key[0] != kNoteEd25519) fail(what, ": key type 0x", hex_id(key[0]).substr(6), " is not Ed25519 (0x01)");
  if (key.size() != 1 + kEd25519PublicKeySize)
    fail(what, ": Ed25519 public key is ", key.size() - 1, " bytes, expected ", kEd25519PublicKeySize);
  NoteVerifier out{std::string(parts.name), parts.id, Bytes(key.begin() + 1, key.end())};
  const uint32_t expected = ed25519_key_id(out.name, out.public_key);
  if (expected != parts.id)
    fail(what, ": key id ", hex_id(parts.id), " of ", out.name, " is not its key's id ", hex_id(expected));
  return out;
}

std::string NoteVerifier::format() const {
  if (!valid_key_name(name)) fail("verifier key: the name is not a valid key name");
  if (public_key.size() != kEd25519PublicKeySize)
    fail("verifier key: Ed25519 public key is ", public_key.size(), " bytes, expected ", kEd25519PublicKeySize);
  Bytes key{kNoteEd25519};
  put_bytes(key, public_key);
  return str_cat(name, '+', hex_id(key_id), '+', base64_encode(key));
}

bool NoteVerifier::verify(ByteView message, ByteView signature) const {
  if (signature.size() != kEd25519SignatureSize || public_key.size() != kEd25519PublicKeySize) return false;
  Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(), public_key.size()));
  if (!key) {
    ERR_clear_error();
    return false;
  }
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) openssl_fail("EVP_MD_CTX_new");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) openssl_fail("Ed25519 verify init");
  const int ok = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), nonnull(message), message.size());
  // A forged signature leaves an entry behind; it is no failure of the caller's next call.
  ERR_clear_error();
  return ok == 1;
}

NoteSigner::NoteSigner(std::string name, SecretBytes seed, Bytes public_key)
    : name_(std::move(name)), seed_(std::move(seed)), public_key_(std::move(public_key)) {
  key_id_ = ed25519_key_id(name_, public_key_);
}

NoteSigner NoteSigner::generate(std::string name) {
  SecretBytes seed(kEd25519SeedSize);
  random_bytes(seed.data(), seed.size());
  return from_seed(std::move(name), seed.view());
}

NoteSigner NoteSigner::from_seed(std::string name, ByteView seed) {
  if (!valid_key_name(name)) fail("signer key: the name is not a valid key name");
  const Pkey key = ed25519_private(seed);
  Bytes public_key(kEd25519PublicKeySize);
  size_t n = public_key.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), public_key.data(), &n) != 1 || n != kEd25519PublicKeySize)
    openssl_fail("Ed25519 public key export");
  return NoteSigner(std::move(name), SecretBytes(seed), std::move(public_key));
}

NoteSigner NoteSigner::parse(std::string_view skey) {
  constexpr std::string_view what = "signer key";
  if (skey.substr(0, kSignerPrefix.size()) != kSignerPrefix) fail(what, ": does not start with PRIVATE+KEY+");
  const KeyString parts = split_key(skey.substr(kSignerPrefix.size()), what);
  Bytes key = decode_field(parts.key64, what);
  // The decoded seed is wiped on every path out, the throws included.
  struct Wipe {
    Bytes& b;
    ~Wipe() { OPENSSL_cleanse(b.data(), b.size()); }
  } wipe{key};
  if (key.empty()) fail(what, ": the key is empty");
  if (key[0] != kNoteEd25519) fail(what, ": key type 0x", hex_id(key[0]).substr(6), " is not Ed25519 (0x01)");
  if (key.size() != 1 + kEd25519SeedSize)
    fail(what, ": Ed25519 seed is ", key.size() - 1, " bytes, expected ", kEd25519SeedSize);
  NoteSigner out = from_seed(std::string(parts.name), ByteView(key).subspan(1));
  if (out.key_id() != parts.id)
    fail(what, ": key id ", hex_id(parts.id), " of ", out.name(), " is not its key's id ", hex_id(out.key_id()));
  return out;
}

std::string NoteSigner::format() const {
  Bytes key{kNoteEd25519};
  put_bytes(key, seed_.view());
  std::string out = str_cat(kSignerPrefix, name_, '+', hex_id(key_id_), '+', base64_encode(key));
  OPENSSL_cleanse(key.data(), key.size());
  return out;
}

Bytes NoteSigner::sign(ByteView message) const {
  const Pkey key = ed25519_private(seed_.view());
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) openssl_fail("EVP_MD_CTX_new");
  // Ed25519 hashes internally: no digest is named.
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) openssl_fail("Ed25519 sign init");
  Bytes out(kEd25519SignatureSize);
  size_t n = out.size();
  if (EVP_DigestSign(ctx.get(), out.data(), &n, nonnull(message), message.size()) != 1 || n != out.size())
    openssl_fail("Ed25519 sign");
  return out;
}

Note parse_note(std::string_view note) {
  if (note.size() > kMaxNoteSize) fail("signed note: ", note.size(), " bytes, more than the limit of ", kMaxNoteSize);
  check_text(note, "signed note");
  // The text may hold blank lines itself: the last one separates it from the signatures.
  const size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos) fail("signed note: no blank line before the signatures");
  Note out;
  out.text = note.substr(0, split + 1);
  std::string_view lines = note.substr(split + 2);
  if (lines.empty()) fail("signed note: no signature lines after the blank line");
  if (lines.back() != '\n') fail("signed note: the last signature line does not end with a newline");
  while (!lines.empty()) {
    const size_t end = lines.find('\n');
    if (out.signatures.size() == kMaxNoteSignatures)
      fail("signed note: more than ", kMaxNoteSignatures, " signature lines");
    out.signatures.push_back(parse_signature_line(lines.substr(0, end), out.signatures.size() + 1));
    lines.remove_prefix(end + 1);
  }
  return out;
}

std::string format_note(const Note& note) {
  check_note_text(note.text);
  if (note.signatures.empty()) fail("signed note: a note needs at least one signature");
  if (note.signatures.size() > kMaxNoteSignatures)
    fail("signed note: ", note.signatures.size(), " signatures, more than ", kMaxNoteSignatures);
  std::string out = str_cat(note.text, '\n');
  for (const NoteSignature& sig : note.signatures) {
    check_signature_fields(sig);
    Bytes raw;
    put_u32(raw, sig.key_id);
    put_bytes(raw, sig.signature);
    out += str_cat(kSignaturePrefix, sig.name, ' ', base64_encode(raw), '\n');
  }
  if (out.size() > kMaxNoteSize) fail("signed note: ", out.size(), " bytes, more than the limit of ", kMaxNoteSize);
  return out;
}

std::string sign_note(std::string_view text, std::span<const NoteSigner* const> signers) {
  check_note_text(text);
  Note note{std::string(text), {}};
  for (const NoteSigner* signer : signers) {
    if (signer == nullptr) fail("signed note: a null signer");
    note.signatures.push_back({signer->name(), signer->key_id(), signer->sign(as_bytes(text))});
  }
  return format_note(note);
}

VerifiedNote verify_note(std::string_view note_bytes, std::span<const NoteVerifier> verifiers) {
  // Name and id pick the key; two keys under one pair would make the pick arbitrary.
  for (size_t i = 0; i < verifiers.size(); ++i)
    for (size_t j = i + 1; j < verifiers.size(); ++j)
      if (verifiers[i].name == verifiers[j].name && verifiers[i].key_id == verifiers[j].key_id &&
          verifiers[i].public_key != verifiers[j].public_key)
        fail("signed note: two verifier keys named ", verifiers[i].name, "+", hex_id(verifiers[i].key_id));
  Note note = parse_note(note_bytes);
  VerifiedNote out;
  for (NoteSignature& sig : note.signatures) {
    const NoteVerifier* known = nullptr;
    for (const NoteVerifier& v : verifiers)
      if (v.name == sig.name && v.key_id == sig.key_id) known = &v;
    auto same_key = [&](const NoteSignature& s) { return s.name == sig.name && s.key_id == sig.key_id; };
    if (known == nullptr) {
      // A matching name or id alone is another key, whose signature the spec says to ignore.
      if (std::find(out.unknown.begin(), out.unknown.end(), sig) == out.unknown.end()) out.unknown.push_back(sig);
      continue;
    }
    // Every line of a known key is checked, repeats included: a forged one refuses the note.
    if (!known->verify(as_bytes(note.text), sig.signature))
      fail("signed note: the signature by ", sig.name, "+", hex_id(sig.key_id), " does not verify");
    if (std::find_if(out.verified.begin(), out.verified.end(), same_key) == out.verified.end())
      out.verified.push_back(std::move(sig));
  }
  if (out.verified.empty())
    fail("signed note: no signature by a known key (", note.signatures.size(), " by unknown keys)");
  out.text = std::move(note.text);
  return out;
}

Checkpoint parse_checkpoint(std::string_view text) {
  if (text.size() > kMaxNoteSize) fail("checkpoint: ", text.size(), " bytes, more than the limit of ", kMaxNoteSize);
  check_text(text, "checkpoint");
  if (text.empty() || text.back() != '\n') fail("checkpoint: the text does not end with a newline");
  std::vector<std::string_view> lines;
  for (std::string_view rest = text; !rest.empty();) {
    const size_t end = rest.find('\n');
    lines.push_back(rest.substr(0, end));
    rest.remove_prefix(end + 1);
  }
  if (lines.size() < 3) fail("checkpoint: ", lines.size(), " lines, expected origin, tree size and root hash");
  Checkpoint out;
  if (lines[0].empty()) fail("checkpoint: the origin line is empty");
  out.origin = lines[0];

  const std::string_view size = lines[1];
  if (size.empty()) fail("checkpoint: the tree size line is empty");
  if (size.size() > 1 && size[0] == '0') fail("checkpoint: the tree size has a leading zero");
  for (char c : size) {
    if (c < '0' || c > '9') fail("checkpoint: the tree size is not a decimal number");
    const auto digit = static_cast<uint64_t>(c - '0');
    if (out.size > (std::numeric_limits<uint64_t>::max() - digit) / 10)
      fail("checkpoint: the tree size does not fit 64 bits");
    out.size = out.size * 10 + digit;
  }

  out.root_hash = decode_field(lines[2], "checkpoint: root hash");
  if (out.root_hash.size() != 32) fail("checkpoint: the root hash is ", out.root_hash.size(), " bytes, expected 32");
  for (size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) fail("checkpoint: extension line ", i - 2, " is empty");
    out.extensions.emplace_back(lines[i]);
  }
  return out;
}

std::string format_checkpoint(const Checkpoint& checkpoint) {
  auto one_line = [](std::string_view s, std::string_view what) {
    if (s.empty()) fail("checkpoint: the ", what, " is empty");
    if (s.find('\n') != std::string_view::npos) fail("checkpoint: the ", what, " has a newline");
  };
  one_line(checkpoint.origin, "origin");
  if (checkpoint.root_hash.size() != 32)
    fail("checkpoint: the root hash is ", checkpoint.root_hash.size(), " bytes, expected 32");
  std::string out = str_cat(checkpoint.origin, '\n', checkpoint.size, '\n', base64_encode(checkpoint.root_hash), '\n');
  for (const std::string& line : checkpoint.extensions) {
    one_line(line, "extension line");
    out += str_cat(line, '\n');
  }
  check_text(out, "checkpoint");
  return out;
}

}  // namespace orchard::cloud
