// The GGUF reader on files built byte by byte in the test: every metadata type, arrays, nested
// arrays, custom alignment, versions 2 and 3.
#include <gtest/gtest.h>

#include <cstring>

#include "formats/gguf.h"
#include "orchard/error.h"
#include "test_paths.h"

namespace orchard {
namespace {

class GgufBuilder {
 public:
  explicit GgufBuilder(uint32_t version) {
    bytes_ = {'G', 'G', 'U', 'F'};
    u32(version);
  }
  template <typename T>
  void raw(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof v);
  }
  void u32(uint32_t v) { raw(v); }
  void u64(uint64_t v) { raw(v); }
  void str(const std::string& s) {
    u64(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void key(const std::string& k, GgufType t) {
    str(k);
    u32(static_cast<uint32_t>(t));
  }
  void pad_to(size_t alignment) {
    while (bytes_.size() % alignment) bytes_.push_back(0);
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

std::vector<uint8_t> every_type_file(uint32_t version) {
  GgufBuilder b(version);
  b.u64(1);   // tensors
  b.u64(17);  // metadata entries
  b.key("u8", GgufType::UINT8); b.raw<uint8_t>(200);
  b.key("i8", GgufType::INT8); b.raw<int8_t>(-100);
  b.key("u16", GgufType::UINT16); b.raw<uint16_t>(60000);
  b.key("i16", GgufType::INT16); b.raw<int16_t>(-30000);
  b.key("u32", GgufType::UINT32); b.raw<uint32_t>(4000000000u);
  b.key("i32", GgufType::INT32); b.raw<int32_t>(-2000000000);
  b.key("f32", GgufType::FLOAT32); b.raw<float>(0.25f);
  b.key("bool", GgufType::BOOL); b.raw<uint8_t>(1);
  b.key("str", GgufType::STRING); b.str("héllo");
  b.key("u64", GgufType::UINT64); b.raw<uint64_t>(uint64_t{1} << 63);
  b.key("i64", GgufType::INT64); b.raw<int64_t>(-(int64_t{1} << 40));
  b.key("f64", GgufType::FLOAT64); b.raw<double>(-1.5e300);
  b.key("general.alignment", GgufType::UINT32); b.raw<uint32_t>(64);
  b.key("ints", GgufType::ARRAY); b.u32(static_cast<uint32_t>(GgufType::INT16)); b.u64(3);
  b.raw<int16_t>(1); b.raw<int16_t>(-2); b.raw<int16_t>(3);
  b.key("strings", GgufType::ARRAY); b.u32(static_cast<uint32_t>(GgufType::STRING)); b.u64(2);
  b.str("a"); b.str("");
  b.key("floats", GgufType::ARRAY); b.u32(static_cast<uint32_t>(GgufType::FLOAT64)); b.u64(1);
  b.raw<double>(2.5);
  b.key("nested", GgufType::ARRAY); b.u32(static_cast<uint32_t>(GgufType::ARRAY)); b.u64(2);
  b.u32(static_cast<uint32_t>(GgufType::BOOL)); b.u64(2); b.raw<uint8_t>(0); b.raw<uint8_t>(1);
  b.u32(static_cast<uint32_t>(GgufType::UINT8)); b.u64(0);
  // One F32 tensor of shape {3, 2} at data offset 0.
  b.str("t");
  b.u32(2); b.u64(3); b.u64(2);
  b.u32(static_cast<uint32_t>(DType::F32));
  b.u64(0);
  b.pad_to(64);
  for (int i = 0; i < 6; ++i) b.raw<float>(static_cast<float>(i) + 0.5f);
  return b.bytes();
}

TEST(GgufReader, ReadsEveryMetadataTypeInVersions2And3) {
  for (uint32_t version : {2u, 3u}) {
    auto f = GgufFile::parse(blob_from_bytes(every_type_file(version), "every.gguf"));
    EXPECT_EQ(f->version(), version);
    EXPECT_EQ(f->get_int("u8"), 200);
    EXPECT_EQ(f->get_int("i8"), -100);
    EXPECT_EQ(f->get_int("u16"), 60000);
    EXPECT_EQ(f->get_int("i16"), -30000);
    EXPECT_EQ(f->get_int("u32"), 4000000000LL);
    EXPECT_EQ(f->get_int("i32"), -2000000000);
    EXPECT_EQ(f->get_float("f32"), 0.25);
    EXPECT_EQ(f->get_bool("bool"), true);
    EXPECT_EQ(f->get_string("str"), "héllo");
    EXPECT_EQ(f->find("u64")->uint_value, uint64_t{1} << 63);
    EXPECT_THROW(f->get_int("u64"), Error);  // does not fit in int64
    EXPECT_EQ(f->get_int("i64"), -(int64_t{1} << 40));
    EXPECT_EQ(f->get_float("f64"), -1.5e300);
    EXPECT_EQ(f->alignment(), 64u);
    EXPECT_EQ(*f->get_int_array("ints"), (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(*f->get_string_array("strings"), (std::vector<std::string>{"a", ""}));
    EXPECT_EQ(*f->get_float_array("floats"), (std::vector<double>{2.5}));
    const GgufValue* nested = f->find("nested");
    ASSERT_NE(nested, nullptr);
    ASSERT_EQ(nested->nested_array.size(), 2u);
    EXPECT_EQ(nested->nested_array[0].int_array, (std::vector<int64_t>{0, 1}));
    EXPECT_EQ(nested->nested_array[1].array_length, 0u);
    EXPECT_EQ(f->metadata().front().first, "u8");  // file order kept
    // Wrong-type lookups name the key.
    try {
      f->get_string("u8");
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'u8'"), std::string::npos);
    }
    EXPECT_FALSE(f->get_int("absent").has_value());
    const GgufTensor* t = f->find_tensor("t");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->offset % 64, 0u);
    float third;
    std::memcpy(&third, t->data + 2 * sizeof(float), sizeof third);
    EXPECT_EQ(third, 2.5f);
  }
}

TEST(GgufReader, RefusesDuplicateKeysAndBadAlignment) {
  GgufBuilder dup(3);
  dup.u64(0);
  dup.u64(2);
  dup.key("k", GgufType::UINT8); dup.raw<uint8_t>(1);
  dup.key("k", GgufType::UINT8); dup.raw<uint8_t>(2);
  EXPECT_THROW(GgufFile::parse(blob_from_bytes(dup.bytes(), "dup.gguf")), Error);

  GgufBuilder align(3);
  align.u64(0);
  align.u64(1);
  align.key("general.alignment", GgufType::UINT32); align.raw<uint32_t>(48);
  EXPECT_THROW(GgufFile::parse(blob_from_bytes(align.bytes(), "align.gguf")), Error);

  GgufBuilder bad_bool(3);
  bad_bool.u64(0);
  bad_bool.u64(1);
  bad_bool.key("b", GgufType::BOOL); bad_bool.raw<uint8_t>(7);
  EXPECT_THROW(GgufFile::parse(blob_from_bytes(bad_bool.bytes(), "bool.gguf")), Error);
}

TEST(GgufReader, DeeplyNestedArraysAreRefused) {
  GgufBuilder b(3);
  b.u64(0);
  b.u64(1);
  b.key("deep", GgufType::ARRAY);
  for (int i = 0; i < 20; ++i) {
    b.u32(static_cast<uint32_t>(GgufType::ARRAY));
    b.u64(1);
  }
  b.u32(static_cast<uint32_t>(GgufType::UINT8));
  b.u64(0);
  EXPECT_THROW(GgufFile::parse(blob_from_bytes(b.bytes(), "deep.gguf")), Error);
}

// Metadata whose parsed form would take far more memory than the file: a million empty nested
// arrays (12 bytes each in the file, a GgufValue each in memory, 15 times the file's size) are
// refused by the reader's memory bound, with an error naming the file and the key.
TEST(GgufReader, MetadataThatWouldTakeManyTimesItsSizeInMemoryIsRefused) {
  GgufBuilder b(3);
  b.u64(0);  // tensors
  b.u64(1);  // metadata entries
  b.key("many.empty.arrays", GgufType::ARRAY);
  b.u32(static_cast<uint32_t>(GgufType::ARRAY));
  const uint64_t count = 1 << 20;
  b.u64(count);
  for (uint64_t i = 0; i < count; ++i) {
    b.u32(static_cast<uint32_t>(GgufType::UINT8));
    b.u64(0);
  }
  try {
    GgufFile::parse(blob_from_bytes(std::move(b.bytes()), "arrays.gguf"));
    FAIL() << "parsed";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("arrays.gguf"), std::string::npos) << message;
    EXPECT_NE(message.find("many.empty.arrays"), std::string::npos) << message;
    EXPECT_NE(message.find("in memory"), std::string::npos) << message;
  }
}

// Real files stay far below the bound: the largest vocabulary-only GGUFs (metadata only).
TEST(GgufReader, RealVocabularyFilesAreWithinTheMemoryBound) {
  for (const char* name : {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf"})
    EXPECT_NO_THROW(GgufFile::open(test::shared_path(std::string("tokenizers/llama.cpp-vocab/") + name))) << name;
}

}  // namespace
}  // namespace orchard
