// `orchard serve` in a build configured with -DORCHARD_SERVER=OFF (no cpp-httplib, no server
// library): the command still exists, so that scripts get a clear one-line error instead of
// "unknown command". CMakeLists.txt compiles this file instead of serve.cpp in such a build.
#include "base/error.h"
#include "command.h"

namespace orchard::cli {
namespace {

int run_serve_unavailable(Args&) {
  fail("serve: this orchard was built without the server (configured with -DORCHARD_SERVER=OFF); "
       "rebuild with -DORCHARD_SERVER=ON");
}

const RegisterCommand kServe("serve", "serve a model over the OpenAI HTTP API (not in this build: ORCHARD_SERVER=OFF)",
                             run_serve_unavailable);

}  // namespace
}  // namespace orchard::cli
