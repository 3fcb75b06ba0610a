// merge_adapters (orchard/adapter.h): a copy of a GGUF model whose targeted matrices are float32
// W + sum of scale * B A, loaded like any model, so that it runs on every kernel with no per-token
// cost. The copy is written with the GGUF writer to a temporary file, read back into memory and
// the file removed: the merged model lives in memory (Model::load_from_memory), tensors that no
// adapter targets copied as they are (quantized ones stay quantized).
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "model/adapter_impl.h"
#include "model/model_impl.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

struct TempFile {
  std::string path;
  ~TempFile() {
    std::error_code ignored;
    if (!path.empty()) std::filesystem::remove(path, ignored);
  }
};

std::string temp_path() {
  static std::atomic<int> counter{0};
  std::error_code error;
  std::filesystem::path dir = std::filesystem::temp_directory_path(error);
  if (error) dir = "/tmp";
  return (dir / ("orchard-merge-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".gguf")).string();
}

std::vector<uint8_t> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, ": cannot read the merged model back");
  const std::streamsize size = in.tellg();
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) fail(path, ": cannot read the merged model back");
  return bytes;
}

}  // namespace

std::shared_ptr<const Model> merge_adapters(std::shared_ptr<const Model> model,
                                            std::span<const std::shared_ptr<const Adapter>> adapters) {
  if (!model) fail("merge_adapters: no model");
  const Model::Impl& impl = model->impl();
  const KernelChoice kernels = impl.packed.bytes() > 0 || impl.flash ? KernelChoice::fast : KernelChoice::reference;
  return merge_adapters(std::move(model), adapters, kernels);
}

std::shared_ptr<const Model> merge_adapters(std::shared_ptr<const Model> model,
                                            std::span<const std::shared_ptr<const Adapter>> adapters,
                                            KernelChoice kernels) {
  if (!model) fail("merge_adapters: no model");
  const ModelConfig& c = model->config();
  if (c.source_format != "gguf")
    fail(model->path(), ": merging adapters (--lora-merge) needs a GGUF model; this one is ", c.source_format,
         " (convert it to GGUF, or apply the adapters unmerged)");
  // Adapters by the weight they change, each weight's in the order given.
  std::map<std::string, std::vector<std::pair<const AdapterMatrices*, double>>> by_tensor;
  std::string names;
  for (const std::shared_ptr<const Adapter>& adapter : adapters) {
    if (!adapter) fail("merge_adapters: no adapter");
    const Adapter::Impl& a = adapter->impl();
    if (a.model.n_layers != c.n_layers || a.model.dim != c.dim || a.model.ffn_dim != c.ffn_dim ||
        a.model.n_heads != c.n_heads || a.model.n_kv_heads != c.n_kv_heads || a.model.head_dim != c.head_dim ||
        a.model.architecture != c.architecture || a.model.rope_style != c.rope_style)
      fail(adapter->path(), ": the adapter was loaded for another model than ", model->path());
    const double scale = a.file.scale() * static_cast<double>(a.multiplier);
    for (const AdapterMatrices& m : a.file.matrices)
      by_tensor["blk." + std::to_string(m.layer) + "." + adapter_target_gguf(m.target) + ".weight"].push_back({&m, scale});
    names += (names.empty() ? "" : ", ") + adapter->path();
  }

  const std::shared_ptr<const GgufFile> file = GgufFile::open(model->path());
  for (const auto& [name, list] : by_tensor) {
    const GgufTensor* t = file->find_tensor(name);
    const AdapterMatrices& m = *list.front().first;
    if (!t || t->shape != std::vector<int64_t>{m.in, m.out})
      fail(model->path(), ": has no ", name, " of [out ", m.out, ", in ", m.in, "] for the adapters to change");
  }

  GgufWriter w(file->alignment());
  for (const auto& [key, value] : file->metadata())
    if (key != "general.alignment") w.set(key, value);
  for (const GgufTensor& t : file->tensors()) w.add_tensor(t.name, t.shape, by_tensor.count(t.name) ? DType::F32 : t.type);
  TempFile temp{temp_path()};
  w.begin(temp.path);
  std::vector<float> row;
  std::vector<double> delta;
  for (const GgufTensor& t : file->tensors()) {
    auto it = by_tensor.find(t.name);
    if (it == by_tensor.end()) {
      w.write(t.data, t.nbytes);
      continue;
    }
    const int64_t in = t.shape[0], out = t.shape[1];
    const size_t row_bytes = t.nbytes / static_cast<uint64_t>(out);
    row.resize(static_cast<size_t>(in));
    delta.resize(static_cast<size_t>(in));
    for (int64_t o = 0; o < out; ++o) {
      dequantize_row(t.type, t.data + static_cast<size_t>(o) * row_bytes, row.data(), in);
      std::fill(delta.begin(), delta.end(), 0.0);
      // In double: sum over adapters of scale * B[o, :] A.
      for (const auto& [m, scale] : it->second) {
        const int64_t r = static_cast<int64_t>(m->a.size()) / in;
        for (int64_t k = 0; k < r; ++k) {
          const double b = scale * static_cast<double>(m->b[static_cast<size_t>(o * r + k)]);
          const float* a = m->a.data() + k * in;
          for (int64_t i = 0; i < in; ++i) delta[static_cast<size_t>(i)] += b * static_cast<double>(a[i]);
        }
      }
      for (int64_t i = 0; i < in; ++i)
        row[static_cast<size_t>(i)] =
            static_cast<float>(static_cast<double>(row[static_cast<size_t>(i)]) + delta[static_cast<size_t>(i)]);
      w.write(row.data(), row.size() * sizeof(float));
    }
  }
  w.finish();
  std::vector<uint8_t> bytes = read_whole_file(temp.path);
  LoadOptions options;
  options.kernels = kernels;
  return Model::load_from_memory(std::move(bytes), model->path() + " merged with " + names, options);
}

}  // namespace orchard
