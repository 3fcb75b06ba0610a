#include "quant/quantize_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>

#include "base/error.h"
#include "formats/gguf_writer.h"
#include "model/model_impl.h"
#include "quant/model_tensors.h"
#include "quant/scale_search.h"
#include "tensor/dequantize.h"

namespace orchard {
namespace {

// Metadata: a GGUF source keeps all of its own (architecture, tokenizer, chat template ...);
// other sources get the architecture keys from the loaded configuration.
void write_metadata(const Model::Impl& m, const Recipe& recipe, GgufWriter& out) {
  if (m.gguf) {
    for (const auto& [key, value] : m.gguf->metadata()) {
      if (key == "general.file_type" || key == "general.quantization_version" || key == "general.alignment")
        continue;
      out.set(key, value);
    }
  } else {
    const ModelConfig& c = m.config;
    const std::string a = c.architecture + ".";
    out.set_string("general.architecture", c.architecture);
    out.set_u32(a + "context_length", static_cast<uint32_t>(c.context_length));
    out.set_u32(a + "embedding_length", static_cast<uint32_t>(c.dim));
    out.set_u32(a + "block_count", static_cast<uint32_t>(c.n_layers));
    out.set_u32(a + "feed_forward_length", static_cast<uint32_t>(c.ffn_dim));
    out.set_u32(a + "attention.head_count", static_cast<uint32_t>(c.n_heads));
    out.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
    out.set_u32(a + "attention.key_length", static_cast<uint32_t>(c.head_dim));
    out.set_u32(a + "attention.value_length", static_cast<uint32_t>(c.head_dim));
    out.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(c.rope_dims));
    out.set_f32(a + "rope.freq_base", c.rope_theta);
    out.set_f32(a + "attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  }
  out.set_u32("general.quantization_version", 2);
  out.set_u32("general.file_type", recipe.gguf_file_type);
}

// Column weights from importance: the square root of the normalized mean square (as AWQ found
// activation scales to the power ~0.5 best: the full power over-fits the calibration data; on
// the golden models it lost to the root), plus a floor so that columns the calibration never
// exercised still count a little (no block is fitted to nothing).
std::vector<float> column_weights(const std::vector<float>& importance) {
  double mean = 0;
  for (float v : importance) mean += v;
  mean /= std::max<size_t>(1, importance.size());
  std::vector<float> w(importance.size(), 1.0f);
  if (!(mean > 0) || !std::isfinite(mean)) return w;
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sqrt(static_cast<float>(importance[i] / mean)) + 0.02f;
  return w;
}

template <typename Work>
void parallel_rows(int threads, int64_t rows, const Work& work) {
  if (threads <= 1 || rows < 2) return work(0, rows);
  std::vector<std::thread> pool;
  std::exception_ptr error;
  std::mutex error_mutex;
  const int64_t per = (rows + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const int64_t b = t * per, e = std::min(rows, b + per);
    if (b >= e) break;
    pool.emplace_back([&, b, e] {
      try {
        work(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        error = std::current_exception();
      }
    });
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

QuantizeResult quantize_model(const Model& model, const std::string& out_path, const QuantizeOptions& options) {
  const Model::Impl& m = model.impl();
  const Recipe& recipe = find_recipe(options.type);
  const int threads = options.threads > 0 ? options.threads
                                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  const std::vector<SourceTensor> sources = model_tensors(m);
  GgufWriter writer;
  write_metadata(m, recipe, writer);
  QuantizeResult result;
  std::vector<TensorInfo> infos;
  for (const SourceTensor& s : sources) infos.push_back(s.info);
  const std::vector<DType> types = choose_types(recipe, infos, m.config.n_layers);
  for (size_t k = 0; k < sources.size(); ++k) {
    const SourceTensor& s = sources[k];
    const DType type = types[k];
    const size_t index = writer.add_tensor(s.info.name, s.info.shape, type);
    int64_t elements = 1;
    for (int64_t d : s.info.shape) elements *= d;
    result.parameters += elements;
    result.tensors.push_back({s.info.name, type, s.info.shape, writer.tensor_bytes(index)});
  }
  const uint64_t total = writer.total_bytes();
  writer.begin(out_path);
  uint64_t done = 0;

  std::vector<float> rows_f32;
  std::vector<uint8_t> rows_out;
  for (size_t k = 0; k < sources.size(); ++k) {
    const SourceTensor& s = sources[k];
    const DType type = types[k];
    if (options.progress) options.progress(done, total, s.info.name);
    if (s.values) {
      std::vector<uint8_t> bytes(row_bytes(type, static_cast<int64_t>(s.values->size())));
      quantize_row_search(type, s.values->data(), nullptr, bytes.data(), static_cast<int64_t>(s.values->size()));
      writer.write(bytes.data(), bytes.size());
      done += bytes.size();
      continue;
    }
    const TensorRef& src = *s.matrix;
    const int64_t in = src.row_length(), rows = src.rows();
    std::vector<float> weights;
    if (options.importance)
      if (const std::vector<float>* imp = options.importance->find(s.info.name); imp && static_cast<int64_t>(imp->size()) == in)
        weights = column_weights(*imp);
    const float* importance = weights.empty() ? nullptr : weights.data();
    const size_t out_row = row_bytes(type, in);
    const int64_t batch = std::max<int64_t>(threads, (int64_t{1} << 20) / in);
    rows_f32.resize(static_cast<size_t>(batch * in));
    rows_out.resize(static_cast<size_t>(batch) * out_row);
    for (int64_t r0 = 0; r0 < rows; r0 += batch) {
      const int64_t n = std::min(batch, rows - r0);
      parallel_rows(threads, n, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          float* x = &rows_f32[static_cast<size_t>(r * in)];
          dequantize_row(src.type, src.row(s.source_row(r0 + r)), x, in);
          for (int64_t i = 0; i < in; ++i)
            if (!std::isfinite(x[i]))
              fail(m.path, ": tensor '", s.info.name, "' holds a non-finite value (row ", r0 + r, ", column ", i, ")");
          quantize_row_search(type, x, importance, &rows_out[static_cast<size_t>(r) * out_row], in);
        }
      });
      writer.write(rows_out.data(), static_cast<size_t>(n) * out_row);
      done += static_cast<uint64_t>(n) * out_row;
      if (options.progress) options.progress(done, total, s.info.name);
    }
  }
  writer.finish();
  if (options.progress) options.progress(total, total, "");
  result.file_bytes = total;
  return result;
}

}  // namespace orchard
