// Tokenizer behaviour beyond the reference vectors: special tokens, metadata from the config
// files, streaming decode, and robustness against arbitrary bytes.
#include <gtest/gtest.h>

#include <random>

#include "orchard/error.h"
#include "orchard/tokenizer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_data.h"

namespace orchard::test {
namespace {

std::shared_ptr<const Tokenizer> qwen3() { return shared_tokenizer("tokenizers/qwen3/tokenizer.json"); }
std::shared_ptr<const Tokenizer> llama3() { return shared_tokenizer("tokenizers/llama3/tokenizer.json"); }
std::shared_ptr<const Tokenizer> spm32k() { return shared_tokenizer("tokenizers/spm32k/tokenizer.json"); }

std::vector<int32_t> concat(std::vector<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(Tokenizer, SplitsOutSpecialTokens) {
  const auto t = qwen3();
  // Ids from Qwen's tokenizer_config.json: <|im_start|> 151644, <|im_end|> 151645.
  EXPECT_EQ(t->encode("<|im_start|>user\nhi<|im_end|>"),
            concat({{151644}, t->encode("user\nhi"), {151645}}));
  EXPECT_EQ(t->decode(t->encode("<|im_start|>x<|im_end|>")), "<|im_start|>x<|im_end|>");
  EXPECT_EQ(t->decode(t->encode("<|im_start|>x<|im_end|>"), /*skip_special=*/true), "x");
  // A broken special token is ordinary text.
  EXPECT_GT(t->encode("<|im_end").size(), 1u);
}

TEST(Tokenizer, SentencePieceSpecialTokensRestartThePrefix) {
  const auto t = spm32k();
  // Each text segment after a special token is normalized on its own (gets its own "▁").
  EXPECT_EQ(t->encode("Hi</s>Hi"), concat({t->encode("Hi"), {2}, t->encode("Hi")}));
}

TEST(Tokenizer, ReadsConfigMetadata) {
  EXPECT_EQ(qwen3()->bos_id(), std::nullopt);
  EXPECT_EQ(qwen3()->eos_ids(), std::vector<int32_t>{151645});
  EXPECT_FALSE(qwen3()->adds_bos());
  EXPECT_NE(qwen3()->chat_template().find("im_start"), std::string::npos);
  EXPECT_EQ(qwen3()->vocab_size(), 151669);

  EXPECT_EQ(llama3()->bos_id(), 128000);
  EXPECT_EQ(llama3()->eos_ids(), std::vector<int32_t>{128001});
  EXPECT_EQ(llama3()->encode("hi", /*add_bos=*/true).front(), 128000);

  EXPECT_EQ(spm32k()->bos_id(), 1);
  EXPECT_TRUE(spm32k()->adds_bos());
  EXPECT_EQ(spm32k()->token_text(1), "<s>");
  EXPECT_EQ(spm32k()->token_id("<0x0A>"), 13);
}

TEST(Tokenizer, ReadsGgufMetadata) {
  const auto spm = shared_tokenizer("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(spm->bos_id(), 1);
  EXPECT_EQ(spm->eos_ids(), std::vector<int32_t>{2});
  EXPECT_TRUE(spm->adds_bos());
  EXPECT_EQ(spm->vocab_size(), 32000);
  const auto phi3 = shared_tokenizer("tokenizers/llama.cpp-vocab/ggml-vocab-phi-3.gguf");
  EXPECT_EQ(phi3->eos_ids(), std::vector<int32_t>{32000});
  EXPECT_FALSE(phi3->chat_template().empty());
  // <|user|> is a USER_DEFINED token in phi-3's vocab: matched whole in text.
  const auto user = phi3->token_id("<|user|>");
  ASSERT_TRUE(user.has_value());
  EXPECT_EQ(phi3->encode("<|user|>"), std::vector<int32_t>{*user});
  const auto gpt2 = shared_tokenizer("tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(gpt2->encode("<|endoftext|>"), std::vector<int32_t>{50256});
  EXPECT_FALSE(gpt2->adds_bos());
}

TEST(Tokenizer, DecodesByteFallbackTokens) {
  const auto t = spm32k();
  // 🦙 is not in the vocabulary: it is spelled with four <0xXX> tokens.
  const auto ids = t->encode("\U0001F999");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(t->token_text(ids.back()), "<0x99>");
  EXPECT_EQ(t->decode(ids), "\U0001F999");
}

TEST(StreamingDecoder, EmitsOnlyWholeCharacters) {
  for (const auto& t : {qwen3(), spm32k()}) {
    const std::string text = "Emoji 😶‍🌫️ and 🦙 with 中文, ½ and Cửa Việt.";
    const auto ids = t->encode(text);
    StreamingDecoder stream(*t);
    std::string joined;
    bool held_back = false;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_TRUE(unicode::is_valid_utf8(piece));
      if (piece.empty()) held_back = true;
      joined += piece;
    }
    joined += stream.finish();
    EXPECT_TRUE(held_back) << "some character should have spanned tokens";
    EXPECT_EQ(joined, text);
    EXPECT_EQ(joined, t->decode(ids));
  }
}

TEST(StreamingDecoder, FinishesBrokenCharactersWithReplacement) {
  const auto t = qwen3();
  // The byte-level tokens of F0 9F A6, the first three bytes of 🦙 (F0 9F A6 99).
  std::vector<int32_t> ids;
  for (int byte : {0xF0, 0x9F, 0xA6}) {
    const auto id = t->token_id(byte_level::byte_chars()[size_t(byte)]);
    ASSERT_TRUE(id.has_value());
    ids.push_back(*id);
  }
  StreamingDecoder stream(*t);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  EXPECT_EQ(out, "");
  out += stream.finish();
  EXPECT_EQ(out, "\uFFFD");
  EXPECT_EQ(t->decode(ids), "\uFFFD");
  // The decoder is reusable after finish().
  EXPECT_EQ(stream.push(t->encode("ok")[0]), "ok");
}

// An id outside the vocabulary is an error naming it (issue 13: detokenize dropped it and exited
// 0), in decode and in streaming decode alike.
TEST(Tokenizer, OutOfRangeIdsAreAnError) {
  EXPECT_EQ(qwen3()->decode(std::vector<int32_t>{9707}), "Hello");
  for (int32_t bad : {-5, 1 << 30, static_cast<int32_t>(qwen3()->vocab_size())}) {
    const std::vector<int32_t> ids = {9707, bad};
    try {
      qwen3()->decode(ids);
      ADD_FAILURE() << bad << " decoded";
    } catch (const orchard::Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
    }
    StreamingDecoder stream(*qwen3());
    EXPECT_THROW(stream.push(bad), orchard::Error) << bad;
  }
  EXPECT_EQ(qwen3()->token_text(-1), "");
}

// Arbitrary bytes never crash encode or decode; byte-level vocabularies lose nothing, so the
// round trip gives the input with invalid sequences replaced.
TEST(TokenizerFuzz, RandomBytesRoundTrip) {
  std::mt19937 rng(1234);
  const std::vector<std::string> paths = {
      "tokenizers/qwen3/tokenizer.json", "tokenizers/llama3/tokenizer.json",
      "tokenizers/spm32k/tokenizer.json", "tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf",
      "tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf", "models/stories260K/tok512.bin"};
  for (const auto& path : paths) {
    const auto t = shared_tokenizer(path);
    for (int round = 0; round < 200; ++round) {
      std::string bytes(rng() % 64, '\0');
      for (char& c : bytes) {
        // Mostly high bytes and a few ASCII and '<' to hit UTF-8 and special-token paths.
        const uint32_t r = rng();
        c = char(r % 4 == 0 ? "<|> a\n"[r % 6] : (0x80 + r % 0x80));
      }
      const auto with_bos = t->encode(bytes, /*add_bos=*/true);
      for (int32_t id : with_bos) ASSERT_TRUE(id >= 0 && id < t->vocab_size()) << path;
      const auto ids = t->encode(bytes);
      const std::string text = t->decode(ids);
      EXPECT_TRUE(unicode::is_valid_utf8(text)) << path;
      if (path.find("llama3") != std::string::npos || path.find("gpt-2") != std::string::npos) {
        std::string expected;
        unicode::append_valid_utf8(bytes, expected);
        EXPECT_EQ(text, expected) << path;
      }
      // Random ids decode too.
      std::vector<int32_t> random_ids(rng() % 16);
      for (int32_t& id : random_ids) id = int32_t(rng() % uint32_t(t->vocab_size()));
      EXPECT_TRUE(unicode::is_valid_utf8(t->decode(random_ids))) << path;
    }
  }
}

}  // namespace
}  // namespace orchard::test
