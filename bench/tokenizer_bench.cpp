// Encoding throughput of one tokenizer on one core: encodes a text file several times and prints
// the best MB/s. Built and run by bench/tokenizer_bench.sh.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "orchard/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: tokenizer_bench TOKENIZER TEXT_FILE [ROUNDS]\n");
    return 2;
  }
  const auto tokenizer = orchard::Tokenizer::load(argv[1]);
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  double best = 1e30;
  size_t tokens = 0;
  for (int i = 0; i < rounds; ++i) {
    const auto start = std::chrono::steady_clock::now();
    tokens = tokenizer->encode(text).size();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("orchard: %zu bytes -> %zu tokens, best of %d: %.3f s, %.2f MB/s\n", text.size(), tokens,
              rounds, best, text.size() / best / 1e6);
  return 0;
}
