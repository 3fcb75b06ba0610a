#include "golden.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "test_paths.h"

namespace orchard::test {
namespace {

nlohmann::json manifest() {
  std::ifstream in(shared_path("golden/manifest.json"));
  if (!in) throw std::runtime_error("cannot open " + shared_path("golden/manifest.json"));
  return nlohmann::json::parse(in);
}

}  // namespace

std::string GoldenCase::label() const {
  std::string s = model + "_" + sequence;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  const nlohmann::json all = manifest();
  for (const auto& c : all["cases"]) {
    GoldenCase g;
    g.model = c["model"];
    g.arch = c["arch"];
    g.type = c["type"];
    g.fast_tolerance_kl = c["fast_tolerance_kl"];
    if (c.contains("reference_logits_by_sequence")) {
      for (const auto& [seq, file] : c["reference_logits_by_sequence"].items()) {
        g.sequence = seq;
        g.reference = file;
        cases.push_back(g);
      }
    } else {
      g.sequence = c["sequence"];
      g.reference = c["reference_logits"];
      cases.push_back(g);
    }
  }
  return cases;
}

std::vector<int32_t> golden_sequence(const std::string& name) {
  return manifest()["sequences"][name].get<std::vector<int32_t>>();
}

std::vector<float> read_f32_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::streamsize bytes = in.tellg();
  in.seekg(0);
  std::vector<float> v(static_cast<size_t>(bytes) / sizeof(float));
  in.read(reinterpret_cast<char*>(v.data()), bytes);
  return v;
}

double mean_kl_divergence(const std::vector<float>& reference, const std::vector<float>& actual,
                          int64_t n_vocab) {
  if (reference.size() != actual.size() || reference.empty() || reference.size() % n_vocab != 0)
    return INFINITY;
  const size_t positions = reference.size() / static_cast<size_t>(n_vocab);
  double total = 0;
  for (size_t p = 0; p < positions; ++p) {
    const float* r = &reference[p * n_vocab];
    const float* a = &actual[p * n_vocab];
    double r_max = -INFINITY, a_max = -INFINITY;
    for (int64_t i = 0; i < n_vocab; ++i) {
      r_max = std::max<double>(r_max, r[i]);
      a_max = std::max<double>(a_max, a[i]);
    }
    double r_sum = 0, a_sum = 0;
    for (int64_t i = 0; i < n_vocab; ++i) {
      r_sum += std::exp(r[i] - r_max);
      a_sum += std::exp(a[i] - a_max);
    }
    const double r_log_norm = r_max + std::log(r_sum), a_log_norm = a_max + std::log(a_sum);
    double kl = 0;
    for (int64_t i = 0; i < n_vocab; ++i) {
      const double log_p = r[i] - r_log_norm, log_q = a[i] - a_log_norm;
      kl += std::exp(log_p) * (log_p - log_q);
    }
    if (!std::isfinite(kl)) return INFINITY;
    total += kl;
  }
  return total / static_cast<double>(positions);
}

}  // namespace orchard::test
