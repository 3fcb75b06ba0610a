// Signing keys on disk: one line, the key's PRIVATE+KEY+... form (signed_note.h), in a file only
// its owner may read. Used for every Ed25519 key of the cloud part: release, log, witness and the
// software attester's.
#pragma once
#include <string>

#include "cloud/signed_note.h"

namespace orchard::cloud {

// Writes the key to `path` (mode 0600, complete or not at all); refuses to replace a file.
void save_signer(const NoteSigner& signer, const std::string& path);
// Reads a key written by save_signer (or Go's note.GenerateKey). Throws orchard::Error naming the
// path when it is missing, readable by others than its owner, or not a key; never quotes the key.
NoteSigner load_signer(const std::string& path);
// A vkey given either as the string itself or as a file holding it (one line).
NoteVerifier load_verifier(const std::string& vkey_or_path);

}  // namespace orchard::cloud
