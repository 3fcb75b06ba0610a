// The transparency log: its storage (roots and proofs equal merkle.h's over the same leaves and
// verify with its verifiers for every size 0..40, the vectors' roots for the reference leaves,
// reopening, idempotent appends across instances, torn tails cut at every byte of the last record
// or garbage after it, damage refused), the HTTP API through httplib on loopback (every endpoint,
// bad parameters, the bearer token, the size limit), the log client against it, and the witness
// (cosigns a growing log, refuses a fork, a smaller size and a bad signature, the 409 path, and
// the log server gathering its cosignature).
#include "cloud/tlog.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/log_client.h"
#include "cloud/log_server.h"
#include "cloud/merkle.h"
#include "cloud/witness.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;

std::string entry_text(size_t i) { return "release statement " + std::to_string(i); }

std::vector<Bytes> leaf_hashes_of(const std::vector<std::string>& entries, size_t n) {
  std::vector<Bytes> out;
  for (size_t i = 0; i < n; ++i) out.push_back(merkle_leaf_hash(as_bytes(entries[i])));
  return out;
}

uint64_t file_size(const std::string& path) { return std::filesystem::file_size(path); }

void truncate_to(const std::string& path, uint64_t size) { std::filesystem::resize_file(path, size); }

void append_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A record as the header documents it, built here by hand.
Bytes record_of(ByteView entry) {
  Bytes r;
  const auto n = static_cast<uint32_t>(entry.size());
  for (int shift = 24; shift >= 0; shift -= 8) r.push_back(static_cast<uint8_t>(n >> shift));
  put_bytes(r, merkle_leaf_hash(entry));
  put_bytes(r, entry);
  return r;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---------------------------------------------------------------------------------------------
// Storage

TEST(TransparencyLog, RootsAndProofsMatchMerkleForSizes0To40) {
  test::TempDir dir;
  TransparencyLog log = TransparencyLog::create(dir.file("log"), "example.org/releases");
  std::vector<std::string> entries;
  EXPECT_EQ(log.size(), 0u);
  EXPECT_EQ(log.root(0), sha256({}));
  for (size_t n = 1; n <= 40; ++n) {
    entries.push_back(entry_text(n - 1));
    ASSERT_EQ(log.append(as_bytes(entries.back())), n - 1);
    ASSERT_EQ(log.size(), n);
  }
  for (size_t n = 0; n <= 40; ++n) {
    const std::vector<Bytes> leaves = leaf_hashes_of(entries, n);
    const Bytes root = merkle_root(leaves);
    ASSERT_EQ(log.root(n), root) << n;
    for (size_t i = 0; i < n; ++i) {
      const std::vector<Bytes> proof = log.inclusion_proof(i, n);
      EXPECT_EQ(proof, inclusion_proof(leaves, i)) << i << " of " << n;
      EXPECT_TRUE(verify_inclusion(i, n, leaves[i], proof, root)) << i << " of " << n;
    }
    for (size_t m = 1; m <= n; ++m) {
      const std::vector<Bytes> proof = log.consistency_proof(m, n);
      EXPECT_EQ(proof, consistency_proof(leaves, m)) << m << " to " << n;
      EXPECT_TRUE(verify_consistency(m, n, merkle_root(leaf_hashes_of(entries, m)), root, proof)) << m << " to " << n;
    }
  }
  for (size_t i = 0; i < 40; ++i) {
    EXPECT_EQ(log.entry(i), Bytes(entries[i].begin(), entries[i].end()));
    EXPECT_EQ(log.leaf_hash(i), merkle_leaf_hash(as_bytes(entries[i])));
  }
  const Checkpoint cp = log.checkpoint();
  EXPECT_EQ(cp.origin, "example.org/releases");
  EXPECT_EQ(cp.size, 40u);
  EXPECT_EQ(cp.root_hash, merkle_root(leaf_hashes_of(entries, 40)));
  // Outside the tree.
  EXPECT_THROW(log.root(41), Error);
  EXPECT_THROW(log.entry(40), Error);
  EXPECT_THROW(log.leaf_hash(40), Error);
  EXPECT_THROW(log.inclusion_proof(5, 5), Error);
  EXPECT_THROW(log.inclusion_proof(0, 41), Error);
  EXPECT_THROW(log.consistency_proof(0, 5), Error);
  EXPECT_THROW(log.consistency_proof(6, 5), Error);
  EXPECT_THROW(log.consistency_proof(1, 41), Error);
}

// The roots of transparency-dev/merkle's reference leaves, from the shared vectors file.
TEST(TransparencyLog, RootsOfTheReferenceLeaves) {
  std::ifstream in(test::shared_path("pcc/merkle-vectors.json"));
  ASSERT_TRUE(in);
  const json v = json::parse(in);
  test::TempDir dir;
  TransparencyLog log = TransparencyLog::create(dir.file("log"), "vectors");
  const json& leaves = v.at("leaves");
  const json& roots = v.at("roots_by_size");
  ASSERT_EQ(roots.size(), leaves.size() + 1);
  EXPECT_EQ(to_hex(log.root(0)), roots[0].get<std::string>());
  for (size_t i = 0; i < leaves.size(); ++i) {
    log.append(from_hex(leaves[i].get<std::string>()));
    EXPECT_EQ(to_hex(log.root(i + 1)), roots[i + 1].get<std::string>()) << i + 1;
  }
}

TEST(TransparencyLog, ReopenKeepsEverything) {
  test::TempDir dir;
  const std::string path = dir.file("log");
  std::vector<std::string> entries;
  {
    TransparencyLog log = TransparencyLog::create(path, "reopen");
    for (size_t i = 0; i < 21; ++i) log.append(as_bytes(entries.emplace_back(entry_text(i))));
  }
  TransparencyLog log = TransparencyLog::open(path);
  EXPECT_EQ(log.origin(), "reopen");
  EXPECT_EQ(log.path(), path + "/log");
  ASSERT_EQ(log.size(), 21u);
  EXPECT_EQ(log.root(21), merkle_root(leaf_hashes_of(entries, 21)));
  EXPECT_EQ(log.root(13), merkle_root(leaf_hashes_of(entries, 13)));
  EXPECT_EQ(log.entry(20), Bytes(entries[20].begin(), entries[20].end()));
  log.append(as_bytes(entries.emplace_back(entry_text(21))));
  EXPECT_EQ(TransparencyLog::open(path).root(22), merkle_root(leaf_hashes_of(entries, 22)));
  // The file is the documented format, byte for byte.
  std::string expected = "orchard-tlog-v1\nreopen\n";
  for (const std::string& e : entries) {
    const Bytes r = record_of(as_bytes(e));
    expected.append(r.begin(), r.end());
  }
  EXPECT_EQ(test::read_text(path + "/log"), expected);
}

TEST(TransparencyLog, AppendIsIdempotentAcrossInstances) {
  test::TempDir dir;
  TransparencyLog a = TransparencyLog::create(dir.path() + "/l", "idempotent");
  EXPECT_EQ(a.append(as_bytes("one")), 0u);
  EXPECT_EQ(a.append(as_bytes("two")), 1u);
  EXPECT_EQ(a.append(as_bytes("one")), 0u);
  EXPECT_EQ(a.size(), 2u);
  const uint64_t bytes = file_size(dir.path() + "/l/log");
  // A second instance (as another process would): it sees a's entries, and a sees its own.
  TransparencyLog b = TransparencyLog::open(dir.path() + "/l");
  EXPECT_EQ(b.append(as_bytes("two")), 1u);
  EXPECT_EQ(file_size(dir.path() + "/l/log"), bytes);
  EXPECT_EQ(b.append(as_bytes("three")), 2u);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(a.find(merkle_leaf_hash(as_bytes("three"))), std::nullopt);
  EXPECT_EQ(a.refresh(), 3u);
  EXPECT_EQ(a.find(merkle_leaf_hash(as_bytes("three"))), 2u);
  EXPECT_EQ(a.find(merkle_leaf_hash(as_bytes("one"))), 0u);
  EXPECT_EQ(a.find(merkle_leaf_hash(as_bytes("four"))), std::nullopt);
  EXPECT_EQ(a.find(Bytes(5)), std::nullopt);
  // a finds b's entry when it appends the same bytes without a refresh of its own.
  EXPECT_EQ(b.append(as_bytes("four")), 3u);
  EXPECT_EQ(a.append(as_bytes("four")), 3u);
  EXPECT_EQ(a.size(), 4u);
  EXPECT_EQ(a.entry(3), Bytes({'f', 'o', 'u', 'r'}));
  EXPECT_EQ(a.root(4), b.root(4));
}

// Two instances (two descriptors: flock excludes them as it would two processes) appending at
// once: every entry lands once, whole.
TEST(TransparencyLog, ConcurrentWritersDoNotInterleave) {
  test::TempDir dir;
  TransparencyLog::create(dir.path() + "/l", "concurrent");
  auto writer = [&](int who) {
    TransparencyLog log = TransparencyLog::open(dir.path() + "/l");
    for (int i = 0; i < 40; ++i) log.append(as_bytes(std::to_string(who) + ":" + std::string(100 + i * 37, 'x')));
  };
  std::thread t1(writer, 1), t2(writer, 2);
  t1.join();
  t2.join();
  TransparencyLog log = TransparencyLog::open(dir.path() + "/l");
  ASSERT_EQ(log.size(), 80u);
  std::vector<Bytes> leaves;
  for (uint64_t i = 0; i < 80; ++i) leaves.push_back(merkle_leaf_hash(log.entry(i)));
  EXPECT_EQ(log.root(80), merkle_root(leaves));
}

TEST(TransparencyLog, EntrySizeLimit) {
  test::TempDir dir;
  TransparencyLog log = TransparencyLog::create(dir.path() + "/l", "limit");
  const Bytes largest(kMaxLogEntrySize, 0x5a);
  EXPECT_EQ(log.append(largest), 0u);
  const std::string message = error_of([&] { log.append(Bytes(kMaxLogEntrySize + 1)); });
  EXPECT_NE(message.find("over the limit"), std::string::npos) << message;
  EXPECT_EQ(log.append(Bytes()), 1u);  // the empty entry is a leaf like any other
  TransparencyLog again = TransparencyLog::open(dir.path() + "/l");
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(again.entry(0), largest);
  EXPECT_EQ(again.root(2), merkle_root(std::vector<Bytes>{merkle_leaf_hash(largest), merkle_leaf_hash(Bytes())}));
}

// A process killed during its append leaves a prefix of its record: for every such prefix, the
// log reopens to the entries before it, cut back to their end, and the next append lands whole.
TEST(TransparencyLog, TornTailAtEveryByteOfTheLastRecord) {
  test::TempDir dir;
  const std::string folder = dir.path() + "/l";
  const std::string file = folder + "/log";
  std::vector<std::string> entries;
  {
    TransparencyLog log = TransparencyLog::create(folder, "torn");
    for (size_t i = 0; i < 6; ++i) log.append(as_bytes(entries.emplace_back(entry_text(i))));
  }
  const uint64_t before_last = file_size(file);
  entries.push_back(std::string(100, 'L'));
  TransparencyLog::open(folder).append(as_bytes(entries.back()));
  const std::string whole = test::read_text(file);
  ASSERT_EQ(whole.size(), before_last + kLogRecordHeaderSize + 100);
  const Bytes root6 = merkle_root(leaf_hashes_of(entries, 6));
  for (uint64_t cut = before_last; cut < whole.size(); ++cut) {
    { std::ofstream(file, std::ios::binary | std::ios::trunc) << whole.substr(0, cut); }
    TransparencyLog log = TransparencyLog::open(folder);
    ASSERT_EQ(log.size(), 6u) << "cut at " << cut;
    ASSERT_EQ(log.root(6), root6) << "cut at " << cut;
    ASSERT_EQ(file_size(file), before_last) << "cut at " << cut;
    if (cut % 20 == 0 || cut + 1 == whole.size()) {
      EXPECT_EQ(log.append(as_bytes(entries.back())), 6u);
      EXPECT_EQ(test::read_text(file), whole);
    }
  }
}

TEST(TransparencyLog, GarbageAfterTheLastRecordIsCut) {
  test::TempDir dir;
  const std::string folder = dir.path() + "/l";
  const std::string file = folder + "/log";
  std::vector<std::string> entries;
  {
    TransparencyLog log = TransparencyLog::create(folder, "garbage");
    for (size_t i = 0; i < 5; ++i) log.append(as_bytes(entries.emplace_back(entry_text(i))));
  }
  const std::string whole = test::read_text(file);
  const Bytes root5 = merkle_root(leaf_hashes_of(entries, 5));
  std::mt19937 random(7);
  std::vector<Bytes> tails;
  for (size_t n : {1, 3, 35, 36, 37, 100, 4096, 70000}) {
    Bytes g(n);
    for (uint8_t& b : g) b = static_cast<uint8_t>(random());
    tails.push_back(g);
  }
  tails.push_back(Bytes(5000, 0));  // zeros, as a file extended by a crash may hold
  Bytes wrong_hash = record_of(as_bytes("forged"));
  wrong_hash[10] ^= 1;
  tails.push_back(wrong_hash);  // a whole record whose hash is not its entry's
  Bytes too_long = record_of(as_bytes("x"));
  too_long[0] = 0x7f;  // a length over the limit
  tails.push_back(too_long);
  for (const Bytes& tail : tails) {
    { std::ofstream(file, std::ios::binary | std::ios::trunc) << whole; }
    append_bytes(file, tail);
    TransparencyLog log = TransparencyLog::open(folder);
    EXPECT_EQ(log.size(), 5u) << tail.size() << " bytes of garbage";
    EXPECT_EQ(log.root(5), root5);
    EXPECT_EQ(file_size(file), whole.size());
  }
}

TEST(TransparencyLog, DamageIsRefusedNotDropped) {
  test::TempDir dir;
  const std::string folder = dir.path() + "/l";
  const std::string file = folder + "/log";
  {
    TransparencyLog log = TransparencyLog::create(folder, "damaged");
    log.append(as_bytes("first"));
    for (int i = 0; i < 3; ++i) log.append(Bytes(600000, static_cast<uint8_t>(i)));
  }
  const std::string whole = test::read_text(file);
  // A flipped byte in the first entry: more than one record's worth follows it.
  std::string damaged = whole;
  damaged[std::string_view("orchard-tlog-v1\ndamaged\n").size() + kLogRecordHeaderSize] ^= 1;
  { std::ofstream(file, std::ios::binary | std::ios::trunc) << damaged; }
  std::string message = error_of([&] { TransparencyLog::open(folder); });
  EXPECT_NE(message.find("damaged"), std::string::npos) << message;
  EXPECT_NE(message.find("record 0"), std::string::npos) << message;
  EXPECT_EQ(test::read_text(file), damaged);  // nothing was cut

  // Entries that were read never disappear: a file cut behind a reader's back is an error.
  { std::ofstream(file, std::ios::binary | std::ios::trunc) << whole; }
  TransparencyLog log = TransparencyLog::open(folder);
  truncate_to(file, whole.size() - 600000 - kLogRecordHeaderSize);
  message = error_of([&] { log.refresh(); });
  EXPECT_NE(message.find("entries were removed"), std::string::npos) << message;
}

TEST(TransparencyLog, CreateAndOpenErrors) {
  test::TempDir dir;
  std::string message = error_of([&] { TransparencyLog::open(dir.path() + "/none"); });
  EXPECT_NE(message.find(dir.path() + "/none/log"), std::string::npos) << message;
  TransparencyLog::create(dir.path() + "/a", "a");
  message = error_of([&] { TransparencyLog::create(dir.path() + "/a", "a"); });
  EXPECT_NE(message.find("already exists"), std::string::npos) << message;
  EXPECT_EQ(TransparencyLog::open_or_create(dir.path() + "/a", "other").origin(), "a");
  EXPECT_EQ(TransparencyLog::open_or_create(dir.path() + "/b", "b").origin(), "b");
  for (const std::string& bad : {std::string(""), std::string("two\nlines"), std::string("tab\there"),
                                 std::string(kMaxLogOriginSize + 1, 'o'), std::string("\xff")}) {
    message = error_of([&] { TransparencyLog::create(dir.path() + "/bad", bad); });
    EXPECT_NE(message.find("origin"), std::string::npos) << message;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/bad/log"));
  ::mkdir((dir.path() + "/c").c_str(), 0755);
  dir.write("c/log", std::string("not a log\n"));
  message = error_of([&] { TransparencyLog::open(dir.path() + "/c"); });
  EXPECT_NE(message.find("not a transparency log"), std::string::npos) << message;
  dir.write("c/log", std::string("orchard-tlog-v1\n") + std::string(2000, 'o'));
  message = error_of([&] { TransparencyLog::open(dir.path() + "/c"); });
  EXPECT_NE(message.find("origin"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// The HTTP API

// An httplib server on a loopback port for the test's lifetime.
class Served {
 public:
  template <typename Install>
  explicit Served(Install install) {
    install(http_);
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Served() {
    http_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
};

struct TestLog {
  test::TempDir dir;
  TransparencyLog log = TransparencyLog::create(dir.path() + "/log", "example.org/test-log");
  NoteSigner key = NoteSigner::generate("example.org/test-log");
  std::vector<std::string> entries;

  explicit TestLog(size_t n, const std::string& prefix = "entry ") {
    for (size_t i = 0; i < n; ++i) add(prefix + std::to_string(i));
  }
  void add(const std::string& e) {
    entries.push_back(e);
    log.append(as_bytes(e));
  }
  std::vector<Bytes> leaves(size_t n) const { return leaf_hashes_of(entries, n); }
};

json body_json(const httplib::Result& r) { return json::parse(r->body, nullptr, false); }

std::vector<Bytes> decode_hashes(const json& list) {
  std::vector<Bytes> out;
  for (const json& h : list) out.push_back(base64_decode(h.get<std::string>()));
  return out;
}

TEST(LogServer, Endpoints) {
  TestLog t(10);
  LogServer server(t.log, t.key, {.append_token = "s3cret-token"});
  Served http([&](httplib::Server& h) { server.install(h); });
  httplib::Client client(http.url());

  auto r = client.Get("/checkpoint");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/plain", 0), 0u);
  const NoteVerifier verifiers[] = {t.key.verifier()};
  const VerifiedNote note = verify_note(r->body, verifiers);
  EXPECT_EQ(note.verified.size(), 1u);
  const Checkpoint cp = parse_checkpoint(note.text);
  EXPECT_EQ(cp.origin, "example.org/test-log");
  EXPECT_EQ(cp.size, 10u);
  EXPECT_EQ(cp.root_hash, merkle_root(t.leaves(10)));

  r = client.Get("/proof/inclusion?index=3&size=7");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  json j = body_json(r);
  EXPECT_EQ(j["index"], 3);
  EXPECT_EQ(j["size"], 7);
  EXPECT_EQ(decode_hashes(j["hashes"]), inclusion_proof(t.leaves(7), 3));
  EXPECT_TRUE(verify_inclusion(3, 7, t.leaves(7)[3], decode_hashes(j["hashes"]), merkle_root(t.leaves(7))));

  r = client.Get("/proof/consistency?first=3&second=10");
  ASSERT_TRUE(r);
  j = body_json(r);
  EXPECT_EQ(j["first"], 3);
  EXPECT_EQ(j["second"], 10);
  EXPECT_TRUE(verify_consistency(3, 10, merkle_root(t.leaves(3)), cp.root_hash, decode_hashes(j["hashes"])));
  r = client.Get("/proof/consistency?first=10&second=10");
  ASSERT_TRUE(r);
  EXPECT_EQ(body_json(r)["hashes"], json::array());

  r = client.Get("/entries/4");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "entry 4");
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/octet-stream");

  r = client.Get("/lookup?leaf_hash=" + to_hex(merkle_leaf_hash(as_bytes("entry 5"))));
  ASSERT_TRUE(r);
  EXPECT_EQ(body_json(r), json({{"index", 5}}));
  r = client.Get("/lookup?leaf_hash=" + to_hex(merkle_leaf_hash(as_bytes("entry 10"))));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
}

TEST(LogServer, BadParametersAre400NamingThem) {
  TestLog t(10);
  LogServer server(t.log, t.key);
  Served http([&](httplib::Server& h) { server.install(h); });
  httplib::Client client(http.url());
  const std::string hash64(64, 'a');
  const struct {
    std::string path;
    int status;
    std::string parameter;
  } cases[] = {
      {"/proof/inclusion", 400, "index"},
      {"/proof/inclusion?index=1", 400, "size"},
      {"/proof/inclusion?size=3", 400, "index"},
      {"/proof/inclusion?index=-1&size=3", 400, "index"},
      {"/proof/inclusion?index=%2B1&size=3", 400, "index"},
      {"/proof/inclusion?index=01&size=3", 400, "index"},
      {"/proof/inclusion?index=1.0&size=3", 400, "index"},
      {"/proof/inclusion?index=&size=3", 400, "index"},
      {"/proof/inclusion?index=1&index=2&size=3", 400, "index"},
      {"/proof/inclusion?index=1&size=18446744073709551616", 400, "size"},
      {"/proof/inclusion?index=1&size=18446744073709551615", 400, "size"},
      {"/proof/inclusion?index=1&size=11", 400, "size"},
      {"/proof/inclusion?index=3&size=3", 400, "index"},
      {"/proof/inclusion?index=0&size=0", 400, "index"},
      {"/proof/consistency?second=3", 400, "first"},
      {"/proof/consistency?first=1", 400, "second"},
      {"/proof/consistency?first=0&second=3", 400, "first"},
      {"/proof/consistency?first=4&second=3", 400, "first"},
      {"/proof/consistency?first=1&second=11", 400, "second"},
      {"/proof/consistency?first=x&second=3", 400, "first"},
      {"/entries/10", 404, "index"},
      {"/entries/abc", 400, "index"},
      {"/entries/", 400, "index"},
      {"/entries/007", 400, "index"},
      {"/lookup", 400, "leaf_hash"},
      {"/lookup?leaf_hash=" + hash64.substr(1), 400, "leaf_hash"},
      {"/lookup?leaf_hash=" + std::string(64, 'g'), 400, "leaf_hash"},
      {"/lookup?leaf_hash=" + hash64 + "&leaf_hash=" + std::string(64, 'b'), 400, "leaf_hash"},
      {"/lookup?leaf_hash=" + hash64, 404, "leaf_hash"},
  };
  for (const auto& c : cases) {
    const auto r = client.Get(c.path);
    ASSERT_TRUE(r) << c.path;
    EXPECT_EQ(r->status, c.status) << c.path;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/problem+json") << c.path;
    const json j = body_json(r);
    EXPECT_EQ(j.value("parameter", ""), c.parameter) << c.path << ": " << r->body;
    EXPECT_EQ(j.value("status", 0), c.status) << c.path;
    EXPECT_FALSE(j.value("title", "").empty()) << c.path;
  }
  const auto r = client.Get("/no/such/endpoint");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/problem+json");
}

TEST(LogServer, AddNeedsTheBearerToken) {
  TestLog t(2);
  LogServer server(t.log, t.key, {.append_token = "s3cret-token"});
  Served http([&](httplib::Server& h) { server.install(h); });
  httplib::Client client(http.url());
  for (const std::string& auth : {std::string(), std::string("Bearer wrong"), std::string("Bearer s3cret-token2"),
                                  std::string("Bearer s3cret-toke"), std::string("bearer s3cret-token"),
                                  std::string("Basic s3cret-token"), std::string("Bearer ")}) {
    httplib::Headers headers;
    if (!auth.empty()) headers.emplace("Authorization", auth);
    const auto r = client.Post("/add", headers, "new entry", "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << auth;
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  }
  EXPECT_EQ(t.log.size(), 2u);
  const httplib::Headers good = {{"Authorization", "Bearer s3cret-token"}};
  auto r = client.Post("/add", good, "new entry", "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(body_json(r), json({{"index", 2}, {"size", 3}}));
  r = client.Post("/add", good, "new entry", "application/octet-stream");  // idempotent
  EXPECT_EQ(body_json(r), json({{"index", 2}, {"size", 3}}));
  r = client.Post("/add", good, "entry 0", "application/octet-stream");
  EXPECT_EQ(body_json(r), json({{"index", 0}, {"size", 3}}));
  // The checkpoint follows at once.
  r = client.Get("/checkpoint");
  const NoteVerifier verifiers[] = {t.key.verifier()};
  std::vector<std::string> entries = t.entries;
  entries.push_back("new entry");
  EXPECT_EQ(parse_checkpoint(verify_note(r->body, verifiers).text).root_hash, merkle_root(leaf_hashes_of(entries, 3)));
  // The entry limit.
  r = client.Post("/add", good, std::string(kMaxLogEntrySize + 1, 'x'), "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  r = client.Post("/add", good, std::string(kMaxLogEntrySize, 'x'), "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(body_json(r), json({{"index", 3}, {"size", 4}}));

  // A server without a token takes no appends.
  LogServer closed(t.log, t.key);
  Served http2([&](httplib::Server& h) { closed.install(h); });
  r = httplib::Client(http2.url()).Post("/add", good, "another", "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(t.log.size(), 4u);
}

TEST(LogServer, SeesAppendsOfAnotherProcess) {
  TestLog t(3);
  LogServer server(t.log, t.key);
  Served http([&](httplib::Server& h) { server.install(h); });
  TransparencyLog other = TransparencyLog::open(t.dir.path() + "/log");
  other.append(as_bytes("from elsewhere"));
  httplib::Client client(http.url());
  auto r = client.Get("/entries/3");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "from elsewhere");
  r = client.Get("/checkpoint");
  const NoteVerifier verifiers[] = {t.key.verifier()};
  EXPECT_EQ(parse_checkpoint(verify_note(r->body, verifiers).text).size, 4u);
}

// The client through a relay that serves the log under /log (as nginx does), and against a
// server that answers nonsense.
TEST(LogServer, ClientThroughAPathPrefix) {
  TestLog t(6);
  LogServer server(t.log, t.key, {.append_token = "tok"});
  Served log_http([&](httplib::Server& h) { server.install(h); });
  Served relay([&](httplib::Server& h) {
    auto forward = [&](const httplib::Request& req, httplib::Response& res) {
      httplib::Client upstream(log_http.url());
      std::string path = req.path.substr(4);
      if (!req.params.empty()) {
        path += "?";
        for (const auto& [k, v] : req.params) path += k + "=" + v + "&";
        path.pop_back();
      }
      const auto r = req.method == "POST" ? upstream.Post(path, req.headers, req.body, "application/octet-stream")
                                          : upstream.Get(path);
      res.status = r->status;
      res.set_content(r->body, r->get_header_value("Content-Type").c_str());
    };
    h.Get(R"(/log/.*)", forward);
    h.Post(R"(/log/.*)", forward);
  });
  LogClient client(relay.url() + "/log/");
  const NoteVerifier verifiers[] = {t.key.verifier()};
  const Checkpoint cp = parse_checkpoint(verify_note(client.checkpoint(), verifiers).text);
  EXPECT_EQ(cp.size, 6u);
  EXPECT_EQ(cp.root_hash, merkle_root(t.leaves(6)));
  EXPECT_EQ(client.inclusion_proof(2, 6), inclusion_proof(t.leaves(6), 2));
  EXPECT_EQ(client.consistency_proof(3, 6), consistency_proof(t.leaves(6), 3));
  EXPECT_EQ(client.entry(5), Bytes(t.entries[5].begin(), t.entries[5].end()));
  EXPECT_EQ(client.find(merkle_leaf_hash(as_bytes("entry 4"))), 4u);
  EXPECT_EQ(client.find(merkle_leaf_hash(as_bytes("nope"))), std::nullopt);
  EXPECT_EQ(client.add(as_bytes("added"), "tok"), 6u);
  const LogClient::Added again = client.add_entry(as_bytes("added"), "tok");
  EXPECT_EQ(again.index, 6u);
  EXPECT_EQ(again.size, 7u);
  std::string message = error_of([&] { client.add(as_bytes("x"), "wrong"); });
  EXPECT_NE(message.find("401"), std::string::npos) << message;
  message = error_of([&] { client.inclusion_proof(9, 12); });
  EXPECT_NE(message.find("400"), std::string::npos) << message;
  EXPECT_NE(message.find("beyond the tree"), std::string::npos) << message;
  message = error_of([&] { client.entry(99); });
  EXPECT_NE(message.find("404"), std::string::npos) << message;
  EXPECT_NE(error_of([&] { client.find(Bytes(31)); }).find("32 bytes"), std::string::npos);
  EXPECT_NE(error_of([&] { client.add(as_bytes("x"), "two words"); }).find("token"), std::string::npos);

  // Nothing listens.
  LogClient nobody("http://127.0.0.1:1");
  message = error_of([&] { nobody.checkpoint(); });
  EXPECT_NE(message.find("cannot connect"), std::string::npos) << message;
}

TEST(LogServer, ClientRefusesMalformedAnswers) {
  std::string body, type = "application/json";
  int status = 200;
  Served fake([&](httplib::Server& h) {
    auto answer = [&](const httplib::Request&, httplib::Response& res) {
      res.status = status;
      res.set_content(body, type.c_str());
    };
    h.Get(R"(/.*)", answer);
    h.Post(R"(/.*)", answer);
  });
  LogClient client(fake.url());
  const std::string h32 = base64_encode(Bytes(32, 7));
  const struct {
    std::string body;
    std::string expected;
  } proofs[] = {
      {"not json", "not valid JSON"},
      {"[1,2]", "not a JSON object"},
      {R"({"index":1,"size":2})", "\"hashes\" is missing"},
      {R"({"index":1,"size":2,"hashes":"x"})", "\"hashes\" is missing or not an array"},
      {R"({"index":2,"size":2,"hashes":[]})", "\"index\" is 2, not the 1"},
      {R"({"index":1,"size":3,"hashes":[]})", "\"size\" is 3"},
      {R"({"index":-1,"size":2,"hashes":[]})", "\"index\" is missing or not an unsigned"},
      {R"({"index":1.0,"size":2,"hashes":[]})", "\"index\" is missing or not an unsigned"},
      {R"({"index":1,"size":2,"hashes":[1]})", "hashes[0] is not a string"},
      {R"({"index":1,"size":2,"hashes":["AAAA"]})", "hashes[0] is 3 bytes"},
      {R"({"index":1,"size":2,"hashes":["!!!!"]})", "hashes[0]: base64"},
  };
  for (const auto& c : proofs) {
    body = c.body;
    const std::string message = error_of([&] { client.inclusion_proof(1, 2); });
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.body << " -> " << message;
    EXPECT_NE(message.find("/proof/inclusion?index=1&size=2"), std::string::npos) << message;
  }
  json many = {{"first", 1}, {"second", 2}, {"hashes", json::array()}};
  for (int i = 0; i < 66; ++i) many["hashes"].push_back(h32);
  body = many.dump();
  EXPECT_NE(error_of([&] { client.consistency_proof(1, 2); }).find("66 hashes"), std::string::npos);
  body = std::string(kMaxLogResponse + 1, ' ');
  EXPECT_NE(error_of([&] { client.consistency_proof(1, 2); }).find("longer than"), std::string::npos);
  body = R"({"index":5,"size":5})";
  EXPECT_NE(error_of([&] { client.add(as_bytes("x"), "t"); }).find("not below the size"), std::string::npos);
  body = "{}";
  EXPECT_NE(error_of([&] { client.find(Bytes(32)); }).find("\"index\" is missing"), std::string::npos);
  type = "text/plain";
  body = "not a note";
  EXPECT_NE(error_of([&] { client.checkpoint(); }).find("not a signed note"), std::string::npos);
  EXPECT_NE(error_of([&] { client.entry(0); }).find("not application/octet-stream"), std::string::npos);
  status = 500;
  body = R"({"title":"disk on fire\u001b[31m"})";
  const std::string message = error_of([&] { client.entry(0); });
  EXPECT_NE(message.find("answered 500: disk on fire?[31m"), std::string::npos) << message;

  for (const char* bad : {"ftp://h/x", "http://", "http://h:0", "http://h:99999", "http://u@h/", "http://h/?q",
                                 "http://h/#f", "http://h /", "https://[::1"}) {
    EXPECT_THROW(LogClient{bad}, Error) << bad;
  }
  EXPECT_EQ(parse_base_url("https://relay.example:8443/log/").origin, "https://relay.example:8443");
  EXPECT_EQ(parse_base_url("https://relay.example:8443/log/").prefix, "/log");
  EXPECT_EQ(parse_base_url("http://[::1]:80").origin, "http://[::1]:80");
  EXPECT_EQ(parse_base_url("http://h").prefix, "");
}

// ---------------------------------------------------------------------------------------------
// The witness

struct TestWitness {
  test::TempDir dir;
  NoteSigner key = NoteSigner::generate("witness.example/w1");
};

std::string signed_checkpoint(const TestLog& t, uint64_t size) {
  return sign_note(format_checkpoint({t.log.origin(), size, t.log.root(size), {}}), t.key);
}

// The cosignature lines must verify as the witness's signature over the checkpoint's text.
void expect_cosigned(const WitnessReply& r, const std::string& note, const NoteSigner& witness) {
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string text = parse_note(note).text;
  const NoteVerifier verifiers[] = {witness.verifier()};
  const VerifiedNote v = verify_note(text + "\n" + r.body, verifiers);
  ASSERT_EQ(v.verified.size(), 1u);
  EXPECT_EQ(v.verified[0].name, "witness.example/w1");
}

TEST(Witness, CosignsAGrowingLogAndRefusesTheRest) {
  TestLog t(12);
  TestWitness w;
  const std::string state = w.dir.file("state");
  Witness witness(NoteSigner::parse(w.key.format()), t.key.verifier(), state);
  EXPECT_EQ(witness.origin(), "example.org/test-log");
  EXPECT_EQ(witness.latest(), std::nullopt);

  std::string note5 = signed_checkpoint(t, 5);
  expect_cosigned(witness.add_checkpoint(format_add_checkpoint(0, {}, note5)), note5, w.key);
  ASSERT_TRUE(witness.latest());
  EXPECT_EQ(witness.latest()->size, 5u);
  // The same checkpoint again: the state is the same.
  expect_cosigned(witness.add_checkpoint(format_add_checkpoint(5, {}, note5)), note5, w.key);
  // The log thinks the witness is empty: 409 with the size it knows.
  WitnessReply r = witness.add_checkpoint(format_add_checkpoint(0, {}, signed_checkpoint(t, 8)));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.content_type, "text/x.tlog.size");
  EXPECT_EQ(r.body, "5\n");
  // Growth with the right proof.
  const std::string note8 = signed_checkpoint(t, 8);
  expect_cosigned(witness.add_checkpoint(format_add_checkpoint(5, t.log.consistency_proof(5, 8), note8)), note8, w.key);
  EXPECT_EQ(witness.latest()->size, 8u);
  // A wrong proof.
  std::vector<Bytes> bad = t.log.consistency_proof(8, 12);
  bad[0][3] ^= 1;
  EXPECT_EQ(witness.add_checkpoint(format_add_checkpoint(8, bad, signed_checkpoint(t, 12))).status, 422);
  EXPECT_EQ(witness.add_checkpoint(format_add_checkpoint(8, {}, signed_checkpoint(t, 12))).status, 422);
  EXPECT_EQ(witness.add_checkpoint(format_add_checkpoint(8, t.log.consistency_proof(5, 8), note8)).status, 422);
  // Smaller than what it cosigned: never.
  EXPECT_EQ(witness.add_checkpoint(format_add_checkpoint(8, {}, signed_checkpoint(t, 6))).status, 400);
  r = witness.add_checkpoint(format_add_checkpoint(6, {}, signed_checkpoint(t, 6)));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body, "8\n");
  EXPECT_EQ(witness.add_checkpoint(format_add_checkpoint(5, t.log.consistency_proof(5, 6), signed_checkpoint(t, 6))).status, 409);

  // A fork: the same key and origin over other entries.
  TestLog fork(12, "forked ");
  auto forked = [&](uint64_t size) {
    return sign_note(format_checkpoint({t.log.origin(), size, fork.log.root(size), {}}), t.key);
  };
  r = witness.add_checkpoint(format_add_checkpoint(8, fork.log.consistency_proof(8, 10), forked(10)));
  EXPECT_EQ(r.status, 422) << r.body;
  r = witness.add_checkpoint(format_add_checkpoint(8, {}, forked(8)));  // same size, other root
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(witness.latest()->size, 8u);
  EXPECT_EQ(witness.latest()->root_hash, t.log.root(8));

  // Signatures: another key of the same name, a broken signature, an unsigned note, another origin.
  const NoteSigner impostor = NoteSigner::generate("example.org/test-log");
  const std::string text12 = format_checkpoint({t.log.origin(), 12, t.log.root(12), {}});
  const std::vector<Bytes> proof12 = t.log.consistency_proof(8, 12);
  r = witness.add_checkpoint(format_add_checkpoint(8, proof12, sign_note(text12, impostor)));
  EXPECT_EQ(r.status, 403) << r.body;
  Note broken = parse_note(sign_note(text12, t.key));
  broken.signatures[0].signature[10] ^= 1;
  EXPECT_EQ(witness.add_checkpoint(format_add_checkpoint(8, proof12, format_note(broken))).status, 403);
  TestLog other_origin(3);
  const std::string other_note =
      sign_note(format_checkpoint({"example.org/another-log", 12, t.log.root(12), {}}), t.key);
  EXPECT_EQ(witness.add_checkpoint(format_add_checkpoint(8, proof12, other_note)).status, 404);
  EXPECT_EQ(witness.latest()->size, 8u);

  // Malformed bodies.
  const std::string note12 = signed_checkpoint(t, 12);
  for (const std::string& body :
       {std::string(""), "old 8\n" + note12, "8\n\n" + note12, "old 08\n\n" + note12, "old -8\n\n" + note12,
        "old 8\nnot-base64\n\n" + note12, "old 8\nAAAA\n\n" + note12, std::string("old 8\n\nnot a note"), std::string("old 8"),
        "old 13\n\n" + note12}) {
    r = witness.add_checkpoint(body);
    EXPECT_EQ(r.status, 400) << body.substr(0, 40) << " -> " << r.body;
  }
  // A proof from size 0 (to a witness that has cosigned nothing).
  Witness fresh(NoteSigner::parse(w.key.format()), t.key.verifier(), w.dir.file("fresh-state"));
  r = fresh.add_checkpoint("old 0\n" + base64_encode(Bytes(32)) + "\n\n" + note12);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(fresh.latest(), std::nullopt);
  std::string many = "old 8\n";
  for (int i = 0; i < 64; ++i) many += base64_encode(Bytes(32)) + "\n";
  EXPECT_EQ(witness.add_checkpoint(many + "\n" + note12).status, 400);

  // And it still grows the honest log; the state survives a restart.
  expect_cosigned(witness.add_checkpoint(format_add_checkpoint(8, proof12, note12)), note12, w.key);
  Witness restarted(NoteSigner::parse(w.key.format()), t.key.verifier(), state);
  ASSERT_TRUE(restarted.latest());
  EXPECT_EQ(restarted.latest()->size, 12u);
  EXPECT_EQ(restarted.latest()->root_hash, t.log.root(12));
  r = restarted.add_checkpoint(format_add_checkpoint(0, {}, note12));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body, "12\n");
  // A state file that does not check is an error naming it.
  w.dir.write("bad-state", std::string("garbage\n"));
  std::string message = error_of([&] { Witness(NoteSigner::parse(w.key.format()), t.key.verifier(), w.dir.file("bad-state")); });
  EXPECT_NE(message.find("bad-state"), std::string::npos) << message;
  message = error_of([&] { Witness(NoteSigner::parse(w.key.format()), t.key.verifier(), state, "other.origin"); });
  EXPECT_NE(message.find("not other.origin"), std::string::npos) << message;
}

// The log server asks the witness over HTTP: the checkpoint carries both signatures; the 409
// path (a witness that already cosigned a smaller size than the server thinks) is retried with a
// proof; a forked log server gets nothing from the same witness; a witness that is down leaves the
// checkpoint with the log's signature only.
TEST(Witness, LogServerGathersCosignatures) {
  TestLog t(5);
  TestWitness w;
  Witness witness(NoteSigner::parse(w.key.format()), t.key.verifier(), w.dir.file("state"));
  std::atomic<int> requests{0};
  Served witness_http([&](httplib::Server& h) {
    witness.install(h);
    h.set_pre_routing_handler([&](const httplib::Request&, httplib::Response&) {
      ++requests;
      return httplib::Server::HandlerResponse::Unhandled;
    });
  });
  // The witness first cosigns size 3 behind the server's back, so the server's first try (old 0)
  // gets a 409.
  const std::string note3 = signed_checkpoint(t, 3);
  ASSERT_EQ(witness.add_checkpoint(format_add_checkpoint(0, {}, note3)).status, 200);
  const NoteVerifier both[] = {t.key.verifier(), w.key.verifier()};
  {
    LogServer server(t.log, t.key, {.append_token = "tok", .witnesses = {{witness_http.url(), w.key.verifier()}}});
    EXPECT_EQ(requests, 2);  // 409, then the retry with a proof from 3
    EXPECT_TRUE(server.witness_errors().empty());
    VerifiedNote v = verify_note(server.update(), both);
    EXPECT_EQ(v.verified.size(), 2u);
    EXPECT_EQ(parse_checkpoint(v.text).size, 5u);
    EXPECT_EQ(witness.latest()->size, 5u);
    EXPECT_EQ(requests, 2);  // nothing changed, nothing asked
    t.add("entry 5");
    t.add("entry 6");
    v = verify_note(server.update(), both);
    EXPECT_EQ(v.verified.size(), 2u);
    EXPECT_EQ(parse_checkpoint(v.text).size, 7u);
    EXPECT_EQ(requests, 3);
    EXPECT_EQ(witness.latest()->size, 7u);
    // Through HTTP, the checkpoint with the witness's signature.
    Served http([&](httplib::Server& h) { server.install(h); });
    const auto r = httplib::Client(http.url()).Get("/checkpoint");
    ASSERT_TRUE(r);
    EXPECT_EQ(verify_note(r->body, both).verified.size(), 2u);
  }
  // A fork of the log, signed by the same key, larger: the witness refuses it.
  TestLog fork(9, "forked ");
  fork.key = NoteSigner::parse(t.key.format());
  {
    LogServer server(fork.log, fork.key, {.witnesses = {{witness_http.url(), w.key.verifier()}}});
    ASSERT_EQ(server.witness_errors().size(), 1u);
    EXPECT_NE(server.witness_errors()[0].find("answered 422"), std::string::npos) << server.witness_errors()[0];
    const std::string note = server.update();
    EXPECT_EQ(parse_note(note).signatures.size(), 1u);
    const NoteVerifier witness_only[] = {w.key.verifier()};
    EXPECT_THROW(verify_note(note, witness_only), Error);
    EXPECT_EQ(witness.latest()->size, 7u);
  }
  // A witness that is down.
  int closed_port;
  { Served gone([](httplib::Server&) {}); closed_port = gone.port(); }
  LogServer server(t.log, t.key, {.witnesses = {{"http://127.0.0.1:" + std::to_string(closed_port), w.key.verifier()}}});
  ASSERT_EQ(server.witness_errors().size(), 1u);
  const std::string note = server.update();
  const NoteVerifier log_only[] = {t.key.verifier()};
  EXPECT_EQ(verify_note(note, log_only).verified.size(), 1u);
  EXPECT_EQ(parse_note(note).signatures.size(), 1u);
}

}  // namespace
}  // namespace orchard::cloud
