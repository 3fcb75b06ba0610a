// LoRA adapters in and out of files (issue 17): the PEFT layout that Hugging Face tools load
// (adapter_config.json + adapter_model.safetensors), a GGUF LoRA that llama.cpp loads
// (--lora FILE), and an adapter merged into a copy of its base GGUF.
//
// A Lora (train/lora.h) holds its matrices in the row order of the model it was trained on: as
// the GGUF stores them, so for a llama GGUF the rows of attn_q / attn_k (and so of their lora_b)
// are permuted for adjacent-pair RoPE. PEFT files use Hugging Face's order (half-split pairs), so
// lora_b's q/k rows are un-permuted on save and permuted again on load; lora_a (columns = the
// layer's input) is never affected. A model loaded from a Hugging Face folder already has
// Hugging Face's order (its config says neox RoPE), so nothing moves for PEFT, and the GGUF
// adapter gets the permuted order llama.cpp's llama GGUFs use. Qwen models are never permuted.
#pragma once
#include <string>

#include "orchard/model.h"
#include "train/lora.h"

namespace orchard::train {

// Hugging Face's module name of a target: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
// down_proj.
const char* lora_target_hf(LoraTarget target);

// True when the model's q/k rows are stored permuted for adjacent-pair RoPE (a llama GGUF), so
// that PEFT's Hugging Face rows differ from the model's.
bool lora_rows_permuted(const ModelConfig& config);

// Writes dir/adapter_config.json and dir/adapter_model.safetensors (float32 lora_A [r, in] and
// lora_B [out, r] under base_model.model.model.layers.L.{self_attn,mlp}.<module>.lora_{A,B}.weight),
// creating `dir` if needed; each file appears whole or not at all. `base_model` goes into
// base_model_name_or_path when not empty.
void save_peft_adapter(const Lora& lora, const ModelConfig& config, const std::string& dir,
                       const std::string& base_model = "");

// The inverse of save_peft_adapter: the adapter in the model's row order, adapters layer by layer
// in adapter_config.json's target order. Read by the model layer's parser (model/adapter_impl.h,
// the one inference uses), with the trainer's limits: float32 tensors, no rsLoRA. Refused with an
// orchard::Error naming the file and the problem: missing files, bad JSON, PEFT options Orchard
// does not apply (rsLoRA here, DoRA, biases,
// fan_in_fan_out, per-module ranks, some layers only), unknown target names, missing, extra or
// non-float32 tensors, shapes that do not fit the model.
Lora load_peft_adapter(const std::string& dir, const ModelConfig& config);

// Writes a GGUF LoRA as llama.cpp's llama_adapter_lora_init reads it: general.type "adapter",
// general.architecture the model's, adapter.type "lora", adapter.lora.alpha; float32 tensors
// blk.L.<proj>.weight.lora_a (ne [in, r]) and .lora_b (ne [r, out]), rows in the GGUF base's
// order.
void save_gguf_adapter(const Lora& lora, const ModelConfig& config, const std::string& path);

// Copies the GGUF at `base_gguf` to `out_path` (metadata and every tensor, in order) with each
// adapter's target weight replaced by W + (alpha / r) B A, computed in double and written as
// float32. `lora` must be in the base's row order (as trained on it, or as load_peft_adapter
// returns it for that model's config). Targets stored F32, F16 or BF16 are merged; a quantized
// target is refused (merging into it would need requantization). The output appears whole or
// not at all.
void merge_adapter_into_gguf(const std::string& base_gguf, const Lora& lora, const std::string& out_path);

}  // namespace orchard::train
