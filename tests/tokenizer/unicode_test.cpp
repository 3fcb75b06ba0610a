#include "tokenizer/unicode.h"

#include <gtest/gtest.h>

#include "tokenizer/nfc.h"
#include "tokenizer/utf8_assembler.h"

namespace orchard::unicode {
namespace {

TEST(Unicode, GeneralCategories) {
  EXPECT_EQ(general_category('A'), GeneralCategory::Lu);
  EXPECT_EQ(general_category(0x4E2D), GeneralCategory::Lo);   // 中
  EXPECT_EQ(general_category(0x00BD), GeneralCategory::No);   // ½
  EXPECT_EQ(general_category(0x1F680), GeneralCategory::So);  // 🚀
  EXPECT_EQ(general_category(0x0301), GeneralCategory::Mn);
  EXPECT_EQ(general_category(0x20000), GeneralCategory::Lo);  // CJK Extension B
  EXPECT_EQ(general_category(0x0378), GeneralCategory::Cn);   // unassigned
  EXPECT_TRUE(is_white_space(0x3000));
  EXPECT_TRUE(is_white_space(0x85));
  EXPECT_FALSE(is_white_space(0x200B));  // zero width space is Cf, not White_Space
}

TEST(Unicode, DecodesStrictly) {
  EXPECT_EQ(decode_utf8("\xC3\xA9", 0).codepoint, 0xE9u);
  EXPECT_EQ(decode_utf8("\xC0\xAF", 0).codepoint, kInvalid);          // overlong
  EXPECT_EQ(decode_utf8("\xED\xA0\x80", 0).codepoint, kInvalid);      // surrogate
  EXPECT_EQ(decode_utf8("\xF4\x90\x80\x80", 0).codepoint, kInvalid);  // above U+10FFFF
  EXPECT_EQ(decode_utf8("\xE2\x82", 0).length, 1u);
}

TEST(Unicode, ReplacesMaximalSubparts) {
  std::string out;
  append_valid_utf8("a\xE2\x82(\xF0\x9F\x98\x80\xFF", out);
  EXPECT_EQ(out, "a\uFFFD(\U0001F600\uFFFD");
}

TEST(Nfc, ComposesAndReorders) {
  EXPECT_EQ(to_nfc("e\u0301"), "\u00E9");
  EXPECT_EQ(to_nfc("\u1100\u1161\u11A8"), "\uAC01");  // Hangul L V T
  // UAX #15 example: d + dot above + dot below -> d with dot below, then dot above.
  EXPECT_EQ(to_nfc("d\u0307\u0323"), "\u1E0D\u0307");
  EXPECT_EQ(to_nfc("\u212B"), "\u00C5");  // singleton decomposition (Angstrom sign)
  EXPECT_EQ(to_nfc("\u0344"), "\u0308\u0301");  // excluded from composition
  EXPECT_TRUE(is_nfc_quick("plain ascii and caf\u00E9"));
  EXPECT_FALSE(is_nfc_quick("cafe\u0301"));
  EXPECT_EQ(to_nfc("x\xFF\u0301"), "x\xFF\u0301");  // invalid bytes pass through
}

TEST(Utf8Assembler, HoldsSplitCharacters) {
  Utf8Assembler assembler;
  EXPECT_EQ(assembler.push("a\xF0\x9F"), "a");
  EXPECT_EQ(assembler.push("\x98"), "");
  EXPECT_EQ(assembler.push("\x80z"), "\U0001F600z");
  EXPECT_EQ(assembler.push("\xE2\x82"), "");
  EXPECT_EQ(assembler.push("("), "\uFFFD(");  // the character never completed
  EXPECT_EQ(assembler.push("\xC3"), "");
  EXPECT_EQ(assembler.finish(), "\uFFFD");
}

}  // namespace
}  // namespace orchard::unicode
