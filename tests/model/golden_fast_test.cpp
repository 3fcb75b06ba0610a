// The fast kernels against the golden float64 reference on every ISA path this CPU runs (chosen
// in-process, not through ORCHARD_ISA): mean KL within each case's fast_tolerance_kl, in one
// batch (prefill) and one token at a time (decode through the f16 KV cache).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "golden.h"
#include "kernels/kernels.h"
#include "model/transformer.h"
#include "orchard/model.h"
#include "test_paths.h"

namespace orchard {
namespace {

struct FastCase {
  test::GoldenCase golden;
  Isa isa;
};

std::vector<FastCase> fast_cases() {
  std::vector<FastCase> out;
  for (const test::GoldenCase& g : test::golden_cases())
    for (Isa isa : supported_isas()) out.push_back({g, isa});
  return out;
}

std::shared_ptr<const Model> load_packed(const std::string& name) {
  static std::map<std::string, std::shared_ptr<const Model>> cache;
  auto& slot = cache[name];
  if (!slot) slot = Model::load(test::shared_path("golden/" + name), {.kernels = KernelChoice::fast});
  return slot;
}

class GoldenFast : public ::testing::TestWithParam<FastCase> {};

TEST_P(GoldenFast, PrefillAndDecodeWithinTolerance) {
  const FastCase& c = GetParam();
  auto model = load_packed(c.golden.model);
  const auto tokens = test::golden_sequence(c.golden.sequence);
  const auto reference = test::read_f32_file(test::shared_path("golden/" + c.golden.reference));
  const int64_t n_vocab = model->config().n_vocab, n = static_cast<int64_t>(tokens.size());
  const Kernels& kernels = fast_kernels(c.isa);

  Transformer prefill(model->impl(), kernels, n, 2);
  std::vector<float> logits(static_cast<size_t>(n * n_vocab));
  prefill.forward(tokens, 0, true, logits.data());
  EXPECT_LE(test::mean_kl_divergence(reference, logits, n_vocab), c.golden.fast_tolerance_kl) << "prefill";

  Transformer decode(model->impl(), kernels, n, 2);
  for (int64_t t = 0; t < n; ++t)
    decode.forward(std::span<const int32_t>(&tokens[t], 1), t, true, &logits[t * n_vocab]);
  EXPECT_LE(test::mean_kl_divergence(reference, logits, n_vocab), c.golden.fast_tolerance_kl) << "decode";
}

INSTANTIATE_TEST_SUITE_P(Manifest, GoldenFast, ::testing::ValuesIn(fast_cases()), [](const auto& info) {
  return info.param.golden.label() + "_" + std::string(isa_name(info.param.isa));
});

}  // namespace
}  // namespace orchard

namespace orchard {
namespace {

// The int8 KV cache is lossy by design, so the bound is not the default path's tolerance but the
// accuracy an 8-bit model already gives up: KL within the fast_tolerance_kl of the same
// architecture's Q8_0 case for the same sequence (twice llama.cpp's own Q8_0 distance), or the
// case's own tolerance when that is larger.
double int8_kv_tolerance(const test::GoldenCase& c) {
  const std::string arch = c.model.substr(0, c.model.find('-'));
  double tolerance = c.fast_tolerance_kl;
  for (const test::GoldenCase& other : test::golden_cases())
    if (other.model == arch + "-q8_0.gguf" && other.sequence == c.sequence)
      tolerance = std::max(tolerance, other.fast_tolerance_kl);
  return tolerance;
}

class GoldenInt8Kv : public ::testing::TestWithParam<test::GoldenCase> {};

TEST_P(GoldenInt8Kv, DecodeWithinQ8Tolerance) {
  const test::GoldenCase& c = GetParam();
  auto model = load_packed(c.model);
  const auto tokens = test::golden_sequence(c.sequence);
  const auto reference = test::read_f32_file(test::shared_path("golden/" + c.reference));
  const int64_t n_vocab = model->config().n_vocab, n = static_cast<int64_t>(tokens.size());
  Transformer decode(model->impl(), fast_kernels(supported_isas().back()), n, 2, 1, KvType::q8);
  EXPECT_EQ(decode.cache().type(), KvType::q8);
  std::vector<float> logits(static_cast<size_t>(n * n_vocab));
  for (int64_t t = 0; t < n; ++t)
    decode.forward(std::span<const int32_t>(&tokens[t], 1), t, true, &logits[t * n_vocab]);
  EXPECT_LE(test::mean_kl_divergence(reference, logits, n_vocab), int8_kv_tolerance(c));
}

INSTANTIATE_TEST_SUITE_P(Manifest, GoldenInt8Kv, ::testing::ValuesIn(test::golden_cases()),
                         [](const auto& info) { return info.param.label(); });

}  // namespace
}  // namespace orchard
