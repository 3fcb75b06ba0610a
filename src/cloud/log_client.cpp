#include "cloud/log_client.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "base/error.h"
#include "base/json_parse.h"
#include "cloud/crypto.h"
#include "cloud/signed_note.h"
#include "cloud/tlog.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;

std::string describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection: return "cannot connect to the log";
    case httplib::Error::SSLConnection: return "the TLS connection to the log failed";
    case httplib::Error::SSLServerVerification: return "the log's certificate does not verify";
    case httplib::Error::Read: return "the connection broke while reading the answer";
    case httplib::Error::Write: return "the connection broke while sending the request";
    default: return "HTTP error " + httplib::to_string(error);
  }
}

// At most 200 characters of what the server said, printable ASCII only (it goes into an error
// message, perhaps a terminal).
std::string quote_server(std::string_view body) {
  std::string text(body.substr(0, 200));
  const json problem = json::parse(body.substr(0, 4096), nullptr, false);
  if (problem.is_object() && problem.contains("title") && problem["title"].is_string())
    text = problem["title"].get<std::string>().substr(0, 200);
  for (char& c : text)
    if (c < 0x20 || c > 0x7e) c = '?';
  return text;
}

json parse_object(std::string_view body, const std::string& what) {
  const json j = parse_json(body, what);
  if (!j.is_object()) fail(what, ": the answer is not a JSON object");
  return j;
}

uint64_t get_u64(const json& j, const char* key, const std::string& what) {
  if (!j.contains(key) || !j[key].is_number_unsigned())
    fail(what, ": \"", key, "\" is missing or not an unsigned integer");
  return j[key].get<uint64_t>();
}

void expect_u64(const json& j, const char* key, uint64_t expected, const std::string& what) {
  const uint64_t got = get_u64(j, key, what);
  if (got != expected) fail(what, ": \"", key, "\" is ", got, ", not the ", expected, " asked for");
}

std::vector<Bytes> get_hashes(const json& j, const std::string& what) {
  if (!j.contains("hashes") || !j["hashes"].is_array()) fail(what, ": \"hashes\" is missing or not an array");
  const json& list = j["hashes"];
  if (list.size() > kMaxProofHashes) fail(what, ": ", list.size(), " hashes, more than any proof has (", kMaxProofHashes, ")");
  std::vector<Bytes> out;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_string()) fail(what, ": hashes[", i, "] is not a string");
    Bytes h;
    try {
      h = base64_decode(list[i].get<std::string>());
    } catch (const Error& e) {
      fail(what, ": hashes[", i, "]: ", e.what());
    }
    if (h.size() != kSha256Size) fail(what, ": hashes[", i, "] is ", h.size(), " bytes, not 32");
    out.push_back(std::move(h));
  }
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

}  // namespace

BaseUrl parse_base_url(const std::string& url) {
  auto bad = [&](const char* why) -> void { fail("log URL '", url.substr(0, 200), "': ", why); };
  std::string_view rest = url;
  std::string scheme;
  if (starts_with(rest, "https://")) scheme = "https";
  else if (starts_with(rest, "http://")) scheme = "http";
  else bad("not an http:// or https:// URL");
  rest.remove_prefix(scheme.size() + 3);
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  for (char c : url)
    if (c <= 0x20 || c >= 0x7f) bad("has a space, a control character or a non-ASCII byte");
  if (url.find_first_of("?#") != std::string::npos) bad("has a query or a fragment");
  if (authority.find('@') != std::string_view::npos) bad("has user information");
  std::string_view host = authority, port;
  if (starts_with(authority, "[")) {  // an IPv6 literal
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) bad("has an unclosed [ in its host");
    host = authority.substr(0, close + 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after[0] != ':') bad("has something after its IPv6 host");
    if (!after.empty()) port = after.substr(1);
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) bad("has an empty port");
  }
  if (host.empty() || host == "[]") bad("has no host");
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoul(std::string(port)) == 0 || std::stoul(std::string(port)) > 65535)
      bad("has a port that is not a number from 1 to 65535");
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  return BaseUrl{str_cat(scheme, "://", authority), std::string(path)};
}

struct LogClient::Response {
  int status = 0;
  std::string content_type;
  std::string body;
};

LogClient::LogClient(std::string base_url, std::string ca_file)
    : base_url_(std::move(base_url)), base_(parse_base_url(base_url_)), ca_file_(std::move(ca_file)) {}

LogClient::~LogClient() = default;

LogClient::Response LogClient::request(const std::string& method, const std::string& path, size_t limit, ByteView body,
                                       const std::string& token) {
  const std::string what = str_cat("log client: ", method, " ", base_url_, path);
  // One connection per call: calls are few (a checkpoint, a proof or two, an entry per check).
  httplib::Client http(base_.origin);
  if (!http.is_valid()) fail(what, ": not a valid http(s) address");
  if (!ca_file_.empty()) http.set_ca_cert_path(ca_file_.c_str());
  http.enable_server_certificate_verification(true);
  http.set_connection_timeout(10);
  http.set_read_timeout(30);
  http.set_write_timeout(30);
  httplib::Request req;
  req.method = method;
  req.path = base_.prefix + path;
  if (method == "POST") {
    req.set_header("Content-Type", "application/octet-stream");
    req.body.assign(reinterpret_cast<const char*>(body.data()), body.size());
  }
  if (!token.empty()) req.set_header("Authorization", "Bearer " + token);
  Response out;
  bool too_long = false;
  req.response_handler = [&](const httplib::Response& r) {
    out.status = r.status;
    out.content_type = r.get_header_value("Content-Type");
    const std::string length = r.get_header_value("Content-Length");
    const bool digits = std::all_of(length.begin(), length.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!length.empty() && (!digits || length.size() > 19 || std::stoull(length) > limit)) {
      too_long = true;
      return false;
    }
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (out.body.size() + n > limit) {
      too_long = true;
      return false;
    }
    out.body.append(data, n);
    return true;
  };
  const httplib::Result res = http.send(req);
  if (too_long) fail(what, ": the answer is longer than ", limit, " bytes");
  if (!res) fail(what, ": ", describe(res.error()));
  return out;
}

std::string LogClient::checkpoint() {
  const std::string what = str_cat("log client: GET ", base_url_, "/checkpoint");
  Response r = request("GET", "/checkpoint", kMaxLogResponse);
  if (r.status != 200) fail(what, ": the log answered ", r.status, ": ", quote_server(r.body));
  try {
    parse_note(r.body);
  } catch (const Error& e) {
    fail(what, ": not a signed note: ", e.what());
  }
  return std::move(r.body);
}

std::vector<Bytes> LogClient::inclusion_proof(uint64_t index, uint64_t size) {
  const std::string path = str_cat("/proof/inclusion?index=", index, "&size=", size);
  const std::string what = str_cat("log client: GET ", base_url_, path);
  const Response r = request("GET", path, kMaxLogResponse);
  if (r.status != 200) fail(what, ": the log answered ", r.status, ": ", quote_server(r.body));
  const json j = parse_object(r.body, what);
  expect_u64(j, "index", index, what);
  expect_u64(j, "size", size, what);
  return get_hashes(j, what);
}

std::vector<Bytes> LogClient::consistency_proof(uint64_t first, uint64_t second) {
  const std::string path = str_cat("/proof/consistency?first=", first, "&second=", second);
  const std::string what = str_cat("log client: GET ", base_url_, path);
  const Response r = request("GET", path, kMaxLogResponse);
  if (r.status != 200) fail(what, ": the log answered ", r.status, ": ", quote_server(r.body));
  const json j = parse_object(r.body, what);
  expect_u64(j, "first", first, what);
  expect_u64(j, "second", second, what);
  return get_hashes(j, what);
}

Bytes LogClient::entry(uint64_t index) {
  const std::string path = str_cat("/entries/", index);
  const std::string what = str_cat("log client: GET ", base_url_, path);
  const Response r = request("GET", path, kMaxLogEntrySize);
  if (r.status != 200) fail(what, ": the log answered ", r.status, ": ", quote_server(r.body));
  if (!starts_with(r.content_type, "application/octet-stream"))
    fail(what, ": the answer is ", quote_server(r.content_type), ", not application/octet-stream");
  return Bytes(r.body.begin(), r.body.end());
}

std::optional<uint64_t> LogClient::find(ByteView leaf_hash) {
  if (leaf_hash.size() != kSha256Size) fail("log client: a leaf hash is 32 bytes, not ", leaf_hash.size());
  const std::string path = "/lookup?leaf_hash=" + to_hex(leaf_hash);
  const std::string what = str_cat("log client: GET ", base_url_, path);
  const Response r = request("GET", path, kMaxLogResponse);
  if (r.status == 404) return std::nullopt;
  if (r.status != 200) fail(what, ": the log answered ", r.status, ": ", quote_server(r.body));
  return get_u64(parse_object(r.body, what), "index", what);
}

LogClient::Added LogClient::add_entry(ByteView entry, const std::string& bearer_token) {
  const std::string what = str_cat("log client: POST ", base_url_, "/add");
  if (entry.size() > kMaxLogEntrySize) fail(what, ": the entry is ", entry.size(), " bytes, over the limit of ", kMaxLogEntrySize);
  if (bearer_token.empty() || !std::all_of(bearer_token.begin(), bearer_token.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
    fail(what, ": the token must be printable ASCII without spaces");
  const Response r = request("POST", "/add", kMaxLogResponse, entry, bearer_token);
  if (r.status == 401) fail(what, ": the log refused the token (401)");
  if (r.status != 200) fail(what, ": the log answered ", r.status, ": ", quote_server(r.body));
  const json j = parse_object(r.body, what);
  Added added{get_u64(j, "index", what), get_u64(j, "size", what)};
  if (added.index >= added.size) fail(what, ": index ", added.index, " is not below the size ", added.size);
  return added;
}

}  // namespace orchard::cloud
