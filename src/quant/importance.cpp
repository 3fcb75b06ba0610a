#include "quant/importance.h"

#include <mutex>

#include "base/error.h"
#include "kernels/kernels.h"
#include "model/model_impl.h"
#include "model/transformer.h"
#include "quant/model_tensors.h"

namespace orchard {
namespace {

// Sums of x_i^2 per weight matrix, keyed by the address of the matrix's bytes.
struct Recorder {
  std::unordered_map<const void*, std::vector<double>> sums;
  std::unordered_map<const void*, int64_t> rows;
  const Kernels* inner = nullptr;
};

// The kernel table holds plain function pointers, so the recording matmul finds its recorder
// through this pointer; collect_importance holds the mutex while it is set.
Recorder* g_recorder = nullptr;
std::mutex g_recorder_mutex;

void recording_matmul(const MatmulWeight& mw, const float* x, int64_t n, float* y, ThreadPool& pool) {
  Recorder& r = *g_recorder;
  const TensorRef& w = mw.ref;
  const int64_t in = w.row_length();
  std::vector<double>& sums = r.sums[w.data];
  sums.resize(static_cast<size_t>(in), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < in; ++i) sums[i] += double(x[t * in + i]) * x[t * in + i];
  r.rows[w.data] += n;
  r.inner->matmul(mw, x, n, y, pool);
}

}  // namespace

ImportanceTable collect_importance(std::shared_ptr<const Model> model, std::span<const int32_t> tokens,
                                   int64_t chunk, const std::function<void(int64_t, int64_t)>& progress) {
  if (tokens.empty()) fail("calibration: no tokens");
  if (chunk <= 0) fail("calibration: chunk size must be positive");
  const Model::Impl& impl = model->impl();
  chunk = std::min(chunk, impl.config.context_length);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= impl.config.n_vocab)
      fail("calibration: token id ", tokens[i], " at index ", i, " is out of range (vocabulary has ",
           impl.config.n_vocab, " tokens)");

  std::lock_guard<std::mutex> lock(g_recorder_mutex);
  Recorder recorder;
  recorder.inner = &select_kernels(KernelChoice::fast);
  Kernels kernels = *recorder.inner;
  kernels.name = "importance";
  kernels.matmul = recording_matmul;
  g_recorder = &recorder;
  struct Reset {
    ~Reset() { g_recorder = nullptr; }
  } reset;

  Transformer transformer(impl, kernels, chunk);
  std::vector<float> logits(static_cast<size_t>(impl.config.n_vocab));
  const int64_t total = static_cast<int64_t>(tokens.size());
  for (int64_t start = 0; start < total; start += chunk) {
    const int64_t n = std::min(chunk, total - start);
    transformer.forward(tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(n)), 0, false, logits.data());
    if (progress) progress(start + n, total);
  }

  // Name every matrix the forward pass touched by the tensor that owns its bytes.
  ImportanceTable table;
  table.tokens = total;
  for (const SourceTensor& t : model_tensors(impl)) {
    if (!t.matrix) continue;
    auto it = recorder.sums.find(t.matrix->data);
    if (it == recorder.sums.end()) continue;
    const double count = static_cast<double>(recorder.rows[t.matrix->data]);
    std::vector<float> mean(it->second.size());
    for (size_t i = 0; i < mean.size(); ++i) mean[i] = static_cast<float>(it->second[i] / count);
    table.by_tensor[t.info.name] = std::move(mean);
  }
  return table;
}

}  // namespace orchard
