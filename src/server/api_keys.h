// API keys (`orchard serve --api-key KEY`, `--api-key-file F`): a request's
// "Authorization: Bearer KEY" against the keys the server started with, in time that does not
// depend on where a guess first differs from a key, nor on the key's length.
//
// Each key is kept as its SHA-256 digest (OpenSSL's), the presented key is hashed the same way,
// and the two 32-byte digests are compared with CRYPTO_memcmp. The time then depends only on the
// presented key's length (hashing it), which the client knows anyway, and every key is compared,
// so neither which key matched nor how many there are shows.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace orchard::server {

using Sha256Digest = std::array<uint8_t, 32>;

// SHA-256 of `bytes` (OpenSSL).
Sha256Digest sha256(std::string_view bytes);

// True when a and b hold the same bytes; looks at every byte whatever they hold (CRYPTO_memcmp).
bool digests_equal(const Sha256Digest& a, const Sha256Digest& b);

class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(const std::vector<std::string>& keys);

  bool enabled() const { return !digests_.empty(); }
  // Whether `authorization` (the header's value, or nullopt when absent) is "Bearer KEY" with one
  // of the keys. The scheme is matched without regard to case (RFC 9110 §11.1).
  bool accepts(const std::optional<std::string_view>& authorization) const;

 private:
  std::vector<Sha256Digest> digests_;
};

// The keys of an --api-key-file: one a line; blank lines and lines starting with '#' are skipped,
// white space around a key is dropped. Throws orchard::Error naming the file and line for a key
// with white space or control characters inside, and for a file without any key.
std::vector<std::string> read_api_key_file(const std::string& path);

// Checks a key given on the command line or in a file: 1 to 4096 printable ASCII characters
// without spaces (what an HTTP header carries unchanged). Throws orchard::Error with `where`.
void check_api_key(const std::string& key, const std::string& where);

}  // namespace orchard::server
