#include "server/api_keys.h"

#include <cctype>
#include <cstring>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "base/text_lines.h"

namespace orchard::server {

Sha256Digest sha256(std::string_view bytes) {
  Sha256Digest out;
  if (EVP_Digest(bytes.data(), bytes.size(), out.data(), nullptr, EVP_sha256(), nullptr) != 1)
    fail("SHA-256 of an API key failed (OpenSSL)");
  return out;
}

bool digests_equal(const Sha256Digest& a, const Sha256Digest& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

ApiKeys::ApiKeys(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) digests_.push_back(sha256(key));
}

bool ApiKeys::accepts(const std::optional<std::string_view>& authorization) const {
  if (!authorization) return false;
  std::string_view value = *authorization;
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(value[i]))) != kScheme[i]) return false;
  value.remove_prefix(kScheme.size());
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  const Sha256Digest presented = sha256(value);
  bool match = false;
  for (const Sha256Digest& d : digests_) match |= digests_equal(presented, d);  // every key, no early exit
  return match;
}

void check_api_key(const std::string& key, const std::string& where) {
  if (key.empty() || key.size() > 4096) fail(where, ": an API key must be 1 to 4096 characters");
  for (unsigned char c : key)
    if (c <= 0x20 || c >= 0x7f)
      fail(where, ": an API key must be printable ASCII without spaces (it travels in the Authorization header)");
}

std::vector<std::string> read_api_key_file(const std::string& path) {
  const std::string text = read_text_file(path, 1u << 20);
  std::vector<std::string> keys;
  for_each_line(text, [&](const TextLine& line) {
    std::string_view key = line.text;
    while (!key.empty() && (key.front() == ' ' || key.front() == '\t')) key.remove_prefix(1);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
    if (key.empty() || key.front() == '#') return;
    check_api_key(std::string(key), str_cat(path, ":", line.number));
    keys.emplace_back(key);
  });
  if (keys.empty()) fail(path, ": no API key in the file (one key a line)");
  return keys;
}

}  // namespace orchard::server
