// `orchard distill collect` and `orchard distill pack` in a build configured with -DORCHARD_SERVER=OFF
// (no cpp-httplib, so no distill library): the commands still exist and say why they cannot run, as
// `orchard serve` does.
// CMakeLists.txt compiles this file instead of distill.cpp and distill_pack.cpp in such a build.
#include "base/error.h"
#include "command.h"

namespace orchard::cli {
namespace {

int run_distill_unavailable(Args& args) {
  fail(args.command(),
       ": this orchard was built without HTTP support (configured with -DORCHARD_SERVER=OFF); "
       "rebuild with -DORCHARD_SERVER=ON");
}

const RegisterCommand kCollect(
    "distill collect", "collect a teacher's answers from an OpenAI endpoint (not in this build: ORCHARD_SERVER=OFF)",
    run_distill_unavailable);
const RegisterCommand kTrain("distill train",
                             "train a student on a teacher's collected answers (not in this build: ORCHARD_SERVER=OFF)",
                             run_distill_unavailable);
const RegisterCommand kEval("distill eval",
                            "a student against a teacher's held-out answers (not in this build: ORCHARD_SERVER=OFF)",
                            run_distill_unavailable);
const RegisterCommand kPack(
    "distill pack",
    "map a teacher's collected answers onto a student's vocabulary as a compact pack (not in this "
    "build: ORCHARD_SERVER=OFF)",
    run_distill_unavailable, {"no-reasoning", "truncate"});
const RegisterCommand kReport("distill report",
                              "distillation runs side by side as an HTML report (not in this build: ORCHARD_SERVER=OFF)",
                              run_distill_unavailable);

}  // namespace
}  // namespace orchard::cli
