// Access to the golden logits oracles in ../shared/golden (see ../shared/README.md).
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace orchard::test {

struct GoldenCase {
  std::string model;      // file or folder name under golden/
  std::string arch;
  std::string type;
  std::string sequence;   // "short" or "long"
  std::string reference;  // reference logits file under golden/
  double fast_tolerance_kl = 0;
  std::string label() const;  // usable as a test name
};

// gtest prints parameters with this (instead of their bytes).
inline void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.label(); }

// Every (model, sequence) case of golden/manifest.json, HF folders expanded per sequence.
std::vector<GoldenCase> golden_cases();
std::vector<int32_t> golden_sequence(const std::string& name);
std::vector<float> read_f32_file(const std::string& path);

// Mean over positions of KL(softmax(reference) || softmax(actual)), in float64.
double mean_kl_divergence(const std::vector<float>& reference, const std::vector<float>& actual,
                          int64_t n_vocab);

}  // namespace orchard::test
