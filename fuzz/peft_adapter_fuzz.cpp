// PEFT LoRA adapters (train/adapter_io.h): train::load_peft_adapter on a folder holding
// adapter_config.json and adapter_model.safetensors. The input is the config, the separator line
// #ORCHARD-SPLIT#, then the safetensors bytes; an input without the separator is the safetensors
// alone, next to a fixed config (r 2, alpha 4, q_proj and v_proj). The model is a tiny llama
// written out here (no weights needed: only the configuration is read), with GGUF's interleaved
// RoPE rows so that the q/k row permutation runs too. An adapter that loads must fit the model
// (layers, targets, [r, in] and [out, r]) and survive save_peft_adapter and a second load unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_support.h"
#include "orchard/error.h"
#include "train/adapter_io.h"

using namespace orchard;

namespace {

constexpr const char* kConfig =
    R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], )"
    R"("lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM"})";

ModelConfig model_config() {
  ModelConfig c;
  c.architecture = "llama";
  c.source_format = "gguf";
  c.n_vocab = 32;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 4;
  c.ffn_dim = 12;
  c.context_length = 16;
  c.rope_dims = 4;
  c.rope_style = RopeStyle::interleaved;
  return c;
}

bool same(const train::Lora& x, const train::Lora& y) {
  if (x.config.rank != y.config.rank || x.config.alpha != y.config.alpha || x.config.targets != y.config.targets ||
      x.adapters.size() != y.adapters.size())
    return false;
  for (size_t i = 0; i < x.adapters.size(); ++i) {
    const train::LoraAdapter &a = x.adapters[i], &b = y.adapters[i];
    if (a.layer != b.layer || a.target != b.target || a.in != b.in || a.out != b.out || a.a != b.a || a.b != b.b)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ModelConfig config = model_config();
  const fuzz::ScratchDir& scratch = fuzz::ScratchDir::get();
  const auto parts = fuzz::split_input(fuzz::as_text(data, size), 2);
  scratch.write("adapter_config.json", parts.size() == 2 ? parts[0] : std::string_view(kConfig));
  scratch.write("adapter_model.safetensors", parts.back());
  train::Lora lora;
  try {
    lora = train::load_peft_adapter(scratch.root(), config);
  } catch (const Error&) {
    return 0;
  }
  const int64_t r = lora.config.rank;
  if (r < 1 || lora.config.targets.empty() ||
      lora.adapters.size() != static_cast<size_t>(config.n_layers) * lora.config.targets.size())
    std::abort();
  for (const train::LoraAdapter& a : lora.adapters) {
    if (a.layer < 0 || a.layer >= config.n_layers) std::abort();
    if (a.a.size() != static_cast<size_t>(r * a.in) || a.b.size() != static_cast<size_t>(a.out * r)) std::abort();
  }
  const std::string again = scratch.path("again");
  try {
    train::save_peft_adapter(lora, config, again);
    if (!same(train::load_peft_adapter(again, config), lora)) std::abort();
  } catch (const Error&) {
    std::abort();  // an adapter that loaded must save and load back
  }
  return 0;
}
