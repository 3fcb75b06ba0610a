// Reading ../shared/train's oracle: the manifest and float32 tensors at a byte offset of a file.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace orchard::train {

inline nlohmann::json read_manifest() {
  std::ifstream in(test::shared_path("train/manifest.json"));
  if (!in) ADD_FAILURE() << "cannot open " << test::shared_path("train/manifest.json");
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

inline std::vector<float> read_floats(const std::string& path, uint64_t offset, uint64_t count) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<float> out(count);
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(float)));
  EXPECT_TRUE(in.good()) << path << ": cannot read " << count << " floats at " << offset;
  return out;
}

}  // namespace orchard::train
