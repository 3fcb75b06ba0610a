// The TPM 2.0 attester: the node's measurement goes into a PCR of the machine's TPM, and evidence
// is a TPM2_Quote of that PCR, signed by an attestation key that never leaves the TPM, with the
// document's digest as qualifying data. The client checks it with verify_tpm_evidence
// (tpm_quote.h), which needs no TPM library. Built on tpm2-tss (ESAPI and the TCTI loader), so
// it talks to a TPM device ("device:/dev/tpmrm0", through the kernel's resource manager) or to
// swtpm, the software TPM the tests and the demo use ("swtpm:host=127.0.0.1,port=2321").
//
// The attestation key (AK) is a primary key of the endorsement hierarchy: restricted ECDSA P-256
// with SHA-256, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, created from a fixed
// template with an empty auth value. A primary key is derived from the hierarchy's seed and the
// template, so the same TPM gives the same AK at every start and nothing has to be stored: the AK
// is the TPM's stable identity. The endorsement seed survives reboots and TPM2_Clear (only
// TPM2_ChangeEPS replaces it); a swtpm keeps it in its state folder. Restricted means the TPM
// signs with it only structures it generated itself (quotes, certifications), never bytes a
// caller hands it that could pass for one; the verifier checks the quote's magic and type.
//
// What a quote proves, and what it does not:
// - The PCR is 23 (or 16): the PCRs a program may reset at locality 0. record_measurement resets
//   it and extends it once, so a quote of SHA-256(zeros || measurement) says that the last thing
//   to reset and extend that PCR did so with that measurement. Anyone on the machine who can reach
//   the TPM (root, or the tss group for /dev/tpmrm0) can do the same with any value, and can ask
//   this AK (its template is public, its auth empty) for quotes. So the quote proves what was
//   extended, not who extended it: without measured boot (firmware and kernel extending PCRs 0-15
//   with what they load, checked against known values), a TPM cannot prove what ran before or
//   beside the node, nor that the node measured itself honestly. docs/cloud.md says so.
// - Nothing here proves that the AK lives in a real TPM (no endorsement-key certificate chain):
//   the identity is trusted because it is the one logged for the node's machine and pinned.
//
// One connection per operation. The constructor connects, starts the TPM if it must, creates the
// AK, keeps its public part as the identity, flushes it and disconnects; record_measurement,
// attest and read_pcr each connect, do their commands and disconnect (attest recreates the AK
// from the same template, which gives the same key, quotes, and flushes it). Nothing is held
// between calls so that the TPM's other users get in between while a node runs: a measured-boot
// agent, an operator's tpm2-tools, a test extending the PCR behind the node's back to see the
// next quote refused. swtpm's socket server and the Microsoft/IBM simulator serve one client
// connection at a time and /dev/tpm0 opens for one process at a time, so a TCTI that keeps its
// connection (mssim, device:/dev/tpm0) would shut out every other client; tpm2-tss's swtpm TCTI
// happens to connect per command, and there an AK kept loaded took one of the TPM's few
// transient slots (3 in swtpm) from all of them. Through /dev/tpmrm0 the kernel's resource
// manager shares the TPM among open connections and swaps objects out, so there it matters less.
//
// The cost is a TCTI and ESAPI context and a TPM2_CreatePrimary per quote: measured on swtpm
// 0.7.1 over loopback with tpm2-tss 3.2.1 (a busy 2-core machine, 50 quotes a run), attest took
// 3.6 to 7 ms where a TPM2_Quote with the AK kept loaded on a kept context took 0.5 to 0.7 ms
// (CreatePrimary and FlushContext of the AK 0.9 to 1.8 ms, loading the TCTI, setting up ESAPI and
// closing both 1.1 to 1.4 ms): small, as a node quotes once per attestation document (renewed at
// half its validity), not per request. attest checks that the recreated AK is the identity's key, and throws saying so when it is not
// (the endorsement seed was changed, or another TPM answers at the TCTI's address): its quotes
// would be refused anyway, for a reason that would not name the cause.
//
// Thread safety: one mutex around every connection; any thread may call. Between two calls,
// other clients may use the TPM, so a PCR value is only as fresh as the quote that signs it.
#pragma once
#include <mutex>
#include <string>
#include <string_view>

#include "cloud/attester.h"
#include "cloud/tpm_quote.h"

namespace orchard::cloud {

class TpmAttester : public Attester {
 public:
  // Connects through the TCTI loader (`tcti` is its "name:config" string), runs
  // TPM2_Startup(CLEAR) where the TPM has not been started (a TPM already started answers
  // TPM_RC_INITIALIZE, which is fine), creates the AK, reads its public part, flushes it and
  // disconnects. `pcr` must be 16 or 23. Throws orchard::Error naming the TPM command and the TSS
  // return code (decoded) when any step fails; so do the calls below, each on its own connection.
  explicit TpmAttester(std::string tcti, int pcr = kTpmDefaultPcr);
  ~TpmAttester() override;
  TpmAttester(const TpmAttester&) = delete;
  TpmAttester& operator=(const TpmAttester&) = delete;

  std::string_view kind() const override { return "tpm"; }
  // base64 of the AK's DER SubjectPublicKeyInfo (P-256).
  std::string identity() const override { return identity_; }
  // TPM2_PCR_Reset of the PCR, then TPM2_PCR_Extend of its SHA-256 bank with the 32-byte
  // measurement: the PCR then holds expected_pcr_value(measurement).
  void record_measurement(ByteView measurement) override;
  // TPM2_Quote of sha256:{pcr} with the 32-byte digest as qualifying data, signed ECDSA-SHA256 by
  // the AK (recreated, checked against identity(), flushed); the evidence encoding of tpm_quote.h.
  Bytes attest(ByteView document_digest) override;

  int pcr() const { return pcr_; }
  // TPM2_PCR_Read: the PCR's SHA-256 bank value now (32 bytes).
  Bytes read_pcr();

 private:
  std::string tcti_;
  int pcr_;
  std::mutex mutex_;  // one connection at a time from this object
  std::string identity_;
};

}  // namespace orchard::cloud
