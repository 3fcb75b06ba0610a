// Helpers shared by the libFuzzer targets: splitting one input into several files, a scratch
// folder for loaders that only take paths, and a little exercise for whatever tokenizer loaded.
//
// The contract every target checks: bad input is refused with orchard::Error (the server's
// RequestError for request bodies). Any other exception escapes LLVMFuzzerTestOneInput and
// libFuzzer reports it as a crash, like a sanitizer report, a leak or a timeout.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "orchard/model.h"
#include "orchard/tokenizer.h"

namespace orchard::fuzz {

// Separates the files of a multi-file input (config.json, then the safetensors bytes; a
// checkpoint, then its tokenizer.bin). A text line, so that seeds stay readable and the
// dictionaries can offer it to the mutator.
inline constexpr std::string_view kSplit = "\n#ORCHARD-SPLIT#\n";

// The parts of `input` between separators; at most `max_parts` (the last keeps the rest).
inline std::vector<std::string_view> split_input(std::string_view input, size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = input.find(kSplit);
    if (at == std::string_view::npos) break;
    parts.push_back(input.substr(0, at));
    input.remove_prefix(at + kSplit.size());
  }
  parts.push_back(input);
  return parts;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// One folder per process (libFuzzer runs inputs one after another in a process), made on first
// use and removed at exit. Under /dev/shm when there is one: the loaders read a file per input.
class ScratchDir {
 public:
  static ScratchDir& get() {
    static ScratchDir dir;
    return dir;
  }
  std::string path(const std::string& name) const { return root_ + "/" + name; }
  std::string write(const std::string& name, std::string_view bytes) const {
    const std::string file = path(name);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return file;
  }
  void remove(const std::string& name) const {
    std::error_code ignored;
    std::filesystem::remove(path(name), ignored);
  }
  const std::string& root() const { return root_; }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

 private:
  ScratchDir() {
    std::error_code ec;
    const std::string base = std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0
                                 ? std::string("/dev/shm")
                                 : std::filesystem::temp_directory_path().string();
    std::string pattern = base + "/orchard-fuzz-XXXXXX";
    if (!::mkdtemp(pattern.data())) std::abort();  // no scratch space: nothing can be tested
    root_ = pattern;
  }
  std::string root_;
};

// What a loaded model is asked: its tensor list, then one token through a 4-position context on
// the reference kernels (the forward pass must cope with whatever shapes the file passed).
inline void exercise_model(const std::shared_ptr<const Model>& model, int32_t token) {
  (void)model->tensors();
  (void)model->parameter_count();
  Context context(model, {.n_ctx = 4, .kernels = KernelChoice::reference, .n_threads = 1});
  (void)context.eval_last(std::span<const int32_t>(&token, 1));
}

// Encodes and decodes a little text (with added-token text, invalid UTF-8 and a tail of the
// input), decodes every id of a small range and streams them: the tokenizer must cope with
// whatever vocabulary the fuzzed file described.
inline void exercise_tokenizer(const Tokenizer& tokenizer, std::string_view extra_text) {
  static const std::string kTexts[] = {
      "Hello world! <|im_start|>user\n  12345 \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 <s></s>",
      std::string("bad utf-8: \xff\xfe\xc3 end\0zero", 24),
      "",
  };
  for (const std::string& text : kTexts) {
    const std::vector<int32_t> ids = tokenizer.encode(text, /*add_bos=*/true);
    (void)tokenizer.decode(ids);
    (void)tokenizer.decode(ids, /*skip_special=*/true);
  }
  const std::vector<int32_t> tail_ids = tokenizer.encode(extra_text.substr(0, 256));
  (void)tokenizer.decode(tail_ids);

  const int32_t n = static_cast<int32_t>(std::min<int64_t>(tokenizer.vocab_size(), 300));
  std::vector<int32_t> ids;
  for (int32_t id = -2; id < n + 2; ++id) ids.push_back(id);  // a few out of range on purpose
  StreamingDecoder stream(tokenizer);
  std::string streamed;
  for (int32_t id : ids) {
    streamed += stream.push(id);
    (void)tokenizer.token_text(id);
    (void)tokenizer.token_bytes(id);
    (void)tokenizer.is_special(id);
  }
  streamed += stream.finish();
  (void)tokenizer.decode(ids);
  (void)tokenizer.bos_id();
  (void)tokenizer.eos_ids();
  (void)tokenizer.chat_template();
}

}  // namespace orchard::fuzz
