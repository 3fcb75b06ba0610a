#include "cloud/release.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "cloud/attester.h"
#include "cloud/crypto.h"
#include "cloud/openssl_owner.h"
#include "cloud/privacy_pass.h"

#include <openssl/evp.h>

namespace orchard::cloud {
namespace {

constexpr std::string_view kReleaseHeader = "orchard release v1";

bool plain_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::vector<std::string_view> split_lines(std::string_view text, const char* what) {
  if (text.empty() || text.back() != '\n') fail(what, ": text does not end with a newline");
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// "KEY HEX[ NAME]": the hash of a hex line, checked for lowercase and length.
Bytes hex_field(std::string_view line, std::string_view key, std::string* name, const char* what) {
  if (line.substr(0, key.size()) != key || line.size() <= key.size() || line[key.size()] != ' ')
    fail(what, ": expected a '", key, "' line, got '", line.substr(0, 40), "'");
  std::string_view rest = line.substr(key.size() + 1);
  std::string_view hex = rest.substr(0, std::min(rest.size(), size_t{64}));
  if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
    fail(what, ": '", key, "' needs 64 lowercase hex digits");
  rest.remove_prefix(64);
  if (name) {
    if (rest.size() < 2 || rest[0] != ' ' || !plain_name(rest.substr(1))) fail(what, ": '", key, "' needs a file name after the hash");
    *name = std::string(rest.substr(1));
  } else if (!rest.empty()) {
    fail(what, ": trailing text after '", key, "'");
  }
  return from_hex(hex);
}

}  // namespace

std::string Measurement::text() const {
  std::string out = "binary " + to_hex(binary) + "\n";
  for (const MeasuredFile& m : models) out += "model " + to_hex(m.sha256) + " " + m.name + "\n";
  out += "config " + to_hex(config) + "\n";
  return out;
}

Bytes Measurement::digest() const { return sha256(as_bytes(text())); }

Bytes sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read ", path, " to measure it");
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) openssl_fail("measure", "SHA-256 init");
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.bad()) fail("read error in ", path, " while measuring it");
    if (in.gcount() > 0 && EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(in.gcount())) != 1)
      openssl_fail("measure", "SHA-256 update");
  }
  Bytes digest(kSha256Size);
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &size) != 1 || size != kSha256Size) openssl_fail("measure", "SHA-256 final");
  return digest;
}

std::string canonical_node_config(const server::ServerOptions& server, const NodeOptions& node) {
  std::vector<std::string> lines = {
      "ctx-size=" + std::to_string(server.n_ctx),
      "kernels=" + std::to_string(static_cast<int>(server.kernels)),
      "kv-cache=" + std::to_string(static_cast<int>(server.kv_cache)),
      "max-body-bytes=" + std::to_string(server.max_body_bytes),
      "memory-budget=" + std::to_string(server.memory_budget),
      "parallel=" + std::to_string(server.parallel),
      "share-prefix=0",  // a private node never shares (serve_private forces it)
      "stream-interval-us=" + std::to_string(server.stream_interval_us),
      "threads=" + std::to_string(server.threads),
      "key-rotation-s=" + std::to_string(node.key_rotation.count()),
      "replay-window-s=" + std::to_string(node.gateway.replay_window.count()),
      "response-padding=" + std::to_string(node.gateway.response_padding),
      "attestation-validity-s=" + std::to_string(node.attestation_validity.count()),
      // Whether requests need tokens, and of which issuer: it changes whom the node serves.
      "token-issuer=" + (node.tokens.issuer_key.empty() ? std::string("none")
                                                        : to_hex(privacy_pass::token_key_id(
                                                              privacy_pass::load_public_key_file(node.tokens.issuer_key)))),
      "token-issuer-name=" + node.tokens.issuer_name,
      "token-origin-info=" + node.tokens.origin_info,
  };
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

Measurement measure_node(const std::string& binary, const std::string& model_path,
                         const server::ServerOptions& server, const NodeOptions& node) {
  Measurement m;
  m.binary = sha256_file(binary);
  m.models.push_back({base_name(model_path), sha256_file(model_path)});
  if (!server.tokenizer_path.empty()) m.models.push_back({base_name(server.tokenizer_path), sha256_file(server.tokenizer_path)});
  for (const MeasuredFile& f : m.models)
    if (!plain_name(f.name)) fail("measure: the file name '", f.name, "' has spaces or unprintable characters");
  m.config = sha256(as_bytes(canonical_node_config(server, node)));
  return m;
}

std::string format_release(const Release& release) {
  if (!plain_name(release.name)) fail("release: the name must be printable ASCII without spaces");
  return std::string(kReleaseHeader) + "\nname " + release.name + "\n" + release.measurement.text() + "measurement " +
         to_hex(release.measurement.digest()) + "\n";
}

Release parse_release(std::string_view text) {
  const char* what = "release statement";
  const std::vector<std::string_view> lines = split_lines(text, what);
  if (lines.size() < 5 || lines[0] != kReleaseHeader) fail(what, ": not an '", kReleaseHeader, "' statement");
  Release r;
  if (lines[1].substr(0, 5) != "name " || !plain_name(lines[1].substr(5))) fail(what, ": bad 'name' line");
  r.name = std::string(lines[1].substr(5));
  r.measurement.binary = hex_field(lines[2], "binary", nullptr, what);
  size_t i = 3;
  for (; i < lines.size() && lines[i].substr(0, 6) == "model "; ++i) {
    MeasuredFile f;
    f.sha256 = hex_field(lines[i], "model", &f.name, what);
    r.measurement.models.push_back(std::move(f));
  }
  if (r.measurement.models.empty()) fail(what, ": no 'model' line");
  if (i + 2 != lines.size()) fail(what, ": expected 'config' and 'measurement' as the last lines");
  r.measurement.config = hex_field(lines[i], "config", nullptr, what);
  const Bytes digest = hex_field(lines[i + 1], "measurement", nullptr, what);
  if (digest != r.measurement.digest()) fail(what, ": the measurement line is not the digest of the lines above it");
  return r;
}

std::string sign_release(const Release& release, const NoteSigner& release_key) {
  return sign_note(format_release(release), release_key);
}

Release verify_release(std::string_view note, std::span<const NoteVerifier> trusted) {
  VerifiedNote verified;
  try {
    verified = verify_note(note, trusted);
  } catch (const Error& e) {
    throw AttestationError(std::string("release not signed by a trusted release key (") + e.what() + ")");
  }
  try {
    return parse_release(verified.text);
  } catch (const Error& e) {
    throw AttestationError(e.what());
  }
}

}  // namespace orchard::cloud
