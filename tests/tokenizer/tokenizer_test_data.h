// Shared helpers of the tokenizer tests: loading tokenizers once, and reading llama.cpp's
// vocabulary test vectors (.inp texts separated by "\n__ggml_vocab_test__\n", .out id lines).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <fstream>
#include <mutex>
#include <sstream>

#include "orchard/tokenizer.h"
#include "test_paths.h"

namespace orchard::test {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The tokenizer at a path under shared/, loaded once per test binary.
inline std::shared_ptr<const Tokenizer> shared_tokenizer(const std::string& relative_path) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const Tokenizer>> loaded;
  std::lock_guard lock(mutex);
  auto& slot = loaded[relative_path];
  if (!slot) slot = Tokenizer::load(shared_path(relative_path));
  return slot;
}

// The cases of shared/tokenizers/llama.cpp-vocab/ggml-vocab-<name>.gguf.{inp,out}.
inline std::vector<VocabCase> llama_cpp_vocab_cases(const std::string& name) {
  const std::string base = shared_path("tokenizers/llama.cpp-vocab/ggml-vocab-" + name + ".gguf");
  const std::string inp = read_file(base + ".inp");
  const std::string out = read_file(base + ".out");
  static const std::string kSeparator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0;;) {
    const size_t next = inp.find(kSeparator, pos);
    if (next == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + kSeparator.size();
  }
  std::vector<std::vector<int32_t>> id_lines;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<int32_t> ids;
    std::istringstream words(line);
    for (int32_t id; words >> id;) ids.push_back(id);
    id_lines.push_back(std::move(ids));
  }
  // The .inp file ends with a separator, so its last text is empty; so is the last .out line.
  if (id_lines.size() + 1 == texts.size() && texts.back().empty()) id_lines.emplace_back();
  EXPECT_EQ(texts.size(), id_lines.size()) << base;
  std::vector<VocabCase> cases;
  for (size_t i = 0; i < texts.size() && i < id_lines.size(); ++i) cases.push_back({texts[i], id_lines[i]});
  return cases;
}

}  // namespace orchard::test
