#include "model_options.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "base/error.h"
#include "base/mapped_file.h"

namespace orchard::cli {

KernelChoice kernel_choice(Args& args) {
  const std::string kernels = args.get_or("kernels", "fast");
  if (kernels == "reference") return KernelChoice::reference;
  if (kernels == "fast") return KernelChoice::fast;
  fail("orchard ", args.command(), ": --kernels must be 'reference' or 'fast', got '", kernels, "'");
}

std::vector<int32_t> parse_token_list(const std::string& text, const std::string& option) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  if (text.empty()) fail(option, ": empty token list");
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno == ERANGE || v < std::numeric_limits<int32_t>::min() ||
        v > std::numeric_limits<int32_t>::max())
      fail(option, ": '", item, "' is not a token id (expected comma-separated integers)");
    ids.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
  }
  return ids;
}

std::vector<int32_t> read_token_file(const std::string& path) {
  std::string text = read_text_file(path);
  for (char& c : text)
    if (std::isspace(static_cast<unsigned char>(c))) c = ',';
  std::string joined;
  for (char c : text)
    if (!(c == ',' && (joined.empty() || joined.back() == ','))) joined += c;
  while (!joined.empty() && joined.back() == ',') joined.pop_back();
  if (joined.empty()) fail(path, ": holds no token ids");
  return parse_token_list(joined, path);
}


void write_file_atomically(const std::string& path, const void* bytes, size_t size) {
  const std::string temp = path + ".tmp";
  FILE* f = std::fopen(temp.c_str(), "wb");
  if (!f) fail(path, ": cannot write: ", std::strerror(errno));
  const bool ok = std::fwrite(bytes, 1, size, f) == size;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(temp.c_str());
    fail(path, ": write failed");
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(temp.c_str());
    fail(path, ": cannot write: ", std::strerror(err));
  }
}

}  // namespace orchard::cli
