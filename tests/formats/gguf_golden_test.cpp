#include <gtest/gtest.h>

#include "formats/gguf.h"
#include "test_paths.h"

namespace orchard {
namespace {

TEST(GgufGolden, ReadsLlamaQ4KM) {
  auto f = GgufFile::open(test::shared_path("golden/llama-q4_k_m.gguf"));
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 2);
  EXPECT_EQ(f->get_int("llama.embedding_length"), 256);
  const GgufTensor* q = f->find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{256, 256}));
  const GgufTensor* freqs = f->find_tensor("rope_freqs.weight");
  ASSERT_NE(freqs, nullptr);
  EXPECT_EQ(freqs->type, DType::F32);
  EXPECT_EQ(freqs->shape, (std::vector<int64_t>{32}));
  const auto* tokens = f->get_string_array("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->size(), 1024u);
  EXPECT_EQ(tokens->at(1023), "<|im_end|>");
}

}  // namespace
}  // namespace orchard
