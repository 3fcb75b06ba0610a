// What an attested client reads from nodes, the relay and the transparency log before it trusts a
// node (node_bundle.h): signed notes and the log's checkpoints in them, attestation documents,
// release statements and the bundle JSON that carries them all. The first byte of the input
// picks the reader ('0' note, '1' document, '2' release, '3' bundle; any byte, modulo 4), the
// rest is what it reads:
//   0  parse_note (format_note must give back the input), verify_note with the fixed keys below,
//      parse_checkpoint of the note's text (format_checkpoint must give it back), verify_release
//   1  AttestationDocument::parse (serialize must give back the input), verify_attestation at a
//      fixed time: the document's own identity and evidence, software or TPM
//   2  parse_release (format_release must give back the input)
//   3  parse_bundle (formatted and parsed again, the same bundle), then the client's whole chain,
//      NodeVerifier::verify, under a fixed trust policy
// Every refusal must be an orchard::Error (AttestationError where the API says so); a round trip
// that differs aborts, which libFuzzer reports as a crash. The keys are derived from fixed names,
// as fuzz/make_seeds.py derives them: its seeds verify here, so mutations start past the
// signatures and reach what is read after them.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/attestation.h"
#include "cloud/crypto.h"
#include "cloud/node_bundle.h"
#include "cloud/release.h"
#include "cloud/signed_note.h"
#include "orchard/error.h"

using namespace orchard;
using namespace orchard::cloud;

namespace {

using Clock = std::chrono::system_clock;

// make_seeds.py's FUZZ_NOW (2026-01-01): the seeds' documents and key notes are valid then.
const Clock::time_point kNow = Clock::time_point(std::chrono::seconds(1767225600));

// SHA-256("orchard fuzz " || name) as the Ed25519 seed of the key `name` (make_seeds.py, NoteKey).
NoteVerifier fuzz_key(const std::string& name) {
  return NoteSigner::from_seed(name, sha256(as_bytes("orchard fuzz " + name))).verifier();
}

struct Keys {
  NoteVerifier log = fuzz_key("log.fuzz.example");
  NoteVerifier witness = fuzz_key("witness.fuzz.example");
  NoteVerifier release = fuzz_key("release.fuzz.example");
  // The published keys of ../shared/pcc/signed-note-vectors.json (c2sp.org/signed-note's example,
  // Go's sumdb/note test keys), which signed the seeds taken from those vectors.
  std::vector<NoteVerifier> published = {
      NoteVerifier::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"),
      NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
      NoteVerifier::parse("EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop")};
  std::vector<NoteVerifier> all() const {
    std::vector<NoteVerifier> out = {log, witness, release};
    out.insert(out.end(), published.begin(), published.end());
    return out;
  }
  TrustPolicy policy() const { return {{release}, log, "", {witness}, {}, ""}; }
};

const Keys& keys() {
  static const Keys k;
  return k;
}

void check_note(std::string_view input) {
  Note note;
  try {
    note = parse_note(input);
  } catch (const Error&) {
    return;
  }
  try {
    if (format_note(note) != input) std::abort();  // one note has one encoding
  } catch (const Error&) {
    std::abort();  // what parse_note read, format_note must write
  }
  try {
    const std::vector<NoteVerifier> verifiers = keys().all();
    const VerifiedNote verified = verify_note(input, verifiers);
    if (verified.text != note.text || verified.verified.empty()) std::abort();
  } catch (const Error&) {
  }
  try {
    const Checkpoint checkpoint = parse_checkpoint(note.text);
    try {
      if (format_checkpoint(checkpoint) != note.text) std::abort();
    } catch (const Error&) {
      std::abort();
    }
  } catch (const Error&) {
  }
  try {
    const NoteVerifier trusted[] = {keys().release};
    (void)verify_release(input, trusted);
  } catch (const AttestationError&) {  // verify_release says what it refuses with
  }
}

void check_document(std::string_view input) {
  AttestationDocument document;
  try {
    document = AttestationDocument::parse(input);
  } catch (const Error&) {
    return;
  }
  if (document.serialize() != input) std::abort();
  try {
    verify_attestation(document, kNow);
  } catch (const AttestationError&) {
  }
}

void check_release(std::string_view input) {
  Release release;
  try {
    release = parse_release(input);
  } catch (const Error&) {
    return;
  }
  try {
    if (format_release(release) != input) std::abort();
    if (parse_release(format_release(release)) != release) std::abort();
  } catch (const Error&) {
    std::abort();
  }
}

bool same(const std::optional<InclusionProof>& a, const std::optional<InclusionProof>& b) {
  return a.has_value() == b.has_value() && (!a || (a->index == b->index && a->hashes == b->hashes));
}

void check_bundle(std::string_view input) {
  NodeBundle bundle;
  try {
    bundle = parse_bundle(input);
  } catch (const AttestationError&) {
    return;
  }
  try {
    const NodeBundle again = parse_bundle(format_bundle(bundle));
    if (again.node != bundle.node || again.document != bundle.document || again.release != bundle.release ||
        again.checkpoint != bundle.checkpoint || again.keys != bundle.keys ||
        !same(again.document_proof, bundle.document_proof) || !same(again.release_proof, bundle.release_proof)) {
      std::abort();
    }
  } catch (const Error&) {
    std::abort();  // a bundle that parsed must format, and parse back
  }
  // A fresh verifier per input: it remembers the newest checkpoint it accepted.
  NodeVerifier verifier(
      keys().policy(), [](uint64_t, uint64_t) -> std::vector<Bytes> { return {}; }, [] { return kNow; });
  try {
    (void)verifier.verify(bundle);
  } catch (const AttestationError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: check_note(input); break;
    case 1: check_document(input); break;
    case 2: check_release(input); break;
    default: check_bundle(input); break;
  }
  return 0;
}
