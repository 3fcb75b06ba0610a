// `orchard router explain` and `orchard router calibrate` in a build configured with
// -DORCHARD_SERVER=OFF (no router library, which sits above the server and the cloud client): the
// commands still exist and say why they cannot run, as `orchard serve` does.
// CMakeLists.txt compiles this file instead of router.cpp in such a build.
#include "base/error.h"
#include "command.h"

namespace orchard::cli {
namespace {

int run_router_unavailable(Args& args) {
  fail(args.command(),
       ": this orchard was built without the server (configured with -DORCHARD_SERVER=OFF), which the router "
       "needs; rebuild with -DORCHARD_SERVER=ON");
}

const RegisterCommand kExplain("router explain",
                               "the hybrid router's decision for a prompt (not in this build: ORCHARD_SERVER=OFF)",
                               run_router_unavailable);
const RegisterCommand kCalibrate("router calibrate",
                                 "the pre-mode threshold for a cloud fraction (not in this build: ORCHARD_SERVER=OFF)",
                                 run_router_unavailable);

}  // namespace
}  // namespace orchard::cli
