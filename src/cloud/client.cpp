#include "cloud/client.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>

#include "base/json_parse.h"
#include "cloud/replay_window.h"
#include "cloud/response_binding.h"

namespace orchard::cloud {

// Connections to the relay, kept alive between requests: an httplib::Client serves one request
// at a time, so each request takes an idle one (or opens one) and gives it back.
struct CloudClient::Relay {
  explicit Relay(const CloudClientOptions& o) : options(o) {
    if (o.relay.rfind("https://", 0) != 0 && o.relay.rfind("http://", 0) != 0)
      throw CloudError("cloud: the relay address '" + o.relay + "' is not an https:// (or http://) URL");
    give_back(open());
  }

  std::unique_ptr<httplib::Client> open() const {
    auto http = std::make_unique<httplib::Client>(options.relay);
    if (!http->is_valid()) throw CloudError("cloud: the relay address '" + options.relay + "' is not a valid http(s) URL");
    if (!options.ca_file.empty()) http->set_ca_cert_path(options.ca_file.c_str());
    if (!options.source_address.empty()) http->set_interface(options.source_address);
    http->enable_server_certificate_verification(true);
    http->set_connection_timeout(10);
    http->set_read_timeout(options.timeout);
    http->set_write_timeout(std::chrono::seconds(30));
    http->set_keep_alive(true);
    return http;
  }
  std::unique_ptr<httplib::Client> take() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!idle.empty()) {
        auto http = std::move(idle.back());
        idle.pop_back();
        return http;
      }
    }
    return open();
  }
  void give_back(std::unique_ptr<httplib::Client> http) {
    std::lock_guard<std::mutex> lock(mutex);
    if (idle.size() < 64) idle.push_back(std::move(http));
  }
  // One request on a pooled connection. A connection goes back to the pool only after a 200:
  // after an error status the relay may close it (nginx does when it answered 502 before reading
  // the body), and the next request on it would fail. A request that got no answer at all on a
  // kept-alive connection (closed by the relay while idle) is sent once more on a new one.
  httplib::Result send(const httplib::Request& req) {
    std::unique_ptr<httplib::Client> http = take();
    for (int tries = 0;; ++tries) {
      int status = 0;
      httplib::Request attempt = req;
      attempt.response_handler = [&](const httplib::Response& r) {
        status = r.status;
        return req.response_handler ? req.response_handler(r) : true;
      };
      httplib::Result res = http->send(attempt);
      if (res && status == 200) give_back(std::move(http));
      if (res || status != 0 || tries > 0 || res.error() == httplib::Error::Canceled) return res;
      http = open();
    }
  }

  const CloudClientOptions& options;
  std::mutex mutex;
  std::vector<std::unique_ptr<httplib::Client>> idle;
};

namespace {

std::string describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection: return "cannot connect to the relay";
    case httplib::Error::SSLConnection: return "the TLS connection to the relay failed";
    case httplib::Error::SSLServerVerification: return "the relay's certificate does not verify";
    case httplib::Error::Read: return "the connection broke while reading the answer";
    case httplib::Error::Write: return "the connection broke while sending the request";
    case httplib::Error::Canceled: return "cancelled";
    default: return "HTTP error " + httplib::to_string(error);
  }
}

}  // namespace

std::vector<CloudNode> parse_node_list(std::string_view text) {
  const nlohmann::json list = parse_json(text, "the relay's node list");
  if (!list.is_object() || !list.contains("nodes") || !list["nodes"].is_array())
    throw CloudError("cloud: the relay's node list has no \"nodes\" array");
  std::vector<CloudNode> nodes;
  for (const nlohmann::json& n : list["nodes"]) {
    if (!n.is_object() || !n.contains("name") || !n["name"].is_string() || !n.contains("keys") || !n["keys"].is_string()) continue;
    try {
      CloudNode node{n["name"].get<std::string>(), parse_key_configs(from_hex(n["keys"].get<std::string>())), {}, {}};
      if (node.keys.empty() || node.name.find_first_of("/?#%") != std::string::npos) continue;
      if (n.contains("attestation") && n["attestation"].is_object()) {
        try {
          node.bundle = parse_bundle(n["attestation"].dump());
        } catch (const Error&) {  // refused by the verifier as "no bundle"
        }
      }
      nodes.push_back(std::move(node));
    } catch (const Error&) {  // a node that did not answer when the list was gathered
    }
  }
  return nodes;
}

CloudClient::CloudClient(CloudClientOptions options)
    : options_(std::move(options)), relay_(std::make_unique<Relay>(options_)), random_(std::random_device{}()) {}

CloudClient::~CloudClient() = default;

std::vector<CloudNode> CloudClient::refresh_nodes() {
  // A list of a few hundred attested nodes is about a megabyte; more is a relay misbehaving.
  constexpr size_t kMaxNodeList = 16 << 20;
  httplib::Request get;
  get.method = "GET";
  get.path = "/nodes";
  std::string body;
  bool too_large = false;
  get.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (body.size() + n > kMaxNodeList) return !(too_large = true);
    body.append(data, n);
    return true;
  };
  httplib::Result res = relay_->send(get);
  if (too_large) throw CloudError("cloud: the relay's node list is larger than 16 MiB");
  if (!res) throw CloudError("cloud: fetching the node list: " + describe(res.error()));
  if (res->status != 200) throw CloudError("cloud: the relay answered " + std::to_string(res->status) + " for the node list");
  std::vector<CloudNode> listed = parse_node_list(body);
  std::vector<CloudNode> nodes;
  std::vector<std::pair<std::string, std::string>> refused;
  for (CloudNode& node : listed) {
    if (!options_.verifier) {
      nodes.push_back(std::move(node));
      continue;
    }
    try {
      if (!node.bundle) throw AttestationError("no attestation bundle in the relay's list");
      VerifiedNode verified = options_.verifier->verify(*node.bundle);
      node.keys = std::move(verified.keys);  // the keys the attested key signed, not the list's
      node.signing_key = std::move(verified.signing_key);
      nodes.push_back(std::move(node));
    } catch (const Error& e) {  // AttestationError, or a failure to write the state file
      refused.emplace_back(node.name, e.what());
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  nodes_ = nodes;
  refused_ = refused;
  if (options_.verifier && nodes.empty()) {
    std::string why;
    for (const auto& [name, reason] : refused) why += (why.empty() ? "" : "; ") + name + ": " + reason;
    throw CloudError("cloud: no node passed verification (" + (why.empty() ? "the relay listed none" : why) + ")");
  }
  return nodes;
}

std::vector<std::pair<std::string, std::string>> CloudClient::refused_nodes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return refused_;
}

const CloudNode* CloudClient::pick_node(const std::vector<std::string>& tried) {
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(failed_, [&](const auto& f) { return now - f.second > options_.node_pause; });
  auto usable = [&](const CloudNode& n, bool skip_failed) {
    if (std::find(tried.begin(), tried.end(), n.name) != tried.end()) return false;
    return !skip_failed || std::none_of(failed_.begin(), failed_.end(), [&](const auto& f) { return f.first == n.name; });
  };
  auto load = [&](const CloudNode& n) {
    for (const auto& [name, count] : in_flight_)
      if (name == n.name) return count;
    return 0;
  };
  // Random among the nodes that have not failed lately and carry the fewest of this client's
  // requests; failing that, among any not yet tried.
  for (bool skip_failed : {true, false}) {
    std::vector<const CloudNode*> candidates;
    int least = std::numeric_limits<int>::max();
    for (const CloudNode& n : nodes_) {
      if (!usable(n, skip_failed)) continue;
      const int l = load(n);
      if (l < least) candidates.clear(), least = l;
      if (l == least) candidates.push_back(&n);
    }
    if (!candidates.empty()) return candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(random_)];
  }
  return nullptr;
}

CloudAnswer CloudClient::send(const std::string& path, const std::string& body,
                              const std::function<void(int, const std::vector<HttpField>&)>& on_head,
                              const std::function<bool(std::string_view)>& on_content) {
  bool have_nodes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    have_nodes = !nodes_.empty();
  }
  if (!have_nodes) refresh_nodes();

  std::vector<std::string> tried;
  std::string last_failure = "no node in the relay's list";
  bool refetched = false;
  for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
    CloudNode node;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const CloudNode* picked = pick_node(tried);
      if (!picked) break;
      node = *picked;
      auto it = std::find_if(in_flight_.begin(), in_flight_.end(), [&](const auto& f) { return f.first == node.name; });
      if (it == in_flight_.end()) in_flight_.emplace_back(node.name, 1);
      else ++it->second;
    }
    tried.push_back(node.name);
    // Counted in flight until this attempt ends, however it ends.
    struct InFlight {
      CloudClient& client;
      std::string name;
      ~InFlight() {
        std::lock_guard<std::mutex> lock(client.mutex_);
        for (auto& [n, count] : client.in_flight_)
          if (n == name) --count;
      }
    } in_flight{*this, node.name};

    BinaryRequest inner{.method = body.empty() ? "GET" : "POST", .scheme = "https", .authority = "", .path = path,
                        .headers = {{"date", format_http_date(std::chrono::system_clock::now())}}, .content = body,
                        .trailers = {}};
    if (!body.empty()) inner.headers.push_back({"content-type", "application/json"});
    if (node.signing_key) inner.headers.push_back({std::string(kBindingField), std::string(kBindingEd25519)});
    Bytes message = encode_request(inner);
    pad_to_multiple(message, options_.request_padding);
    // The node's newest key, and the first of its suites this client implements.
    const KeyConfig& key = node.keys.front();
    const auto suite = std::find_if(key.suites.begin(), key.suites.end(), [](const SymmetricSuite& s) {
      return s.kdf == kKdfHkdfSha256 && aead_supported(s.aead);
    });
    if (suite == key.suites.end()) {
      last_failure = "node " + node.name + " offers no suite this client implements";
      continue;
    }
    ClientRequest request = ClientRequest::encapsulate(key, *suite, options_.mode, message);

    // The answer as it arrives: outer status first, then the encrypted body.
    int outer_status = 0;
    std::string outer_error;   // an outer error status's problem document
    std::string stream_error;  // an answer that did not decrypt as it streamed
    bool delivered = false, cancelled = false;
    std::optional<ChunkedResponseReader> reader;
    std::optional<ResponseVerifier> binding;
    if (node.signing_key) binding.emplace(*node.signing_key, request.encapsulated());
    if (options_.mode == OhttpMode::chunked) {
      reader.emplace(request.response_reader());
      if (binding) reader->set_chunk_filter([&](Bytes chunk, bool final) { return binding->open(std::move(chunk), final); });
    }
    ResponseStreamDecoder decoder;
    std::string plain_body;
    bool head_sent = false;
    CloudAnswer answer{.status = 0, .headers = {}, .node = node.name, .attempts = attempt};
    auto deliver = [&](ByteView inner_bytes) {
      const std::string content = decoder.feed(inner_bytes);
      if (decoder.head_done() && !head_sent) {
        head_sent = true;
        answer.status = decoder.status();
        answer.headers = decoder.headers();
        if (on_head) on_head(answer.status, answer.headers);
      }
      if (!content.empty()) {
        delivered = true;
        if (on_content && !on_content(content)) cancelled = true;
      }
    };

    httplib::Request req;
    req.method = "POST";
    req.path = "/nodes/" + node.name + "/gateway";
    req.headers = {{"Content-Type", request_media_type(options_.mode)}};
    if (options_.token) {
      const std::string token = options_.token();
      if (!token.empty()) req.headers.emplace("Authorization", token);
    }
    req.body.assign(request.encapsulated().begin(), request.encapsulated().end());
    req.response_handler = [&](const httplib::Response& r) {
      outer_status = r.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (outer_status != 200) {  // an outer error: a short problem document
        if (outer_error.size() < 4096) outer_error.append(data, std::min<size_t>(n, 4096));
        return true;
      }
      if (!reader) {
        if (plain_body.size() + n > (64u << 20)) return false;
        plain_body.append(data, n);
        return true;
      }
      try {
        deliver(reader->feed(as_bytes(std::string_view(data, n))));
      } catch (const Error& e) {
        stream_error = e.what();
        return false;
      }
      return !cancelled;
    };
    httplib::Result res = relay_->send(req);
    if (cancelled) return answer;
    auto node_failed = [&](const std::string& why) {
      std::lock_guard<std::mutex> lock(mutex_);
      failed_.emplace_back(node.name, std::chrono::steady_clock::now());
      last_failure = "node " + node.name + ": " + why;
    };
    if (!res || !stream_error.empty()) {
      const std::string why = !stream_error.empty() ? stream_error : describe(res.error());
      if (delivered) throw CloudError("cloud: the answer from node " + node.name + " broke off: " + why);
      node_failed(why);
      continue;
    }
    if (outer_status == 422) {  // keys rotated: fetch them again, and try again (once)
      last_failure = "node " + node.name + " no longer has the key (" + outer_error + ")";
      if (!refetched) {
        refetched = true;
        refresh_nodes();
        tried.pop_back();
      }
      continue;
    }
    if (outer_status >= 500) {  // the relay could not reach the node, or the node failed
      node_failed("the relay answered " + std::to_string(outer_status));
      continue;
    }
    if (outer_status != 200) throw CloudError("cloud: node " + node.name + " refused the request (" +
                                              std::to_string(outer_status) + "): " + outer_error);
    try {
      if (reader) {
        deliver(reader->finish());
      } else {
        Bytes message = request.open_response(as_bytes(plain_body));
        deliver(binding ? binding->open(std::move(message), true) : message);
      }
      decoder.finish();
    } catch (const Error& e) {
      if (delivered) throw CloudError("cloud: the answer from node " + node.name + " broke off: " + e.what());
      node_failed(e.what());
      continue;
    }
    return answer;
  }
  throw CloudError("cloud: no node could answer (" + last_failure + ")");
}

}  // namespace orchard::cloud
