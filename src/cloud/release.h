// What a private cloud node runs, measured, and the release statement that vouches for it.
//
// A node's measurement is the SHA-256 of three things: its binary, its model file(s) and its
// configuration in a canonical form (every option that changes what the node computes or keeps;
// not its address, ports or key files). Each is hashed on its own and listed in a short text
// whose hash is the measurement, so a refusal can say which part differs. The release process
// (`orchard release measure`, then `orchard release sign`) makes the same text from the files it
// ships; a release statement is that text in a C2SP signed note under the release key, and it is
// what the transparency log holds. A node measures itself at start (`measure_node`) and its
// attestation carries the measurement; the client accepts the node only if a logged statement,
// signed by a release key it trusts, has the same measurement (docs/cloud.md, "Trust chain").
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/bytes.h"
#include "cloud/node_options.h"
#include "cloud/signed_note.h"
#include "server/http_server.h"

namespace orchard::cloud {

struct MeasuredFile {
  std::string name;  // the file's base name: printable ASCII, no spaces
  Bytes sha256;
  bool operator==(const MeasuredFile&) const = default;
};

struct Measurement {
  Bytes binary;                     // SHA-256 of the node binary
  std::vector<MeasuredFile> models; // the model file, and the tokenizer file when one is given
  Bytes config;                     // SHA-256 of canonical_node_config(...)
  bool operator==(const Measurement&) const = default;

  // "binary HEX\nmodel HEX NAME\n...config HEX\n": the measured text, one line per part.
  std::string text() const;
  // SHA-256 of text(): what the attester records (the TPM's PCR) and the documents carry.
  Bytes digest() const;
};

// SHA-256 of a file, read in 1 MiB pieces. Throws orchard::Error naming the path.
Bytes sha256_file(const std::string& path);

// The node's options that change what it computes or keeps, one "name=value" line each, sorted by
// name. Addresses, ports and the paths of key files are left out: they change where a node runs,
// not what it does; the model and tokenizer are measured as files.
std::string canonical_node_config(const server::ServerOptions& server, const NodeOptions& node);

// The measurement of a node that would run `binary` on `model_path` (and the tokenizer file, if
// the options name one) with these options.
Measurement measure_node(const std::string& binary, const std::string& model_path,
                         const server::ServerOptions& server, const NodeOptions& node);

// A release statement's text:
//   orchard release v1
//   name NAME
//   binary HEX / model HEX NAME ... / config HEX   (Measurement::text)
//   measurement HEX
struct Release {
  std::string name;  // printable ASCII, no spaces, as MeasuredFile::name
  Measurement measurement;
  bool operator==(const Release&) const = default;
};
std::string format_release(const Release& release);
// Strict: exactly the lines above in that order, lowercase hex of the right length, and the
// measurement line equal to the digest of the lines before it. Throws orchard::Error otherwise.
Release parse_release(std::string_view text);

// The signed note the release key makes of format_release(release).
std::string sign_release(const Release& release, const NoteSigner& release_key);
// The release in `note` if a key among `trusted` signed it; throws AttestationError
// ("release not signed by a trusted release key", or what is malformed) otherwise.
Release verify_release(std::string_view note, std::span<const NoteVerifier> trusted);

}  // namespace orchard::cloud
