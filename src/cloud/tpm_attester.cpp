#include "cloud/tpm_attester.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "base/error.h"
#include "cloud/openssl_owner.h"
#include "cloud/signed_note.h"

namespace orchard::cloud {
namespace {

// ESAPI's outputs are malloc'ed; Esys_Free releases them.
struct EsysFree {
  void operator()(void* p) const { Esys_Free(p); }
};
template <typename T>
using EsysOut = std::unique_ptr<T, EsysFree>;

std::string rc_text(TSS2_RC rc) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(rc));
  const char* decoded = Tss2_RC_Decode(rc);
  return decoded ? str_cat(hex, " (", decoded, ")") : std::string(hex);
}

// The AK's template (TPMT_PUBLIC): fixed, so that CreatePrimary derives the same key from the
// endorsement seed every time.
TPM2B_PUBLIC ak_template() {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
  p.authPolicy.size = 0;
  TPMS_ECC_PARMS& ecc = p.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_NULL;
  ecc.scheme.scheme = TPM2_ALG_ECDSA;
  ecc.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  p.unique.ecc.x.size = 0;
  p.unique.ecc.y.size = 0;
  return t;
}

TPML_PCR_SELECTION pcr_selection(int pcr) {
  TPML_PCR_SELECTION s{};
  s.count = 1;
  s.pcrSelections[0].hash = TPM2_ALG_SHA256;
  s.pcrSelections[0].sizeofSelect = 3;
  s.pcrSelections[0].pcrSelect[pcr / 8] = static_cast<uint8_t>(1u << (pcr % 8));
  return s;
}

// A coordinate of the TPM's point, left-padded to 32 bytes.
void put_coordinate(Bytes& out, const TPM2B_ECC_PARAMETER& c, const std::string& tcti) {
  if (c.size == 0 || c.size > kTpmEccParameterSize)
    fail("TPM attester (", tcti, "): the attestation key's point has a coordinate of ", c.size, " bytes");
  out.insert(out.end(), kTpmEccParameterSize - c.size, 0);
  out.insert(out.end(), c.buffer, c.buffer + c.size);
}

// base64(DER SubjectPublicKeyInfo) of the P-256 point (x, y), built by OpenSSL.
std::string spki_identity(const TPMS_ECC_POINT& point, const std::string& tcti) {
  Bytes encoded{0x04};  // uncompressed point (SEC 1 §2.3.3)
  put_coordinate(encoded, point.x, tcti);
  put_coordinate(encoded, point.y, tcti);
  ParamBld bld(OSSL_PARAM_BLD_new());
  if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, encoded.data(), encoded.size()))
    openssl_fail("TPM attester", "OSSL_PARAM_BLD_push");
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    openssl_fail("TPM attester", "importing the attestation key's point");
  Pkey key(raw);
  const int size = i2d_PUBKEY(key.get(), nullptr);
  if (size <= 0) openssl_fail("TPM attester", "i2d_PUBKEY");
  Bytes der(static_cast<size_t>(size));
  unsigned char* out = der.data();
  if (i2d_PUBKEY(key.get(), &out) != size) openssl_fail("TPM attester", "i2d_PUBKEY");
  return base64_encode(der);
}

Bytes ecc_parameter(const TPM2B_ECC_PARAMETER& p) { return Bytes(p.buffer, p.buffer + p.size); }

// One connection to the TPM, for one operation: the TCTI, the ESAPI context on it and the AK while
// it is loaded. The destructor flushes the AK (transient slots are few: 3 in swtpm) and closes the
// connection, so that the next client of the TPM gets in.
class Connection {
 public:
  explicit Connection(const std::string& tcti) : name_(tcti) {
    try {
      check(Tss2_TctiLdr_Initialize(tcti.c_str(), &tcti_), "connecting (TCTI loader)");
      check(Esys_Initialize(&esys_, tcti_, nullptr), "Esys_Initialize");
    } catch (...) {
      close();
      throw;
    }
  }
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  ESYS_CONTEXT* esys() const { return esys_; }
  ESYS_TR ak() const { return ak_; }

  void check(TSS2_RC rc, const char* command) const {
    if (rc != TSS2_RC_SUCCESS) fail("TPM attester (", name_, "): ", command, " failed: ", rc_text(rc));
  }

  // TPM2_Startup(CLEAR) where the TPM has not been started (a TPM already started answers
  // TPM_RC_INITIALIZE, which is fine).
  void startup() const {
    const TSS2_RC started = Esys_Startup(esys_, TPM2_SU_CLEAR);
    if (started != TPM2_RC_INITIALIZE) check(started, "TPM2_Startup");
  }

  // TPM2_CreatePrimary of the AK in the endorsement hierarchy, loaded until the connection closes;
  // returns its identity (base64 of the DER SubjectPublicKeyInfo).
  std::string create_ak() {
    TPM2B_SENSITIVE_CREATE sensitive{};  // empty auth value, no data: the TPM draws the key
    const TPM2B_PUBLIC in_public = ak_template();
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcrs{};
    TPM2B_PUBLIC* out_public = nullptr;
    TPM2B_CREATION_DATA* creation_data = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* creation_ticket = nullptr;
    const TSS2_RC created = Esys_CreatePrimary(esys_, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                               ESYS_TR_NONE, &sensitive, &in_public, &outside, &creation_pcrs, &ak_,
                                               &out_public, &creation_data, &creation_hash, &creation_ticket);
    const EsysOut<TPM2B_PUBLIC> public_area(out_public);
    const EsysOut<TPM2B_CREATION_DATA> data_owner(creation_data);
    const EsysOut<TPM2B_DIGEST> hash_owner(creation_hash);
    const EsysOut<TPMT_TK_CREATION> ticket_owner(creation_ticket);
    check(created, "TPM2_CreatePrimary (attestation key, endorsement hierarchy)");
    const TPMT_PUBLIC& p = public_area->publicArea;
    if (p.type != TPM2_ALG_ECC || p.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
      fail("TPM attester (", name_, "): TPM2_CreatePrimary gave a key that is not P-256");
    return spki_identity(p.unique.ecc, name_);
  }

 private:
  void close() {
    if (ak_ != ESYS_TR_NONE) Esys_FlushContext(esys_, ak_);
    ak_ = ESYS_TR_NONE;
    if (esys_) Esys_Finalize(&esys_);
    if (tcti_) Tss2_TctiLdr_Finalize(&tcti_);
  }

  const std::string& name_;
  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  ESYS_TR ak_ = ESYS_TR_NONE;
};

}  // namespace

TpmAttester::TpmAttester(std::string tcti, int pcr) : tcti_(std::move(tcti)), pcr_(pcr) {
  if (pcr_ != 16 && pcr_ != 23) fail("TPM attester: PCR ", pcr_, " is not resettable at locality 0 (use 16 or 23)");
  Connection tpm(tcti_);
  tpm.startup();
  identity_ = tpm.create_ak();
}

TpmAttester::~TpmAttester() = default;

void TpmAttester::record_measurement(ByteView measurement) {
  if (measurement.size() != kTpmEccParameterSize)
    fail("TPM attester: a measurement is 32 bytes (SHA-256), not ", measurement.size());
  const ESYS_TR pcr_handle = ESYS_TR_PCR0 + static_cast<ESYS_TR>(pcr_);
  TPML_DIGEST_VALUES digests{};
  digests.count = 1;
  digests.digests[0].hashAlg = TPM2_ALG_SHA256;
  std::memcpy(digests.digests[0].digest.sha256, measurement.data(), measurement.size());
  std::lock_guard lock(mutex_);
  Connection tpm(tcti_);
  tpm.check(Esys_PCR_Reset(tpm.esys(), pcr_handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE),
            pcr_ == 23 ? "TPM2_PCR_Reset (PCR 23)" : "TPM2_PCR_Reset (PCR 16)");
  tpm.check(Esys_PCR_Extend(tpm.esys(), pcr_handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digests),
            "TPM2_PCR_Extend");
}

Bytes TpmAttester::attest(ByteView document_digest) {
  if (document_digest.size() != 32)
    fail("TPM attester: the document digest is 32 bytes (SHA-256), not ", document_digest.size());
  TPM2B_DATA qualifying{};
  qualifying.size = static_cast<UINT16>(document_digest.size());
  std::memcpy(qualifying.buffer, document_digest.data(), document_digest.size());
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_ECDSA;
  scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  const TPML_PCR_SELECTION selection = pcr_selection(pcr_);
  EsysOut<TPM2B_ATTEST> quoted;
  EsysOut<TPMT_SIGNATURE> signature;
  {
    std::lock_guard lock(mutex_);
    Connection tpm(tcti_);
    // The same template and seed give the same key; another key means that this is no longer the
    // TPM (or the endorsement seed) whose identity the client pinned, and its quotes would be refused.
    const std::string recreated = tpm.create_ak();
    if (recreated != identity_)
      fail("TPM attester (", tcti_, "): the attestation key recreated for this quote is not the one created at "
           "start (", recreated, " instead of ", identity_, "): the TPM's endorsement seed changed "
           "(TPM2_ChangeEPS) or another TPM answers at this address");
    TPM2B_ATTEST* quoted_out = nullptr;
    TPMT_SIGNATURE* signature_out = nullptr;
    const TSS2_RC rc = Esys_Quote(tpm.esys(), tpm.ak(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying,
                                  &scheme, &selection, &quoted_out, &signature_out);
    quoted.reset(quoted_out);
    signature.reset(signature_out);
    tpm.check(rc, "TPM2_Quote");
  }  // the AK flushed and the connection closed before the work that needs no TPM
  if (signature->sigAlg != TPM2_ALG_ECDSA || signature->signature.ecdsa.hash != TPM2_ALG_SHA256)
    fail("TPM attester (", tcti_, "): TPM2_Quote signed with another scheme than ECDSA-SHA256");
  TpmEvidence evidence;
  evidence.pcr = pcr_;
  evidence.attest.assign(quoted->attestationData, quoted->attestationData + quoted->size);
  evidence.r = ecc_parameter(signature->signature.ecdsa.signatureR);
  evidence.s = ecc_parameter(signature->signature.ecdsa.signatureS);
  return encode_tpm_evidence(evidence);
}

Bytes TpmAttester::read_pcr() {
  const TPML_PCR_SELECTION selection = pcr_selection(pcr_);
  UINT32 update_counter = 0;
  EsysOut<TPML_PCR_SELECTION> selection_owner;
  EsysOut<TPML_DIGEST> values;
  {
    std::lock_guard lock(mutex_);
    Connection tpm(tcti_);
    TPML_PCR_SELECTION* selection_out = nullptr;
    TPML_DIGEST* values_out = nullptr;
    const TSS2_RC rc = Esys_PCR_Read(tpm.esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &selection, &update_counter,
                                     &selection_out, &values_out);
    selection_owner.reset(selection_out);
    values.reset(values_out);
    tpm.check(rc, "TPM2_PCR_Read");
  }
  if (values->count != 1 || values->digests[0].size != 32)
    fail("TPM attester (", tcti_, "): TPM2_PCR_Read gave no SHA-256 value for PCR ", pcr_, " (is the bank allocated?)");
  return Bytes(values->digests[0].buffer, values->digests[0].buffer + values->digests[0].size);
}

}  // namespace orchard::cloud
