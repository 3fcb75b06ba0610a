// orchard cloud ask  --relay URL (--prompt TEXT | --request-file JSON) [--stream] [--max-tokens N] [--ca-file PEM]
//                    [--plain-ohttp] [--source-address IP] [--tokens WALLET]
//                    [--log-key VKEY --release-key VKEY[,VKEY] [--witness-key VKEY[,VKEY]] [--log URL]
//                     [--state FILE] [--attester-identity ID[,ID]]]
// orchard cloud load --relay URL [--clients 16] [--seconds 60] [--max-tokens 64] [--ca-file PEM] [--plaintext]
//
// The private cloud node's client (src/cloud/client.h): `ask` sends one chat request through the
// relay, encrypted to a node, and prints the answer (as it streams with --stream). `load` is the
// benchmark of docs/cloud.md: concurrent streaming clients for a while, then one JSON line with
// the requests, failures, tokens/s and time to first token; --plaintext sends the same requests
// unencrypted to RELAY/v1/chat/completions (plain `orchard serve` nodes behind the same nginx).
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "base/error.h"
#include "base/mapped_file.h"
#include "cloud/client.h"
#include "cloud/key_file.h"
#include "cloud/log_client.h"
#include "cloud/privacy_pass.h"
#include "command.h"

namespace orchard::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> items;
  for (size_t start = 0; start <= list.size();) {
    const size_t comma = std::min(list.find(',', start), list.size());
    if (comma > start) items.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

cloud::CloudClientOptions client_options(Args& args) {
  cloud::CloudClientOptions o;
  o.relay = args.require("relay");
  o.ca_file = args.get_or("ca-file", "");
  o.source_address = args.get_or("source-address", "");
  // Attested mode (docs/cloud.md, "Trust chain"): the keys this client trusts, the log (by
  // default through the relay, at RELAY/log) and the state file with the last checkpoint seen.
  const std::optional<std::string> log_key = args.get("log-key");
  const std::optional<std::string> release_keys = args.get("release-key");
  const std::optional<std::string> witnesses = args.get("witness-key");
  const std::optional<std::string> identities = args.get("attester-identity");
  if (const std::optional<std::string> wallet = args.get("tokens")) {
    // One anonymous token per attempt, taken from the wallet (`orchard tokens fetch`).
    auto tokens = std::make_shared<cloud::privacy_pass::TokenWallet>(*wallet);
    o.token = [tokens] {
      const std::optional<cloud::privacy_pass::Token> token = tokens->take();
      if (!token) throw cloud::CloudError("cloud: no token left in " + tokens->path() + " (orchard tokens fetch)");
      return cloud::privacy_pass::authorization_header(*token);
    };
  }
  const std::string log_url = args.get_or("log", o.relay + "/log");
  const std::string state = args.get_or("state", "");
  if (!log_key) {
    if (release_keys || witnesses || identities || !state.empty())
      fail("cloud: --release-key, --witness-key, --attester-identity and --state go with --log-key (attested mode)");
    return o;
  }
  if (!release_keys) fail("cloud: attested mode needs the trusted release key(s) (--release-key)");
  cloud::TrustPolicy policy;
  policy.log_key = cloud::load_verifier(*log_key);
  for (const std::string& k : split_list(*release_keys)) policy.release_keys.push_back(cloud::load_verifier(k));
  for (const std::string& k : split_list(witnesses.value_or(""))) policy.witnesses.push_back(cloud::load_verifier(k));
  policy.attester_identities = split_list(identities.value_or(""));
  policy.state_file = state;
  auto log = std::make_shared<cloud::LogClient>(log_url, o.ca_file);
  o.verifier = std::make_shared<cloud::NodeVerifier>(
      policy, [log](uint64_t first, uint64_t second) { return log->consistency_proof(first, second); });
  return o;
}

void print_refusals(cloud::CloudClient& client) {
  for (const auto& [node, reason] : client.refused_nodes())
    std::fprintf(stderr, "orchard: refused node %s: %s\n", node.c_str(), reason.c_str());
}

std::string chat_body(const std::string& prompt, bool stream, int64_t max_tokens) {
  json body = {{"messages", json::array({{{"role", "user"}, {"content", prompt}}})}, {"max_tokens", max_tokens}};
  if (stream) body["stream"] = true, body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

// Reads an event stream as it arrives: each complete `data:` line's JSON goes to `on_event`.
class EventStream {
 public:
  explicit EventStream(std::function<void(const json&)> on_event) : on_event_(std::move(on_event)) {}
  void feed(std::string_view bytes) {
    buffer_.append(bytes);
    size_t end;
    while ((end = buffer_.find('\n')) != std::string::npos) {
      const std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      if (line.rfind("data: ", 0) != 0 || line == "data: [DONE]") continue;
      on_event_(json::parse(line.substr(6), nullptr, false));
    }
  }

 private:
  std::function<void(const json&)> on_event_;
  std::string buffer_;
};

std::string delta_text(const json& event) {
  if (!event.is_object() || !event.contains("choices") || event["choices"].empty()) return "";
  const json& delta = event["choices"][0].value("delta", json::object());
  return delta.contains("content") && delta["content"].is_string() ? delta["content"].get<std::string>() : "";
}

int run_ask(Args& args) {
  cloud::CloudClientOptions options = client_options(args);
  const std::optional<std::string> request_file = args.get("request-file");
  const std::string prompt = request_file ? "" : args.require("prompt");
  bool stream = args.flag("stream");
  if (args.flag("plain-ohttp")) options.mode = cloud::OhttpMode::plain;
  const int64_t max_tokens = args.get_int("max-tokens").value_or(256);
  args.finish();
  std::string request = chat_body(prompt, stream, max_tokens);
  if (request_file) {  // a whole chat request of the caller's (tools, tool results, ...)
    request = read_text_file(*request_file);
    const json parsed = json::parse(request, nullptr, false);
    if (!parsed.is_object()) fail("cloud ask: ", *request_file, " is not a JSON object");
    stream = parsed.value("stream", false);
  }
  cloud::CloudClient client(options);
  if (options.verifier) {  // verify first, and say which nodes were refused and why
    client.refresh_nodes();
    print_refusals(client);
  }
  std::string body;
  EventStream events([](const json& e) {
    const std::string text = delta_text(e);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  });
  int status = 0;
  const cloud::CloudAnswer answer = client.send(
      "/v1/chat/completions", request,
      [&](int s, const std::vector<cloud::HttpField>&) { status = s; },
      [&](std::string_view content) {
        if (stream && status == 200) events.feed(content);
        else body.append(content);
        return true;
      });
  if (answer.status != 200) {
    const json error = json::parse(body, nullptr, false);
    const std::string message = error.is_object() && error.contains("error") ? error["error"].value("message", body)
                                                                                : error.value("title", body);
    fail("cloud ask: node ", answer.node, " answered ", answer.status, ": ", message);
  }
  if (!stream) {
    const json reply = json::parse(body, nullptr, false);
    if (!reply.is_object() || !reply.contains("choices")) fail("cloud ask: the answer is not a chat completion");
    std::printf("%s", reply["choices"][0]["message"].value("content", "").c_str());
  }
  std::printf("\n");
  std::fprintf(stderr, "orchard: answered by node %s (attempt %d)\n", answer.node.c_str(), answer.attempts);
  return 0;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int run_load(Args& args) {
  const cloud::CloudClientOptions options = client_options(args);
  const int clients = static_cast<int>(args.get_int("clients").value_or(16));
  const int64_t seconds = args.get_int("seconds").value_or(60);
  const int64_t max_tokens = args.get_int("max-tokens").value_or(64);
  const bool plaintext = args.flag("plaintext");
  const std::string prompt = args.get_or("prompt", "Tell me a story about a cat who lives in an orchard.");
  args.finish();
  if (clients < 1 || clients > 1024) fail("cloud load: --clients must be between 1 and 1024");

  std::mutex mutex;
  std::vector<double> ttft_ms;
  std::map<std::string, int64_t> failures;
  std::atomic<int64_t> requests{0}, tokens{0};
  const std::string body = chat_body(prompt, true, max_tokens);
  const Clock::time_point start = Clock::now(), end = start + std::chrono::seconds(seconds);
  // One client for all, as an app or the router would hold it: it spreads requests over the
  // nodes by its own requests in flight.
  std::unique_ptr<cloud::CloudClient> client;
  if (!plaintext) client = std::make_unique<cloud::CloudClient>(options);
  auto client_loop = [&] {
    std::unique_ptr<httplib::Client> plain;
    while (Clock::now() < end) {
      const Clock::time_point sent = Clock::now();
      double first = -1;
      int64_t used = 0;
      EventStream events([&](const json& e) {
        if (first < 0 && !delta_text(e).empty())
          first = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
        if (e.is_object() && e.contains("usage") && e["usage"].is_object()) used = e["usage"].value("completion_tokens", 0);
      });
      std::string error;
      try {
        if (plaintext) {
          if (!plain) {
            plain = std::make_unique<httplib::Client>(options.relay);
            if (!options.ca_file.empty()) plain->set_ca_cert_path(options.ca_file.c_str());
            plain->enable_server_certificate_verification(true);
            plain->set_read_timeout(std::chrono::seconds(600));
          }
          int status = 0;
          httplib::Request req;
          req.method = "POST";
          req.path = "/v1/chat/completions";
          req.headers = {{"Content-Type", "application/json"}};
          req.body = body;
          req.response_handler = [&](const httplib::Response& r) { return (status = r.status) == 200; };
          req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
            events.feed({d, n});
            return true;
          };
          const httplib::Result res = plain->send(req);
          if (!res) error = httplib::to_string(res.error()), plain.reset();
          else if (status != 200) error = "status " + std::to_string(status);
        } else {
          const cloud::CloudAnswer a =
              client->send("/v1/chat/completions", body, nullptr, [&](std::string_view c) { return events.feed(c), true; });
          if (a.status != 200) error = "inner status " + std::to_string(a.status);
        }
      } catch (const Error& e) {
        error = e.what();
      }
      std::lock_guard<std::mutex> lock(mutex);
      if (!error.empty() || used == 0) {
        ++failures[error.empty() ? "no usage in the answer" : error];
        continue;
      }
      ++requests;
      tokens += used;
      ttft_ms.push_back(first);
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) threads.emplace_back(client_loop);
  for (std::thread& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  int64_t failed = 0;
  json errors = json::object();
  for (const auto& [what, n] : failures) failed += n, errors[what] = n;
  const json result = {{"mode", plaintext ? "plaintext" : "ohttp"},
                       {"clients", clients},
                       {"seconds", elapsed},
                       {"requests", requests.load()},
                       {"failures", failed},
                       {"errors", errors},
                       {"completion_tokens", tokens.load()},
                       {"tokens_per_s", static_cast<double>(tokens.load()) / elapsed},
                       {"ttft_median_ms", percentile(ttft_ms, 0.5)},
                       {"ttft_p95_ms", percentile(ttft_ms, 0.95)}};
  std::printf("%s\n", result.dump().c_str());
  return failed == 0 ? 0 : 1;
}

const RegisterCommand kAsk("cloud ask", "ask the private cloud node through its relay (end-to-end encrypted)", run_ask,
                           {"stream", "plain-ohttp"});
const RegisterCommand kLoad("cloud load", "load benchmark through the relay: encrypted (or --plaintext) streams",
                            run_load, {"plaintext"});

}  // namespace
}  // namespace orchard::cli
