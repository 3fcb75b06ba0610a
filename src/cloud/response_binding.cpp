#include "cloud/response_binding.h"

#include "cloud/attester.h"
#include "cloud/crypto.h"

namespace orchard::cloud {
namespace {

constexpr std::string_view kContext = "orchard response binding v1\n";

// H_i = SHA-256(H_{i-1} || piece_i), H_{-1} = SHA-256(request): the hash of the answer so far,
// chained to the request it answers.
Bytes chain(ByteView previous, ByteView piece) {
  Bytes input(previous.begin(), previous.end());
  put_bytes(input, piece);
  return sha256(input);
}

// What is signed: the context, the request's hash, the piece's index, whether it is the last, and
// the answer's running hash through it.
Bytes signed_message(ByteView request_hash, uint64_t index, bool final, ByteView running_hash) {
  Bytes m(kContext.begin(), kContext.end());
  put_bytes(m, request_hash);
  for (int shift = 56; shift >= 0; shift -= 8) put_u8(m, static_cast<uint8_t>(index >> shift));
  put_u8(m, final ? 1 : 0);
  put_bytes(m, running_hash);
  return m;
}

}  // namespace

ResponseSigner::ResponseSigner(const NoteSigner& key, ByteView encapsulated_request)
    : key_(key), request_hash_(sha256(encapsulated_request)), running_hash_(request_hash_) {}

Bytes ResponseSigner::sign(ByteView piece, bool final) {
  running_hash_ = chain(running_hash_, piece);
  Bytes out(piece.begin(), piece.end());
  put_bytes(out, key_.sign(signed_message(request_hash_, index_++, final, running_hash_)));
  return out;
}

ResponseVerifier::ResponseVerifier(NoteVerifier key, ByteView encapsulated_request)
    : key_(std::move(key)), request_hash_(sha256(encapsulated_request)), running_hash_(request_hash_) {}

Bytes ResponseVerifier::open(Bytes signed_piece, bool final) {
  if (finished_) throw AttestationError("response binding: a piece after the final one");
  if (signed_piece.size() < kEd25519SignatureSize)
    throw AttestationError("response binding: piece " + std::to_string(index_) + " has no signature");
  const size_t size = signed_piece.size() - kEd25519SignatureSize;
  const ByteView piece(signed_piece.data(), size);
  const Bytes running = chain(running_hash_, piece);
  if (!key_.verify(signed_message(request_hash_, index_, final, running), ByteView(signed_piece).subspan(size)))
    throw AttestationError("response binding: the signature of piece " + std::to_string(index_) +
                           " does not verify with the node's attested key");
  running_hash_ = running;
  ++index_;
  finished_ = final;
  signed_piece.resize(size);
  return signed_piece;
}

}  // namespace orchard::cloud
