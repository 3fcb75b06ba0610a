#include "cloud/binary_http.h"

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>

namespace orchard::cloud {
namespace {

constexpr uint64_t kVarintLimit = uint64_t{1} << 62;

template <typename... Parts>
[[noreturn]] void refuse(Parts&&... parts) {
  throw BinaryHttpError(str_cat("binary HTTP: ", std::forward<Parts>(parts)...));
}

size_t varint_size(uint64_t v) { return v < 64 ? 1 : v < 16384 ? 2 : v < (uint64_t{1} << 30) ? 4 : 8; }

void put_text(Bytes& out, std::string_view s) {
  put_varint(out, s.size());
  put_bytes(out, as_bytes(s));
}

// A name or value as an error message shows it: the bytes are anybody's, so printable ASCII only
// and at most 64 of them.
std::string shown(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 64; ++i) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x" + to_hex(ByteView(&c, 1));
    }
  }
  return out + (s.size() > 64 ? "...\"" : "\"");
}

enum class Section : uint8_t { informational, header, trailer };

const char* section_name(Section s) {
  switch (s) {
    case Section::informational: return "informational header section";
    case Section::header: return "header section";
    case Section::trailer: return "trailer section";
  }
  return "";
}

// RFC 9110 §5.6.2 tchar, less the uppercase letters RFC 9113 §8.2.1 forbids in field names.
bool name_char(uint8_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
bool token_char(uint8_t c) { return name_char(c) || (c >= 'A' && c <= 'Z'); }
bool blank(char c) { return c == ' ' || c == '\t'; }

// RFC 9292 §3.6 makes a field that would make an HTTP/2 message malformed make the message
// invalid. These are the checks of RFC 9113 §8.2: they keep a header that splits into two, or a
// framing header the content does not match, from reaching whatever serves the request.
// `regular_seen` carries the order rule (pseudo-fields first) across one section.
void check_field(Section section, std::string_view name, std::string_view value, bool& regular_seen) {
  const char* where = section_name(section);
  if (name.empty()) refuse("empty field name in the ", where);
  const bool pseudo = name[0] == ':';
  const std::string_view bare = pseudo ? name.substr(1) : name;
  if (bare.empty()) refuse("pseudo-field name \":\" with nothing after the colon in the ", where);
  for (const char ch : bare) {
    const auto c = static_cast<uint8_t>(ch);
    if (c >= 'A' && c <= 'Z') refuse("field name ", shown(name), " in the ", where, " is not lowercase");
    if (!name_char(c)) {
      refuse("field name ", shown(name), " in the ", where, " has byte 0x", to_hex(ByteView(&c, 1)),
             ", which field names do not allow");
    }
  }
  if (pseudo) {
    if (section == Section::trailer) refuse("pseudo-field ", shown(name), " in the trailer section");
    if (regular_seen) refuse("pseudo-field ", shown(name), " after a regular field in the ", where);
    if (bare == "method" || bare == "scheme" || bare == "authority" || bare == "path" || bare == "status") {
      refuse("pseudo-field ", shown(name), " in the ", where, " (the control data carries it)");
    }
  } else {
    regular_seen = true;
    if (name == "connection" || name == "proxy-connection" || name == "keep-alive" || name == "transfer-encoding" ||
        name == "upgrade") {
      refuse("connection-specific field ", shown(name), " in the ", where);
    }
    if (name == "te" && value != "trailers") refuse("field \"te\" with a value other than \"trailers\" in the ", where);
  }
  for (const char c : value) {
    if (c == '\0' || c == '\r' || c == '\n') {
      refuse("value of field ", shown(name), " in the ", where, " has a NUL, CR or LF");
    }
  }
  if (!value.empty() && (blank(value.front()) || blank(value.back()))) {
    refuse("value of field ", shown(name), " in the ", where, " starts or ends with whitespace");
  }
}

constexpr const char* kControlNames[] = {"method", "scheme", "authority", "path"};

// The method is a token; the rest goes into a request line or a URL, where a space or a control
// byte would end it early.
void check_control(size_t index, std::string_view value) {
  if (index == 0) {
    if (value.empty()) refuse("empty method");
    for (const char c : value) {
      if (!token_char(static_cast<uint8_t>(c))) refuse("method ", shown(value), " is not a token");
    }
    return;
  }
  for (const char ch : value) {
    const auto c = static_cast<uint8_t>(ch);
    if (c <= 0x20 || c == 0x7f) refuse(kControlNames[index], " ", shown(value), " has a space or a control byte");
  }
}

void check_informational(int status) {
  if (status < 100 || status > 199) refuse("informational status ", status, " is not in 100..199");
}
void check_final(int status) {
  if (status < 200 || status > 599) refuse("status ", status, " is not a valid final status (200..599)");
}

// Writes a section as decoding reads it back: names lowercased, then held to check_field.
void put_section(Bytes& out, Section section, const std::vector<HttpField>& fields, bool known_length) {
  std::vector<std::string> names;
  names.reserve(fields.size());
  size_t size = 0;
  bool regular_seen = false;
  for (const HttpField& field : fields) {
    std::string name = field.name;
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    check_field(section, name, field.value, regular_seen);
    size += varint_size(name.size()) + name.size() + varint_size(field.value.size()) + field.value.size();
    names.push_back(std::move(name));
  }
  if (known_length) put_varint(out, size);
  for (size_t i = 0; i < fields.size(); ++i) {
    put_text(out, names[i]);
    put_text(out, fields[i].value);
  }
  if (!known_length) put_varint(out, 0);
}

void put_content(Bytes& out, const std::string& content, bool known_length) {
  if (known_length) {
    put_text(out, content);
    return;
  }
  if (!content.empty()) put_text(out, content);
  put_varint(out, 0);
}

}  // namespace

// Not in the anonymous namespace: ResponseStreamDecoder::Parser, which has external linkage,
// derives from it.
namespace binary_http_detail {

// One decoder for every framing, fed the message in pieces of any size. A part whose bytes have
// not all arrived (a length, a control data field, a known-length field section, an
// indeterminate-length field line) is kept in `pending_` and parsed again from its start when
// more come; its declared length is checked against the limits before the wait, so `pending_`
// stays within them. Content is passed on as it arrives. decode_request and decode_response feed
// it the whole message, the stream decoder what it is given: both read the same bytes the same
// way.
class MessageParser {
 public:
  enum class Kind : uint8_t { request, response };

  MessageParser(Kind kind, const BinaryHttpLimits& limits) : kind_(kind), limits_(limits) {}

  // Parses what `input` completes; content bytes are appended to `content`.
  void feed(ByteView input, std::string& content) {
    guard([&] {
      size_t pos = 0;
      if (pending_.empty()) {
        run(input, pos, content);
        pending_.assign(input.begin() + static_cast<ptrdiff_t>(pos), input.end());
        return;
      }
      pending_.insert(pending_.end(), input.begin(), input.end());
      run(pending_, pos, content);
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(pos));
      // A large piece that completed a part left room for it behind; what remains is one part.
      if (pending_.capacity() > (64u << 10) && pending_.capacity() > 4 * pending_.size()) pending_.shrink_to_fit();
    });
  }

  void finish() {
    guard([&] { check_end(); });
    head_done_ = true;  // a response cut after its control data has no header fields
  }

  uint64_t framing() const { return framing_; }
  size_t padding() const { return padding_; }
  size_t buffered() const { return pending_.size(); }
  bool head_done() const { return head_done_; }
  bool done() const { return stage_ == Stage::padding; }
  int status() const { return status_; }
  const std::vector<HttpField>& headers() const { return headers_; }

  void take(BinaryRequest& request) {
    request.method = std::move(control_[0]);
    request.scheme = std::move(control_[1]);
    request.authority = std::move(control_[2]);
    request.path = std::move(control_[3]);
    request.headers = std::move(headers_);
    request.trailers = std::move(trailers_);
  }
  void take(BinaryResponse& response) {
    response.informational = std::move(informational_);
    response.status = status_;
    response.headers = std::move(headers_);
    response.trailers = std::move(trailers_);
  }

 private:
  enum class Stage : uint8_t { framing, control, status, section, content, padding };

  // Once a message is refused, what follows it means nothing: every later call refuses too.
  template <typename F>
  void guard(F&& f) {
    if (failed_) refuse("the message was already refused");
    try {
      f();
    } catch (...) {
      failed_ = true;
      throw;
    }
  }

  void run(ByteView data, size_t& pos, std::string& content) {
    while (pos < data.size() && step(data, pos, content)) {
    }
  }

  // Parses one part at data[pos] and moves pos past it; false (pos unchanged) when the part
  // runs past the end of `data`.
  bool step(ByteView data, size_t& pos, std::string& content) {
    size_t p = pos;
    switch (stage_) {
      case Stage::framing: {
        const std::optional<uint64_t> v = read_varint(data, p);
        if (!v) return false;
        if (*v > 3) refuse("unknown framing indicator ", *v, " (RFC 9292 defines 0 to 3)");
        const bool request = *v % 2 == 0;
        if (kind_ == Kind::request && !request) refuse("expected a request (framing indicator 0 or 2), got ", *v);
        if (kind_ == Kind::response && request) refuse("expected a response (framing indicator 1 or 3), got ", *v);
        framing_ = *v;
        known_length_ = *v < 2;
        stage_ = request ? Stage::control : Stage::status;
        break;
      }
      case Stage::control: {
        const std::optional<uint64_t> length = read_varint(data, p);
        if (!length) return false;
        if (*length > limits_.max_control_data - control_bytes_) {
          refuse(kControlNames[control_index_], " length ", *length, " exceeds the control data limit of ",
                 limits_.max_control_data, " bytes (method, scheme, authority and path together)");
        }
        if (data.size() - p < *length) return false;
        const std::string_view value = as_text(data.subspan(p, *length));
        check_control(control_index_, value);
        control_[control_index_].assign(value);
        p += *length;
        control_bytes_ += *length;
        if (++control_index_ == 4) begin_section(Section::header);
        break;
      }
      case Stage::status: {
        const std::optional<uint64_t> v = read_varint(data, p);
        if (!v) return false;
        if (*v >= 100 && *v < 200) {
          if (informational_.size() >= limits_.max_informational) {
            refuse("more than ", limits_.max_informational, " informational responses");
          }
          informational_.push_back({static_cast<int>(*v), {}});
          begin_section(Section::informational);
        } else if (*v >= 200 && *v < 600) {
          status_ = static_cast<int>(*v);
          begin_section(Section::header);
        } else {
          refuse("status ", *v, " is not a valid final status (200..599) nor an informational one (100..199)");
        }
        break;
      }
      case Stage::section:
        if (!(known_length_ ? known_length_section(data, p) : field_line(data, p))) return false;
        break;
      case Stage::content:
        if (!content_step(data, p, content)) return false;
        break;
      case Stage::padding:
        for (; p < data.size(); ++p) {
          if (data[p] != 0) refuse("non-zero byte after the message (padding must be zeros)");
        }
        padding_ += p - pos;
        break;
    }
    pos = p;
    return true;
  }

  std::vector<HttpField>& fields() {
    switch (section_) {
      case Section::informational: return informational_.back().headers;
      case Section::header: return headers_;
      case Section::trailer: break;
    }
    return trailers_;
  }

  void begin_section(Section section) {
    section_ = section;
    stage_ = Stage::section;
    section_bytes_ = 0;
    section_lines_ = 0;
    regular_seen_ = false;
  }

  void end_section() {
    switch (section_) {
      case Section::informational: stage_ = Stage::status; break;
      case Section::header:
        stage_ = Stage::content;
        head_done_ = true;
        break;
      case Section::trailer: stage_ = Stage::padding; break;
    }
  }

  void add_field(std::string_view name, std::string_view value) {
    check_field(section_, name, value, regular_seen_);
    fields().push_back({std::string(name), std::string(value)});
  }

  void count_field() {
    if (fields().size() >= limits_.max_fields) {
      refuse(section_name(section_), " has more than ", limits_.max_fields, " fields");
    }
  }

  // A whole length-prefixed section, once all of it is here.
  bool known_length_section(ByteView data, size_t& p) {
    const char* where = section_name(section_);
    const std::optional<uint64_t> length = read_varint(data, p);
    if (!length) return false;
    if (*length > limits_.max_field_section) {
      refuse(where, " length ", *length, " exceeds the limit of ", limits_.max_field_section, " bytes");
    }
    if (data.size() - p < *length) return false;
    const ByteView section = data.subspan(p, *length);
    for (size_t q = 0; q < section.size();) {
      const std::optional<uint64_t> name_length = read_varint(section, q);
      if (!name_length) refuse("a field name length runs past the end of the ", where);
      if (*name_length == 0) refuse("empty field name in the ", where);
      if (*name_length > section.size() - q) refuse("a field name runs past the end of the ", where);
      const std::string_view name = as_text(section.subspan(q, *name_length));
      q += *name_length;
      const std::optional<uint64_t> value_length = read_varint(section, q);
      if (!value_length) refuse("field ", shown(name), " has no value length before the end of the ", where);
      if (*value_length > section.size() - q) {
        refuse("the value of field ", shown(name), " runs past the end of the ", where);
      }
      count_field();
      add_field(name, as_text(section.subspan(q, *value_length)));
      q += *value_length;
    }
    p += *length;
    end_section();
    return true;
  }

  // One field line of an indeterminate-length section, or its terminator. Each length is held to
  // what is left of the section's limit as soon as it is read.
  bool field_line(ByteView data, size_t& p) {
    const size_t start = p;
    const std::optional<uint64_t> name_length = read_varint(data, p);
    if (!name_length) return false;
    if (*name_length == 0) {
      end_section();
      return true;
    }
    count_field();
    const auto left = [&] {
      const size_t used = section_bytes_ + (p - start);
      return used < limits_.max_field_section ? limits_.max_field_section - used : 0;
    };
    if (*name_length > left()) {
      refuse(section_name(section_), " exceeds the limit of ", limits_.max_field_section, " bytes (a field name of ",
             *name_length, " bytes)");
    }
    if (data.size() - p < *name_length) return false;
    const std::string_view name = as_text(data.subspan(p, *name_length));
    p += *name_length;
    const std::optional<uint64_t> value_length = read_varint(data, p);
    if (!value_length) return false;
    if (*value_length > left()) {
      refuse(section_name(section_), " exceeds the limit of ", limits_.max_field_section, " bytes (a value of ",
             *value_length, " bytes for field ", shown(name), ")");
    }
    if (data.size() - p < *value_length) return false;
    const std::string_view value = as_text(data.subspan(p, *value_length));
    p += *value_length;
    add_field(name, value);
    section_bytes_ += p - start;
    ++section_lines_;
    return true;
  }

  bool content_step(ByteView data, size_t& p, std::string& content) {
    if (content_left_ == 0) {  // a length comes first: the content's or the next chunk's
      const std::optional<uint64_t> length = read_varint(data, p);
      if (!length) return false;
      if (*length == 0) {  // no content, or the chunks' terminator
        begin_section(Section::trailer);
        return true;
      }
      if (known_length_ && *length > limits_.max_content) {
        refuse("content length ", *length, " exceeds the limit of ", limits_.max_content, " bytes");
      }
      if (!known_length_ && *length > limits_.max_content - content_total_) {
        refuse("content exceeds the limit of ", limits_.max_content, " bytes (a chunk of ", *length, " bytes after ",
               content_total_, ")");
      }
      content_started_ = true;
      content_left_ = *length;
      content_total_ += *length;
      return true;
    }
    const size_t take = static_cast<size_t>(std::min<uint64_t>(content_left_, data.size() - p));
    if (take == 0) return false;
    content.append(as_text(data.subspan(p, take)));
    p += take;
    content_left_ -= take;
    // Known-length content is one piece; indeterminate-length content goes on to the next chunk.
    if (content_left_ == 0 && known_length_) begin_section(Section::trailer);
    return true;
  }

  // No more bytes: the message must be whole, or cut where §3.8 allows it: before a length
  // prefix that precedes a section or the content, or (indeterminate length) after the
  // terminator of a section or of the content.
  void check_end() const {
    if (!pending_.empty()) refuse("truncated in the ", part_name());
    switch (stage_) {
      case Stage::framing: refuse("empty message (no framing indicator)");
      case Stage::control: refuse("truncated before the ", kControlNames[control_index_]);
      case Stage::status:
        refuse(informational_.empty() ? "truncated before the status" : "truncated before the final status");
      case Stage::section:
        if (section_ == Section::informational) refuse("truncated in an informational response");
        if (section_lines_ > 0) refuse("truncated in the ", section_name(section_), " (no terminator)");
        return;
      case Stage::content:
        if (content_started_) refuse("truncated in the content");
        return;
      case Stage::padding: return;
    }
  }

  const char* part_name() const {
    switch (stage_) {
      case Stage::framing: return "framing indicator";
      case Stage::control: return kControlNames[control_index_];
      case Stage::status: return "status";
      case Stage::section: return section_name(section_);
      case Stage::content: return "content";
      case Stage::padding: break;
    }
    return "padding";
  }

  Kind kind_;
  BinaryHttpLimits limits_;
  Bytes pending_;
  bool failed_ = false;
  Stage stage_ = Stage::framing;
  uint64_t framing_ = 0;
  bool known_length_ = true;
  size_t padding_ = 0;

  std::string control_[4];
  size_t control_index_ = 0;
  size_t control_bytes_ = 0;

  std::vector<InformationalResponse> informational_;
  int status_ = 0;
  bool head_done_ = false;
  std::vector<HttpField> headers_, trailers_;

  Section section_ = Section::header;
  size_t section_bytes_ = 0;  // of the indeterminate-length section being read
  size_t section_lines_ = 0;
  bool regular_seen_ = false;

  bool content_started_ = false;
  uint64_t content_left_ = 0;   // of the known-length content or the current chunk
  uint64_t content_total_ = 0;  // lengths declared so far
};

}  // namespace binary_http_detail

using binary_http_detail::MessageParser;

class ResponseStreamDecoder::Parser : public MessageParser {
 public:
  using MessageParser::MessageParser;
};

void put_varint(Bytes& out, uint64_t value) {
  if (value >= kVarintLimit) refuse("varint value ", value, " is over 2^62 - 1");
  const size_t size = varint_size(value);
  const uint8_t prefix = size == 1 ? 0x00 : size == 2 ? 0x40 : size == 4 ? 0x80 : 0xc0;
  for (size_t i = size; i-- > 0;) {
    const auto b = static_cast<uint8_t>(value >> (8 * i));
    out.push_back(i == size - 1 ? static_cast<uint8_t>(b | prefix) : b);
  }
}

void pad_to_multiple(Bytes& message, size_t bucket) {
  if (bucket != 0) message.resize((message.size() + bucket - 1) / bucket * bucket, 0);
}

std::optional<uint64_t> read_varint(ByteView bytes, size_t& pos) {
  if (pos >= bytes.size()) return std::nullopt;
  const size_t size = size_t{1} << (bytes[pos] >> 6);
  if (bytes.size() - pos < size) return std::nullopt;
  uint64_t value = bytes[pos] & 0x3f;
  for (size_t i = 1; i < size; ++i) value = value << 8 | bytes[pos + i];
  pos += size;
  return value;
}

BinaryRequest decode_request(ByteView message, const BinaryHttpLimits& limits, DecodedFraming* framing) {
  MessageParser parser(MessageParser::Kind::request, limits);
  BinaryRequest request;
  parser.feed(message, request.content);
  parser.finish();
  parser.take(request);
  if (framing) *framing = {parser.framing(), parser.padding()};
  return request;
}

BinaryResponse decode_response(ByteView message, const BinaryHttpLimits& limits, DecodedFraming* framing) {
  MessageParser parser(MessageParser::Kind::response, limits);
  BinaryResponse response;
  parser.feed(message, response.content);
  parser.finish();
  parser.take(response);
  if (framing) *framing = {parser.framing(), parser.padding()};
  return response;
}

Bytes encode_request(const BinaryRequest& request, Framing framing, size_t padding) {
  const bool known = framing == Framing::known_length;
  Bytes out;
  put_varint(out, known ? 0 : 2);
  const std::string* control[] = {&request.method, &request.scheme, &request.authority, &request.path};
  for (size_t i = 0; i < 4; ++i) {
    check_control(i, *control[i]);
    put_text(out, *control[i]);
  }
  put_section(out, Section::header, request.headers, known);
  put_content(out, request.content, known);
  put_section(out, Section::trailer, request.trailers, known);
  out.resize(out.size() + padding, 0);
  return out;
}

Bytes encode_response(const BinaryResponse& response, Framing framing, size_t padding) {
  const bool known = framing == Framing::known_length;
  Bytes out;
  put_varint(out, known ? 1 : 3);
  for (const InformationalResponse& info : response.informational) {
    check_informational(info.status);
    put_varint(out, static_cast<uint64_t>(info.status));
    put_section(out, Section::informational, info.headers, known);
  }
  check_final(response.status);
  put_varint(out, static_cast<uint64_t>(response.status));
  put_section(out, Section::header, response.headers, known);
  put_content(out, response.content, known);
  put_section(out, Section::trailer, response.trailers, known);
  out.resize(out.size() + padding, 0);
  return out;
}

Bytes encode_response_head(int status, const std::vector<HttpField>& headers) {
  check_final(status);
  Bytes out;
  put_varint(out, 3);
  put_varint(out, static_cast<uint64_t>(status));
  put_section(out, Section::header, headers, /*known_length=*/false);
  return out;
}

Bytes encode_content_chunk(ByteView content) {
  Bytes out;
  if (content.empty()) return out;
  put_varint(out, content.size());
  put_bytes(out, content);
  return out;
}

Bytes encode_response_end() { return {0, 0}; }  // the content terminator, an empty trailer section

ResponseStreamDecoder::ResponseStreamDecoder(const BinaryHttpLimits& limits)
    : parser_(std::make_unique<Parser>(MessageParser::Kind::response, limits)) {}
ResponseStreamDecoder::~ResponseStreamDecoder() = default;
ResponseStreamDecoder::ResponseStreamDecoder(ResponseStreamDecoder&&) noexcept = default;
ResponseStreamDecoder& ResponseStreamDecoder::operator=(ResponseStreamDecoder&&) noexcept = default;

std::string ResponseStreamDecoder::feed(ByteView bytes) {
  std::string content;
  parser_->feed(bytes, content);
  return content;
}
bool ResponseStreamDecoder::head_done() const { return parser_->head_done(); }
int ResponseStreamDecoder::status() const { return parser_->status(); }
const std::vector<HttpField>& ResponseStreamDecoder::headers() const { return parser_->headers(); }
bool ResponseStreamDecoder::done() const { return parser_->done(); }
void ResponseStreamDecoder::finish() { parser_->finish(); }
size_t ResponseStreamDecoder::buffered() const { return parser_->buffered(); }

}  // namespace orchard::cloud
