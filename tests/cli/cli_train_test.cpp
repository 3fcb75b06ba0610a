// `orchard train check` as a user runs it: the result file it writes for shared/train's llama sft,
// lora and adamw cases, read back in the manifest's layout and held against the oracle files within
// the manifest's tolerances; a bad case, a bad manifest and the unbuilt fast path give exit 2.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_test_support.h"
#include "golden.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace orchard {
namespace {

using test::expect_one_line_error;
using test::run_cli;

nlohmann::json read_manifest() {
  std::ifstream in(test::shared_path("train/manifest.json"));
  if (!in) ADD_FAILURE() << "cannot open " << test::shared_path("train/manifest.json");
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

// Runs the case and compares every trainable tensor of the written file with the oracle file:
// gradients and moments by relative L2, updated weights by max abs difference.
void check_case(const std::string& name) {
  const nlohmann::json manifest = read_manifest();
  const nlohmann::json* found = nullptr;
  for (const auto& c : manifest.at("cases"))
    if (c.at("case") == name) found = &c;
  ASSERT_NE(found, nullptr) << name;
  const nlohmann::json& c = *found;
  const nlohmann::json& tol = manifest.at("tolerances");
  test::TempDir dir;
  const std::string out = dir.file("result.f32");
  const auto r = run_cli({"train", "check", "--manifest", test::shared_path("train/manifest.json"), "--case", name,
                          "--out", out, "--kernels", "reference"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(name), std::string::npos) << r.out;
  const std::string ref_name = c.contains("grad_file") ? c.at("grad_file").get<std::string>()
                                                        : c.at("result_file").get<std::string>();
  const std::vector<float> ours = test::read_f32_file(out);
  const std::vector<float> ref = test::read_f32_file(test::shared_path("train/" + ref_name));
  ASSERT_EQ(ours.size(), ref.size()) << name;
  double worst = 0;
  int checked = 0;
  for (const auto& t : c.at("tensors")) {
    if (!t.value("trainable", true)) continue;
    const std::string tname = t.at("name");
    const size_t begin = t.at("offset").get<size_t>() / 4, count = t.at("n_elements").get<size_t>();
    ASSERT_LE(begin + count, ref.size()) << tname;
    double diff = 0, norm = 0, max_abs = 0;
    for (size_t i = begin; i < begin + count; ++i) {
      const double d = static_cast<double>(ours[i]) - ref[i];
      diff += d * d, norm += static_cast<double>(ref[i]) * ref[i], max_abs = std::max(max_abs, std::fabs(d));
    }
    const bool updated = tname.ends_with(".updated");
    const double err = updated ? max_abs : std::sqrt(diff / norm);
    const double bound = c.at("kind") == "adamw"
                             ? (updated ? tol.at("adamw_weights_max_abs") : tol.at("adamw_moments_rel_l2")).get<double>()
                             : tol.at("gradient_rel_l2_per_tensor").get<double>();
    ASSERT_GT(norm, 0) << tname;
    EXPECT_LE(err, bound) << name << " " << tname;
    worst = std::max(worst, err);
    ++checked;
  }
  EXPECT_GT(checked, 0) << name;
  std::printf("  %-16s %d tensors, worst error %.2e\n", name.c_str(), checked, worst);
}

TEST(CliTrainCheck, SftFileMatchesTheOracle) { check_case("llama-f32.sft"); }
TEST(CliTrainCheck, LoraFileMatchesTheOracle) { check_case("llama-f32.lora"); }
TEST(CliTrainCheck, AdamwFileMatchesTheOracle) { check_case("llama-f32.adamw"); }

TEST(CliTrainCheck, BadInputGivesExitCode2AndOneLine) {
  test::TempDir dir;
  const std::string out = dir.file("result.f32");
  const std::string manifest = test::shared_path("train/manifest.json");
  expect_one_line_error(run_cli({"train", "check", "--manifest", manifest, "--case", "llama-f32.nope", "--out", out}),
                        "no case named 'llama-f32.nope'");
  {
    std::ofstream bad(dir.file("manifest.json"));
    bad << "{\"cases\": 3";
  }
  expect_one_line_error(
      run_cli({"train", "check", "--manifest", dir.file("manifest.json"), "--case", "llama-f32.sft", "--out", out}),
      "not a JSON object");
  expect_one_line_error(
      run_cli({"train", "check", "--manifest", dir.file("missing.json"), "--case", "llama-f32.sft", "--out", out}),
      "cannot read the manifest");
  expect_one_line_error(run_cli({"train", "check", "--manifest", manifest, "--case", "llama-f32.sft", "--out", out,
                                 "--kernels", "fast"}),
                        "the fast training path is not built yet");
}

}  // namespace
}  // namespace orchard
