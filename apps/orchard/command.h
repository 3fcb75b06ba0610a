// Subcommands of the `orchard` CLI register themselves here; main() dispatches by name.
// Each subcommand lives in its own file and is a thin layer over the library.
#pragma once
#include <functional>
#include <map>
#include <set>
#include <string>

#include "args.h"

namespace orchard::cli {

struct Command {
  std::string summary;
  std::function<int(Args&)> run;  // returns the process exit code
  std::set<std::string> flags;    // options that take no value
};

std::map<std::string, Command>& command_registry();

struct RegisterCommand {
  RegisterCommand(const std::string& name, std::string summary, std::function<int(Args&)> run,
                  std::set<std::string> flags = {}) {
    command_registry()[name] = Command{std::move(summary), std::move(run), std::move(flags)};
  }
};

}  // namespace orchard::cli

// Usage, at namespace scope in a subcommand's file:
//   const orchard::cli::RegisterCommand kRun("run", "generate text", run_command, {"raw"});
