// orchard log serve   --dir DIR --key FILE [--origin NAME] [--host H] [--port N] [--append-token-file F]
//                     [--witness URL[,URL...] --witness-vkey VKEY[,VKEY...]] [--ca-file PEM]
// orchard log append  --url URL --token-file F --entry FILE [--ca-file PEM]
// orchard log append  --dir DIR --entry FILE [--repeat N]
// orchard log witness --key FILE --log-vkey VKEY --state FILE [--origin NAME] [--host H] [--port N]
//
// The private cloud's transparency log (src/cloud/tlog.h, log_server.h, witness.h). `serve`
// creates DIR's log on first use (origin: --origin, else the log key's name) and serves its HTTP
// API; `append` adds one entry through that API with the append token, or straight to DIR's file
// under its lock, and prints {"index":I,"size":N}; `witness` cosigns the log's checkpoints.
// --witness and --witness-vkey are comma-separated lists of the same length (an option is given
// once). --port 0 (the default) takes any free port; both servers print "listening on
// http://H:P" once ready, and stop on SIGTERM or SIGINT.
//
// `append --dir DIR --entry F --repeat N` (for the kill -9 test, tests/cloud/tlog_crash_test.py)
// appends N entries, entry k being F's bytes, '#' and k in decimal, and prints one line per
// append once it is durable.
#include <httplib.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mapped_file.h"
#include "cloud/key_file.h"
#include "cloud/log_client.h"
#include "cloud/log_server.h"
#include "cloud/tlog.h"
#include "cloud/witness.h"
#include "command.h"

namespace orchard::cli {
namespace {

volatile std::sig_atomic_t stop_requested = 0;

void stop_on_signals() {
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  std::signal(SIGPIPE, SIG_IGN);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// A token file: its first line, printable ASCII without spaces.
std::string read_token(const std::string& path) {
  std::string token = read_text_file(path, 4096);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.empty()) fail("token file ", path, ": empty");
  for (char c : token)
    if (c <= 0x20 || c >= 0x7f) fail("token file ", path, ": the token must be one line of printable ASCII without spaces");
  return token;
}

int port_option(Args& args) {
  const int64_t port = args.get_int("port").value_or(0);
  if (port < 0 || port > 65535) fail("orchard ", args.command(), ": --port must be from 0 to 65535");
  return static_cast<int>(port);
}

void print_listening(const std::string& host, int port) {
  std::printf("listening on http://%s:%d\n", host.c_str(), port);
  std::fflush(stdout);
}

int log_serve(Args& args) {
  const std::string dir = args.require("dir");
  const cloud::NoteSigner key = cloud::load_signer(args.require("key"));
  const std::optional<std::string> origin = args.get("origin");
  const std::string host = args.get_or("host", "127.0.0.1");
  const int port = port_option(args);
  cloud::LogServerOptions options;
  if (const auto token_file = args.get("append-token-file")) options.append_token = read_token(*token_file);
  const std::optional<std::string> witness_urls = args.get("witness");
  const std::optional<std::string> witness_keys = args.get("witness-vkey");
  options.ca_file = args.get_or("ca-file", "");
  args.finish();
  if (witness_urls.has_value() != witness_keys.has_value())
    fail("orchard log serve: --witness and --witness-vkey go together");
  if (witness_urls) {
    const std::vector<std::string> urls = split_list(*witness_urls), keys = split_list(*witness_keys);
    if (urls.size() != keys.size())
      fail("orchard log serve: ", urls.size(), " witness URLs but ", keys.size(), " witness vkeys");
    for (size_t i = 0; i < urls.size(); ++i) options.witnesses.push_back({urls[i], cloud::load_verifier(keys[i])});
  }
  cloud::TransparencyLog log = cloud::TransparencyLog::open_or_create(dir, origin.value_or(key.name()));
  if (origin && log.origin() != *origin)
    fail("orchard log serve: ", log.path(), " is the log of ", log.origin(), ", not ", *origin);
  stop_on_signals();
  cloud::LogServer server(log, key, std::move(options));
  httplib::Server http;
  server.install(http);
  cloud::run_http_server(
      http, host, port, [&](int bound) { print_listening(host, bound); }, [] { return stop_requested != 0; },
      [&] { server.update(); });
  return 0;
}

int log_append(Args& args) {
  const std::string entry_path = args.require("entry");
  const std::optional<std::string> url = args.get("url");
  const std::optional<std::string> dir = args.get("dir");
  if (url.has_value() == dir.has_value()) fail("orchard log append: give either --url (with --token-file) or --dir");
  const std::string entry = read_text_file(entry_path, cloud::kMaxLogEntrySize);
  if (url) {
    const std::string token = read_token(args.require("token-file"));
    const std::string ca_file = args.get_or("ca-file", "");
    args.finish();
    cloud::LogClient client(*url, ca_file);
    const cloud::LogClient::Added added = client.add_entry(cloud::as_bytes(entry), token);
    std::printf("{\"index\":%llu,\"size\":%llu}\n", static_cast<unsigned long long>(added.index),
                static_cast<unsigned long long>(added.size));
    return 0;
  }
  const int64_t repeat = args.get_int("repeat").value_or(0);
  args.finish();
  if (repeat < 0) fail("orchard log append: --repeat must not be negative");
  cloud::TransparencyLog log = cloud::TransparencyLog::open(*dir);
  for (int64_t k = 0; k < std::max<int64_t>(repeat, 1); ++k) {
    const std::string bytes = repeat == 0 ? entry : entry + "#" + std::to_string(k);
    const uint64_t index = log.append(cloud::as_bytes(bytes));
    std::printf("{\"index\":%llu,\"size\":%llu}\n", static_cast<unsigned long long>(index),
                static_cast<unsigned long long>(log.size()));
    std::fflush(stdout);
  }
  return 0;
}

int log_witness(Args& args) {
  cloud::NoteSigner key = cloud::load_signer(args.require("key"));
  const cloud::NoteVerifier log_key = cloud::load_verifier(args.require("log-vkey"));
  const std::string state = args.require("state");
  const std::string origin = args.get_or("origin", "");
  const std::string host = args.get_or("host", "127.0.0.1");
  const int port = port_option(args);
  args.finish();
  cloud::Witness witness(std::move(key), log_key, state, origin);
  stop_on_signals();
  httplib::Server http;
  witness.install(http);
  cloud::run_http_server(
      http, host, port, [&](int bound) { print_listening(host, bound); }, [] { return stop_requested != 0; });
  return 0;
}

const RegisterCommand kServe("log serve", "serve the transparency log's checkpoints, proofs and entries", log_serve);
const RegisterCommand kAppend("log append", "append an entry to the transparency log", log_append);
const RegisterCommand kWitness("log witness", "cosign a transparency log's consistent checkpoints", log_witness);

}  // namespace
}  // namespace orchard::cli
