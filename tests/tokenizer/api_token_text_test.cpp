// api_token_text.h: a token's text in OpenAI's legacy completions API and back.
#include "tokenizer/api_token_text.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace orchard {
namespace {

TEST(ApiTokenText, WholeUtf8AsItIsPartsOfACharacterAsBytes) {
  EXPECT_EQ(api_token_text(" the"), " the");
  EXPECT_EQ(api_token_text("\xc3\xa9"), "\xc3\xa9");
  EXPECT_EQ(api_token_text("\xc3"), "bytes:\\xc3");
  EXPECT_EQ(api_token_text("a\xf0\x9d"), "bytes:\\x61\\xf0\\x9d");
  EXPECT_EQ(api_token_bytes("bytes:\\xC3\\xa9"), "\xc3\xa9");
  // Anything else that starts like the form is a text as it is.
  EXPECT_EQ(api_token_bytes("bytes:"), "bytes:");
  EXPECT_EQ(api_token_bytes("bytes:\\x4"), "bytes:\\x4");
  EXPECT_EQ(api_token_bytes("bytes:\\xg1"), "bytes:\\xg1");
  EXPECT_EQ(api_token_bytes("bytes: abc"), "bytes: abc");
}

TEST(ApiTokenText, EveryByteStringRoundTrips) {
  std::mt19937 rng(5);
  for (int n = 0; n < 2000; ++n) {
    std::string bytes(rng() % 6, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    if (bytes.starts_with("bytes:")) continue;  // a text that already spells the form stays itself
    EXPECT_EQ(api_token_bytes(api_token_text(bytes)), bytes);
  }
}

}  // namespace
}  // namespace orchard
