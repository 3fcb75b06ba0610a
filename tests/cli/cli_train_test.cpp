// `orchard train check` as a user runs it: the result file it writes for shared/train's llama sft,
// lora and adamw cases, read back in the manifest's layout and held against the oracle files within
// the manifest's tolerances; a bad case, a bad manifest and the unbuilt fast path give exit 2.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_test_support.h"
#include "orchard/tokenizer.h"
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
void check_case(const std::string& name, const std::string& kernels = "reference") {
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
                          "--out", out, "--kernels", kernels});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(name), std::string::npos) << r.out;
  if (c.at("kind") != "adamw") {  // the loss within 1e-5 relative of the manifest's (the README's bound)
    const size_t at = r.out.find(", rel ");
    ASSERT_NE(at, std::string::npos) << r.out;
    EXPECT_LE(std::stod(r.out.substr(at + 6)), 1e-5) << r.out;
  }
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
  std::printf("  %-16s %-9s %d tensors, worst error %.2e\n", name.c_str(), kernels.c_str(), checked, worst);
}

TEST(CliTrainCheck, SftFileMatchesTheOracle) { check_case("llama-f32.sft"); }
TEST(CliTrainCheck, LoraFileMatchesTheOracle) { check_case("llama-f32.lora"); }
TEST(CliTrainCheck, AdamwFileMatchesTheOracle) { check_case("llama-f32.adamw"); }
// The fast path (FastModel) through the same command, held to the same bounds.
TEST(CliTrainCheck, FastSftFilesMatchTheOracle) {
  for (const char* m : {"llama-f32", "qwen2-f32", "qwen3-f32"}) check_case(std::string(m) + ".sft", "fast");
}
TEST(CliTrainCheck, FastKdFilesMatchTheOracle) {
  for (const char* m : {"llama-f32", "qwen2-f32", "qwen3-f32"}) check_case(std::string(m) + ".kd", "fast");
}
TEST(CliTrainCheck, FastLoraFilesMatchTheOracle) {
  for (const char* m : {"llama-f32", "qwen2-f32", "qwen3-f32"}) check_case(std::string(m) + ".lora", "fast");
}

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
                                 "--kernels", "simd"}),
                        "--kernels simd: expected reference or fast");
}

// ---------------------------------------------------------------------------------------------
// orchard train, train init, train merge

std::string stories() { return test::source_path("models/stories260K/stories260K.gguf"); }

const char* kFrogs =
    "{\"text\": \"Zorbo the green frog sang a song about the moon.\"}\n"
    "{\"text\": \"Zorbo the green frog ate a big red cake.\"}\n"
    "{\"prompt\": \"Zorbo the green frog\", \"completion\": \" jumped over the old wall.\"}\n"
    "{\"text\": \"Zorbo the green frog liked to swim in the pond.\"}\n";

std::vector<std::string> train_args(const std::string& data, const std::string& out, std::vector<std::string> more = {},
                                    const std::string& steps = "4", const std::string& batch_tokens = "64") {
  std::vector<std::string> args = {"train", "--model", stories(), "--data", data, "--steps", steps, "--batch-tokens",
                                   batch_tokens, "--lr", "1e-2", "--threads", "1", "--out", out};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

std::vector<nlohmann::json> read_log(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(CliTrain, BadDataIsNamedByLine) {
  test::TempDir dir;
  const std::string out = dir.file("out");
  const std::string bad = dir.write("bad.jsonl", std::string("{\"text\": \"fine\"}\n{\"text\": \"oops\"\n"));
  expect_one_line_error(run_cli(train_args(bad, out)), "bad.jsonl:2: malformed JSON");
  const std::string longer =
      dir.write("long.jsonl", std::string("{\"text\": \"Once upon a time, there was a little girl named Lily.\"}\n"));
  expect_one_line_error(run_cli(train_args(longer, out, {"--max-seq", "8"})), "long.jsonl:1: the sequence is");
  expect_one_line_error(run_cli(train_args(longer, out, {"--max-seq", "8"})), "longer than the context of 8");
  const std::string teacher = dir.write(
      "teacher.jsonl",
      std::string("{\"prompt\": \"a\", \"completion\": \"b\", \"teacher\": {\"ids\": [[3, 9999]], \"logprobs\": [[-1, -2]]}}\n"));
  expect_one_line_error(run_cli(train_args(teacher, out, {"--loss", "kd"})),
                        "teacher.jsonl:1: teacher id 9999 (row 0) is outside the vocabulary [0, 512)");
  const std::string frogs = dir.write("frogs.jsonl", std::string(kFrogs));
  expect_one_line_error(run_cli(train_args(frogs, out, {"--loss", "kd"})), "needs a teacher's top k");
  expect_one_line_error(run_cli(train_args(frogs, out, {"--lora-rank", "4", "--lora-targets", "q,x"})), "x");
  expect_one_line_error(run_cli({"train", "--model", stories(), "--data", frogs, "--out", out}), "missing --steps");
}

TEST(CliTrain, TinyRunWritesItsOutputs) {
  test::TempDir dir;
  const std::string data = dir.write("frogs.jsonl", std::string(kFrogs));
  const std::string out = dir.file("full");
  const auto r = run_cli(train_args(data, out, {"--eval", data, "--eval-every", "2", "--warmup", "1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("trained: 4 steps, "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" tokens/s, final loss "), std::string::npos) << r.out;
  const std::vector<nlohmann::json> log = read_log(out + "/log.jsonl");
  ASSERT_EQ(log.size(), 4u);
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].at("step"), i + 1);
    for (const char* key : {"loss", "lr", "grad_norm", "tokens", "tokens_per_s"}) EXPECT_TRUE(log[i].contains(key)) << key;
    EXPECT_EQ(log[i].contains("eval_loss"), i % 2 == 1) << i;
    EXPECT_FALSE(log[i].contains("skipped"));
  }
  EXPECT_LT(log[3].at("eval_loss").get<double>(), log[1].at("eval_loss").get<double>());
  // The trained model loads and keeps the base's tensors.
  const auto info = run_cli({"info", "--model", out + "/model.gguf"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("layers:         5"), std::string::npos) << info.out;
  EXPECT_NE(test::read_bytes(out + "/model.gguf"), test::read_bytes(stories()));

  // LoRA: the adapter in both formats, and merged back into the base.
  const std::string lora = dir.file("lora");
  const auto l = run_cli(train_args(data, lora, {"--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "q,v"}));
  ASSERT_EQ(l.exit_code, 0) << l.err;
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "adapter.gguf", "log.jsonl"})
    EXPECT_TRUE(std::filesystem::exists(lora + "/" + f)) << f;
  const auto m = run_cli({"train", "merge", "--model", stories(), "--adapter", lora, "--out", dir.file("merged.gguf")});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.out.find("merged 10 adapters (rank 4, alpha 8)"), std::string::npos) << m.out;

  // train eval: the base with the adapter scores as the merged model does (two different paths),
  // and differently from the base alone.
  const auto eval_of = [&](std::vector<std::string> a) {
    const auto e = run_cli(a);
    EXPECT_EQ(e.exit_code, 0) << e.err;
    return nlohmann::json::parse(e.out);
  };
  const auto with_adapter = eval_of({"train", "eval", "--model", stories(), "--data", data, "--adapter", lora});
  const auto merged = eval_of({"train", "eval", "--model", dir.file("merged.gguf"), "--data", data});
  const auto base = eval_of({"train", "eval", "--model", stories(), "--data", data});
  EXPECT_NEAR(with_adapter.at("loss").get<double>(), merged.at("loss").get<double>(), 1e-5);
  EXPECT_GT(std::fabs(with_adapter.at("loss").get<double>() - base.at("loss").get<double>()), 1e-3);
}

TEST(CliTrain, EvalReportsTheUnigramEntropyOfTheTrainedTokens) {
  test::TempDir dir;
  const std::string data = dir.write("frogs.jsonl", std::string(kFrogs));
  const auto r = run_cli({"train", "eval", "--model", stories(), "--data", data});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json got = nlohmann::json::parse(r.out);
  // The trained tokens counted here: every token after BOS of the texts, the completion and its EOS.
  const auto tok = Tokenizer::load(stories());
  std::map<int32_t, int> counts;
  int n = 0;
  for (const char* t : {"Zorbo the green frog sang a song about the moon.", "Zorbo the green frog ate a big red cake.",
                        "Zorbo the green frog liked to swim in the pond."}) {
    const std::vector<int32_t> ids = tok->encode(t, true);
    for (size_t i = 1; i < ids.size(); ++i) ++counts[ids[i]], ++n;
  }
  std::vector<int32_t> completion = tok->encode(" jumped over the old wall.", false);
  completion.push_back(tok->eos_ids().front());
  for (int32_t id : completion) ++counts[id], ++n;
  double h = 0;
  for (const auto& [id, c] : counts) h -= c / double(n) * std::log(c / double(n));
  EXPECT_EQ(got.at("tokens").get<int>(), n);
  EXPECT_NEAR(got.at("unigram_entropy").get<double>(), h, 1e-12);
  EXPECT_EQ(got.at("examples").get<int>(), 4);
  EXPECT_GT(got.at("loss").get<double>(), 0);
}

TEST(CliTrain, ResumedRunWritesTheSameModel) {
  test::TempDir dir;
  const std::string data = dir.write("frogs.jsonl", std::string(kFrogs));
  const std::vector<std::string> common = {"--accumulate", "2", "--warmup", "2", "--min-lr", "1e-3", "--weight-decay", "0.1",
                                           "--seed", "5"};
  auto args = [&](const std::string& out, std::vector<std::string> more) {
    std::vector<std::string> a = train_args(data, out, common, "6", "40");
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  ASSERT_EQ(run_cli(args(dir.file("a"), {})).exit_code, 0);
  ASSERT_EQ(run_cli(args(dir.file("b"), {"--stop-after", "3"})).exit_code, 0);
  {  // a run killed while writing its log: the torn line is cut before the resumed run appends
    std::ofstream torn(dir.file("b/log.jsonl"), std::ios::app);
    torn << "{\"step\": 4, \"lo";
  }
  const auto resumed = run_cli(args(dir.file("b"), {"--resume", dir.file("b")}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("trained: 3 steps"), std::string::npos) << resumed.out;
  EXPECT_EQ(test::read_bytes(dir.file("a/model.gguf")), test::read_bytes(dir.file("b/model.gguf")));
  EXPECT_EQ(read_log(dir.file("b/log.jsonl")).size(), 6u);
  // Other settings are refused by name.
  expect_one_line_error(run_cli(train_args(data, dir.file("c"), {"--resume", dir.file("b")}, "6", "40")),
                        "the checkpoint was trained with");
}

TEST(CliTrain, InitWritesARandomLlamaOfTheGivenShape) {
  test::TempDir dir;
  const std::string out = dir.file("init.gguf");
  const auto r = run_cli({"train", "init", "--like", stories(), "--layers", "2", "--dim", "32", "--heads", "4",
                          "--kv-heads", "2", "--ffn", "48", "--seed", "1", "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto info = run_cli({"info", "--model", out});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  for (const char* want : {"layers:         2", "hidden:         32", "heads:          4 (kv 2", "ffn:            48",
                           "vocab:          512"})
    EXPECT_NE(info.out.find(want), std::string::npos) << want << "\n" << info.out;
  // The same seed gives the same file; another seed another.
  const auto again = run_cli({"train", "init", "--like", stories(), "--layers", "2", "--dim", "32", "--heads", "4",
                              "--kv-heads", "2", "--ffn", "48", "--seed", "1", "--out", dir.file("again.gguf")});
  ASSERT_EQ(again.exit_code, 0);
  EXPECT_EQ(test::read_bytes(out), test::read_bytes(dir.file("again.gguf")));
  // It runs: the tokenizer came along.
  const auto gen = run_cli({"run", "--model", out, "--prompt", "Once", "--max-tokens", "3", "--temperature", "0"});
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  expect_one_line_error(run_cli({"train", "init", "--like", stories(), "--dim", "30", "--heads", "4", "--out", out}),
                        "head size");
}

}  // namespace
}  // namespace orchard
