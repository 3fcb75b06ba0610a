// Privacy Pass (privacy_pass.h) as its ends read what others send: the node the Authorization
// header of every request, the issuer a TokenRequest, the client a TokenResponse, a challenge and
// an issuer key. The first byte of the input picks the reader (modulo 6), the rest is its input:
//   0  Token::parse (encode must give back the input); base64url_decode (re-encoded: the input)
//   1  TokenRequest::parse (encode: the input); TokenIssuer::issue with the fixed key
//   2  TokenResponse::parse (encode: the input); finalize_token of the fixed pending token: what it
//      returns must verify under the issuer key
//   3  TokenChallenge::parse (encode: the input)
//   4  parse_authorization (the token written back as a header must parse to the same token);
//      TokenRedeemer::redeem with the fixed key and challenge
//   5  parse_public_key (encode_public_key: the input), token_key_id
// Refusals from the wire must be TokenError (orchard::Error for the key encoding and base64url);
// anything else, or a round trip that differs, is a crash. The fixed key, challenge and pending
// token are RFC 9578 Appendix A.2's first type 2 vector, so the seeds (the vector's token,
// request, response, challenge and key, fuzz/make_seeds.py) verify here and mutations start past
// the signatures. The redeemer's double-spend store is a file in the scratch folder, shared by the
// inputs of one run: the vector token is accepted once, then refused as double spent.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cloud/privacy_pass.h"
#include "fuzz_support.h"
#include "orchard/error.h"

using namespace orchard;
using namespace orchard::cloud;
using namespace orchard::cloud::privacy_pass;

namespace {

// ---- RFC 9578 Appendix A.2, type 2 test vector 1 ----
constexpr const char* kSkS = R"(-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDLGu1rapX1sc4B
Okz8qyW5Sy5kojA05CUKfqtDwN86jBKZOvErERkI1LRxvsMdS2ya2c3akGEqLukD
Uj5t5aIk1rAvCeXDdNDP4B2PUpxQCnii9nkI+mgrWitDDIHq8a9y17XnlPyYoxOS
doeXV85FO1Ju+b9s65mXm4QjuQ9EYaIq83qrDPVzP3WXq+RNMccy22ihgcbLvmB9
jA5S4GVf2ZltxYTsoL6Hr7zXijN9F7Hbqegou9geKRMXFE5/+J9VYZcJsJbLuepH
TOrSZMIHP+SXQMAfAOEJEGBmmD0h5fg/CG4ugjyHnNQ873ANKjUqm6vWEtA8rQLb
E0t+IlpfAgMBAAECggEALzCbdzi1jPd58MkV+CLfyfSQ2+rfHnrfrFeP/VcDxrui
2p1aSXJYibe6ES+Mb/MFUdlHPgALw1xQ4Werf6c6DCshllxLWSV8GsBsvc8o6GP2
cY6owpBDwcbahGKUkP0Ekb9S0XLJWcGSG5aUnHJXR7inx4cZlfoLnrEQe6hUxsMq
b0dHxdHDBMdGfVWwgKojOjpS/98mEUy7VB/6a2lreglvjc/2nKCKtY77D7dTqlGF
xzABaWu86MCZ4/Q13Lv+BefbqtI9sqZZwjrdUhQH8VCxry2QVMQWQinWhAt6MqT4
SBSTrolZzwrqje8MPJ91uaNMdXGLcHLI26sXzv7KSQKBgQDvcwsPUUvA9Z2ZX9X5
mIxMTBNdEFzVbUPuKKA1yWn1UMDNcUjqh+ze/7k3yFxkh0QF31bq60eL90GISiAO
5KOWM9EKo+xAQ2baK1MfOY1G+8jzBXUpBs94k53S88yXmK6nydgv70BJ8Zh5fkUq
W20oSbhkhjRdSzH2kRGirg+USwKBgQDZJMnry2Exa/3Eq7PbosxAPMiYnk5JAPSG
y2z0Z7TUb+uHQO/+xPM7nC0uyLIMD9laTMHwn6s7/LbGoEP1WRgpoYH/B14k/Rn6
fuwRN62Io9tc9+ACLtUB7vtGay3+gRwYtSC2b5ed8lIiegtTkea0h0uDSRxAtVs3
n5kya2Q9vQKBgFJuFzOZt+tgYnWnQUEgW8P0OIJEHME4UTdOcwCxKrHRr93JjuF2
E3wdKoTii7PrwOYIoaJThpjPcJbbdbfKy+nsQp1YGv9wdJrMaVwJcvIpwV6v1Upf
VtLadm1lklvpqs6GNM8jnM0Xx3ajmmnfeW9yGXE5phMrzLJl9F09cI2LAoGBANXv
ugVXrp2bsT1okd6uSaBsgpJjPewNRd3cZK9z0aSP1DTA1PNkpeQwHg/+6fSaVOHz
yAxDs9h5RrbxRaNfsT+rAUH7x1SYDVVQYVMhURbToZe6G/jqnTC3fNfHV1xtZfot
0loMHgwep6+SIMCoee2ZctuZV32lcIaf9rbHOc7dAoGAeQ8k8SILNG6DOA31TE5P
m01AJIYw7AlR3uo/RNaC+xYdPU3TskuALxxiDR/WsLEQBCjkFWmmJAWnQUDtbnYN
ScwR8G2J6FnrECtbtys73WAVGooFZncmPLP8lxLyblSBDELyaZv/bAsPlMO9bD5c
J+NSBaa+oiLl1wmCa5MCflc=
-----END PRIVATE KEY-----
)";
constexpr const char* kPkS =
    "30820152303d06092a864886f70d01010a3030a00d300b0609608648016503040202a11a301806092a864886f70d0101"
    "08300b0609608648016503040202a2030201300382010f003082010a0282010100cb1aed6b6a95f5b1ce013a4cfcab25"
    "b94b2e64a23034e4250a7eab43c0df3a8c12993af12b111908d4b471bec31d4b6c9ad9cdda90612a2ee903523e6de5a2"
    "24d6b02f09e5c374d0cfe01d8f529c500a78a2f67908fa682b5a2b430c81eaf1af72d7b5e794fc98a3139276879757ce"
    "453b526ef9bf6ceb99979b8423b90f4461a22af37aab0cf5733f7597abe44d31c732db68a181c6cbbe607d8c0e52e065"
    "5fd9996dc584eca0be87afbcd78a337d17b1dba9e828bbd81e291317144e7ff89f55619709b096cbb9ea474cead264c2"
    "073fe49740c01f00e109106066983d21e5f83f086e2e823c879cd43cef700d2a352a9babd612d03cad02db134b7e225a"
    "5f0203010001";
constexpr const char* kChallenge =
    "0002000e6973737565722e6578616d706c65208e7acc900e393381e8810b7c9e4a68b5163f1f880ab6688a6ffe780923"
    "609e88000e6f726967696e2e6578616d706c65";
constexpr const char* kNonce = "aa72019d1f951df197021ce63876fe8b0a02dc1c31a12b0a2dd1508d07827f05";
constexpr const char* kBlind =
    "425421de54c7381864ce36473abfb988c454fe6c27de863de702a6a2adca153fa2de47bd8fcd62734caa8ce1f920b77d"
    "980ab58c32d16dde54873f28ca968e8c125b8363514be68972f553655bcc7f80a284cc327e47e804a47333c5b3cdf773"
    "312cc7ad9fda748aed0baa7e19c5a2d1dafda718f086d7fc0a4bc02d488e0f20812daee335af7177b7a8369bd617066a"
    "ed7a58f659f295c36b418827f679725b81ca14ea16fb82df21ad76da1ac38dcf24bf6252f8510e2308608ac9197f6cb5"
    "4fdcb19db17837302a2b87d659c5605f35f3709a130f0c3d50e172f0cae36cbc9467f9914895a215a9e32443bcafff79"
    "5273ccf8965a7eaa8c0b2184763e3e5c";
constexpr const char* kSalt = "3d980852fa570c064204feb8d107098db976ef8c2137e8641d234bbd88a986fdb306a7af220cfadede08f51e1ef61766";
constexpr const char* kTokenResponse =
    "675d84b751d9e593330ec4b6d7ab69c9a61517e98971f4b736150508174b4335761464f237be2d72bbae4b94dffc6143"
    "413f6351f1aa4efde6c32d4d6d9392a008290d56d1222f9b77a1336213e01934f7d972f3bf9ea5a5786c321352f103b3"
    "667e605379a55f0fb925fbb09b8a9f85e7dd4b388a3b49d06fd70ba28f6a780e3bc8f6421554fd6c38b63ef19f84ccfc"
    "f14709dd0b4d72213c1f060893854eba0ea1a147e275da320db5e9849882d5f9179efa8a2d8d3b803f9d1445ef5c1f66"
    "0be08883ce9b29a0a992fc035d2938cbb61c440044438dbb8b3ce7158a8f9827d230482f622d291406ab236b32b12262"
    "7ae0fd36bd0d6b7607b8044ace404d44";
constexpr const char* kToken =
    "0002aa72019d1f951df197021ce63876fe8b0a02dc1c31a12b0a2dd1508d07827f055969f643b4cfda5196d4aa86aeb5"
    "368834f4f06de46950ed435b3b81bd036d44ca572f8982a9ca248a3056186322d93ca147266121ddeb5632c07f1f71cd"
    "2708bc6a21b533d07294b5e900faf5537dd3eb33cee4e08c9670d1e5358fd184b0e00c637174f5206b14c7bb0e724ebf"
    "6b56271e5aa2ed94c051c4a433d302b23bc52460810d489fb050f9de5c868c6c1b06e3849fd087629f704cc724bc0d09"
    "84d5c339686fcdd75f9a9cdd25f37f855f6f4c584d84f716864f546b696d620c5bd41a811498de84ff9740ba3003ba24"
    "22d26b91eb745c084758974642a42078201543246ddb58030ea8e722376aa82484dca9610a8fb7e018e396165462e17a"
    "03e40ea7e128c090a911ecc708066cb201833010c1ebd4e910fc8e27a1be467f78671836a508257123a45e4e0ae2180a"
    "434bd1037713466347a8ebe46439d3da1970";

struct Fixed {
  blind_rsa::PublicKey key = parse_public_key(from_hex(kPkS));
  TokenChallenge challenge = TokenChallenge::parse(from_hex(kChallenge));
  ClientTokenRequest request;  // the vector's, with its nonce, salt and blind
  DoubleSpendStore store{fuzz::ScratchDir::get().path("spent-nonces"), token_key_id(key)};
  TokenRedeemer redeemer{key, challenge, store};
  // No rate limit worth the name: every input may be signed. A fixed clock.
  TokenIssuer issuer{blind_rsa::PrivateKey::from_pem(kSkS), std::numeric_limits<size_t>::max(), std::chrono::seconds(3600),
                     [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1767225600)); }};

  Fixed() {
    const Bytes nonce = from_hex(kNonce), salt = from_hex(kSalt), blind = from_hex(kBlind);
    const TokenRequestFixed fixed{nonce, salt, blind};
    request = make_token_request(key, challenge, &fixed);
  }
};

Fixed& fixed() {
  static Fixed f;
  return f;
}

// `parse` refuses with TokenError, or what it returns encodes back to the input.
template <typename Parse>
void round_trip(ByteView input, Parse parse) {
  try {
    const auto parsed = parse(input);
    if (parsed.encode() != Bytes(input.begin(), input.end())) std::abort();
  } catch (const TokenError&) {
  }
}

void check_token(ByteView input) {
  round_trip(input, Token::parse);
  try {
    const Bytes decoded = base64url_decode(as_text(input));
    if (base64url_encode(decoded) != as_text(input)) std::abort();  // strict: one text per bytes
  } catch (const Error&) {
  }
}

void check_request(ByteView input) {
  round_trip(input, TokenRequest::parse);
  try {
    const Bytes response = fixed().issuer.issue("fuzz", input);
    if (response.size() != kNk) std::abort();
  } catch (const TokenError&) {
  }
}

void check_response(ByteView input) {
  round_trip(input, TokenResponse::parse);
  try {
    const Token token = finalize_token(fixed().key, fixed().request.pending, input);
    if (!blind_rsa::verify(fixed().key, token.token_input(), token.authenticator, kVariant)) std::abort();
  } catch (const TokenError&) {
  }
}

void check_challenge(ByteView input) {
  try {
    const TokenChallenge challenge = TokenChallenge::parse(input);
    if (challenge.encode() != Bytes(input.begin(), input.end())) std::abort();
    (void)challenge.digest();
  } catch (const TokenError&) {
  }
}

void check_authorization(std::string_view input) {
  std::optional<Token> token;
  try {
    token = parse_authorization(input);
  } catch (const TokenError&) {
  }
  if (token) {
    try {
      if (parse_authorization(authorization_header(*token)) != *token) std::abort();
    } catch (const Error&) {
      std::abort();  // a token that parsed must write a header that parses
    }
  }
  try {
    fixed().redeemer.redeem(input);
  } catch (const TokenError&) {
  }
}

void check_public_key(ByteView input) {
  try {
    const blind_rsa::PublicKey key = parse_public_key(input);
    if (encode_public_key(key) != Bytes(input.begin(), input.end())) std::abort();
    if (token_key_id(key) != token_key_id(input)) std::abort();
  } catch (const Error&) {
  }
}

}  // namespace

// The fixed objects must agree with the vector, or the seeds would not reach past the signatures.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const Token token = finalize_token(fixed().key, fixed().request.pending, from_hex(kTokenResponse));
  if (token.encode() != from_hex(kToken)) std::abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const ByteView input(data + 1, size - 1);
  switch (data[0] % 6) {
    case 0: check_token(input); break;
    case 1: check_request(input); break;
    case 2: check_response(input); break;
    case 3: check_challenge(input); break;
    case 4: check_authorization(as_text(input)); break;
    default: check_public_key(input); break;
  }
  return 0;
}
