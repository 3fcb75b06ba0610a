#include "model/transformer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "base/error.h"

namespace orchard {

std::optional<KvType> kv_type_of(KvCacheType type) {
  switch (type) {
    case KvCacheType::automatic: return std::nullopt;
    case KvCacheType::f32: return KvType::f32;
    case KvCacheType::f16: return KvType::f16;
    case KvCacheType::int8: return KvType::q8;
  }
  return std::nullopt;
}

std::vector<double> rope_frequencies(const ModelConfig& c, const std::vector<float>& factors) {
  std::vector<double> freq(static_cast<size_t>(c.rope_dims / 2));
  for (int64_t i = 0; i < c.rope_dims / 2; ++i) {
    double f = std::pow(static_cast<double>(c.rope_theta),
                        -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dims));
    if (!factors.empty()) f /= factors[static_cast<size_t>(i)];
    freq[static_cast<size_t>(i)] = f;
  }
  return freq;
}

void rope_angles(const std::vector<double>& freq, std::span<const int64_t> positions, std::vector<float>& cos,
                 std::vector<float>& sin) {
  const size_t pairs = freq.size();
  cos.resize(positions.size() * pairs);
  sin.resize(cos.size());
  for (size_t t = 0; t < positions.size(); ++t)
    for (size_t i = 0; i < pairs; ++i) {
      const double angle = static_cast<double>(positions[t]) * freq[i];
      cos[t * pairs + i] = static_cast<float>(std::cos(angle));
      sin[t * pairs + i] = static_cast<float>(std::sin(angle));
    }
}

void check_kv_cache_fits(const ModelConfig& c, int64_t n_ctx, int64_t n_caches, KvType type) {
  if (n_ctx <= 0) fail("--ctx-size: a context of ", n_ctx, " tokens is not possible (it must be positive)");
  if (n_ctx > kMaxContextTokens)
    fail("--ctx-size: a context of ", n_ctx, " tokens is larger than the limit of ", kMaxContextTokens, " tokens");
  const uint64_t one = KvCache::bytes_for(c.n_layers, n_ctx, c.n_kv_heads, c.head_dim, type);
  const uint64_t total = saturating_mul(one, static_cast<uint64_t>(std::max<int64_t>(1, n_caches)));
  const uint64_t limit = memory_limit_bytes();
  if (total > limit)
    fail("--ctx-size: a context of ", n_ctx, " tokens needs ", total, " bytes (", human_bytes(total), ") of KV cache",
         n_caches > 1 ? str_cat(" for ", n_caches, " sequences") : std::string(), ", more than the ", human_bytes(limit),
         " this process may use (physical memory, ulimit and cgroup limits); choose a smaller --ctx-size");
}

Transformer::Transformer(const Model::Impl& model, const Kernels& kernels, int64_t n_ctx, int n_threads,
                         int64_t n_sequences, std::optional<KvType> kv_type, ThreadPool* shared_pool)
    : model_(model),
      config_(model.config),
      kernels_(kernels),
      own_pool_(shared_pool ? nullptr : std::make_unique<ThreadPool>(n_threads)),
      pool_(shared_pool ? *shared_pool : *own_pool_),
      rope_freq_(rope_frequencies(model.config, model.weights.rope_freq_factors)) {
  check_kv_cache_fits(model.config, n_ctx, n_sequences, kv_type.value_or(kernels.kv_type));
  for (int64_t s = 0; s < std::max<int64_t>(1, n_sequences); ++s)
    caches_.emplace_back(model.config.n_layers, n_ctx, model.config.n_kv_heads, model.config.head_dim,
                         kv_type.value_or(kernels.kv_type));
  weights_ = open_weight_source(model);
}

Transformer::~Transformer() = default;

FlashStats Transformer::flash_stats() const { return weights_->stats(); }

void Transformer::ensure_batch(int64_t n) {
  if (n <= batch_capacity_) return;
  const auto& c = config_;
  const size_t rows = static_cast<size_t>(n);
  x_.resize(rows * c.dim);
  normed_.resize(rows * c.dim);
  q_.resize(rows * c.n_heads * c.head_dim);
  k_.resize(rows * c.n_kv_heads * c.head_dim);
  v_.resize(rows * c.n_kv_heads * c.head_dim);
  attn_out_.resize(rows * c.n_heads * c.head_dim);
  proj_.resize(rows * c.dim);
  gate_.resize(static_cast<size_t>(std::min(n, kFfnChunk)) * c.ffn_dim);
  up_.resize(gate_.size());
  batch_capacity_ = n;
}

void Transformer::extend_rope_table(int64_t positions) {
  const int64_t pairs = static_cast<int64_t>(rope_freq_.size());
  if (pairs == 0 || positions * pairs <= static_cast<int64_t>(rope_cos_.size())) return;
  const int64_t known = static_cast<int64_t>(rope_cos_.size()) / pairs;
  std::vector<int64_t> added(static_cast<size_t>(positions - known));
  for (size_t i = 0; i < added.size(); ++i) added[i] = known + static_cast<int64_t>(i);
  std::vector<float> cos, sin;
  rope_angles(rope_freq_, added, cos, sin);
  rope_cos_.insert(rope_cos_.end(), cos.begin(), cos.end());
  rope_sin_.insert(rope_sin_.end(), sin.begin(), sin.end());
}

MatmulWeight Transformer::matmul_weight(const TensorRef& w) const { return MatmulWeight{w, weights_->find_packed(w)}; }

void Transformer::matmul(const TensorRef& w, const float* x, int64_t n, float* y) {
  const MatmulWeight weight = matmul_weight(w);
  kernels_.matmul(weight, x, n, y, pool_);
  if (probe_) probe_->on_matmul(weight, x, n, y);
}

void Transformer::matmul_shared_input(std::initializer_list<const TensorRef*> ws, const float* x, int64_t n,
                                      std::initializer_list<float*> ys) {
  constexpr int kMax = 3;
  const int count = static_cast<int>(ws.size());
  if (count > kMax || ys.size() != ws.size()) fail("transformer: matmul_shared_input of ", count, " matrices");
  // MatmulWeight holds a reference: built in place, one per matrix.
  const TensorRef* refs[kMax];
  std::copy(ws.begin(), ws.end(), refs);
  float* outs[kMax];
  std::copy(ys.begin(), ys.end(), outs);
  const MatmulWeight weights[kMax] = {matmul_weight(*refs[0]), matmul_weight(*refs[count > 1 ? 1 : 0]),
                                      matmul_weight(*refs[count > 2 ? 2 : 0])};
  kernels_.matmul_shared_input(weights, count, x, n, outs, pool_);
  if (probe_)
    for (int i = 0; i < count; ++i) probe_->on_matmul(weights[i], x, n, outs[i]);
}

// LoRA: after the base matmul, y += scale * (x A^T) B^T for the rows whose sequence has an adapter
// for this projection (orchard/adapter.h). Two steps over the workers: every u = A x value of
// every such row, then B u added to ranges of each row's outputs. Which worker computes a value
// changes with the batch; how it is computed (lora_a_dot, lora_add_b: orders fixed by the shapes,
// the same in their four-row versions) does not, so a row's output is the same alone or in any
// batch.
void Transformer::add_adapter_deltas(int64_t layer, std::initializer_list<LoraOutput> outputs, const float* x,
                                     int64_t first, int64_t m) {
  if (!any_adapter_) return;
  lora_rows_.clear();
  for (const LoraOutput& output : outputs)
    for (int64_t t = 0; t < m; ++t) {
      const Adapter::Impl* a = row_adapters_[static_cast<size_t>(first + t)];
      const AdapterMatrices* mats = a ? a->find(layer, output.target) : nullptr;
      if (!mats) continue;
      const int64_t rank = static_cast<int64_t>(mats->a.size()) / mats->in;
      lora_rows_.push_back({x + t * mats->in, output.y + t * mats->out, mats, a->scale, rank});
    }
  if (lora_rows_.empty()) return;
  // The rows of one adapter together, so that its A and B stay in cache from one row to the
  // next: a batch's rows interleave adapters (16 streams over 4 adapters: a down projection's 4
  // A matrices, 1.2 MB, do not fit in L2 together). Which rows run next to which changes no value.
  std::stable_sort(lora_rows_.begin(), lora_rows_.end(),
                   [](const LoraRow& p, const LoraRow& q) { return std::less<>()(p.mats, q.mats); });
  // Then four rows of one adapter at a time (lora_a_dot4, lora_add_b4: its A and B read once for
  // the four), the rest alone; their u values row after row.
  lora_groups_.clear();
  int64_t u_size = 0;
  for (size_t w = 0; w < lora_rows_.size();) {
    size_t same = 1;
    while (same < 4 && w + same < lora_rows_.size() && lora_rows_[w + same].mats == lora_rows_[w].mats) ++same;
    const size_t rows = same == 4 ? 4 : 1;
    lora_groups_.push_back({w, rows, u_size});
    u_size += static_cast<int64_t>(rows) * lora_rows_[w].rank;
    w += rows;
  }
  lora_u_.resize(static_cast<size_t>(u_size));
  // Step 1: u for every (group, k).
  lora_items_.clear();
  for (size_t g = 0; g < lora_groups_.size(); ++g)
    for (int64_t k = 0; k < lora_rows_[lora_groups_[g].first].rank; ++k) lora_items_.push_back({g, k});
  pool_.parallel_for(static_cast<int64_t>(lora_items_.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto [g, k] = lora_items_[static_cast<size_t>(i)];
      const LoraGroup& group = lora_groups_[g];
      const LoraRow* row = &lora_rows_[group.first];
      float* u = &lora_u_[static_cast<size_t>(group.u_offset + k)];
      if (group.rows == 4) {
        const float* const x[4] = {row[0].x, row[1].x, row[2].x, row[3].x};
        lora_a_dot4(*row->mats, k, x, u, row->rank);
      } else {
        *u = lora_a_dot(*row->mats, k, row->x);
      }
    }
  });
  // Step 2: each group's outputs in blocks.
  constexpr int64_t kBlock = 256;
  lora_items_.clear();
  for (size_t g = 0; g < lora_groups_.size(); ++g)
    for (int64_t o = 0; o < lora_rows_[lora_groups_[g].first].mats->out; o += kBlock) lora_items_.push_back({g, o});
  pool_.parallel_for(static_cast<int64_t>(lora_items_.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const auto [g, o] = lora_items_[static_cast<size_t>(i)];
      const LoraGroup& group = lora_groups_[g];
      const LoraRow* row = &lora_rows_[group.first];
      const float* u = &lora_u_[static_cast<size_t>(group.u_offset)];
      const int64_t o_end = std::min(row->mats->out, o + kBlock);
      if (group.rows == 4) {
        float* const y[4] = {row[0].y, row[1].y, row[2].y, row[3].y};
        lora_add_b4(*row->mats, u, row->rank, row->scale, o, o_end, y);
      } else {
        lora_add_b(*row->mats, u, row->scale, o, o_end, row->y);
      }
    }
  });
}

// The per-row work between the matmuls (norms, bias, rope, cache stores, residuals) was serial:
// 5% of the calling thread's time in 16-sequence steps, the other thread waiting on it.
template <typename Fn>
void Transformer::for_rows(int64_t n, Fn&& fn) {
  if (n < 2) {
    for (int64_t t = 0; t < n; ++t) fn(t);
    return;
  }
  pool_.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) fn(t);
  });
}

// x[n, dim] += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x)) over each row's
// own sequence cache; the n rows are the batch entries' tokens, in order.
void Transformer::attention(int64_t l, const LayerWeights& w, std::span<const SequenceTokens> batch, int64_t n) {
  const ModelConfig& c = config_;
  const int64_t dim = c.dim, hd = c.head_dim, pairs = c.rope_dims / 2;
  const int64_t q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;

  for_rows(n, [&](int64_t t) { kernels_.rmsnorm(&x_[t * dim], w.attn_norm.data(), dim, c.rms_norm_eps, &normed_[t * dim]); });
  // q [n, q_dim], k and v [n, kv_dim]
  matmul_shared_input({&w.wq, &w.wk, &w.wv}, normed_.data(), n, {q_.data(), k_.data(), v_.data()});
  add_adapter_deltas(l, {{AdapterTarget::q, q_.data()}, {AdapterTarget::k, k_.data()}, {AdapterTarget::v, v_.data()}},
                     normed_.data(), 0, n);

  // Each row writes only its own position of its own cache.
  for_rows(n, [&](int64_t t) {
    float* q = &q_[t * q_dim];
    float* k = &k_[t * kv_dim];
    float* v = &v_[t * kv_dim];
    if (!w.bq.empty()) for (int64_t i = 0; i < q_dim; ++i) q[i] += w.bq[i];
    if (!w.bk.empty()) for (int64_t i = 0; i < kv_dim; ++i) k[i] += w.bk[i];
    if (!w.bv.empty()) for (int64_t i = 0; i < kv_dim; ++i) v[i] += w.bv[i];
    const int64_t position = positions_[static_cast<size_t>(t)];
    const float* cos = &rope_cos_[position * pairs];
    const float* sin = &rope_sin_[position * pairs];
    for (int64_t h = 0; h < c.n_heads; ++h) {
      float* head = q + h * hd;
      if (c.qk_norm) kernels_.rmsnorm(head, w.q_norm.data(), hd, c.rms_norm_eps, head);
      kernels_.rope(head, c.rope_dims, c.rope_style, cos, sin);
    }
    for (int64_t h = 0; h < c.n_kv_heads; ++h) {
      float* head = k + h * hd;
      if (c.qk_norm) kernels_.rmsnorm(head, w.k_norm.data(), hd, c.rms_norm_eps, head);
      kernels_.rope(head, c.rope_dims, c.rope_style, cos, sin);
    }
    row_caches_[static_cast<size_t>(t)]->store(l, position, k, v, kernels_.to_f16);
  });

  // Query heads share KV heads in groups (grouped-query attention); every entry's rows against its
  // own cache, all entries in one call.
  attention_rows_.clear();
  int64_t t = 0;
  for (const SequenceTokens& entry : batch) {
    const KvCache& cache = caches_[static_cast<size_t>(entry.sequence)];
    const int64_t rows = static_cast<int64_t>(entry.tokens.size());
    attention_rows_.push_back({&q_[t * q_dim], cache.keys(l), cache.values(l), cache.type(), rows, entry.start,
                               c.n_heads, c.n_kv_heads, hd, 1.0f / std::sqrt(static_cast<float>(hd)),
                               &attn_out_[t * q_dim], cache.key_scales(l), cache.value_scales(l),
                               cache.position_stride(), cache.head_stride(), cache.key_head_stride()});
    t += rows;
  }
  kernels_.attention(attention_rows_, pool_);
  matmul(w.wo, attn_out_.data(), n, proj_.data());  // [n, dim]
  add_adapter_deltas(l, {{AdapterTarget::o, proj_.data()}}, attn_out_.data(), 0, n);
  for_rows(n, [&](int64_t t) {
    for (int64_t i = t * dim; i < (t + 1) * dim; ++i) x_[i] += proj_[i];
  });
}

// x[n, dim] += W_down · (silu(W_gate · norm(x)) * (W_up · norm(x)))
// In chunks of kFfnChunk tokens: the [n, ffn_dim] intermediates are the largest activations, and
// chunks this long already amortize each weight pass over many tokens.
void Transformer::feed_forward(int64_t l, const LayerWeights& w, int64_t n) {
  const ModelConfig& c = config_;
  for_rows(n, [&](int64_t t) {
    kernels_.rmsnorm(&x_[t * c.dim], w.ffn_norm.data(), c.dim, c.rms_norm_eps, &normed_[t * c.dim]);
  });
  for (int64_t t0 = 0; t0 < n; t0 += kFfnChunk) {
    const int64_t m = std::min(kFfnChunk, n - t0);
    const float* in = &normed_[t0 * c.dim];
    matmul_shared_input({&w.w_gate, &w.w_up}, in, m, {gate_.data(), up_.data()});  // [m, ffn_dim] each
    add_adapter_deltas(l, {{AdapterTarget::gate, gate_.data()}, {AdapterTarget::up, up_.data()}}, in, t0, m);
    kernels_.swiglu(gate_.data(), up_.data(), m * c.ffn_dim, pool_);
    matmul(w.w_down, gate_.data(), m, &proj_[t0 * c.dim]);  // [m, dim]
    add_adapter_deltas(l, {{AdapterTarget::down, &proj_[t0 * c.dim]}}, gate_.data(), t0, m);
  }
  for_rows(n, [&](int64_t t) {
    for (int64_t i = t * c.dim; i < (t + 1) * c.dim; ++i) x_[i] += proj_[i];
  });
}

// An adapter loaded for another model could index past this model's layers or rows.
static void check_adapter_fits(const Adapter& adapter, const ModelConfig& c) {
  const ModelConfig& a = adapter.impl().model;
  if (a.n_layers != c.n_layers || a.dim != c.dim || a.n_heads != c.n_heads || a.n_kv_heads != c.n_kv_heads ||
      a.head_dim != c.head_dim || a.ffn_dim != c.ffn_dim || a.architecture != c.architecture ||
      a.rope_style != c.rope_style)
    fail("transformer: adapter ", adapter.path(), " was loaded for a model of another shape");
}

int64_t SequenceTokens::rows_with_logits() const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (all_logits) return n;
  if (logit_rows < 1 || logit_rows > n)
    fail("transformer: batch entry for sequence ", sequence, " asks for the logits of ", logit_rows, " of its ", n,
         " tokens");
  return logit_rows;
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t start, bool all_logits,
                          float* logits) {
  const SequenceTokens only{.sequence = 0, .start = start, .tokens = tokens, .all_logits = all_logits};
  forward(std::span<const SequenceTokens>(&only, 1), logits);
}

void Transformer::forward(std::span<const SequenceTokens> batch, float* logits) {
  const ModelConfig& c = config_;
  int64_t n = 0;
  positions_.clear();
  row_caches_.clear();
  for (const SequenceTokens& entry : batch) {
    if (entry.tokens.empty() || entry.sequence < 0 || entry.sequence >= n_sequences() ||
        entry.start < 0 || entry.start + static_cast<int64_t>(entry.tokens.size()) > n_ctx())
      fail("transformer: batch entry for sequence ", entry.sequence, " is empty or outside its cache");
    entry.rows_with_logits();  // checked before the pass writes any cache
    if (!entry.wants_logits && !entry.hidden)
      fail("transformer: batch entry for sequence ", entry.sequence, " wants neither logits nor hidden states");
    if (entry.adapter) check_adapter_fits(*entry.adapter, c);
    n += static_cast<int64_t>(entry.tokens.size());
    for (size_t i = 0; i < entry.tokens.size(); ++i) positions_.push_back(entry.start + static_cast<int64_t>(i));
    row_caches_.insert(row_caches_.end(), entry.tokens.size(), &caches_[static_cast<size_t>(entry.sequence)]);
  }
  if (n == 0) return;
  row_adapters_.clear();
  any_adapter_ = false;
  for (const SequenceTokens& entry : batch) {
    row_adapters_.insert(row_adapters_.end(), entry.tokens.size(), entry.adapter ? &entry.adapter->impl() : nullptr);
    any_adapter_ = any_adapter_ || entry.adapter;
  }
  const auto pass_start = std::chrono::steady_clock::now();
  ensure_batch(n);
  extend_rope_table(*std::max_element(positions_.begin(), positions_.end()) + 1);
  int64_t t = 0;
  for (const SequenceTokens& entry : batch)
    for (int32_t token : entry.tokens) {
      weights_->embedding_row(token, &x_[t * c.dim]);
      ++t;
    }

  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = weights_->layer(l);
    attention(l, w, batch, n);
    feed_forward(l, w, n);
  }

  // Normalize only the rows whose logits (or hidden states) are wanted, those with logits packed
  // together for one output matmul. A hidden row is the normed row itself, whatever the batch.
  int64_t rows_out = 0;
  t = 0;
  for (const SequenceTokens& entry : batch) {
    const int64_t rows = static_cast<int64_t>(entry.tokens.size()), first = rows - entry.rows_with_logits();
    for (int64_t i = first; i < rows; ++i) {
      float* normed = entry.wants_logits ? &normed_[rows_out * c.dim] : entry.hidden + (i - first) * c.dim;
      kernels_.rmsnorm(&x_[(t + i) * c.dim], model_.weights.output_norm.data(), c.dim, c.rms_norm_eps, normed);
      if (entry.wants_logits && entry.hidden)
        std::memcpy(entry.hidden + (i - first) * c.dim, normed, static_cast<size_t>(c.dim) * sizeof(float));
      if (entry.wants_logits) ++rows_out;
    }
    t += rows;
  }
  if (rows_out > 0) output(rows_out, logits);
  weights_->end_pass(n, std::chrono::duration<double>(std::chrono::steady_clock::now() - pass_start).count());
}

// logits[rows, n_vocab] = output · normed[rows, dim]. Streamed, the output matrix comes in chunks
// of its rows; each logit is the same dot product whatever chunk its row is in, so the result is
// bitwise that of one matmul.
void Transformer::output(int64_t rows, float* logits) {
  const int64_t n_vocab = config_.n_vocab;
  const size_t chunks = weights_->output_chunks();
  for (size_t i = 0; i < chunks; ++i) {
    const WeightSource::Chunk chunk = weights_->output_chunk(i);
    const int64_t width = chunk.ref->rows();
    if (width == n_vocab) return matmul(*chunk.ref, normed_.data(), rows, logits);
    chunk_logits_.resize(static_cast<size_t>(rows * width));
    matmul(*chunk.ref, normed_.data(), rows, chunk_logits_.data());
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(logits + r * n_vocab + chunk.first_row, &chunk_logits_[static_cast<size_t>(r * width)],
                  static_cast<size_t>(width) * sizeof(float));
  }
}

}  // namespace orchard
