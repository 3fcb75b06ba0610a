// orchard release measure --name NAME --model PATH [--binary PATH] [serve --private's options]
// orchard release sign --key FILE --statement FILE --out NOTE
//
// A release of the private cloud node (src/cloud/release.h): `measure` prints the statement of
// what a node started with the same options will measure itself to be (its binary, model and
// canonical configuration); `sign` signs a statement with the release key, after checking it,
// into the note that goes into the transparency log (`orchard log append`).
#include <cstdio>

#include "base/atomic_file.h"
#include "base/error.h"
#include "base/mapped_file.h"
#include "cloud/key_file.h"
#include "cloud/release.h"
#include "command.h"
#include "serve_config.h"


namespace orchard::cli {
namespace {

int release_measure(Args& args) {
  const std::string name = args.require("name");
  ServeConfig config = parse_serve_config(args);
  const std::string binary = args.get_or("binary", "/proc/self/exe");
  args.finish();
  const cloud::Release release{name, cloud::measure_node(binary, config.model, config.server, config.node)};
  std::fputs(cloud::format_release(release).c_str(), stdout);
  return 0;
}

int release_sign(Args& args) {
  const cloud::NoteSigner key = cloud::load_signer(args.require("key"));
  const std::string statement_path = args.require("statement");
  const std::string out = args.require("out");
  args.finish();
  const std::string note = cloud::sign_release(cloud::parse_release(read_text_file(statement_path, 64 << 10)), key);
  AtomicFile file(out);
  file.write(note);
  file.commit();
  std::fprintf(stderr, "orchard: release statement signed by %s into %s\n", key.verifier().format().c_str(), out.c_str());
  return 0;
}

const RegisterCommand kMeasure("release measure", "print the release statement of a node's binary, model and options",
                               release_measure, {"private", "no-prefix-reuse"});
const RegisterCommand kSign("release sign", "sign a release statement with the release key", release_sign);

}  // namespace
}  // namespace orchard::cli
