// The GGUF writer against the project's reader: every metadata kind, tensor data at aligned
// offsets, and the errors of a writer used wrongly.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "temp_dir.h"

namespace orchard {
namespace {

GgufValue int_array(GgufType element, std::vector<int64_t> values) {
  GgufValue v;
  v.type = GgufType::ARRAY;
  v.element_type = element;
  v.array_length = values.size();
  v.int_array = std::move(values);
  return v;
}

TEST(GgufWriter, ReaderSeesWhatWasWritten) {
  test::TempDir dir;
  const std::string path = dir.file("out.gguf");
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 7);
  w.set_f32("llama.rope.freq_base", 500000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set("ints", int_array(GgufType::INT32, {-1, 2, 300000}));
  GgufValue strings;
  strings.type = GgufType::ARRAY;
  strings.element_type = GgufType::STRING;
  strings.string_array = {"a", "", "\xc3\xa9t\xc3\xa9"};
  w.set("strings", strings);
  GgufValue floats;
  floats.type = GgufType::ARRAY;
  floats.element_type = GgufType::FLOAT32;
  floats.float_array = {0.5, -2.25};
  w.set("floats", floats);
  w.set_u32("llama.block_count", 9);  // replaces, keeps its place

  // 3 floats (12 bytes, so the next tensor needs padding), then 2 rows of Q8_0.
  w.add_tensor("small", {3}, DType::F32);
  w.add_tensor("matrix", {32, 2}, DType::Q8_0);
  const uint64_t expected_size = w.total_bytes();
  w.begin(path);
  const float small[3] = {1.0f, -2.0f, 3.5f};
  w.write(small, sizeof small);
  std::vector<uint8_t> blocks(68);
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = static_cast<uint8_t>(i * 7);
  w.write(blocks.data(), 10);  // in pieces
  w.write(blocks.data() + 10, blocks.size() - 10);
  w.finish();
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  auto f = GgufFile::open(path);
  EXPECT_EQ(f->file_size(), expected_size);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 9);
  EXPECT_EQ(f->metadata()[1].first, "llama.block_count");
  EXPECT_EQ(f->get_float("llama.rope.freq_base"), 500000.0);
  EXPECT_EQ(f->get_bool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(*f->get_int_array("ints"), (std::vector<int64_t>{-1, 2, 300000}));
  EXPECT_EQ(*f->get_string_array("strings"), (std::vector<std::string>{"a", "", "\xc3\xa9t\xc3\xa9"}));
  EXPECT_EQ(*f->get_float_array("floats"), (std::vector<double>{0.5, -2.25}));
  ASSERT_EQ(f->tensors().size(), 2u);
  const GgufTensor* s = f->find_tensor("small");
  const GgufTensor* m = f->find_tensor("matrix");
  ASSERT_TRUE(s && m);
  EXPECT_EQ(std::memcmp(s->data, small, sizeof small), 0);
  EXPECT_EQ(m->type, DType::Q8_0);
  EXPECT_EQ(m->shape, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(m->offset % 32, 0u);
  EXPECT_EQ(std::memcmp(m->data, blocks.data(), blocks.size()), 0);
}

TEST(GgufWriter, RefusesMisuse) {
  test::TempDir dir;
  GgufWriter w;
  EXPECT_THROW(w.add_tensor("bad", {100, 2}, DType::Q4_0), Error);  // rows not whole blocks
  EXPECT_THROW(w.add_tensor("bad", {0}, DType::F32), Error);
  w.add_tensor("t", {4}, DType::F32);
  w.begin(dir.file("a.gguf"));
  const float v[5] = {};
  EXPECT_THROW(w.write(v, sizeof v), Error);  // more than declared
}

TEST(GgufWriter, UnfinishedFileLeavesNothingBehind) {
  test::TempDir dir;
  const std::string path = dir.file("b.gguf");
  {
    GgufWriter w;
    w.add_tensor("t", {4}, DType::F32);
    w.begin(path);
    const float v[2] = {};
    w.write(v, sizeof v);
    EXPECT_THROW(w.finish(), Error);  // half a tensor
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(GgufWriter, UnwritableFolderIsAnError) {
  GgufWriter w;
  w.add_tensor("t", {4}, DType::F32);
  EXPECT_THROW(w.begin("/nonexistent-folder/x.gguf"), Error);
}

}  // namespace
}  // namespace orchard
