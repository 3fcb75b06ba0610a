// --lora NAME=PATH[:SCALE] (repeatable) and --lora-merge: LoRA adapters for the subcommands that
// load a model (orchard/adapter.h, docs/adapters.md).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "orchard/adapter.h"
#include "orchard/model.h"

namespace orchard::cli {

// One --lora value. PATH is a PEFT folder or a GGUF LoRA file and may contain ':' and '='; only
// a trailing ":NUMBER" is a scale (default 1), and only a leading "NAME=" without '/' is a name
// (default: the file's or folder's stem, "adapters/tone.gguf" -> "tone").
struct LoraSpec {
  std::string name;
  std::string path;
  float scale = 1.0f;
};
LoraSpec parse_lora_spec(const std::string& value);

struct LoraArgs {
  std::vector<LoraSpec> adapters;
  bool merge = false;  // --lora-merge: merged into the weights at load
};

// Every --lora (repeatable: Args::get_all) and the --lora-merge flag (list "lora-merge" among the
// Args flags). Errors (exit 2) name the option: two adapters of one name, --lora-merge without
// --lora, a malformed value.
LoraArgs lora_args(Args& args);

// The adapters of `lora` loaded for `model`. With --lora-merge: `model` is replaced by the model
// with every adapter merged into its float32 weights (prepared for `kernels`) and no named
// adapters are returned (requests cannot pick them). Errors name the adapter's file.
struct NamedAdapter {
  std::string name;
  std::shared_ptr<const Adapter> adapter;
};
std::vector<NamedAdapter> load_lora(const LoraArgs& lora, std::shared_ptr<const Model>& model, KernelChoice kernels);

}  // namespace orchard::cli
