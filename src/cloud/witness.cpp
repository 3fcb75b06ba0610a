#include "cloud/witness.h"

#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/mapped_file.h"
#include "cloud/crypto.h"
#include "cloud/merkle.h"

namespace orchard::cloud {
namespace {

constexpr size_t kMaxStateFile = 1 << 16;

WitnessReply reply(int status, std::string message) {
  return {status, "text/plain; charset=utf-8", std::move(message) + "\n"};
}

}  // namespace

std::optional<uint64_t> parse_tree_size(std::string_view text) {
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::string format_add_checkpoint(uint64_t old_size, const std::vector<Bytes>& proof, std::string_view signed_note) {
  std::string out = str_cat("old ", old_size, "\n");
  for (const Bytes& hash : proof) out += base64_encode(hash) + "\n";
  out += "\n";
  out += signed_note;
  return out;
}

AddCheckpointRequest parse_add_checkpoint(std::string_view body) {
  if (body.size() > kMaxAddCheckpointBody)
    fail("add-checkpoint: the body is ", body.size(), " bytes, more than ", kMaxAddCheckpointBody);
  size_t line_number = 0;
  auto next_line = [&]() {
    const size_t end = body.find('\n');
    ++line_number;
    if (end == std::string_view::npos) fail("add-checkpoint: line ", line_number, " does not end with a newline");
    const std::string_view line = body.substr(0, end);
    body.remove_prefix(end + 1);
    return line;
  };
  AddCheckpointRequest out;
  const std::string_view old_line = next_line();
  if (old_line.substr(0, 4) != "old ") fail("add-checkpoint: the first line is not \"old SIZE\"");
  const std::optional<uint64_t> old_size = parse_tree_size(old_line.substr(4));
  if (!old_size) fail("add-checkpoint: the old size is not a decimal number without leading zeros");
  out.old_size = *old_size;
  for (std::string_view line = next_line(); !line.empty(); line = next_line()) {
    if (out.proof.size() == kMaxWitnessProofLines)
      fail("add-checkpoint: more than ", kMaxWitnessProofLines, " consistency proof lines");
    Bytes hash;
    try {
      hash = base64_decode(line);
    } catch (const Error& e) {
      fail("add-checkpoint: proof line ", out.proof.size() + 1, ": ", e.what());
    }
    if (hash.size() != kSha256Size) fail("add-checkpoint: proof line ", out.proof.size() + 1, " is not a 32-byte hash");
    out.proof.push_back(std::move(hash));
  }
  out.note = body;
  return out;
}

Witness::Witness(NoteSigner key, NoteVerifier log_key, std::string state_path, std::string origin)
    : key_(std::move(key)), log_key_(std::move(log_key)), state_path_(std::move(state_path)),
      origin_(origin.empty() ? log_key_.name : std::move(origin)) {
  struct stat st {};
  if (::stat(state_path_.c_str(), &st) != 0) {
    if (errno != ENOENT) fail("witness state ", state_path_, ": ", std::strerror(errno));
    return;  // no checkpoint cosigned yet
  }
  try {
    const NoteVerifier verifiers[] = {log_key_};
    Checkpoint cp = parse_checkpoint(verify_note(read_text_file(state_path_, kMaxStateFile), verifiers).text);
    if (cp.origin != origin_) fail("it is for the log ", cp.origin, ", not ", origin_);
    latest_ = std::move(cp);
  } catch (const Error& e) {
    fail("witness state ", state_path_, ": ", e.what());
  }
}

std::optional<Checkpoint> Witness::latest() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return latest_;
}

WitnessReply Witness::add_checkpoint(std::string_view body) {
  AddCheckpointRequest request;
  try {
    request = parse_add_checkpoint(body);
    parse_note(request.note);
  } catch (const Error& e) {
    return reply(400, e.what());
  }
  VerifiedNote verified;
  try {
    const NoteVerifier verifiers[] = {log_key_};
    verified = verify_note(request.note, verifiers);
  } catch (const Error& e) {
    return reply(403, str_cat("the checkpoint is not signed by the log's key ", log_key_.name, ": ", e.what()));
  }
  Checkpoint cp;
  try {
    cp = parse_checkpoint(verified.text);
  } catch (const Error& e) {
    return reply(400, e.what());
  }
  if (cp.origin != origin_) return reply(404, str_cat("this witness does not know the log ", cp.origin));
  if (request.old_size > cp.size)
    return reply(400, str_cat("the old size ", request.old_size, " is larger than the checkpoint's ", cp.size));

  // The check and the update of the state, as one step.
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t known = latest_ ? latest_->size : 0;
  if (request.old_size != known) return {409, "text/x.tlog.size", str_cat(known, "\n")};
  if (request.old_size == 0) {
    if (!request.proof.empty()) return reply(400, "a consistency proof from size 0 must be empty");
  } else if (request.old_size == cp.size) {
    if (latest_->root_hash != cp.root_hash)
      return {409, "text/x.tlog.size", str_cat(known, "\n")};  // the same size with another root: a fork
    if (!request.proof.empty()) return reply(422, "a consistency proof between equal sizes must be empty");
  } else if (!verify_consistency(request.old_size, cp.size, latest_->root_hash, cp.root_hash, request.proof)) {
    return reply(422, str_cat("the consistency proof from size ", request.old_size, " to ", cp.size, " does not verify"));
  }
  if (!latest_ || latest_->size != cp.size || latest_->root_hash != cp.root_hash) {
    try {
      AtomicFile file(state_path_);
      file.write(format_note(Note{verified.text, verified.verified}));
      file.commit();
    } catch (const Error& e) {
      return reply(500, str_cat("the witness cannot save its state: ", e.what()));
    }
    latest_ = cp;
  }
  const std::string cosigned = sign_note(verified.text, key_);
  return {200, "text/plain; charset=utf-8", cosigned.substr(verified.text.size() + 1)};
}

void Witness::install(httplib::Server& http) {
  http.set_payload_max_length(kMaxAddCheckpointBody);
  http.Post("/add-checkpoint", [this](const httplib::Request& req, httplib::Response& res) {
    const WitnessReply r = add_checkpoint(req.body);
    res.status = r.status;
    res.set_content(r.body, r.content_type.c_str());
  });
}

}  // namespace orchard::cloud
