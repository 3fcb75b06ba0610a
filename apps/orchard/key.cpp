// orchard key generate --name NAME --out FILE
// orchard key public --key FILE
//
// Ed25519 signing keys for the private cloud's release, log, witness and software attester
// (src/cloud/key_file.h). `generate` writes the private key (mode 0600) and prints its vkey, the
// public string that verifiers are given.
#include <cstdio>

#include "cloud/key_file.h"
#include "command.h"

namespace orchard::cli {
namespace {

int key_generate(Args& args) {
  const std::string name = args.require("name");
  const std::string out = args.require("out");
  args.finish();
  const cloud::NoteSigner signer = cloud::NoteSigner::generate(name);
  cloud::save_signer(signer, out);
  std::printf("%s\n", signer.verifier().format().c_str());
  return 0;
}

int key_public(Args& args) {
  const std::string path = args.require("key");
  args.finish();
  std::printf("%s\n", cloud::load_signer(path).verifier().format().c_str());
  return 0;
}

const RegisterCommand kGenerate("key generate", "make an Ed25519 signing key; prints its vkey", key_generate);
const RegisterCommand kPublic("key public", "print a signing key's vkey", key_public);

}  // namespace
}  // namespace orchard::cli
