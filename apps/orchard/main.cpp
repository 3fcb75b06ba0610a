// orchard: the command-line front end. Each subcommand is a file in this folder that registers
// itself with a RegisterCommand object; this file only dispatches and turns errors into exit codes.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "command.h"
#include "orchard/error.h"

namespace orchard::cli {

std::map<std::string, Command>& command_registry() {
  static std::map<std::string, Command> registry;
  return registry;
}

}  // namespace orchard::cli

namespace {

void print_usage() {
  std::fprintf(stderr, "usage: orchard <command> [options]\n\ncommands:\n");
  for (const auto& [name, command] : orchard::cli::command_registry())
    std::fprintf(stderr, "  %-12s %s\n", name.c_str(), command.summary.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  auto& registry = orchard::cli::command_registry();
  auto it = registry.find(name);
  if (it == registry.end()) {
    std::fprintf(stderr, "orchard: unknown command '%s'\n", name.c_str());
    print_usage();
    return 2;
  }
  try {
    orchard::cli::Args args(name, std::vector<std::string>(argv + 2, argv + argc), it->second.flags);
    return it->second.run(args);
  } catch (const orchard::Error& e) {
    std::fprintf(stderr, "orchard: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "orchard: error: out of memory\n");
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orchard: internal error: %s\n", e.what());
    return 1;
  }
}
