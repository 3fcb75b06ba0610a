// The client against an in-process relay (httplib on loopback) with two nodes in its list: one
// whose gateway is the real one (the tiny model), one that is down (the relay answers 502). The
// client must skip the node that failed, retry with a fresh encapsulation, and, when the keys
// rotated past its list, fetch the list again.
#include "cloud/client.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

#include "cloud/gateway.h"
#include "cloud/privacy_pass.h"
#include "server/http_server.h"
#include "tiny_handler.h"

namespace orchard::cloud {
namespace {

class Relay {
 public:
  explicit Relay(Gateway& gateway, KeyRing& keys) {
    http_.Get("/nodes", [&](const httplib::Request&, httplib::Response& res) {
      ++list_fetches;
      const std::string hex = to_hex(keys.encoded_configs());
      res.set_content(nlohmann::json{{"nodes", {{{"name", "up"}, {"keys", hex}}, {{"name", "down"}, {"keys", hex}}}}}.dump(),
                      "application/json");
    });
    http_.Post("/nodes/up/gateway", [&](const httplib::Request& req, httplib::Response& res) {
      ++up_requests;
      server::ApiRequest outer{.method = "POST", .path = "/gateway", .headers = {}, .body = req.body, .client_left = {}};
      outer.headers.assign(req.headers.begin(), req.headers.end());
      server::send(gateway.handle(outer), res);
    });
    http_.Post("/nodes/down/gateway", [&](const httplib::Request&, httplib::Response& res) {
      ++down_requests;
      res.status = 502;
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Relay() {
    http_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::atomic<int> list_fetches{0}, up_requests{0}, down_requests{0};

 private:
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
};

const std::string kChat = R"({"messages":[{"role":"user","content":"Hello"}],"max_tokens":4,"temperature":0,"stream":true})";

TEST(CloudClient, SkipsANodeThatFailedAndRefetchesRotatedKeys) {
  using Clock = std::chrono::system_clock;
  Clock::time_point now = Clock::now();
  KeyRing keys(std::chrono::seconds(600), [&] { return now; });
  Gateway gateway(tiny_handler().handler, keys);
  Relay relay(gateway, keys);
  for (OhttpMode mode : {OhttpMode::chunked, OhttpMode::plain}) {
    CloudClient client({.relay = relay.url(), .mode = mode});
    const int down_before = relay.down_requests;
    for (int i = 0; i < 6; ++i) {
      int status = 0;
      std::string content;
      const CloudAnswer a = client.send("/v1/chat/completions", kChat, [&](int s, const auto&) { status = s; },
                                        [&](std::string_view c) { return content.append(c), true; });
      EXPECT_EQ(a.node, "up");
      EXPECT_EQ(a.status, 200);
      EXPECT_EQ(status, 200);
      EXPECT_NE(content.find("data: [DONE]"), std::string::npos);
    }
    // At most one try on the node that is down: after it failed, it is skipped.
    EXPECT_LE(relay.down_requests - down_before, 1);
  }

  // The keys rotate twice while the client holds its list: its key is gone (422), so it fetches
  // the list again and the retry goes through.
  CloudClient client({.relay = relay.url()});
  client.refresh_nodes();
  const int fetches = relay.list_fetches;
  now += std::chrono::seconds(1200);
  const CloudAnswer a = client.send("/v1/chat/completions", kChat, nullptr, [](std::string_view) { return true; });
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(relay.list_fetches, fetches + 1);
}

// A node that takes anonymous tokens: each request spends one, a request without one or with a
// spent one is refused (401 with the node's challenge) before anything is decrypted.
TEST(CloudClient, PaysOneTokenPerRequestAndANodeRefusesASpentOne) {
  namespace pp = privacy_pass;
  const blind_rsa::PrivateKey issuer = blind_rsa::PrivateKey::generate(pp::kModulusBits);
  const pp::TokenChallenge challenge{pp::kTokenTypeBlindRsa, "issuer.example", {}, ""};
  const std::string store_path = ::testing::TempDir() + "/client_test_spent";
  std::remove(store_path.c_str());
  pp::DoubleSpendStore store(store_path, pp::token_key_id(issuer.public_key()));
  const pp::TokenRedeemer redeemer(issuer.public_key(), challenge, store);
  auto fresh_token = [&] {
    pp::ClientTokenRequest r = pp::make_token_request(issuer.public_key(), challenge);
    const Bytes response = pp::TokenResponse{blind_rsa::blind_sign(issuer, r.request.blinded_msg)}.encode();
    return pp::authorization_header(pp::finalize_token(issuer.public_key(), r.pending, response));
  };
  KeyRing keys(std::chrono::seconds(600));
  Gateway gateway(tiny_handler().handler, keys, {}, nullptr, &redeemer);
  Relay relay(gateway, keys);
  std::string last;
  int paid = 0;
  // The relay also lists a node that is down: a try there costs a token too, which never reaches a
  // node and is lost (a token buys one attempt).
  CloudClient client({.relay = relay.url(), .attempts = 2, .token = [&] { return ++paid, last = fresh_token(); }});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(client.send("/v1/chat/completions", kChat, nullptr, nullptr).status, 200);
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(paid, 3 + relay.down_requests);

  auto refusal = [&](std::function<std::string()> token) {
    CloudClient c({.relay = relay.url(), .attempts = 2, .token = std::move(token)});
    try {
      c.send("/v1/chat/completions", kChat, nullptr, nullptr);
    } catch (const CloudError& e) {
      return std::string(e.what());
    }
    return std::string("(answered)");
  };
  const std::string spent = last;
  EXPECT_NE(refusal([&] { return spent; }).find("(401)"), std::string::npos);
  EXPECT_NE(refusal([&] { return spent; }).find("token: already spent"), std::string::npos) << refusal([&] { return spent; });
  EXPECT_NE(refusal([] { return std::string(); }).find("(401)"), std::string::npos);
  // The 401 carries the node's challenge, which a client needs to fetch the right tokens.
  server::ApiRequest outer{.method = "POST", .path = "/gateway", .headers = {{"Content-Type", "message/ohttp-req"}},
                           .body = std::string(64, 'x'), .client_left = {}};
  const server::ApiResponse r = gateway.handle(outer);
  EXPECT_EQ(r.status, 401);
  ASSERT_FALSE(r.headers.empty());
  EXPECT_EQ(r.headers[0].second, redeemer.www_authenticate());
}

TEST(CloudClient, ClearErrorsWhenNothingAnswers) {
  // No relay at all.
  CloudClient nobody({.relay = "http://127.0.0.1:1"});
  try {
    nobody.send("/v1/chat/completions", kChat, nullptr, nullptr);
    FAIL() << "no error";
  } catch (const CloudError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect to the relay"), std::string::npos) << e.what();
  }
  EXPECT_THROW(CloudClient({.relay = "not a url"}), CloudError);
  // A list whose nodes are all malformed or keyless.
  EXPECT_TRUE(parse_node_list(R"({"nodes":[{"name":"a","keys":""},{"name":"b","keys":"zz"},{"name":"c/d","keys":"00"},{"x":1}]})").empty());
  EXPECT_THROW(parse_node_list("[]"), CloudError);
  EXPECT_THROW(parse_node_list("{"), Error);
}

}  // namespace
}  // namespace orchard::cloud
