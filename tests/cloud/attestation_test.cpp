// Issue 16's chain of trust without processes: release statements, attestation documents by the
// software attester, the client's checks of a node bundle against an in-memory log (each link
// broken in turn must be refused with its own reason), and the response binding, down to a
// client that receives an answer signed by another key than the attested one.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <thread>

#include "cloud/attestation.h"
#include "cloud/client.h"
#include "cloud/crypto.h"
#include "cloud/gateway.h"
#include "cloud/merkle.h"
#include "cloud/node_bundle.h"
#include "cloud/release.h"
#include "cloud/response_binding.h"
#include "server/http_server.h"
#include "test_paths.h"
#include "tiny_handler.h"

namespace orchard::cloud {
namespace {

using Clock = std::chrono::system_clock;

std::string reason_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}
#define EXPECT_REFUSED(expr, text) EXPECT_NE(reason_of([&] { (void)(expr); }).find(text), std::string::npos) << reason_of([&] { (void)(expr); })

Measurement some_measurement(uint8_t seed) {
  Measurement m;
  m.binary = sha256(Bytes{seed, 1});
  m.models = {{"model.gguf", sha256(Bytes{seed, 2})}};
  m.config = sha256(Bytes{seed, 3});
  return m;
}

TEST(Release, FormatsParsesAndRefuses) {
  const Release r{"orchard-1.0", some_measurement(1)};
  const std::string text = format_release(r);
  EXPECT_EQ(parse_release(text), r);
  // The measurement line must be the digest of the lines above it, computed independently here.
  const std::string body = text.substr(text.find("binary "), text.find("measurement ") - text.find("binary "));
  EXPECT_EQ(text.substr(text.find("measurement ") + 12, 64), to_hex(sha256(as_bytes(body))));
  std::string tampered = text;
  tampered[text.find("config ") + 7] = tampered[text.find("config ") + 7] == '0' ? '1' : '0';
  EXPECT_REFUSED(parse_release(tampered), "not the digest");
  EXPECT_REFUSED(parse_release(text.substr(0, text.size() - 1)), "newline");
  EXPECT_REFUSED(parse_release("orchard release v2\n"), "not an");

  const NoteSigner key = NoteSigner::generate("release.example");
  const NoteSigner other = NoteSigner::generate("release.example");
  const std::string note = sign_release(r, key);
  const NoteVerifier trusted[] = {key.verifier()};
  const NoteVerifier untrusted[] = {other.verifier()};
  EXPECT_EQ(verify_release(note, trusted), r);
  EXPECT_REFUSED(verify_release(note, untrusted), "release not signed by a trusted release key");
}

TEST(Release, MeasuresFilesAndTheCanonicalConfig) {
  const std::string path = ::testing::TempDir() + "/measure_me.bin";
  std::string content(3 << 20, 'x');
  for (size_t i = 0; i < content.size(); i += 4097) content[i] = static_cast<char>(i);
  std::ofstream(path, std::ios::binary) << content;
  EXPECT_EQ(sha256_file(path), sha256(as_bytes(content)));  // streamed in pieces vs one call
  server::ServerOptions server;
  NodeOptions node;
  const Measurement a = measure_node(path, path, server, node);
  EXPECT_EQ(a.models.at(0).name, "measure_me.bin");
  server.port = 1234;  // where it runs is not what it runs
  EXPECT_EQ(measure_node(path, path, server, node), a);
  server.parallel += 1;
  EXPECT_NE(measure_node(path, path, server, node).config, a.config);
  EXPECT_NE(canonical_node_config(server, node).find("parallel="), std::string::npos);
  EXPECT_REFUSED(sha256_file(path + ".missing"), "cannot read");
}

TEST(Attestation, SoftwareAttesterDocumentsVerifyAndExpire) {
  SoftwareAttester attester(NoteSigner::generate("attester.example"));
  const NoteSigner signing = NoteSigner::generate("node0");
  const Bytes m = some_measurement(2).digest();
  const Clock::time_point t0 = Clock::now();
  const AttestationDocument d = make_attestation(attester, "node0", m, signing.verifier(), t0, std::chrono::seconds(60));
  const AttestationDocument back = AttestationDocument::parse(d.serialize());
  EXPECT_EQ(back.serialize(), d.serialize());
  verify_attestation(back, t0);
  EXPECT_REFUSED(verify_attestation(back, t0 + std::chrono::seconds(61)), "attestation expired");
  EXPECT_REFUSED(verify_attestation(back, t0 - std::chrono::seconds(400)), "future");
  AttestationDocument lie = back;
  lie.measurement = some_measurement(3).digest();  // the body changes, the evidence does not
  EXPECT_REFUSED(verify_attestation(lie, t0), "does not verify");
  lie = back;
  lie.attester = "sev-snp";
  EXPECT_REFUSED(verify_attestation(lie, t0), "unknown attester kind");
  std::string text = d.serialize();
  EXPECT_REFUSED(AttestationDocument::parse(text + "x\n"), "9 lines");
  EXPECT_REFUSED(AttestationDocument::parse(text.substr(0, text.size() - 1)), "newline");
  text.replace(text.find("issued ") + 7, 0, "0");
  EXPECT_REFUSED(AttestationDocument::parse(text), "issued");
}

TEST(ResponseBinding, EveryPieceIsCheckedInOrderAndBoundToTheRequest) {
  const NoteSigner key = NoteSigner::generate("node0");
  const std::string request_text = "encapsulated request";
  const Bytes request(request_text.begin(), request_text.end());
  ResponseSigner signer(key, request);
  const Bytes a = signer.sign(as_bytes(std::string("head")), false);
  const Bytes b = signer.sign(as_bytes(std::string("token")), false);
  const Bytes c = signer.sign(as_bytes(std::string("end")), true);
  {
    ResponseVerifier v(key.verifier(), request);
    EXPECT_EQ(as_text(v.open(a, false)), "head");
    EXPECT_EQ(as_text(v.open(b, false)), "token");
    EXPECT_EQ(as_text(v.open(c, true)), "end");
    EXPECT_TRUE(v.finished());
    EXPECT_REFUSED(v.open(c, true), "after the final");
  }
  ResponseVerifier swapped(key.verifier(), request);
  EXPECT_REFUSED(swapped.open(b, false), "piece 0 does not verify");
  ResponseVerifier not_final(key.verifier(), request);
  not_final.open(a, false);
  not_final.open(b, false);
  EXPECT_REFUSED(not_final.open(c, false), "piece 2 does not verify");
  ResponseVerifier other_request(key.verifier(), as_bytes(std::string("another request")));
  EXPECT_REFUSED(other_request.open(a, false), "does not verify");
  ResponseVerifier other_key(NoteSigner::generate("node0").verifier(), request);
  EXPECT_REFUSED(other_key.open(a, false), "does not verify");
  Bytes flipped = b;
  flipped[0] ^= 1;
  ResponseVerifier text_changed(key.verifier(), request);
  text_changed.open(a, false);
  EXPECT_REFUSED(text_changed.open(flipped, false), "piece 1 does not verify");
  ResponseVerifier short_piece(key.verifier(), request);
  EXPECT_REFUSED(short_piece.open(Bytes(10), false), "no signature");
}

// A whole world in memory: release key, log (leaf hashes + checkpoints), a witness, a node.
struct World {
  NoteSigner release_key = NoteSigner::generate("release.example");
  NoteSigner log_key = NoteSigner::generate("log.example");
  NoteSigner witness = NoteSigner::generate("witness.example");
  SoftwareAttester attester{NoteSigner::generate("attester.example")};
  NoteSigner signing = NoteSigner::generate("node0");
  KeyRing keys{std::chrono::seconds(600)};
  std::vector<Bytes> leaves;
  Clock::time_point now = Clock::now();

  uint64_t log(const std::string& entry) {
    leaves.push_back(merkle_leaf_hash(as_bytes(entry)));
    return leaves.size() - 1;
  }
  std::string checkpoint(size_t size, bool cosigned = true) {
    const std::string text = format_checkpoint({"log.example", size, merkle_root(std::span(leaves).first(size)), {}});
    std::vector<const NoteSigner*> signers = {&log_key};
    if (cosigned) signers.push_back(&witness);
    return sign_note(text, signers);
  }
  TrustPolicy policy(const std::string& state = "") {
    return {{release_key.verifier()}, log_key.verifier(), "", {witness.verifier()}, {}, state};
  }
  // A bundle for a node whose release is logged, with proofs against the current log.
  NodeBundle bundle(const Measurement& released, const Measurement& runs) {
    NodeBundle b;
    b.node = "node0";
    b.release = sign_release({"orchard-1", released}, release_key);
    b.document = make_attestation(attester, "node0", runs.digest(), signing.verifier(), now, std::chrono::seconds(600)).serialize();
    const uint64_t r = log(b.release), d = log(b.document);
    b.checkpoint = checkpoint(leaves.size());
    b.release_proof = InclusionProof{r, inclusion_proof(leaves, r)};
    b.document_proof = InclusionProof{d, inclusion_proof(leaves, d)};
    b.keys = sign_node_keys(signing, "node0", keys.encoded_configs(), now + std::chrono::seconds(600));
    return b;
  }
  NodeVerifier verifier(const std::string& state = "") { return NodeVerifier(policy(state), fetch(), [this] { return now; }); }
  std::shared_ptr<NodeVerifier> shared_verifier() { return std::make_shared<NodeVerifier>(policy(), fetch(), [this] { return now; }); }
  NodeVerifier::ConsistencyFetch fetch() {
    return [this](uint64_t a, uint64_t b) { return consistency_proof(std::span(leaves).first(b), a); };
  }
};

TEST(NodeVerifier, AcceptsTheWholeChainAndRefusesEachBrokenLink) {
  World w;
  const Measurement m = some_measurement(4);
  const NodeBundle good = w.bundle(m, m);
  {
    NodeVerifier v = w.verifier();
    const VerifiedNode n = v.verify(good);
    EXPECT_EQ(n.name, "node0");
    EXPECT_EQ(n.keys.size(), 1u);
    EXPECT_EQ(n.signing_key.format(), w.signing.verifier().format());
  }
  auto refused = [&](NodeBundle b, const std::string& reason) {
    NodeVerifier v = w.verifier();
    EXPECT_REFUSED(v.verify(b), reason);
  };
  // Release not signed by a trusted key.
  NodeBundle b = good;
  b.release = sign_release({"orchard-1", m}, NoteSigner::generate("release.example"));
  refused(b, "release not signed by a trusted release key");
  // Release signed but never logged.
  b = good;
  b.release_proof.reset();
  refused(b, "release statement not in the log");
  // Wrong inclusion proofs.
  b = good;
  b.document_proof->hashes.at(0)[0] ^= 1;
  refused(b, "attestation document not in the log: its inclusion proof does not verify");
  b = good;
  b.release_proof->index ^= 1;
  refused(b, "release statement not in the log: its inclusion proof does not verify");
  // Witness signature missing; log signature missing; another log.
  b = good;
  b.checkpoint = w.checkpoint(w.leaves.size(), false);
  refused(b, "witness signature missing");
  b = good;
  b.checkpoint = sign_note(format_checkpoint({"log.example", w.leaves.size(), merkle_root(w.leaves), {}}), w.witness);
  refused(b, "log checkpoint not signed by the log key");
  b.checkpoint = sign_note(format_checkpoint({"log.example", w.leaves.size(), merkle_root(w.leaves), {}}),
                           NoteSigner::generate("log.example"));  // the log's name, another key
  refused(b, "log checkpoint does not verify");
  b = good;
  b.checkpoint = "";
  refused(b, "no log checkpoint");
  // A node that measures differently from its release (another model, binary or config).
  refused(w.bundle(m, some_measurement(5)), "measurement differs from the release's");
  // Expired attestation.
  b = good;
  {
    NodeVerifier v = w.verifier();
    w.now += std::chrono::seconds(601);
    EXPECT_REFUSED(v.verify(b), "attestation expired");
    w.now -= std::chrono::seconds(601);
  }
  // Keys not signed by the attested key; the document of another node.
  b = good;
  b.keys = sign_node_keys(NoteSigner::generate("node0"), "node0", w.keys.encoded_configs(), w.now + std::chrono::seconds(60));
  refused(b, "key configurations not signed by the attested key");
  b = good;
  b.node = "node1";
  refused(b, "attestation document is for node 'node0'");
}

TEST(NodeVerifier, RemembersTheCheckpointAndRefusesAForkedLog) {
  World w;
  const std::string state = ::testing::TempDir() + "/cloud_state_fork";
  std::remove(state.c_str());
  const Measurement m = some_measurement(6);
  const NodeBundle first = w.bundle(m, m);
  w.verifier(state).verify(first);
  // The log grows honestly: a new verifier (a new process) reads the state and checks consistency.
  w.log("another release");
  NodeBundle grown = first;
  grown.checkpoint = w.checkpoint(w.leaves.size());
  grown.release_proof->hashes = inclusion_proof(w.leaves, grown.release_proof->index);
  grown.document_proof->hashes = inclusion_proof(w.leaves, grown.document_proof->index);
  w.verifier(state).verify(grown);
  // A fork: the same log key signs a tree with other entries, larger than the one seen.
  std::vector<Bytes> forked(w.leaves.begin(), w.leaves.end() - 1);
  forked.push_back(merkle_leaf_hash(as_bytes(std::string("a different entry"))));
  forked.push_back(merkle_leaf_hash(as_bytes(std::string("and one more"))));
  NodeBundle fork_bundle = grown;
  fork_bundle.checkpoint = sign_note(format_checkpoint({"log.example", forked.size(), merkle_root(forked), {}}),
                                     std::vector<const NoteSigner*>{&w.log_key, &w.witness});
  fork_bundle.release_proof->hashes = inclusion_proof(forked, fork_bundle.release_proof->index);
  fork_bundle.document_proof->hashes = inclusion_proof(forked, fork_bundle.document_proof->index);
  NodeVerifier v(w.policy(state), [&](uint64_t a, uint64_t b) { return consistency_proof(std::span(forked).first(b), a); },
                 [&] { return w.now; });
  EXPECT_REFUSED(v.verify(fork_bundle), "a forked log");
  // The same size as seen, another root.
  std::vector<Bytes> same_size(w.leaves.begin(), w.leaves.end() - 1);
  same_size.push_back(merkle_leaf_hash(as_bytes(std::string("x"))));
  fork_bundle.checkpoint = sign_note(format_checkpoint({"log.example", same_size.size(), merkle_root(same_size), {}}),
                                     std::vector<const NoteSigner*>{&w.log_key, &w.witness});
  EXPECT_REFUSED(v.verify(fork_bundle), "same size");
  // A state file that is not the log's checkpoint stops the client rather than being ignored.
  std::ofstream(state) << "garbage\n";
  EXPECT_REFUSED(w.verifier(state), "not a checkpoint signed by the log key");
}

// An in-process relay in front of one gateway whose answers are signed by `answer_key`.
class Relay {
 public:
  Relay(Gateway& gateway, std::string bundle_json, KeyRing& keys) {
    http_.Get("/nodes", [&, bundle_json](const httplib::Request&, httplib::Response& res) {
      res.set_content(nlohmann::json{{"nodes", {{{"name", "node0"}, {"keys", to_hex(keys.encoded_configs())},
                                                  {"attestation", nlohmann::json::parse(bundle_json)}}}}}
                          .dump(),
                      "application/json");
    });
    http_.Post("/nodes/node0/gateway", [&](const httplib::Request& req, httplib::Response& res) {
      ++posts;
      server::ApiRequest outer{.method = "POST", .path = "/gateway", .headers = {}, .body = req.body, .client_left = {}};
      outer.headers.assign(req.headers.begin(), req.headers.end());
      server::send(gateway.handle(outer), res);
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
  std::atomic<int> posts{0};

 private:
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
};

const std::string kChat = R"({"messages":[{"role":"user","content":"Hello"}],"max_tokens":4,"temperature":0,"stream":true})";

TEST(AttestedClient, VerifiesTheBindingOfEveryAnswerAndRefusesAnotherKeys) {
  World w;
  const Measurement m = some_measurement(7);
  const NodeBundle bundle = w.bundle(m, m);
  for (bool honest : {true, false}) {
    const NoteSigner impostor = NoteSigner::generate("node0");
    Gateway gateway(tiny_handler().handler, w.keys, {}, honest ? &w.signing : &impostor);
    Relay relay(gateway, format_bundle(bundle), w.keys);
    for (OhttpMode mode : {OhttpMode::chunked, OhttpMode::plain}) {
      auto verifier = w.shared_verifier();
      CloudClient client({.relay = relay.url(), .attempts = 1, .mode = mode, .verifier = verifier});
      std::string content;
      auto ask = [&] {
        return client.send("/v1/chat/completions", kChat, nullptr, [&](std::string_view c) { return content.append(c), true; });
      };
      if (honest) {
        EXPECT_EQ(ask().status, 200);
        EXPECT_NE(content.find("data: [DONE]"), std::string::npos);
      } else {
        EXPECT_REFUSED(ask(), "response binding: the signature of piece 0 does not verify");
        EXPECT_EQ(content, "");  // nothing unverified reached the caller
      }
    }
  }
  // An unattested gateway (no signing key) sends no binding: refused too.
  Gateway plain(tiny_handler().handler, w.keys);
  Relay relay(plain, format_bundle(bundle), w.keys);
  CloudClient client({.relay = relay.url(), .attempts = 1, .verifier = w.shared_verifier()});
  EXPECT_REFUSED(client.send("/v1/chat/completions", kChat, nullptr, nullptr), "response binding");
}

TEST(AttestedClient, SendsNothingToANodeThatFailsVerification) {
  World w;
  const NodeBundle bad = w.bundle(some_measurement(8), some_measurement(9));
  Gateway gateway(tiny_handler().handler, w.keys, {}, &w.signing);
  Relay relay(gateway, format_bundle(bad), w.keys);
  CloudClient client({.relay = relay.url(), .verifier = w.shared_verifier()});
  EXPECT_REFUSED(client.send("/v1/chat/completions", kChat, nullptr, nullptr),
                 "no node passed verification (node0: measurement differs from the release's");
  EXPECT_EQ(relay.posts, 0);
  EXPECT_EQ(client.refused_nodes().size(), 1u);
}

// A stream whose third chunk is signed wrongly: the first two pieces reach the caller, the third
// and everything after it do not.
TEST(ResponseBinding, AStreamStopsAtTheFirstPieceThatFails) {
  const NoteSigner key = NoteSigner::generate("node0"), wrong = NoteSigner::generate("node0");
  const Bytes request(32, 7);
  ResponseSigner good(key, request), bad(wrong, request);
  std::vector<Bytes> pieces;
  for (int i = 0; i < 5; ++i) {
    const Bytes p(10, static_cast<uint8_t>('a' + i));
    pieces.push_back(i == 2 ? bad.sign(p, false) : good.sign(p, i == 4));
    if (i == 2) good.sign(p, false);  // keep the honest chain in step
  }
  ResponseVerifier v(key.verifier(), request);
  std::string delivered;
  try {
    for (size_t i = 0; i < pieces.size(); ++i) {
      const Bytes p = v.open(pieces[i], i == 4);
      delivered += as_text(p);
    }
    FAIL() << "accepted";
  } catch (const AttestationError& e) {
    EXPECT_NE(std::string(e.what()).find("piece 2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(delivered, "aaaaaaaaaabbbbbbbbbb");
}

}  // namespace
}  // namespace orchard::cloud
