// The Oblivious HTTP gateway of the private cloud node, without a transport (as the OpenAI
// handler is): an outer request (the relay's POST /gateway) goes in, an outer response comes out
// whose body is the encapsulated inner response. The inner request is an ordinary OpenAI request
// in Binary HTTP; the server's OpenAIHandler answers it, and each of its writes leaves as one
// encrypted chunk (chunked OHTTP), so a streamed answer reaches the client token by token.
//
// What the relay and the network see of a request and its answer is sizes and timing; the
// gateway pads both (docs/cloud.md, "Padding"):
//  - the client pads its Binary HTTP request with zeros to a multiple of 1 KiB (client.cpp);
//  - each chunk of a streamed answer carries a multiple of 256 bytes: an event stream's writes
//    are padded with an SSE comment line, a JSON body's with spaces; the head of the answer (its
//    status and fields) with a padding field;
//  - a whole (plain OHTTP) answer is padded with zeros after its Binary HTTP message.
#pragma once
#include <chrono>

#include "cloud/binary_http.h"
#include "cloud/key_ring.h"
#include "cloud/privacy_pass.h"
#include "cloud/replay_window.h"
#include "cloud/signed_note.h"
#include "server/openai_handler.h"

namespace orchard::cloud {

struct GatewayOptions {
  std::chrono::seconds replay_window{60};
  size_t response_padding = 256;  // chunk plaintexts are multiples of this
  BinaryHttpLimits limits;
};

class Gateway {
 public:
  // With `signing_key` (an attested node's; it must outlive the gateway), answers to requests
  // that ask for it carry the response binding (response_binding.h). With `tokens`, every
  // request must carry an unspent Privacy Pass token (outer `Authorization: PrivateToken ...`):
  // without one, 401 with the node's challenge (RFC 9577); checked before anything is decrypted.
  Gateway(const server::OpenAIHandler& handler, KeyRing& keys, const GatewayOptions& options = {},
          const NoteSigner* signing_key = nullptr, const privacy_pass::TokenRedeemer* tokens = nullptr);

  // POST /gateway. Outer errors are problem details (RFC 9457): 415 for a media type other than
  // message/ohttp-req or message/ohttp-chunked-req, 422 with the "ohttp-key" problem type for a
  // key id that is unknown or expired (RFC 9458 §5.3: fetch the keys again), 400 for anything that
  // does not decrypt or is replayed. Errors of the inner request (not Binary HTTP, no Date or a
  // Date outside the window, an unknown route) are answered inside the encryption.
  server::ApiResponse handle(const server::ApiRequest& outer) const;
  // GET /ohttp-keys: the key configurations, cacheable until the next rotation.
  server::ApiResponse keys() const;

 private:
  server::ApiResponse answer(const server::ApiRequest& outer) const;
  const server::OpenAIHandler& handler_;
  KeyRing& keys_;
  GatewayOptions options_;
  const NoteSigner* signing_key_;
  const privacy_pass::TokenRedeemer* tokens_;
  mutable ReplayWindow replays_;
};

// The padding of one write of a streamed answer: `bytes` followed by filler that the client's
// parser ignores, to a multiple of `bucket` bytes (an SSE comment line for an event stream,
// spaces for JSON). Unchanged when no filler fits (an event stream's write must end a line).
std::string pad_content(std::string_view bytes, bool event_stream, size_t bucket);

}  // namespace orchard::cloud
