#include "cloud/log_server.h"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include <atomic>
#include <cstdio>
#include <optional>
#include <thread>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/log_client.h"
#include "cloud/witness.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxWitnessReply = 1 << 16;

void problem(httplib::Response& res, int status, const std::string& title, const std::string& parameter = "") {
  json body = {{"title", title}, {"status", status}};
  if (!parameter.empty()) body["parameter"] = parameter;
  res.status = status;
  res.set_content(body.dump(), "application/problem+json");
}

// A query parameter that must be a tree size or index; nullopt after answering 400.
std::optional<uint64_t> number_parameter(const httplib::Request& req, httplib::Response& res, const std::string& name) {
  if (!req.has_param(name)) {
    problem(res, 400, "the parameter " + name + " is missing", name);
    return std::nullopt;
  }
  if (req.get_param_value_count(name) != 1) {
    problem(res, 400, "the parameter " + name + " is given more than once", name);
    return std::nullopt;
  }
  const std::optional<uint64_t> value = parse_tree_size(req.get_param_value(name));
  if (!value) problem(res, 400, "the parameter " + name + " must be a decimal integer (no sign, no leading zero, 64 bits)", name);
  return value;
}

json hashes_json(const std::vector<Bytes>& hashes) {
  json out = json::array();
  for (const Bytes& h : hashes) out.push_back(base64_encode(h));
  return out;
}

// Runs a handler, turning an error of the log's (a damaged file, a failed write) into a 500.
template <typename Handler>
httplib::Server::Handler guarded(Handler handler) {
  return [handler](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const std::exception& e) {
      problem(res, 500, std::string("the log failed: ") + e.what());
    }
  };
}

struct Posted {
  int status = 0;
  std::string body;
  std::string error;  // set when no answer came
};

Posted post(const BaseUrl& base, const std::string& path, const std::string& body, const std::string& ca_file,
            std::chrono::seconds timeout) {
  httplib::Client http(base.origin);
  Posted out;
  if (!http.is_valid()) {
    out.error = "not a valid http(s) address";
    return out;
  }
  if (!ca_file.empty()) http.set_ca_cert_path(ca_file.c_str());
  http.enable_server_certificate_verification(true);
  http.set_connection_timeout(timeout);
  http.set_read_timeout(timeout);
  http.set_write_timeout(timeout);
  httplib::Request req;
  req.method = "POST";
  req.path = base.prefix + path;
  req.set_header("Content-Type", "text/plain; charset=utf-8");
  req.body = body;
  bool too_long = false;
  req.response_handler = [&](const httplib::Response& r) {
    out.status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (out.body.size() + n > kMaxWitnessReply) return !(too_long = true);
    out.body.append(data, n);
    return true;
  };
  const httplib::Result res = http.send(req);
  if (too_long) out.error = "the answer is longer than 64 KiB";
  else if (!res) out.error = "no answer (" + httplib::to_string(res.error()) + ")";
  return out;
}

std::string printable(std::string_view text) {
  std::string out(text.substr(0, 200));
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = ' ';
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

struct LogServer::WitnessState {
  WitnessEndpoint endpoint;
  BaseUrl base;
  uint64_t old_size = 0;                     // the size it last cosigned, as far as we know
  std::optional<NoteSignature> cosignature;  // on the checkpoint of signed_size_
  std::string error;
  bool tried = false;
  Clock::time_point last_try{};
};

LogServer::LogServer(TransparencyLog& log, const NoteSigner& key, LogServerOptions options)
    : log_(log), key_(key), options_(std::move(options)) {
  for (const WitnessEndpoint& w : options_.witnesses) {
    auto state = std::make_unique<WitnessState>();
    state->endpoint = w;
    state->base = parse_base_url(w.url);
    witnesses_.push_back(std::move(state));
  }
  update();
}

LogServer::~LogServer() = default;

void LogServer::ask(WitnessState& w, const std::string& note, const Checkpoint& cp) {
  w.tried = true;
  w.last_try = Clock::now();
  const std::string who = "witness " + w.endpoint.url;
  uint64_t old = w.old_size;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<Bytes> proof;
    if (old > 0 && old < cp.size) proof = log_.consistency_proof(old, cp.size);
    const Posted r = post(w.base, "/add-checkpoint", format_add_checkpoint(old, proof, note), options_.ca_file,
                          options_.witness_timeout);
    if (!r.error.empty()) {
      w.error = who + ": " + r.error;
      return;
    }
    if (r.status == 409 && attempt == 0) {  // it knows another size: prove from that one, once
      std::string_view size_line = r.body;
      if (!size_line.empty() && size_line.back() == '\n') size_line.remove_suffix(1);
      const std::optional<uint64_t> known = parse_tree_size(size_line);
      if (!known) {
        w.error = who + ": answered 409 without a tree size";
        return;
      }
      if (*known > cp.size) {
        w.error = str_cat(who, ": it cosigned size ", *known, ", larger than this log's ", cp.size);
        return;
      }
      old = *known;
      continue;
    }
    if (r.status != 200) {
      w.error = str_cat(who, ": answered ", r.status, ": ", printable(r.body));
      return;
    }
    try {
      const NoteVerifier verifiers[] = {w.endpoint.key};
      const VerifiedNote v = verify_note(text_ + "\n" + r.body, verifiers);
      w.cosignature = v.verified.at(0);
      w.old_size = cp.size;
      w.error.clear();
    } catch (const std::exception& e) {
      w.error = who + ": its cosignature does not verify: " + e.what();
    }
    return;
  }
  w.error = who + ": answered 409 twice";
}

std::string LogServer::update() {
  log_.refresh();
  std::lock_guard<std::mutex> lock(mutex_);
  const Checkpoint cp = log_.checkpoint();
  if (!signed_ || cp.size != signed_size_) {
    text_ = format_checkpoint(cp);
    signature_ = parse_note(sign_note(text_, key_)).signatures.at(0);
    signed_size_ = cp.size;
    signed_ = true;
    for (auto& w : witnesses_) {
      w->cosignature.reset();
      w->tried = false;
    }
  }
  const std::string log_note = format_note(Note{text_, {signature_}});
  Note note{text_, {signature_}};
  for (auto& w : witnesses_) {
    if (!w->cosignature && (!w->tried || Clock::now() - w->last_try >= options_.witness_retry)) {
      ask(*w, log_note, cp);
      if (!w->error.empty()) std::fprintf(stderr, "orchard log: %s\n", w->error.c_str());
    }
    if (w->cosignature) note.signatures.push_back(*w->cosignature);
  }
  return format_note(note);
}

std::vector<std::string> LogServer::witness_errors() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const auto& w : witnesses_)
    if (!w->cosignature) out.push_back(w->error.empty() ? "witness " + w->endpoint.url + ": not asked yet" : w->error);
  return out;
}

void LogServer::install(httplib::Server& http) {
  http.set_payload_max_length(kMaxLogEntrySize);
  http.Get("/checkpoint", guarded([this](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(update(), "text/plain; charset=utf-8");
  }));
  http.Get("/proof/inclusion", guarded([this](const httplib::Request& req, httplib::Response& res) {
    const std::optional<uint64_t> index = number_parameter(req, res, "index");
    if (!index) return;
    const std::optional<uint64_t> size = number_parameter(req, res, "size");
    if (!size) return;
    const uint64_t tree = log_.refresh();
    if (*size > tree) return problem(res, 400, str_cat("size ", *size, " is beyond the tree (", tree, " entries)"), "size");
    if (*index >= *size) return problem(res, 400, str_cat("index ", *index, " is not below size ", *size), "index");
    const json body = {{"index", *index}, {"size", *size}, {"hashes", hashes_json(log_.inclusion_proof(*index, *size))}};
    res.set_content(body.dump(), "application/json");
  }));
  http.Get("/proof/consistency", guarded([this](const httplib::Request& req, httplib::Response& res) {
    const std::optional<uint64_t> first = number_parameter(req, res, "first");
    if (!first) return;
    const std::optional<uint64_t> second = number_parameter(req, res, "second");
    if (!second) return;
    const uint64_t tree = log_.refresh();
    if (*second > tree)
      return problem(res, 400, str_cat("second ", *second, " is beyond the tree (", tree, " entries)"), "second");
    if (*first == 0 || *first > *second)
      return problem(res, 400, str_cat("first must be from 1 to second (", *second, ")"), "first");
    const json body = {{"first", *first}, {"second", *second}, {"hashes", hashes_json(log_.consistency_proof(*first, *second))}};
    res.set_content(body.dump(), "application/json");
  }));
  http.Get(R"(/entries/([^/]*))", guarded([this](const httplib::Request& req, httplib::Response& res) {
    const std::optional<uint64_t> index = parse_tree_size(req.matches[1].str());
    if (!index) return problem(res, 400, "the entry index must be a decimal integer (no sign, no leading zero, 64 bits)", "index");
    const uint64_t tree = log_.refresh();
    if (*index >= tree) return problem(res, 404, str_cat("no entry ", *index, " (the log has ", tree, ")"), "index");
    const Bytes entry = log_.entry(*index);
    res.set_content(std::string(entry.begin(), entry.end()), "application/octet-stream");
  }));
  http.Get("/lookup", guarded([this](const httplib::Request& req, httplib::Response& res) {
    const std::string hex = req.get_param_value("leaf_hash");
    Bytes hash;
    try {
      if (req.get_param_value_count("leaf_hash") != 1 || hex.size() != 2 * kSha256Size) fail("");
      hash = from_hex(hex);
    } catch (const Error&) {
      return problem(res, 400, "the parameter leaf_hash must be 64 hex digits, given once", "leaf_hash");
    }
    log_.refresh();
    const std::optional<uint64_t> index = log_.find(hash);
    if (!index) return problem(res, 404, "no entry has this leaf hash", "leaf_hash");
    res.set_content(json{{"index", *index}}.dump(), "application/json");
  }));
  http.Post("/add", guarded([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.append_token.empty()) return problem(res, 403, "this log takes no appends over HTTP");
    const std::string authorization = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    const std::string given = authorization.substr(0, kBearer.size()) == kBearer ? authorization.substr(kBearer.size()) : "";
    // Equal-length digests compared in constant time: neither the token's bytes nor its length
    // show in the timing.
    const Bytes a = sha256(as_bytes(given)), b = sha256(as_bytes(options_.append_token));
    if (given.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) != 0) {
      res.set_header("WWW-Authenticate", "Bearer");
      return problem(res, 401, "POST /add needs Authorization: Bearer with the log's append token");
    }
    if (req.body.size() > kMaxLogEntrySize)
      return problem(res, 413, str_cat("the entry is over the limit of ", kMaxLogEntrySize, " bytes"));
    const uint64_t index = log_.append(as_bytes(req.body));
    const uint64_t size = log_.size();
    update();
    res.set_content(json{{"index", index}, {"size", size}}.dump(), "application/json");
  }));
  // Statuses httplib sets itself (an unknown route, a body over the limit), as problem documents.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string title = res.status == 404   ? "no such endpoint"
                              : res.status == 413 ? str_cat("the entry is over the limit of ", kMaxLogEntrySize, " bytes")
                                                  : "the request could not be processed";
    problem(res, res.status, title);
  });
}

void run_http_server(httplib::Server& http, const std::string& host, int port, const std::function<void(int)>& on_ready,
                     const std::function<bool()>& should_stop, const std::function<void()>& tick) {
  const int bound = port == 0 ? http.bind_to_any_port(host) : (http.bind_to_port(host, port) ? port : -1);
  if (bound < 0) fail("cannot listen on ", host, ":", port);
  std::atomic<bool> done{false};
  std::thread listener([&] {
    http.listen_after_bind();
    done = true;
  });
  while (!http.is_running() && !done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (done) {
    listener.join();
    fail("the server on ", host, ":", bound, " stopped at once");
  }
  on_ready(bound);
  auto last_tick = Clock::now();
  while (!should_stop() && !done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (tick && Clock::now() - last_tick >= std::chrono::seconds(1)) {
      last_tick = Clock::now();
      try {
        tick();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "orchard: %s\n", e.what());
      }
    }
  }
  http.stop();
  listener.join();
}

}  // namespace orchard::cloud
