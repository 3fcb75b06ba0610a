// orchard tokens keygen --out KEY [--public-out PUB] [--bits 2048]
// orchard tokens issue  --key KEY --clients FILE [--host H] [--port N] [--rate N] [--period-s S]
// orchard tokens fetch  --issuer URL --issuer-key PUB --auth-env VAR --count N --wallet FILE
//                       [--issuer-name NAME] [--origin-info TEXT] [--ca-file PEM]
//
// Anonymous request tokens for the private cloud node (src/cloud/privacy_pass.h; Privacy Pass
// token type 2, RFC 9578).
//
// `keygen` makes the issuer's 2048-bit RSA key (type 2 allows no other size) and writes it to KEY
// as unencrypted PEM PKCS#8, mode 0600; PUB (default KEY.pub) gets the public key as one line of
// padded base64url of its RFC 9578 SubjectPublicKeyInfo, the value a 401's token-key= carries.
// Prints the token key id (SHA-256 of that SPKI) in hex.
//
// `issue` is the issuer's HTTP service. Clients authenticate with `Authorization: Bearer SECRET`,
// FILE holding one "client_id secret" per line ('#' comments and blank lines allowed; mode 0600:
// it holds secrets; secrets are compared by their SHA-256, in constant time).
//   POST /token-request   a TokenRequest (application/private-token-request) -> 200 with the
//                         TokenResponse (application/private-token-response); 401 without a
//                         known secret, 400 for a malformed request, 429 (Retry-After) past the
//                         client's --rate tokens in the current --period-s period.
//   GET /token-key        {"token-type":2,"token-key":"<base64url SPKI>","token-key-id":"<hex>"}
//   GET /.well-known/token-issuer-directory   RFC 9578 §4's directory
// Errors are JSON: {"error": "...", "reason": "..."}. Prints "listening on http://H:P" once ready
// (--port 0, the default, takes any free port); stops on SIGTERM or SIGINT.
//
// `fetch` makes COUNT tokens for the challenge (type 2, --issuer-name (default: the URL's host),
// no redemption context, --origin-info (default empty)) and adds them to the wallet FILE
// (privacy_pass.h's TokenWallet). The issuer's key comes from PUB, never from the issuer, which
// could otherwise hand each client its own key and recognize its tokens; each token is verified
// under it before it is kept. The secret comes from the environment variable VAR, never from the
// command line (which other users can read in /proc).
#include <httplib.h>
#include <openssl/crypto.h>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mapped_file.h"
#include "cloud/crypto.h"
#include "cloud/log_server.h"
#include "cloud/privacy_pass.h"
#include "command.h"

namespace orchard::cli {
namespace {

namespace pp = cloud::privacy_pass;
using nlohmann::json;

volatile std::sig_atomic_t stop_requested = 0;

// ---- Files ----

void write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) fail(path, ": cannot be created: ", std::strerror(errno));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    fail(path, ": write failed");
  }
}

struct Client {
  std::string id;
  cloud::Bytes secret_hash;  // SHA-256: every comparison is over 32 bytes, whatever the secret's length
};

bool valid_client_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '@') return false;
  return true;
}

std::vector<Client> read_clients(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail("clients file ", path, ": ", std::strerror(errno));
  if (st.st_mode & 077) fail("clients file ", path, ": readable by others than its owner (chmod 600 it)");
  const std::string text = read_text_file(path, 1 << 20);
  std::vector<Client> clients;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    const size_t space = line.find_first_of(" \t", first);
    if (space == std::string::npos) fail("clients file ", path, " line ", line_no, ": expected \"client_id secret\"");
    const std::string id = line.substr(first, space - first);
    const size_t secret_at = line.find_first_not_of(" \t", space);
    const std::string secret = secret_at == std::string::npos ? "" : line.substr(secret_at);
    if (!valid_client_id(id))
      fail("clients file ", path, " line ", line_no, ": the client id must be 1 to 128 letters, digits or -_.@");
    if (secret.size() < 16 || secret.find_first_of(" \t") != std::string::npos)
      fail("clients file ", path, " line ", line_no, ": the secret must be at least 16 characters without spaces");
    for (const Client& c : clients)
      if (c.id == id) fail("clients file ", path, " line ", line_no, ": client ", id, " listed twice");
    clients.push_back({id, cloud::sha256(cloud::as_bytes(secret))});
  }
  if (clients.empty()) fail("clients file ", path, ": no clients");
  return clients;
}

// The client whose secret the Authorization header carries, or nullptr. Every client's hash is
// compared, with CRYPTO_memcmp, whether or not an earlier one matched.
const Client* authenticate(const std::vector<Client>& clients, const std::string& authorization) {
  if (authorization.size() < 7 || authorization.size() > 1024) return nullptr;
  std::string scheme = authorization.substr(0, 7);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "bearer ") return nullptr;
  size_t at = 7;
  while (at < authorization.size() && authorization[at] == ' ') ++at;
  const cloud::Bytes presented = cloud::sha256(cloud::as_bytes(std::string_view(authorization).substr(at)));
  const Client* found = nullptr;
  for (const Client& c : clients) {
    const bool same = CRYPTO_memcmp(presented.data(), c.secret_hash.data(), presented.size()) == 0;
    if (same) found = &c;
  }
  return found;
}

void json_error(httplib::Response& res, int status, const std::string& message, std::string_view reason) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(json{{"error", message}, {"reason", reason}}.dump(), "application/json");
}

// ---- Commands ----

int tokens_keygen(Args& args) {
  const std::string out = args.require("out");
  const std::string public_out = args.get_or("public-out", out + ".pub");
  const int64_t bits = args.get_int("bits").value_or(2048);
  args.finish();
  if (bits != static_cast<int64_t>(pp::kModulusBits))
    fail("orchard tokens keygen: --bits ", bits, ": token type 2 (RFC 9578) is defined for 2048-bit keys only");
  if (::access(public_out.c_str(), F_OK) == 0) fail("orchard tokens keygen: ", public_out, " exists; not replaced");
  const cloud::blind_rsa::PrivateKey key = cloud::blind_rsa::PrivateKey::generate(pp::kModulusBits);
  pp::save_issuer_key(key, out);
  const cloud::Bytes spki = pp::encode_public_key(key.public_key());
  write_new_file(public_out, pp::base64url_encode(spki) + "\n", 0644);
  std::printf("%s\n", cloud::to_hex(pp::token_key_id(spki)).c_str());
  return 0;
}

int tokens_issue(Args& args) {
  cloud::blind_rsa::PrivateKey key = pp::load_issuer_key(args.require("key"));
  const std::vector<Client> clients = read_clients(args.require("clients"));
  const std::string host = args.get_or("host", "127.0.0.1");
  const int64_t port = args.get_int("port").value_or(0);
  const int64_t rate = args.get_int("rate").value_or(100);
  const int64_t period_s = args.get_int("period-s").value_or(3600);
  args.finish();
  if (port < 0 || port > 65535) fail("orchard tokens issue: --port must be from 0 to 65535");
  if (rate < 1 || rate > 1'000'000) fail("orchard tokens issue: --rate must be from 1 to 1000000");
  if (period_s < 1 || period_s > 366LL * 86400) fail("orchard tokens issue: --period-s must be from 1 to 31622400");

  pp::TokenIssuer issuer(std::move(key), static_cast<size_t>(rate), std::chrono::seconds(period_s));
  const std::string token_key = pp::base64url_encode(issuer.public_key_spki());
  const std::string key_json =
      json{{"token-type", pp::kTokenTypeBlindRsa}, {"token-key", token_key}, {"token-key-id", cloud::to_hex(issuer.token_key_id())}}
          .dump();
  const std::string directory_json =
      json{{"issuer-request-uri", "/token-request"},
           {"token-keys", json::array({{{"token-type", pp::kTokenTypeBlindRsa}, {"token-key", token_key}}})}}
          .dump();

  httplib::Server http;
  http.set_payload_max_length(4096);  // a type 2 TokenRequest is 259 bytes
  http.Get("/token-key", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(key_json, "application/json");
  });
  http.Get("/.well-known/token-issuer-directory", [&](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "max-age=3600");
    res.set_content(directory_json, "application/token-issuer-directory");
  });
  http.Post("/token-request", [&](const httplib::Request& req, httplib::Response& res) {
    const Client* client = authenticate(clients, req.get_header_value("Authorization"));
    if (!client) {
      res.set_header("WWW-Authenticate", "Bearer");
      return json_error(res, 401, "a known client secret is required (Authorization: Bearer SECRET)", "unauthorized");
    }
    if (req.get_header_value("Content-Type") != pp::kTokenRequestMediaType)
      return json_error(res, 400, "the content type must be application/private-token-request", "malformed");
    try {
      const cloud::Bytes response = issuer.issue(client->id, cloud::as_bytes(req.body));
      res.set_header("Cache-Control", "no-store");
      res.set_content(std::string(cloud::as_text(response)), std::string(pp::kTokenResponseMediaType));
    } catch (const pp::RateLimited& e) {
      res.set_header("Retry-After", std::to_string(e.retry_after().count()));
      json_error(res, 429, e.what(), "rate_limited");
    } catch (const pp::TokenError& e) {
      json_error(res, 400, e.what(), pp::reason_name(e.reason()));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "orchard tokens issue: %s\n", e.what());
      json_error(res, 500, "the issuer could not sign", "internal");
    }
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) return json_error(res, 404, "no such resource", "not_found");
    if (res.status == 413) return json_error(res, 413, "the request is over 4096 bytes", "too_large");
    json_error(res, res.status, "the request could not be read (" + std::to_string(res.status) + ")", "bad_request");
  });

  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  std::signal(SIGPIPE, SIG_IGN);
  cloud::run_http_server(
      http, host, static_cast<int>(port),
      [&](int bound) {
        std::printf("listening on http://%s:%d\n", host.c_str(), bound);
        std::fflush(stdout);
      },
      [] { return stop_requested != 0; });
  return 0;
}

// "http(s)://host[:port][/prefix]" split into what httplib::Client takes and the path prefix.
struct IssuerUrl {
  std::string origin;  // scheme://host[:port]
  std::string host;
  std::string prefix;  // "" or "/path" without a trailing slash
};

IssuerUrl parse_issuer_url(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos || (url.compare(0, scheme_end, "http") != 0 && url.compare(0, scheme_end, "https") != 0))
    fail("orchard tokens fetch: --issuer ", url, " is not an http:// or https:// URL");
  const size_t path_at = url.find('/', scheme_end + 3);
  IssuerUrl out;
  out.origin = url.substr(0, path_at);
  std::string authority = url.substr(scheme_end + 3, path_at == std::string::npos ? std::string::npos : path_at - scheme_end - 3);
  if (authority.empty()) fail("orchard tokens fetch: --issuer ", url, " has no host");
  if (authority.front() == '[') {
    out.host = authority.substr(1, authority.find(']') - 1);
  } else {
    out.host = authority.substr(0, authority.find(':'));
  }
  if (path_at != std::string::npos) {
    out.prefix = url.substr(path_at);
    while (!out.prefix.empty() && out.prefix.back() == '/') out.prefix.pop_back();
    const std::string suffix = "/token-request";
    if (out.prefix.size() >= suffix.size() && out.prefix.compare(out.prefix.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.prefix.resize(out.prefix.size() - suffix.size());
  }
  return out;
}

int tokens_fetch(Args& args) {
  const IssuerUrl issuer = parse_issuer_url(args.require("issuer"));
  const cloud::Bytes spki = pp::load_public_key_file(args.require("issuer-key"));
  const std::string auth_env = args.require("auth-env");
  const int64_t count = args.get_int("count").value_or(0);
  const std::string wallet_path = args.require("wallet");
  pp::TokenChallenge challenge;
  challenge.issuer_name = args.get_or("issuer-name", issuer.host);
  challenge.origin_info = args.get_or("origin-info", "");
  const std::string ca_file = args.get_or("ca-file", "");
  args.finish();
  if (count < 1 || count > static_cast<int64_t>(pp::TokenWallet::kMaxTokens))
    fail("orchard tokens fetch: --count must be from 1 to ", pp::TokenWallet::kMaxTokens);
  const char* secret = std::getenv(auth_env.c_str());
  if (!secret || !*secret) fail("orchard tokens fetch: the environment variable ", auth_env, " (the client secret) is not set");
  challenge.encode();  // checks the names' lengths before anything is sent
  const cloud::blind_rsa::PublicKey key = pp::parse_public_key(spki);

  httplib::Client http(issuer.origin);
  if (!http.is_valid()) fail("orchard tokens fetch: --issuer ", issuer.origin, " is not a valid http(s) URL");
  if (!ca_file.empty()) http.set_ca_cert_path(ca_file.c_str());
  http.enable_server_certificate_verification(true);
  http.set_connection_timeout(10);
  http.set_read_timeout(30);
  http.set_keep_alive(true);

  std::vector<pp::Token> tokens;
  std::string stopped;  // why fetching stopped early
  for (int64_t i = 0; i < count && stopped.empty(); ++i) {
    pp::ClientTokenRequest request = pp::make_token_request(key, challenge);
    httplib::Request post;
    post.method = "POST";
    post.path = issuer.prefix + "/token-request";
    post.set_header("Authorization", std::string("Bearer ") + secret);
    post.set_header("Accept", std::string(pp::kTokenResponseMediaType));
    post.set_header("Cache-Control", "no-cache, no-store");
    post.set_header("Content-Type", std::string(pp::kTokenRequestMediaType));
    post.body = std::string(cloud::as_text(request.request.encode()));
    // A response, good or not, is read up to 4 KiB: a type 2 response is 256 bytes.
    std::string body;
    bool too_long = false;
    post.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (body.size() + n > 4096) return !(too_long = true);
      body.append(data, n);
      return true;
    };
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    if (!http.send(post, response, error) && !too_long) {
      stopped = "no answer from " + issuer.origin + ": " + httplib::to_string(error);
    } else if (too_long) {
      stopped = "the issuer's answer is longer than 4096 bytes";
    } else if (response.status != 200) {
      const json problem = json::parse(body, nullptr, false);
      std::string why = problem.is_object() && problem.contains("error") && problem["error"].is_string()
                            ? problem["error"].get<std::string>()
                            : "(no error message)";
      if (why.size() > 300) why.resize(300);
      stopped = "the issuer answered " + std::to_string(response.status) + ": " + why;
    } else if (response.get_header_value("Content-Type") != pp::kTokenResponseMediaType) {
      stopped = "the issuer's answer is not application/private-token-response";
    } else {
      try {
        tokens.push_back(pp::finalize_token(key, request.pending, cloud::as_bytes(body)));
      } catch (const Error& e) {
        stopped = std::string("the issuer's answer is not a token under the key of --issuer-key: ") + e.what();
      }
    }
  }
  pp::TokenWallet wallet(wallet_path);
  if (!tokens.empty()) wallet.add(tokens);
  std::printf("added %zu tokens to %s (%zu in it)\n", tokens.size(), wallet_path.c_str(), wallet.count());
  std::fflush(stdout);
  if (!stopped.empty()) fail("orchard tokens fetch: ", tokens.size(), " of ", count, " tokens: ", stopped);
  return 0;
}

const RegisterCommand kKeygen("tokens keygen", "make a Privacy Pass issuer key (RSA 2048); prints its token key id",
                              tokens_keygen);
const RegisterCommand kIssue("tokens issue", "serve Privacy Pass token issuance to authenticated clients", tokens_issue);
const RegisterCommand kFetch("tokens fetch", "fetch anonymous tokens from an issuer into a wallet file", tokens_fetch);

}  // namespace
}  // namespace orchard::cli
