#include "adapter_options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>

#include "base/error.h"

namespace orchard::cli {
namespace {

// The last component of `path` without a trailing '/' and without its extension.
std::string stem_of(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = base.find_last_of('.');
  if (dot != std::string::npos && dot > 0) base = base.substr(0, dot);
  return base;
}

}  // namespace

LoraSpec parse_lora_spec(const std::string& value) {
  LoraSpec spec;
  std::string rest = value;
  const size_t eq = rest.find('=');
  if (eq != std::string::npos && rest.substr(0, eq).find('/') == std::string::npos) {
    spec.name = rest.substr(0, eq);
    if (spec.name.empty()) fail("--lora '", value, "': the name before '=' is empty");
    rest = rest.substr(eq + 1);
  }
  if (const size_t colon = rest.find_last_of(':'); colon != std::string::npos && colon + 1 < rest.size()) {
    const std::string number = rest.substr(colon + 1);
    char* end = nullptr;
    errno = 0;
    const double scale = std::strtod(number.c_str(), &end);
    if (end == number.c_str() + number.size() && errno == 0 && std::isfinite(scale)) {
      spec.scale = static_cast<float>(scale);
      rest = rest.substr(0, colon);
    }
  }
  if (rest.empty()) fail("--lora '", value, "': no adapter path (expected NAME=PATH[:SCALE])");
  spec.path = rest;
  if (spec.name.empty()) spec.name = stem_of(rest);
  if (spec.name.empty()) fail("--lora '", value, "': cannot name the adapter; give NAME=PATH");
  return spec;
}

LoraArgs lora_args(Args& args) {
  LoraArgs out;
  std::set<std::string> names;
  for (const std::string& value : args.get_all("lora")) {
    LoraSpec spec = parse_lora_spec(value);
    if (!names.insert(spec.name).second)
      fail("orchard ", args.command(), ": --lora: two adapters are named '", spec.name, "' (give NAME=PATH)");
    out.adapters.push_back(std::move(spec));
  }
  out.merge = args.flag("lora-merge");
  if (out.merge && out.adapters.empty()) fail("orchard ", args.command(), ": --lora-merge needs at least one --lora");
  return out;
}

std::vector<NamedAdapter> load_lora(const LoraArgs& lora, std::shared_ptr<const Model>& model, KernelChoice kernels) {
  std::vector<NamedAdapter> out;
  for (const LoraSpec& spec : lora.adapters) out.push_back({spec.name, Adapter::load(*model, spec.path, spec.scale)});
  if (lora.merge && !out.empty()) {
    std::vector<std::shared_ptr<const Adapter>> all;
    for (const NamedAdapter& a : out) all.push_back(a.adapter);
    model = merge_adapters(model, all, kernels);
    out.clear();
  }
  return out;
}

}  // namespace orchard::cli
