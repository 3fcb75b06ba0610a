// The TPM 2.0 attester against a real software TPM: each test starts its own swtpm on free
// loopback ports in a fresh folder (the suite fails, and says to install it, where swtpm is
// missing). A quote over the measured PCR verifies; each way a quote can be wrong is refused with
// its own reason: another measurement, one extended twice, another document, another TPM's key,
// every flipped bit of the attest bytes and signature, every truncation, trailing bytes, another
// PCR, a TPM-signed structure that is not a quote. Independent checks: the TPM's own PCR value
// against expected_pcr_value, the AK recreated here from the template spelled out anew with raw
// ESAPI calls against the attester's identity (decoded by OpenSSL), and quotes built and signed
// with OpenSSL's P-256 (no TPM) for what a restricted TPM key will not sign. Then the AK is the
// same after the TPM restarts, threads share one attester, and random or mutated evidence never
// crashes the verifier. The attester holds no connection and no loaded object between calls:
// while one is alive no transient object of its stays in the TPM, a raw ESAPI client, a second
// attester and tpm2-tools' tpm2_pcrextend (the suite fails, and says to install tpm2-tools, where
// it is missing) reach the TPM and extend the PCR, and the attester's next quote is refused for
// its PCR digest; a changed endorsement seed makes attest throw naming it.
#include "cloud/tpm_attester.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "cloud/crypto.h"
#include "cloud/signed_note.h"
#include "cloud/tpm_quote.h"

extern char** environ;

namespace orchard::cloud {
namespace {

namespace fs = std::filesystem;

// ---- swtpm, the software TPM ----------------------------------------------------------------

// `name` on the PATH, as the shell would find it.
std::optional<std::string> find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

bool port_accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// One swtpm process on a state folder; stop() and start() again keep the folder (a restart).
class Swtpm {
 public:
  Swtpm(std::string binary, fs::path state) : binary_(std::move(binary)), state_(std::move(state)) { start(); }
  ~Swtpm() { stop(); }

  std::string tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }

  void start() {
    static std::mt19937 rng(std::random_device{}());
    for (int attempt = 0; attempt < 20; ++attempt) {
      const int port = std::uniform_int_distribution<int>(20000, 60000)(rng) & ~1;
      if (!port_free(port) || !port_free(port + 1)) continue;
      if (spawn(port)) return;
    }
    throw Error("swtpm did not start on any of 20 port pairs; see " + (state_ / "swtpm.log").string());
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
  }

 private:
  // Starts swtpm on (port, port + 1) and waits for it to accept; false when it exits first (the
  // port was taken meanwhile) or does not answer within 5 s.
  bool spawn(int port) {
    const std::string tpmstate = "dir=" + state_.string();
    const std::string server = "type=tcp,port=" + std::to_string(port) + ",bindaddr=127.0.0.1";
    const std::string ctrl = "type=tcp,port=" + std::to_string(port + 1) + ",bindaddr=127.0.0.1";
    const std::string log = (state_ / "swtpm.log").string();
    std::vector<std::string> args = {binary_, "socket", "--tpm2", "--tpmstate", tpmstate, "--server", server,
                                     "--ctrl", ctrl, "--flags", "not-need-init"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid;
    const int rc = posix_spawn(&pid, binary_.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw Error("cannot run " + binary_ + ": " + std::strerror(rc));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      int status;
      if (::waitpid(pid, &status, WNOHANG) == pid) return false;
      if (port_accepts(port + 1) && port_accepts(port)) {
        pid_ = pid;
        port_ = port;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return false;
  }

  std::string binary_;
  fs::path state_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// A fresh folder under the system's temporary one, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "orchard-swtpm-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw Error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ---- raw ESAPI, for what the attester does not do ---------------------------------------------

void tss_ok(TSS2_RC rc, const char* what) {
  if (rc != TSS2_RC_SUCCESS) throw Error(std::string(what) + " failed: " + std::to_string(rc));
}

struct CertifyResult {
  Bytes attest, r, s;
};

// A second client of the TPM, on its own connection (swtpm serves one at a time; an attester
// holds none between its calls).
class RawTpm {
 public:
  explicit RawTpm(const std::string& tcti) {
    tss_ok(Tss2_TctiLdr_Initialize(tcti.c_str(), &tcti_), "TctiLdr_Initialize");
    tss_ok(Esys_Initialize(&esys_, tcti_, nullptr), "Esys_Initialize");
    const TSS2_RC rc = Esys_Startup(esys_, TPM2_SU_CLEAR);
    if (rc != TPM2_RC_INITIALIZE) tss_ok(rc, "Startup");
  }
  ~RawTpm() {
    if (ak_ != ESYS_TR_NONE) Esys_FlushContext(esys_, ak_);
    Esys_Finalize(&esys_);
    Tss2_TctiLdr_Finalize(&tcti_);
  }

  // TPM2_PCR_Extend of the SHA-256 bank, no reset.
  void extend(int pcr, ByteView value) {
    TPML_DIGEST_VALUES d{};
    d.count = 1;
    d.digests[0].hashAlg = TPM2_ALG_SHA256;
    std::memcpy(d.digests[0].digest.sha256, value.data(), 32);
    tss_ok(Esys_PCR_Extend(esys_, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d), "PCR_Extend");
  }

  // TPM2_GetCapability(TPM_CAP_HANDLES) from the first transient handle: the objects loaded in the
  // TPM's transient slots now, by anyone (swtpm has no resource manager).
  std::vector<uint32_t> loaded_transient_objects() {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA* data = nullptr;
    tss_ok(Esys_GetCapability(esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, TPM2_TRANSIENT_FIRST,
                              TPM2_MAX_CAP_HANDLES, &more, &data),
           "GetCapability");
    std::vector<uint32_t> handles(data->data.handles.handle, data->data.handles.handle + data->data.handles.count);
    Esys_Free(data);
    return handles;
  }

  // TPM2_ChangeEPS: a new endorsement seed, so new endorsement primary keys (platform auth, empty
  // on swtpm).
  void change_endorsement_seed() {
    tss_ok(Esys_ChangeEPS(esys_, ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE), "ChangeEPS");
  }

  // Gives the endorsement hierarchy a password (the attester assumes the default, none).
  void set_endorsement_auth(std::string_view password) {
    TPM2B_AUTH auth{};
    auth.size = static_cast<UINT16>(password.size());
    std::memcpy(auth.buffer, password.data(), password.size());
    tss_ok(Esys_HierarchyChangeAuth(esys_, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &auth),
           "HierarchyChangeAuth");
  }

  // The AK as tpm_attester.h describes it, from the endorsement seed; returns 0x04 || x || y.
  Bytes create_ak() {
    TPM2B_PUBLIC in{};
    in.publicArea.type = TPM2_ALG_ECC;
    in.publicArea.nameAlg = TPM2_ALG_SHA256;
    in.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                     TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    in.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    in.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    in.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    in.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    in.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    TPM2B_SENSITIVE_CREATE sensitive{};
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION pcrs{};
    TPM2B_PUBLIC* out = nullptr;
    TPM2B_CREATION_DATA* data = nullptr;
    TPM2B_DIGEST* hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    tss_ok(Esys_CreatePrimary(esys_, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                              &in, &outside, &pcrs, &ak_, &out, &data, &hash, &ticket),
           "CreatePrimary");
    Bytes point;
    point.reserve(65);
    point.push_back(0x04);
    const TPMS_ECC_POINT& p = out->publicArea.unique.ecc;
    point.insert(point.end(), p.x.buffer, p.x.buffer + p.x.size);
    point.insert(point.end(), p.y.buffer, p.y.buffer + p.y.size);
    Esys_Free(out);
    Esys_Free(data);
    Esys_Free(hash);
    Esys_Free(ticket);
    return point;
  }

  // TPM2_Certify of the AK by itself: a TPMS_ATTEST of type TPM_ST_ATTEST_CERTIFY, signed by the AK.
  CertifyResult certify_ak(ByteView qualifying_data) {
    TPM2B_DATA q{};
    q.size = static_cast<UINT16>(qualifying_data.size());
    std::memcpy(q.buffer, qualifying_data.data(), qualifying_data.size());
    TPMT_SIG_SCHEME scheme{};
    scheme.scheme = TPM2_ALG_ECDSA;
    scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    TPM2B_ATTEST* attest = nullptr;
    TPMT_SIGNATURE* sig = nullptr;
    tss_ok(Esys_Certify(esys_, ak_, ak_, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, ESYS_TR_NONE, &q, &scheme, &attest, &sig),
           "Certify");
    CertifyResult r{Bytes(attest->attestationData, attest->attestationData + attest->size),
                    Bytes(sig->signature.ecdsa.signatureR.buffer,
                          sig->signature.ecdsa.signatureR.buffer + sig->signature.ecdsa.signatureR.size),
                    Bytes(sig->signature.ecdsa.signatureS.buffer,
                          sig->signature.ecdsa.signatureS.buffer + sig->signature.ecdsa.signatureS.size)};
    Esys_Free(attest);
    Esys_Free(sig);
    return r;
  }

 private:
  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  ESYS_TR ak_ = ESYS_TR_NONE;
};

// ---- helpers ---------------------------------------------------------------------------------

Bytes filled(uint8_t byte) { return Bytes(32, byte); }

// The SHA-256 the TPM computes for its quote and PCR, by OpenSSL's one-shot EVP_Digest.
Bytes openssl_sha256(ByteView data) {
  Bytes out(32);
  unsigned size = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr), 1);
  return out;
}

// The public point in the identity, by OpenSSL: 0x04 || x || y, or empty if it is no P-256 key.
Bytes identity_point(const std::string& identity) {
  const Bytes der = base64_decode(identity);
  const unsigned char* p = der.data();
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (!key) return {};
  char group[32] = {};
  size_t group_size = 0;
  Bytes point(65);
  size_t point_size = 0;
  const bool ok = EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &group_size) &&
                  std::string(group) == "prime256v1" &&
                  EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(), &point_size);
  EVP_PKEY_free(key);
  if (!ok) return {};
  point.resize(point_size);
  return point;
}

// The evidence encoding written out here from tpm_quote.h's description, not by its encoder.
Bytes evidence_bytes(uint8_t pcr, ByteView attest, ByteView r, ByteView s) {
  Bytes e = {1, pcr, static_cast<uint8_t>(attest.size() >> 8), static_cast<uint8_t>(attest.size())};
  e.insert(e.end(), attest.begin(), attest.end());
  const Bytes alg = {0x00, 0x18, 0x00, 0x0b};
  e.insert(e.end(), alg.begin(), alg.end());
  for (ByteView n : {r, s}) {
    e.push_back(0);
    e.push_back(static_cast<uint8_t>(n.size()));
    e.insert(e.end(), n.begin(), n.end());
  }
  return e;
}

std::string refusal(std::string_view identity, ByteView measurement, ByteView digest, ByteView evidence,
                    int pcr = kTpmDefaultPcr) {
  try {
    verify_tpm_evidence(identity, measurement, digest, evidence, pcr);
  } catch (const AttestationError& e) {
    return e.what();
  }
  return "accepted";
}

#define EXPECT_REFUSED(call, reason) EXPECT_NE((call).find(reason), std::string::npos) << (call)

// ---- the fixture: one swtpm per test ---------------------------------------------------------

class TpmAttesterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ::setenv("TSS2_LOG", "all+NONE", 0); }  // tss2's own stderr lines
  void SetUp() override {
    binary_ = find_program("swtpm");
    ASSERT_TRUE(binary_) << "swtpm is not installed: the TPM attester's tests need it "
                            "(install it: scripts/setup.sh, scripts/packages.txt lists swtpm)";
    tpm_ = std::make_unique<Swtpm>(*binary_, dir_.path());
  }
  std::unique_ptr<Swtpm> another_tpm(const TempDir& dir) { return std::make_unique<Swtpm>(*binary_, dir.path()); }

  std::optional<std::string> binary_;
  TempDir dir_;
  std::unique_ptr<Swtpm> tpm_;
  const Bytes m_ = filled(0x11);  // the measurement
  const Bytes d_ = filled(0x22);  // the document digest
};

TEST_F(TpmAttesterTest, QuoteOfTheMeasuredPcrVerifies) {
  TpmAttester attester(tpm_->tcti());
  EXPECT_EQ(attester.kind(), "tpm");
  EXPECT_EQ(attester.pcr(), 23);
  attester.record_measurement(m_);
  // The TPM's own value of the PCR: SHA-256(zeros || m), computed here by OpenSSL.
  Bytes extended(32, 0);
  extended.insert(extended.end(), m_.begin(), m_.end());
  EXPECT_EQ(attester.read_pcr(), openssl_sha256(extended));
  EXPECT_EQ(expected_pcr_value(m_), attester.read_pcr());

  const Bytes evidence = attester.attest(d_);
  EXPECT_NO_THROW(verify_tpm_evidence(attester.identity(), m_, d_, evidence));
  // What the quote says, read field by field.
  const TpmEvidence e = decode_tpm_evidence(evidence);
  EXPECT_EQ(e.pcr, 23);
  const TpmAttest q = parse_tpm_quote(e.attest);
  EXPECT_EQ(q.magic, 0xff544347u);
  EXPECT_EQ(q.type, 0x8018);
  EXPECT_EQ(q.extra_data, d_);
  ASSERT_EQ(q.quote_selection.size(), 1u);
  EXPECT_EQ(q.quote_selection[0].hash, 0x000b);
  EXPECT_EQ(q.quote_selection[0].select, (Bytes{0, 0, 0x80}));
  EXPECT_EQ(q.quote_pcr_digest, openssl_sha256(attester.read_pcr()));
  EXPECT_EQ(q.qualified_signer.size(), 34u);  // nameAlg SHA-256 || digest
  // The identity: a P-256 SubjectPublicKeyInfo, read back by OpenSSL.
  EXPECT_EQ(identity_point(attester.identity()).size(), 65u);

  // A second attestation of another document from the same PCR.
  const Bytes d2 = filled(0x33);
  EXPECT_EQ(refusal(attester.identity(), m_, d2, attester.attest(d2)), "accepted");
}

TEST_F(TpmAttesterTest, AnotherMeasurementIsRefused) {
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(filled(0x12));
  EXPECT_REFUSED(refusal(attester.identity(), m_, d_, attester.attest(d_)),
                 "TPM quote: PCR digest does not match the measurement");
  // Measured again: reset first, so the earlier value leaves no trace.
  attester.record_measurement(m_);
  EXPECT_EQ(refusal(attester.identity(), m_, d_, attester.attest(d_)), "accepted");
}

TEST_F(TpmAttesterTest, AMeasurementExtendedTwiceIsRefused) {
  std::string identity;
  {
    TpmAttester attester(tpm_->tcti());
    attester.record_measurement(m_);
    identity = attester.identity();
  }
  RawTpm(tpm_->tcti()).extend(23, m_);  // someone else extends the PCR once more
  TpmAttester attester(tpm_->tcti());
  EXPECT_EQ(attester.identity(), identity);
  Bytes twice = expected_pcr_value(m_);
  twice.insert(twice.end(), m_.begin(), m_.end());
  EXPECT_EQ(attester.read_pcr(), openssl_sha256(twice));
  EXPECT_REFUSED(refusal(identity, m_, d_, attester.attest(d_)), "TPM quote: PCR digest does not match the measurement");
}

TEST_F(TpmAttesterTest, AnotherDocumentIsRefused) {
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(m_);
  const Bytes evidence = attester.attest(d_);
  EXPECT_REFUSED(refusal(attester.identity(), m_, filled(0x23), evidence),
                 "TPM quote: qualifying data is not this document's digest");
  EXPECT_REFUSED(refusal(attester.identity(), m_, Bytes{}, evidence),
                 "TPM quote: qualifying data is not this document's digest");
  EXPECT_THROW(attester.attest(Bytes(31, 0x22)), Error);
  EXPECT_THROW(attester.record_measurement(Bytes(33, 0x11)), Error);
}

TEST_F(TpmAttesterTest, AnotherTpmsKeyIsRefused) {
  TempDir other_dir;
  auto other_tpm = another_tpm(other_dir);
  TpmAttester ours(tpm_->tcti());
  TpmAttester theirs(other_tpm->tcti());
  EXPECT_NE(ours.identity(), theirs.identity());
  ours.record_measurement(m_);
  theirs.record_measurement(m_);
  const Bytes evidence = theirs.attest(d_);
  EXPECT_EQ(refusal(theirs.identity(), m_, d_, evidence), "accepted");
  EXPECT_REFUSED(refusal(ours.identity(), m_, d_, evidence),
                 "TPM quote: signature does not verify with the attestation key");
  // Identities that are no P-256 key.
  EXPECT_REFUSED(refusal("not base64!", m_, d_, evidence), "TPM quote: the identity is not base64");
  EXPECT_REFUSED(refusal(base64_encode(Bytes{1, 2, 3}), m_, d_, evidence),
                 "TPM quote: the identity is not a DER SubjectPublicKeyInfo");
  EVP_PKEY* ed = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  unsigned char* der = nullptr;
  const int size = i2d_PUBKEY(ed, &der);
  const std::string ed_identity = base64_encode(ByteView(der, static_cast<size_t>(size)));
  OPENSSL_free(der);
  EVP_PKEY_free(ed);
  EXPECT_REFUSED(refusal(ed_identity, m_, d_, evidence), "TPM quote: the identity is not a P-256 public key");
}

TEST_F(TpmAttesterTest, EveryFlippedBitIsRefused) {
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(m_);
  const Bytes evidence = attester.attest(d_);
  const TpmEvidence e = decode_tpm_evidence(evidence);
  // The attest bytes start at offset 4 (version, index, u16 size); the signature's r and s follow.
  const size_t attest_at = 4, r_at = attest_at + e.attest.size() + 4 + 2, s_at = r_at + e.r.size() + 2;
  ASSERT_EQ(Bytes(evidence.begin() + r_at, evidence.begin() + r_at + e.r.size()), e.r);
  ASSERT_EQ(Bytes(evidence.begin() + s_at, evidence.end()), e.s);
  size_t refused = 0;
  auto flip_all = [&](size_t from, size_t size) {
    for (size_t i = from; i < from + size; ++i)
      for (int bit = 0; bit < 8; ++bit) {
        Bytes bad = evidence;
        bad[i] ^= static_cast<uint8_t>(1 << bit);
        const std::string why = refusal(attester.identity(), m_, d_, bad);
        EXPECT_EQ(why, "TPM quote: signature does not verify with the attestation key") << "byte " << i << " bit " << bit;
        refused += why != "accepted";
      }
  };
  flip_all(attest_at, e.attest.size());
  flip_all(r_at, e.r.size());
  flip_all(s_at, e.s.size());
  EXPECT_EQ(refused, (e.attest.size() + e.r.size() + e.s.size()) * 8);
}

TEST_F(TpmAttesterTest, TruncatedAndTrailingEvidenceIsRefused) {
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(m_);
  const Bytes evidence = attester.attest(d_);
  for (size_t n = 0; n < evidence.size(); ++n)
    EXPECT_REFUSED(refusal(attester.identity(), m_, d_, ByteView(evidence).first(n)), "TPM evidence: truncated in ");
  Bytes longer = evidence;
  longer.push_back(0);
  EXPECT_REFUSED(refusal(attester.identity(), m_, d_, longer), "TPM evidence: 1 bytes after the signature");
  Bytes version = evidence;
  version[0] = 2;
  EXPECT_REFUSED(refusal(attester.identity(), m_, d_, version), "TPM evidence: unknown version 2");
  Bytes index = evidence;
  index[1] = 24;
  EXPECT_REFUSED(refusal(attester.identity(), m_, d_, index), "TPM evidence: PCR index 24 is not 0..23");
}

TEST_F(TpmAttesterTest, AQuoteOfAnotherPcrIsRefused) {
  TpmAttester attester(tpm_->tcti(), 16);
  attester.record_measurement(m_);
  const Bytes evidence = attester.attest(d_);
  // Verified as what it is: a quote of PCR 16.
  EXPECT_EQ(refusal(attester.identity(), m_, d_, evidence, 16), "accepted");
  const TpmAttest quote = parse_tpm_quote(decode_tpm_evidence(evidence).attest);
  ASSERT_EQ(quote.quote_selection.size(), 1u);
  EXPECT_EQ(quote.quote_selection[0].select, (Bytes{0, 0, 0x01}));  // PCR 16: byte 2, bit 0
  // A verifier that expects PCR 23 refuses it, by the evidence's index...
  EXPECT_REFUSED(refusal(attester.identity(), m_, d_, evidence), "TPM evidence: quotes PCR 16, expected PCR 23");
  // ...and, with the (unsigned) index rewritten to 23, by the signed selection.
  Bytes claimed = evidence;
  claimed[1] = 23;
  EXPECT_REFUSED(refusal(attester.identity(), m_, d_, claimed), "TPM quote: selects PCRs other than sha256:23");
  EXPECT_THROW(TpmAttester(tpm_->tcti(), 0), Error);
}

TEST_F(TpmAttesterTest, ATpmSignedStructureThatIsNoQuoteIsRefused) {
  std::string identity;
  {
    TpmAttester attester(tpm_->tcti());
    identity = attester.identity();
  }
  RawTpm raw(tpm_->tcti());
  // The AK recreated from its template here gives the attester's identity.
  EXPECT_EQ(raw.create_ak(), identity_point(identity));
  const CertifyResult c = raw.certify_ak(d_);
  const Bytes evidence = evidence_bytes(23, c.attest, c.r, c.s);
  EXPECT_EQ(c.attest[4], 0x80);
  EXPECT_EQ(c.attest[5], 0x17);  // TPM_ST_ATTEST_CERTIFY
  EXPECT_REFUSED(refusal(identity, m_, d_, evidence), "TPM quote: not a quote (magic/type)");
}

TEST_F(TpmAttesterTest, TheSameTpmGivesTheSameIdentityAfterARestart) {
  std::string identity;
  {
    TpmAttester attester(tpm_->tcti());
    attester.record_measurement(m_);
    identity = attester.identity();
  }
  tpm_->stop();
  tpm_->start();  // the same state folder; Startup(CLEAR) again
  TpmAttester attester(tpm_->tcti());
  EXPECT_EQ(attester.identity(), identity);
  EXPECT_EQ(attester.read_pcr(), Bytes(32, 0));  // a restart resets the PCR
  attester.record_measurement(m_);
  EXPECT_EQ(refusal(identity, m_, d_, attester.attest(d_)), "accepted");
}

// The PCR after a reset and two extensions, by OpenSSL: SHA-256(SHA-256(zeros || first) || second).
Bytes pcr_after(ByteView first, ByteView second) {
  Bytes once(32, 0);
  once.insert(once.end(), first.begin(), first.end());
  Bytes twice = openssl_sha256(once);
  twice.insert(twice.end(), second.begin(), second.end());
  return openssl_sha256(twice);
}

TEST_F(TpmAttesterTest, NoObjectStaysLoadedBetweenCalls) {
  // The TPM's transient slots are few (3 in swtpm): an AK kept loaded would take one from every
  // other client for the attester's whole life.
  TpmAttester attester(tpm_->tcti());
  EXPECT_EQ(RawTpm(tpm_->tcti()).loaded_transient_objects(), std::vector<uint32_t>{});
  attester.record_measurement(m_);
  EXPECT_EQ(refusal(attester.identity(), m_, d_, attester.attest(d_)), "accepted");
  EXPECT_EQ(attester.read_pcr(), expected_pcr_value(m_));
  EXPECT_EQ(RawTpm(tpm_->tcti()).loaded_transient_objects(), std::vector<uint32_t>{});
}

TEST_F(TpmAttesterTest, AnotherClientExtendsThePcrWhileTheAttesterLives) {
  TpmAttester a(tpm_->tcti());
  a.record_measurement(m_);
  EXPECT_EQ(refusal(a.identity(), m_, d_, a.attest(d_)), "accepted");
  const Bytes other = filled(0x44);
  // A raw ESAPI client on its own connection, while `a` is alive.
  RawTpm(tpm_->tcti()).extend(23, other);
  EXPECT_EQ(a.read_pcr(), pcr_after(m_, other));
  const Bytes evidence = a.attest(d_);
  EXPECT_REFUSED(refusal(a.identity(), m_, d_, evidence), "TPM quote: PCR digest does not match the measurement");
  EXPECT_EQ(parse_tpm_quote(decode_tpm_evidence(evidence).attest).quote_pcr_digest, openssl_sha256(a.read_pcr()));

  // A second attester on the same TPM: the same AK, and its measurement is what a's quotes show.
  TpmAttester b(tpm_->tcti());
  EXPECT_EQ(b.identity(), a.identity());
  b.record_measurement(other);
  EXPECT_EQ(a.read_pcr(), expected_pcr_value(other));
  EXPECT_REFUSED(refusal(a.identity(), m_, d_, a.attest(d_)), "TPM quote: PCR digest does not match the measurement");
  EXPECT_EQ(refusal(a.identity(), other, d_, a.attest(d_)), "accepted");
  a.record_measurement(m_);
  EXPECT_EQ(refusal(a.identity(), m_, d_, b.attest(d_)), "accepted");
}

// Runs argv with `env_name=env_value` added to the environment, output to `log`; the exit status,
// or nullopt when it has not finished within `seconds` (then it is killed).
std::optional<int> run_program(const std::vector<std::string>& args, const std::string& env_name,
                               const std::string& env_value, const fs::path& log, int seconds) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::string_view(*e).rfind(env_name + "=", 0) != 0) env_strings.emplace_back(*e);
  env_strings.push_back(env_name + "=" + env_value);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> arg_strings = args;
  std::vector<char*> argv;
  for (std::string& a : arg_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid;
  const int rc = posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw Error("cannot run " + args[0] + ": " + std::strerror(rc));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string file_text(const fs::path& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buffer[4096];
    size_t n;
    while (text.size() < 65536 && (n = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, n);
    std::fclose(f);
  }
  return text;
}

TEST_F(TpmAttesterTest, Tpm2ToolsExtendThePcrWhileTheAttesterLives) {
  const std::optional<std::string> pcrextend = find_program("tpm2_pcrextend");
  ASSERT_TRUE(pcrextend) << "tpm2_pcrextend is not installed: this test runs it beside a live attester "
                            "(install it: scripts/setup.sh, scripts/packages.txt lists tpm2-tools)";
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(m_);
  EXPECT_EQ(refusal(attester.identity(), m_, d_, attester.attest(d_)), "accepted");
  const Bytes other = filled(0x55);
  const fs::path log = dir_.path() / "tpm2_pcrextend.log";
  // tpm_->tcti() is "swtpm:host=127.0.0.1,port=P", the form TPM2TOOLS_TCTI takes too.
  const std::optional<int> status =
      run_program({*pcrextend, "23:sha256=" + to_hex(other)}, "TPM2TOOLS_TCTI", tpm_->tcti(), log, 20);
  ASSERT_TRUE(status) << "tpm2_pcrextend did not finish in 20 s: is the TPM's one connection held? "
                      << file_text(log);
  ASSERT_EQ(*status, 0) << "tpm2_pcrextend failed: " << file_text(log);
  EXPECT_EQ(attester.read_pcr(), pcr_after(m_, other));
  EXPECT_REFUSED(refusal(attester.identity(), m_, d_, attester.attest(d_)),
                 "TPM quote: PCR digest does not match the measurement");
}

TEST_F(TpmAttesterTest, ANewEndorsementSeedIsNamedByAttest) {
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(m_);
  EXPECT_EQ(refusal(attester.identity(), m_, d_, attester.attest(d_)), "accepted");
  RawTpm(tpm_->tcti()).change_endorsement_seed();
  std::string error = "no error";
  try {
    attester.attest(d_);
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("TPM attester (" + tpm_->tcti() + "): the attestation key recreated for this quote is not "
                       "the one created at start"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("endorsement seed changed"), std::string::npos) << error;
  // The AK recreated for that refused quote was flushed all the same.
  EXPECT_EQ(RawTpm(tpm_->tcti()).loaded_transient_objects(), std::vector<uint32_t>{});
  // The AK from the template, recreated here with raw ESAPI, is indeed another key now.
  const Bytes now = RawTpm(tpm_->tcti()).create_ak();
  EXPECT_EQ(now.size(), 65u);
  EXPECT_NE(now, identity_point(attester.identity()));
  EXPECT_EQ(identity_point(TpmAttester(tpm_->tcti()).identity()), now);
}

std::string construction_error(const std::string& tcti) {
  try {
    TpmAttester attester(tcti);
  } catch (const Error& e) {
    return e.what();
  }
  return "constructed";
}

TEST_F(TpmAttesterTest, TssErrorsNameTheCommandAndTheReturnCode) {
  RawTpm(tpm_->tcti()).set_endorsement_auth("secret");
  const std::string auth = construction_error(tpm_->tcti());
  EXPECT_NE(auth.find("TPM attester (" + tpm_->tcti() + "): TPM2_CreatePrimary"), std::string::npos) << auth;
  // TPM_RC_BAD_AUTH (0x0a2) on session 1 (0x900), as Part 2 numbers it, and tss2-rc's decoding.
  EXPECT_NE(auth.find("failed: 0x000009a2 (tpm:session(1):"), std::string::npos) << auth;
  const std::string tcti = tpm_->tcti();
  tpm_->stop();
  const std::string down = construction_error(tcti);
  EXPECT_NE(down.find("TPM attester (" + tcti + "): connecting (TCTI loader) failed: 0x"), std::string::npos) << down;
  const std::string unknown = construction_error("nosuchtcti:x");
  EXPECT_NE(unknown.find("connecting (TCTI loader) failed"), std::string::npos) << unknown;
}

TEST_F(TpmAttesterTest, ThreadsShareOneAttester) {
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(m_);
  std::vector<std::thread> threads;
  std::vector<int> accepted(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        const Bytes d = filled(static_cast<uint8_t>(t * 16 + i));
        accepted[t] += refusal(attester.identity(), m_, d, attester.attest(d)) == "accepted";
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(accepted, (std::vector<int>{5, 5, 5, 5}));
}

TEST_F(TpmAttesterTest, RandomAndMutatedEvidenceNeverCrashes) {
  TpmAttester attester(tpm_->tcti());
  attester.record_measurement(m_);
  const Bytes evidence = attester.attest(d_);
  std::mt19937 rng(16);
  auto byte = [&] { return static_cast<uint8_t>(rng()); };
  size_t refused = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes input;
    if (i % 4 == 0) {
      input.resize(rng() % 300);
      for (uint8_t& b : input) b = byte();
      if (!input.empty() && i % 8 == 0) input[0] = 1;
    } else {
      input = evidence;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < edits; ++k) {
        const size_t at = rng() % (input.size() + 1);
        switch (rng() % 3) {
          case 0: if (at < input.size()) input[at] = byte(); break;
          case 1: input.insert(input.begin() + static_cast<long>(at), byte()); break;
          case 2: if (at < input.size()) input.erase(input.begin() + static_cast<long>(at)); break;
        }
      }
    }
    try {
      verify_tpm_evidence(attester.identity(), m_, d_, input);
      EXPECT_EQ(input, evidence);  // only the evidence itself is accepted
    } catch (const AttestationError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 19000u);
}

// ---- quotes built and signed here with OpenSSL (no TPM): what a TPM key would never sign --------

// A TPMS_ATTEST written out from Part 2's field list.
Bytes quote_attest(uint32_t magic, uint16_t type, ByteView extra, const std::vector<std::pair<uint16_t, Bytes>>& banks,
                   ByteView pcr_digest) {
  Bytes a;
  auto u16 = [&](uint32_t v) { a.push_back(uint8_t(v >> 8)), a.push_back(uint8_t(v)); };
  auto u32 = [&](uint32_t v) { u16(v >> 16), u16(v & 0xffff); };
  u32(magic);
  u16(type);
  u16(34);  // qualifiedSigner: a SHA-256 name
  u16(0x000b);
  a.insert(a.end(), 32, 0xab);
  u16(static_cast<uint32_t>(extra.size()));
  a.insert(a.end(), extra.begin(), extra.end());
  a.insert(a.end(), 8, 0x01);  // clock
  u32(7), u32(3), a.push_back(1);  // resetCount, restartCount, safe
  a.insert(a.end(), 8, 0x02);      // firmwareVersion
  u32(static_cast<uint32_t>(banks.size()));
  for (const auto& [hash, bits] : banks) {
    u16(hash);
    a.push_back(static_cast<uint8_t>(bits.size()));
    a.insert(a.end(), bits.begin(), bits.end());
  }
  u16(static_cast<uint32_t>(pcr_digest.size()));
  a.insert(a.end(), pcr_digest.begin(), pcr_digest.end());
  return a;
}

class SoftwareSigner {
 public:
  SoftwareSigner() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")) {}
  ~SoftwareSigner() { EVP_PKEY_free(key_); }
  std::string identity() const {
    unsigned char* der = nullptr;
    const int size = i2d_PUBKEY(key_, &der);
    std::string id = base64_encode(ByteView(der, static_cast<size_t>(size)));
    OPENSSL_free(der);
    return id;
  }
  // Evidence for PCR `pcr` over `attest`, signed ECDSA-SHA256 by OpenSSL.
  Bytes evidence(ByteView attest, uint8_t pcr = 23) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t size = 0;
    EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_), 1);
    EXPECT_EQ(EVP_DigestSign(ctx, nullptr, &size, attest.data(), attest.size()), 1);
    Bytes der(size);
    EXPECT_EQ(EVP_DigestSign(ctx, der.data(), &size, attest.data(), attest.size()), 1);
    EVP_MD_CTX_free(ctx);
    const unsigned char* p = der.data();
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(size));
    Bytes r(32), s(32);
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), r.data(), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), s.data(), 32);
    ECDSA_SIG_free(sig);
    return evidence_bytes(pcr, attest, r, s);
  }

 private:
  EVP_PKEY* key_;
};

TEST(TpmQuote, ExpectedPcrValueIsSha256OfZerosAndTheMeasurement) {
  // SHA-256 of 64 zero bytes (a well-known value) is the PCR after extending 32 zero bytes.
  EXPECT_EQ(to_hex(expected_pcr_value(Bytes(32, 0))),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b");
}

TEST(TpmQuote, SoftwareSignedQuotesCheckEveryField) {
  const SoftwareSigner signer;
  const Bytes m = filled(0x11), d = filled(0x22);
  const Bytes digest = openssl_sha256(expected_pcr_value(m));
  const std::vector<std::pair<uint16_t, Bytes>> pcr23 = {{0x000b, {0, 0, 0x80}}};
  auto verdict = [&](ByteView attest) { return refusal(signer.identity(), m, d, signer.evidence(attest)); };

  EXPECT_EQ(verdict(quote_attest(0xff544347, 0x8018, d, pcr23, digest)), "accepted");
  // A wider bitmap with only PCR 23 set is the same selection.
  EXPECT_EQ(verdict(quote_attest(0xff544347, 0x8018, d, {{0x000b, {0, 0, 0x80, 0}}}, digest)), "accepted");
  EXPECT_REFUSED(verdict(quote_attest(0xff544348, 0x8018, d, pcr23, digest)), "TPM quote: not a quote (magic/type)");
  EXPECT_REFUSED(verdict(quote_attest(0xff544347, 0x8014, d, pcr23, digest)), "TPM quote: not a quote (magic/type)");
  EXPECT_REFUSED(verdict(quote_attest(0xff544347, 0x8018, Bytes(31, 0x22), pcr23, digest)),
                 "TPM quote: qualifying data is not this document's digest");
  for (const auto& banks : std::vector<std::vector<std::pair<uint16_t, Bytes>>>{
           {},                                                 // no PCR
           {{0x000b, {0, 0, 0xc0}}},                           // 22 and 23
           {{0x000b, {0, 0x80, 0}}},                           // 15
           {{0x0004, {0, 0, 0x80}}},                           // SHA-1 bank
           {{0x000b, {0, 0}}},                                 // a bitmap too short for 23
           {{0x000b, {0, 0, 0x80}}, {0x0004, {0, 0, 0x80}}}})  // two banks
    EXPECT_REFUSED(verdict(quote_attest(0xff544347, 0x8018, d, banks, digest)),
                   "TPM quote: selects PCRs other than sha256:23");
  EXPECT_REFUSED(verdict(quote_attest(0xff544347, 0x8018, d, pcr23, expected_pcr_value(m))),
                 "TPM quote: PCR digest does not match the measurement");
  // Malformed signed structures: trailing bytes, a TPM2B longer than its maximum, safe not 0/1.
  Bytes trailing = quote_attest(0xff544347, 0x8018, d, pcr23, digest);
  trailing.push_back(0);
  EXPECT_REFUSED(verdict(trailing), "TPM quote: 1 bytes after the quote");
  EXPECT_REFUSED(verdict(quote_attest(0xff544347, 0x8018, Bytes(67, 0), pcr23, digest)),
                 "TPM quote: malformed extraData: 67 bytes");
  Bytes unsafe = quote_attest(0xff544347, 0x8018, d, pcr23, digest);
  unsafe[6 + 2 + 34 + 2 + 32 + 16] = 2;
  EXPECT_REFUSED(verdict(unsafe), "TPM quote: malformed clockInfo: safe is 2");
  const Bytes good = quote_attest(0xff544347, 0x8018, d, pcr23, digest);
  for (size_t n = 1; n < good.size(); ++n)
    EXPECT_REFUSED(verdict(ByteView(good).first(n)), "TPM quote: truncated in ");
}

TEST(TpmQuote, EncodeAndDecodeAgree) {
  TpmEvidence e;
  e.pcr = 16;
  e.attest = {1, 2, 3};
  e.r = {4};
  e.s = Bytes(32, 5);
  const Bytes encoded = encode_tpm_evidence(e);
  EXPECT_EQ(encoded, evidence_bytes(16, e.attest, e.r, e.s));
  const TpmEvidence back = decode_tpm_evidence(encoded);
  EXPECT_EQ(back.pcr, 16);
  EXPECT_EQ(back.attest, e.attest);
  EXPECT_EQ(back.r, e.r);
  EXPECT_EQ(back.s, e.s);
  e.r = Bytes(33, 1);
  EXPECT_THROW(encode_tpm_evidence(e), Error);
  // The signature's algorithms are checked on decoding.
  Bytes other = encoded;
  other[4 + 3 + 1] = 0x14;  // TPM_ALG_RSASSA
  EXPECT_THROW(decode_tpm_evidence(other), AttestationError);
  // Lengths out of their bounds, whatever follows.
  auto decode_error = [](const Bytes& evidence) {
    try {
      decode_tpm_evidence(evidence);
    } catch (const AttestationError& e) {
      return std::string(e.what());
    }
    return std::string("decoded");
  };
  EXPECT_EQ(decode_error(evidence_bytes(23, e.attest, Bytes(33, 1), e.s)),
            "TPM evidence: malformed signature r: 33 bytes (1..32 allowed)");
  EXPECT_EQ(decode_error(evidence_bytes(23, e.attest, e.s, Bytes{})),
            "TPM evidence: malformed signature s: 0 bytes (1..32 allowed)");
  EXPECT_EQ(decode_error(evidence_bytes(23, Bytes{}, e.s, e.s)), "TPM evidence: malformed attest: 0 bytes (1..1024 allowed)");
  EXPECT_EQ(decode_error(Bytes{1, 23, 0xff, 0xff}), "TPM evidence: malformed attest: 65535 bytes (1..1024 allowed)");
  EXPECT_EQ(decode_error(Bytes{1, 23, 0, 9, 1}), "TPM evidence: truncated in attest");
}

}  // namespace
}  // namespace orchard::cloud
