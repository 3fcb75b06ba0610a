#include "cloud/attestation.h"

#include <charconv>
#include <vector>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/key_file.h"
#include "cloud/tpm_attester.h"
#include "cloud/tpm_quote.h"

namespace orchard::cloud {
namespace {

constexpr std::string_view kHeader = "orchard attestation v1";
// Domain separation: the software attester's key signs nothing but this.
constexpr std::string_view kSoftwareEvidenceContext = "orchard software attester v1\n";
constexpr size_t kMaxDocument = 64 << 10;

Bytes software_message(ByteView digest) {
  Bytes message(kSoftwareEvidenceContext.begin(), kSoftwareEvidenceContext.end());
  put_bytes(message, digest);
  return message;
}

std::string_view field(std::string_view line, std::string_view key) {
  if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ' ')
    fail("attestation document: expected a '", key, "' line");
  const std::string_view value = line.substr(key.size() + 1);
  for (char c : value)
    if (c <= ' ' || c >= 0x7f) fail("attestation document: '", key, "' has a space or an unprintable character");
  if (value.empty()) fail("attestation document: '", key, "' is empty");
  return value;
}

int64_t unix_field(std::string_view line, std::string_view key) {
  const std::string_view value = field(line, key);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || v < 0 || (value.size() > 1 && value[0] == '0'))
    fail("attestation document: '", key, "' is not a time in Unix seconds");
  return v;
}

int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

std::string AttestationDocument::body() const {
  return std::string(kHeader) + "\nnode " + node + "\nmeasurement " + to_hex(measurement) + "\nsigning-key " +
         signing_key + "\nattester " + attester + "\nidentity " + identity + "\nissued " + std::to_string(issued) +
         "\nexpires " + std::to_string(expires) + "\n";
}

std::string AttestationDocument::serialize() const { return body() + "evidence " + base64_encode(evidence) + "\n"; }

AttestationDocument AttestationDocument::parse(std::string_view text) {
  if (text.size() > kMaxDocument) fail("attestation document: larger than ", kMaxDocument, " bytes");
  if (text.empty() || text.back() != '\n') fail("attestation document: does not end with a newline");
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    const size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (lines.size() != 9 || lines[0] != kHeader) fail("attestation document: not an '", kHeader, "' document of 9 lines");
  AttestationDocument d;
  d.node = field(lines[1], "node");
  const std::string_view measurement = field(lines[2], "measurement");
  if (measurement.size() != 64) fail("attestation document: the measurement is not 64 hex digits");
  d.measurement = from_hex(measurement);
  if (to_hex(d.measurement) != measurement) fail("attestation document: the measurement is not lowercase hex");
  d.signing_key = field(lines[3], "signing-key");
  d.attester = field(lines[4], "attester");
  d.identity = field(lines[5], "identity");
  d.issued = unix_field(lines[6], "issued");
  d.expires = unix_field(lines[7], "expires");
  d.evidence = base64_decode(field(lines[8], "evidence"));
  if (d.serialize() != text) fail("attestation document: not in its canonical form");
  return d;
}

AttestationDocument make_attestation(Attester& attester, const std::string& node, ByteView measurement,
                                     const NoteVerifier& signing_key, std::chrono::system_clock::time_point issued,
                                     std::chrono::seconds validity) {
  AttestationDocument d;
  d.node = node;
  d.measurement.assign(measurement.begin(), measurement.end());
  d.signing_key = signing_key.format();
  d.attester = std::string(attester.kind());
  d.identity = attester.identity();
  d.issued = unix_seconds(issued);
  d.expires = d.issued + validity.count();
  d.evidence = attester.attest(sha256(as_bytes(d.body())));
  return d;
}

void verify_evidence(std::string_view kind, std::string_view identity, ByteView measurement, ByteView document_digest,
                     ByteView evidence) {
  if (kind == "software") {
    NoteVerifier key;
    try {
      key = NoteVerifier::parse(identity);
    } catch (const Error& e) {
      throw AttestationError(std::string("software attester: identity is not a vkey: ") + e.what());
    }
    if (!key.verify(software_message(document_digest), evidence))
      throw AttestationError("software attester: the signature over the document does not verify");
    return;
  }
  if (kind == "tpm") return verify_tpm_evidence(identity, measurement, document_digest, evidence);
  throw AttestationError("unknown attester kind '" + std::string(kind) + "'");
}

void verify_attestation(const AttestationDocument& d, std::chrono::system_clock::time_point now) {
  try {
    NoteVerifier::parse(d.signing_key);
  } catch (const Error& e) {
    throw AttestationError(std::string("attestation: the signing key is not a vkey: ") + e.what());
  }
  verify_evidence(d.attester, d.identity, d.measurement, sha256(as_bytes(d.body())), d.evidence);
  const int64_t t = unix_seconds(now);
  if (d.expires <= t) throw AttestationError("attestation expired " + std::to_string(t - d.expires) + " s ago");
  if (d.issued > t + 300) throw AttestationError("attestation issued in the future (clock skew over 5 minutes)");
  if (d.expires <= d.issued) throw AttestationError("attestation expires before it was issued");
}

Bytes SoftwareAttester::attest(ByteView document_digest) { return key_.sign(software_message(document_digest)); }

std::unique_ptr<Attester> make_attester(const std::string& spec, const std::string& key_file) {
  if (spec == "software") {
    if (key_file.empty()) fail("the software attester needs its key file (--attester-key)");
    return std::make_unique<SoftwareAttester>(load_signer(key_file));
  }
  if (spec.rfind("tpm:", 0) == 0) return std::make_unique<TpmAttester>(spec.substr(4));
  fail("unknown attester '", spec, "': use software or tpm:TCTI");
}

}  // namespace orchard::cloud
