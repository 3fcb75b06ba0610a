// C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and the transparency log
// checkpoints carried in them (c2sp.org/tlog-checkpoint): the release log's tree heads are
// checkpoints, signed by the log and checked by clients against the verifier keys they ship with.
// Key strings follow Go's golang.org/x/mod/sumdb/note, so keys made by either tool work in both.
// Every malformed input throws orchard::Error saying what is wrong.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/bytes.h"

namespace orchard::cloud {

constexpr uint8_t kNoteEd25519 = 0x01;  // signature type byte (signed-note §Signature types)
constexpr size_t kEd25519SeedSize = 32;
constexpr size_t kEd25519PublicKeySize = 32;
constexpr size_t kEd25519SignatureSize = 64;
// The spec asks verifiers for a limit and to accept at least 16 signatures.
constexpr size_t kMaxNoteSize = 1 << 20;
constexpr size_t kMaxNoteSignatures = 100;

// RFC 4648 §4 base64 with padding. Decoding is strict: length a multiple of 4, padding only at the
// end, no whitespace, and unused low bits zero, so each byte string has exactly one encoding.
std::string base64_encode(ByteView bytes);
Bytes base64_decode(std::string_view text);

// Key names: non-empty valid UTF-8 with no '+', no Unicode white space and no control character.
bool valid_key_name(std::string_view name);
// SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian.
uint32_t ed25519_key_id(std::string_view name, ByteView public_key);

// A public key a note is checked against. Its string form (a "vkey") is
// name+hex(key id)+base64(0x01 || public key).
struct NoteVerifier {
  std::string name;
  uint32_t key_id = 0;
  Bytes public_key;  // 32 bytes

  // Checks the name, 8 hex digits, the type byte, the key length and that the id is the key's.
  static NoteVerifier parse(std::string_view vkey);
  std::string format() const;
  // Ed25519 over `message`; false for a bad or wrongly sized signature.
  bool verify(ByteView message, ByteView signature) const;
};

// An Ed25519 signing key: the 32-byte seed, kept in SecretBytes. Move-only.
class NoteSigner {
 public:
  static NoteSigner generate(std::string name);
  static NoteSigner from_seed(std::string name, ByteView seed);
  // Go's form: PRIVATE+KEY+name+hex(key id)+base64(0x01 || seed). The errors never quote the key.
  static NoteSigner parse(std::string_view skey);
  // That form; it holds the seed, so the caller decides where it may go.
  std::string format() const;

  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }
  const Bytes& public_key() const { return public_key_; }
  ByteView seed() const { return seed_.view(); }
  NoteVerifier verifier() const { return {name_, key_id_, public_key_}; }
  Bytes sign(ByteView message) const;  // 64 bytes

 private:
  NoteSigner(std::string name, SecretBytes seed, Bytes public_key);
  std::string name_;
  SecretBytes seed_;
  Bytes public_key_;
  uint32_t key_id_ = 0;
};

struct NoteSignature {
  std::string name;
  uint32_t key_id = 0;
  Bytes signature;  // what follows the key id: 64 bytes for Ed25519, any length for other types
  bool operator==(const NoteSignature&) const = default;
};

struct Note {
  std::string text;  // ends with a newline; excludes the blank separator line
  std::vector<NoteSignature> signatures;
};

// The note's form only, nothing verified: UTF-8 without control characters but newline, text and
// signature lines split at the last blank line, each line "— name base64(key id || signature)",
// at most kMaxNoteSize bytes and kMaxNoteSignatures lines. Do not act on the text of a note that
// verify_note has not accepted.
Note parse_note(std::string_view note);
// The note's bytes; checks the text and names as parse_note would read them back.
std::string format_note(const Note& note);
// `text` (ending in a newline) signed by each signer, in order.
std::string sign_note(std::string_view text, std::span<const NoteSigner* const> signers);
inline std::string sign_note(std::string_view text, const NoteSigner& signer) {
  const NoteSigner* one[] = {&signer};
  return sign_note(text, one);
}

struct VerifiedNote {
  std::string text;
  std::vector<NoteSignature> verified;  // by known keys, each key once, in note order
  std::vector<NoteSignature> unknown;   // by keys not among the verifiers (e.g. witnesses)
};

// Signatures by keys not in `verifiers` (name and id both matching) are ignored, as the spec
// requires. Throws when the note is malformed, when a signature by a known key fails to verify,
// when no known key signed it, or when two verifiers share a name and id with different keys.
VerifiedNote verify_note(std::string_view note, std::span<const NoteVerifier> verifiers);

// A tlog checkpoint: the note text "origin\nsize\nbase64(root)\n" and optional extension lines.
struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Bytes root_hash;  // 32 bytes (SHA-256 RFC 6962 tree)
  std::vector<std::string> extensions;
  bool operator==(const Checkpoint&) const = default;
};

// From a note's text (verify_note's `text`): a non-empty origin, a decimal size without leading
// zeros that fits 64 bits, a 32-byte root, non-empty extension lines, a final newline.
Checkpoint parse_checkpoint(std::string_view text);
std::string format_checkpoint(const Checkpoint& checkpoint);

}  // namespace orchard::cloud
