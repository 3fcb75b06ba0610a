// What the cloud layer's OpenSSL code shares (crypto.cpp, blind_rsa.cpp, signed_note.cpp): one
// owner per OpenSSL object, so that every throw frees what was made before it, and one way to
// turn OpenSSL's error queue into an orchard::Error.
#pragma once
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include <memory>
#include <string_view>

#include "cloud/bytes.h"

namespace orchard::cloud {

template <auto Free>
struct OpensslFree {
  template <typename T>
  void operator()(T* p) const { Free(p); }
};
template <typename T, auto Free>
using OpensslOwner = std::unique_ptr<T, OpensslFree<Free>>;

using Pkey = OpensslOwner<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtx = OpensslOwner<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using MdCtx = OpensslOwner<EVP_MD_CTX, EVP_MD_CTX_free>;
using CipherCtx = OpensslOwner<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using Kdf = OpensslOwner<EVP_KDF, EVP_KDF_free>;
using KdfCtx = OpensslOwner<EVP_KDF_CTX, EVP_KDF_CTX_free>;
using Bn = OpensslOwner<BIGNUM, BN_clear_free>;  // cleared when freed: most BIGNUMs here are secret
using BnCtx = OpensslOwner<BN_CTX, BN_CTX_free>;
using ParamBld = OpensslOwner<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>;
using Params = OpensslOwner<OSSL_PARAM, OSSL_PARAM_free>;

// Throws orchard::Error "<component>: <what> failed: <OpenSSL's reason>". The thread's error
// queue is emptied: a stale entry would otherwise be blamed on the next, unrelated failure.
[[noreturn]] void openssl_fail(std::string_view component, const char* what);

// A span's data pointer may be null when it is empty; OpenSSL wants a buffer even for no bytes.
inline const uint8_t* nonnull(ByteView b) {
  static const uint8_t kEmpty = 0;
  return b.empty() ? &kEmpty : b.data();
}

}  // namespace orchard::cloud
