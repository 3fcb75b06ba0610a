// read_model picks the reader by what the path holds; Context runs the transformer. Model::load,
// which also chooses between mapped and streamed weights, is in src/flash/model_load.cpp.
#include <cstring>

#include "base/error.h"
#include "model/context_size.h"
#include "model/model_impl.h"
#include "model/transformer.h"

namespace orchard {
namespace {

std::string parent_folder(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A GGUF file, or else a llama2.c checkpoint (which has no magic of its own).
TensorTable load_single_file(const std::string& path, std::shared_ptr<const Blob> blob, Model::Impl& impl) {
  if (blob->size() >= 4 && std::memcmp(blob->data(), "GGUF", 4) == 0)
    return load_gguf_model(path, std::move(blob), impl);
  return load_llama2c_model(path, std::move(blob), impl);
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::unique_ptr<Model::Impl> read_model(const std::string& path) {
  auto impl = std::make_unique<Model::Impl>();
  impl->path = path;
  TensorTable tensors;
  if (is_directory(path)) {
    tensors = load_hf_model(path, *impl);
  } else if (ends_with(path, ".safetensors") || ends_with(path, "config.json") ||
             ends_with(path, ".safetensors.index.json")) {
    impl->path = parent_folder(path);
    tensors = load_hf_model(impl->path, *impl);
  } else {
    tensors = load_single_file(path, map_file(path), *impl);
  }
  bind_weights(tensors, *impl);
  return impl;
}

std::shared_ptr<const Model> Model::load_from_memory(std::vector<uint8_t> bytes, const std::string& name,
                                                     const LoadOptions& options) {
  // Limited-memory mode reads the weights from their file as the forward pass needs them; bytes
  // in memory have no file, and are all in memory already. Refused rather than ignored, so that
  // a caller never believes a budget holds when it does not. (flash_layout and flash_layout_dir
  // only apply under a budget.)
  if (options.memory_budget != 0)
    fail(name, ": a memory budget needs a model file (limited-memory mode reads the weights from it); "
         "load it with Model::load");
  auto impl = std::make_unique<Impl>();
  impl->path = name;
  TensorTable tensors = load_single_file(name, blob_from_bytes(std::move(bytes), name), *impl);
  bind_weights(tensors, *impl);
  // As Model::load does for mapped weights: the fast kernels read the matrices repacked.
  if (options.kernels == KernelChoice::fast) pack_weights(*impl, options.on_progress, options.measure_activation_levels);
  if (options.on_progress) options.on_progress(1.0);
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

const ModelConfig& Model::config() const { return impl_->config; }
const std::string& Model::path() const { return impl_->path; }
uint64_t Model::file_bytes() const { return impl_->file_bytes; }
const std::vector<float>& Model::rope_freq_factors() const { return impl_->weights.rope_freq_factors; }

std::vector<TensorSummary> Model::tensors() const {
  std::vector<TensorSummary> out;
  for (const TensorRef& t : impl_->tensors)
    out.push_back({t.name, std::string(dtype_name(t.type)), t.shape});
  return out;
}

int64_t Model::parameter_count() const {
  int64_t n = 0;
  for (const TensorRef& t : impl_->tensors) n += t.element_count();
  return n;
}

Model::MatmulWork Model::matmul_work() const {
  MatmulWork work;
  auto add = [&](const TensorRef& t, int64_t& macs, int64_t& single, uint64_t& bytes) {
    macs += t.element_count();
    bytes += t.nbytes;
    const PackedMatrix* p = impl_->packed.find(t);
    if (p && p->single_level) single += t.element_count();
  };
  for (const LayerWeights& l : impl_->weights.layers)
    for (const TensorRef* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      add(*t, work.layer_macs, work.layer_single_level_macs, work.layer_bytes);
  add(impl_->weights.output, work.output_macs, work.output_single_level_macs, work.output_bytes);
  return work;
}

struct Context::Impl {
  std::shared_ptr<const Model> model;
  KernelChoice kernels;
  Transformer transformer;
  int64_t n_past = 0;

  Impl(std::shared_ptr<const Model> m, KernelChoice choice, int64_t n_ctx, int n_threads, std::optional<KvType> kv_type)
      : model(std::move(m)), kernels(choice), transformer(model->impl(), select_kernels(choice), n_ctx, n_threads, 1, kv_type) {}
};

Context::Context(std::shared_ptr<const Model> model, const ContextOptions& options) {
  if (!model) fail("Context: no model");
  const int64_t n_ctx = resolve_context_size(model->config(), options.n_ctx);
  // The Transformer checks the size against kMaxContextTokens and the memory before allocating.
  impl_ = std::make_unique<Impl>(std::move(model), options.kernels, n_ctx, options.n_threads,
                                 kv_type_of(options.kv_cache));
}

Context::~Context() = default;

static void check_tokens(const Context& ctx, std::span<const int32_t> tokens, int64_t n_past) {
  const int64_t n_vocab = ctx.model().config().n_vocab;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= n_vocab)
      fail("token id ", tokens[i], " at index ", i, " is out of range (vocabulary has ", n_vocab, " tokens)");
  if (n_past + static_cast<int64_t>(tokens.size()) > ctx.n_ctx())
    fail(tokens.size(), " tokens after ", n_past, " cached positions do not fit in the context of ",
         ctx.n_ctx(), " tokens");
}

std::vector<float> Context::eval(std::span<const int32_t> tokens) {
  check_tokens(*this, tokens, impl_->n_past);
  std::vector<float> logits(tokens.size() * static_cast<size_t>(model().config().n_vocab));
  impl_->transformer.forward(tokens, impl_->n_past, true, logits.data());
  impl_->n_past += static_cast<int64_t>(tokens.size());
  return logits;
}

std::vector<float> Context::eval_last(std::span<const int32_t> tokens) {
  if (tokens.empty()) fail("eval_last: no tokens");
  check_tokens(*this, tokens, impl_->n_past);
  std::vector<float> logits(static_cast<size_t>(model().config().n_vocab));
  impl_->transformer.forward(tokens, impl_->n_past, false, logits.data());
  impl_->n_past += static_cast<int64_t>(tokens.size());
  return logits;
}

int64_t Context::n_past() const { return impl_->n_past; }
int64_t Context::n_ctx() const { return impl_->transformer.n_ctx(); }
const Model& Context::model() const { return *impl_->model; }
KernelChoice Context::kernels() const { return impl_->kernels; }
FlashStats Context::flash_stats() const { return impl_->transformer.flash_stats(); }
uint64_t Context::kv_cache_bytes() const { return impl_->transformer.cache().bytes(); }

void Context::truncate(int64_t n) {
  if (n < 0 || n > impl_->n_past) fail("truncate: position ", n, " is outside the cached ", impl_->n_past);
  impl_->n_past = n;
}

}  // namespace orchard
