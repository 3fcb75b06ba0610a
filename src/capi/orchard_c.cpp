// The C API (include/orchard/orchard_c.h) over the C++ one: handles own shared pointers to the
// model and tokenizer, a session owns an orchard::Session (an engine of one slot). Every entry
// point validates its arguments, runs inside `guarded` (no exception leaves it) and leaves its
// error text in a thread-local string.
#include "orchard/orchard_c.h"

#include <sys/stat.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "orchard/chat_template.h"
#include "orchard/engine.h"
#include "orchard/error.h"
#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

constexpr uint32_t kModelMagic = 0x4F4D444Cu;    // "OMDL"
constexpr uint32_t kSessionMagic = 0x4F534553u;  // "OSES"

}  // namespace

struct orchard_model {
  uint32_t magic = kModelMagic;
  std::shared_ptr<const orchard::Model> model;
  std::shared_ptr<const orchard::Tokenizer> tokenizer;
  orchard::EngineOptions engine_options;
  // Compiled once at load; a template that does not parse leaves its error here instead, so that
  // the model still loads and only orchard_apply_chat_template fails.
  std::optional<orchard::ChatTemplate> chat_template;
  std::string chat_template_error;
};

struct orchard_session {
  uint32_t magic = kSessionMagic;
  std::unique_ptr<orchard::Session> session;
  std::mutex generating;  // one generation at a time per session
  std::atomic<bool> cancel{false};
};

namespace {

using orchard::str_cat;

thread_local std::string last_error;

// An error with its status code, thrown inside an entry point and turned into the return value.
struct CError {
  int status;
  std::string message;
};

template <typename... Parts>
[[noreturn]] void fail_with(int status, Parts&&... parts) {
  throw CError{status, str_cat(std::forward<Parts>(parts)...)};
}

int set_error(int status, const char* function, const char* message) noexcept {
  try {
    last_error.assign(function);
    last_error += ": ";
    last_error += message;
  } catch (...) {
    last_error.clear();  // no memory for the message: the status still says what happened
  }
  return status;
}

// Runs one entry point: its return value, or the status of what it threw, with the error text.
template <typename F>
int guarded(const char* function, F&& body) noexcept {
  last_error.clear();
  try {
    return body();
  } catch (const CError& e) {
    return set_error(e.status, function, e.message.c_str());
  } catch (const orchard::Error& e) {  // bad input the entry point did not classify itself
    return set_error(ORCHARD_ERR_INVALID_ARGUMENT, function, e.what());
  } catch (const std::bad_alloc&) {
    return set_error(ORCHARD_ERR_NO_MEMORY, function, "out of memory");
  } catch (const std::exception& e) {
    return set_error(ORCHARD_ERR_INTERNAL, function, e.what());
  } catch (...) {
    return set_error(ORCHARD_ERR_INTERNAL, function, "an unknown exception");
  }
}

void require(bool condition, const char* what) {
  if (!condition) fail_with(ORCHARD_ERR_INVALID_ARGUMENT, what);
}

const orchard_model& checked(const orchard_model* model) {
  require(model != nullptr, "the model handle is NULL");
  require(model->magic == kModelMagic, "not a model handle (freed, or another kind of handle)");
  return *model;
}

orchard_session& checked(orchard_session* session) {
  require(session != nullptr, "the session handle is NULL");
  require(session->magic == kSessionMagic, "not a session handle (freed, or another kind of handle)");
  return *session;
}

template <typename Struct>
void check_struct_size(const Struct* s, const char* name) {
  if (s->struct_size != sizeof(Struct))
    fail_with(ORCHARD_ERR_INVALID_ARGUMENT, name, ".struct_size is ", s->struct_size, "; this library expects ",
              sizeof(Struct), " (set it with the *_init function, or to sizeof the struct)");
}

// The caller's options (their struct_size checked), or the *_init defaults when NULL.
template <typename Struct>
Struct given_or_default(const Struct* options, int (*init)(Struct*)) {
  Struct o;
  init(&o);
  if (options) {
    check_struct_size(options, "options");
    o = *options;
  }
  return o;
}

bool path_exists(const char* path) {
  struct stat st;
  return ::stat(path, &st) == 0;
}

void check_utf8(std::string_view text, const char* what) {
  size_t pos = 0;
  while (pos < text.size()) {
    const orchard::unicode::Decoded d = orchard::unicode::decode_utf8(text, pos);
    if (d.codepoint == orchard::unicode::kInvalid)
      fail_with(ORCHARD_ERR_INVALID_ARGUMENT, what, " is not valid UTF-8 (byte ", pos, " of ", text.size(),
                ", 0x", std::hex, static_cast<unsigned>(static_cast<unsigned char>(text[pos])), ")");
    pos += d.length;
  }
}

// Copies `text` and its NUL into the caller's buffer (snprintf's rule; see the header).
int put_text(const std::string& text, char* out, size_t capacity, size_t* len) {
  require(len != nullptr, "len is NULL");
  *len = text.size();
  require(out != nullptr || capacity == 0, "the text buffer is NULL but its capacity is not 0");
  if (capacity < text.size() + 1)
    fail_with(ORCHARD_ERR_BUFFER_TOO_SMALL, "the text needs ", text.size() + 1, " bytes with its NUL; the buffer holds ",
              capacity);
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return ORCHARD_OK;
}

std::string token_text_or_empty(const orchard::Tokenizer& tokenizer, std::optional<int32_t> id) {
  return id ? tokenizer.token_text(*id) : std::string();
}

int32_t stop_code(orchard::StopReason reason) {
  switch (reason) {
    case orchard::StopReason::end_of_sequence:
    case orchard::StopReason::constraint_complete: return ORCHARD_STOP_END_OF_SEQUENCE;
    case orchard::StopReason::stop_string: return ORCHARD_STOP_STOP_STRING;
    case orchard::StopReason::max_tokens: return ORCHARD_STOP_MAX_TOKENS;
    case orchard::StopReason::context_full: return ORCHARD_STOP_CONTEXT_FULL;
    case orchard::StopReason::cancelled: return ORCHARD_STOP_CANCELLED;
    case orchard::StopReason::none: break;
  }
  return ORCHARD_STOP_NONE;
}

orchard::StreamOptions stream_options(const orchard_sampling_options& o) {
  require(std::isfinite(o.temperature), "options.temperature must be a finite number");
  require(o.top_p > 0.0f && o.top_p <= 1.0f, "options.top_p must be in (0, 1]");
  require(o.min_p >= 0.0f && o.min_p <= 1.0f, "options.min_p must be in [0, 1]");
  require(std::isfinite(o.repeat_penalty) && o.repeat_penalty > 0.0f, "options.repeat_penalty must be greater than 0");
  require(o.repeat_last_n >= 0, "options.repeat_last_n must be >= 0");
  require(std::isfinite(o.presence_penalty), "options.presence_penalty must be a finite number");
  require(std::isfinite(o.frequency_penalty), "options.frequency_penalty must be a finite number");
  require(o.stop != nullptr || o.n_stop == 0, "options.stop is NULL but options.n_stop is not 0");
  orchard::StreamOptions s;
  s.sampling.temperature = o.temperature;
  s.sampling.top_k = o.top_k;
  s.sampling.top_p = o.top_p;
  s.sampling.min_p = o.min_p;
  s.sampling.repeat_penalty = o.repeat_penalty;
  s.sampling.repeat_last_n = o.repeat_last_n;
  s.sampling.presence_penalty = o.presence_penalty;
  s.sampling.frequency_penalty = o.frequency_penalty;
  s.sampling.seed = o.seed;
  s.max_tokens = o.max_tokens < 0 ? -1 : o.max_tokens;
  for (size_t i = 0; i < o.n_stop; ++i) {
    const std::string what = str_cat("options.stop[", i, "]");
    if (o.stop[i] == nullptr) fail_with(ORCHARD_ERR_INVALID_ARGUMENT, what, " is NULL");
    const std::string_view text(o.stop[i]);
    if (text.empty()) fail_with(ORCHARD_ERR_INVALID_ARGUMENT, what, " is empty");
    check_utf8(text, what.c_str());
    s.stop.emplace_back(text);
  }
  return s;
}

}  // namespace

extern "C" {

const char* orchard_version(void) { return "0.1.0"; }

const char* orchard_last_error(void) { return last_error.c_str(); }

const char* orchard_status_name(int status) {
  switch (status) {
    case ORCHARD_OK: return "ORCHARD_OK";
    case ORCHARD_ERR_INVALID_ARGUMENT: return "ORCHARD_ERR_INVALID_ARGUMENT";
    case ORCHARD_ERR_NOT_FOUND: return "ORCHARD_ERR_NOT_FOUND";
    case ORCHARD_ERR_BAD_FILE: return "ORCHARD_ERR_BAD_FILE";
    case ORCHARD_ERR_OUT_OF_RANGE: return "ORCHARD_ERR_OUT_OF_RANGE";
    case ORCHARD_ERR_BUFFER_TOO_SMALL: return "ORCHARD_ERR_BUFFER_TOO_SMALL";
    case ORCHARD_ERR_NO_MEMORY: return "ORCHARD_ERR_NO_MEMORY";
    case ORCHARD_ERR_INTERNAL: return "ORCHARD_ERR_INTERNAL";
    default: return "ORCHARD_ERR_UNKNOWN";
  }
}

int orchard_model_options_init(orchard_model_options* options) {
  return guarded("orchard_model_options_init", [&] {
    require(options != nullptr, "options is NULL");
    *options = orchard_model_options{};
    options->struct_size = sizeof(orchard_model_options);
    options->kernels = "fast";
    options->kv_cache_type = "auto";
    return ORCHARD_OK;
  });
}

int orchard_sampling_options_init(orchard_sampling_options* options) {
  return guarded("orchard_sampling_options_init", [&] {
    require(options != nullptr, "options is NULL");
    const orchard::SamplingParams d;
    *options = orchard_sampling_options{};
    options->struct_size = sizeof(orchard_sampling_options);
    options->temperature = d.temperature;
    options->top_k = d.top_k;
    options->top_p = d.top_p;
    options->min_p = d.min_p;
    options->repeat_penalty = d.repeat_penalty;
    options->repeat_last_n = d.repeat_last_n;
    options->presence_penalty = d.presence_penalty;
    options->frequency_penalty = d.frequency_penalty;
    options->seed = d.seed;
    options->max_tokens = -1;
    return ORCHARD_OK;
  });
}

int orchard_model_load(const char* path, const char* tokenizer_path, const orchard_model_options* options,
                       orchard_model** out) {
  if (out) *out = nullptr;
  return guarded("orchard_model_load", [&] {
    require(out != nullptr, "out is NULL");
    require(path != nullptr, "path is NULL");
    require(*path != '\0', "path is empty");
    const orchard_model_options o = given_or_default(options, orchard_model_options_init);
    orchard::LoadOptions load;
    const std::string kernels = o.kernels ? o.kernels : "fast";
    if (kernels == "fast") load.kernels = orchard::KernelChoice::fast;
    else if (kernels == "reference") load.kernels = orchard::KernelChoice::reference;
    else fail_with(ORCHARD_ERR_INVALID_ARGUMENT, "options.kernels must be \"fast\" or \"reference\", got \"", kernels, "\"");
    load.memory_budget = o.memory_budget;
    const std::string kv = o.kv_cache_type ? o.kv_cache_type : "auto";
    orchard::KvCacheType kv_type;
    if (kv == "auto") kv_type = orchard::KvCacheType::automatic;
    else if (kv == "f32") kv_type = orchard::KvCacheType::f32;
    else if (kv == "f16") kv_type = orchard::KvCacheType::f16;
    else if (kv == "int8") kv_type = orchard::KvCacheType::int8;
    else fail_with(ORCHARD_ERR_INVALID_ARGUMENT, "options.kv_cache_type must be \"auto\", \"f32\", \"f16\" or \"int8\", got \"", kv, "\"");
    if (o.n_threads < 0) fail_with(ORCHARD_ERR_INVALID_ARGUMENT, "options.n_threads must be >= 0, got ", o.n_threads);
    if (o.n_ctx < 0) fail_with(ORCHARD_ERR_INVALID_ARGUMENT, "options.n_ctx must be >= 0 (0: the model's), got ", o.n_ctx);

    const std::string tokenizer_file = tokenizer_path ? tokenizer_path : "";
    if (!path_exists(path)) fail_with(ORCHARD_ERR_NOT_FOUND, path, ": no such file or folder");
    if (!tokenizer_file.empty() && !path_exists(tokenizer_file.c_str()))
      fail_with(ORCHARD_ERR_NOT_FOUND, tokenizer_file, ": no such file or folder (the tokenizer)");

    auto handle = std::make_unique<orchard_model>();
    try {
      handle->model = orchard::Model::load(path, load);
    } catch (const orchard::Error& e) {
      fail_with(ORCHARD_ERR_BAD_FILE, e.what());
    }
    const orchard::ModelConfig& config = handle->model->config();
    if (tokenizer_file.empty() && config.source_format == "llama2.c") {
      const std::string p(path);
      const size_t slash = p.find_last_of('/');
      const std::string beside = (slash == std::string::npos ? std::string(".") : p.substr(0, slash)) + "/tokenizer.bin";
      if (!path_exists(beside.c_str()))
        fail_with(ORCHARD_ERR_NOT_FOUND, path,
                  ": a llama2.c checkpoint carries no tokenizer and there is no tokenizer.bin beside it; pass "
                  "tokenizer_path (e.g. tok512.bin)");
    }
    try {
      handle->tokenizer = orchard::load_model_tokenizer(*handle->model, tokenizer_file);
    } catch (const orchard::Error& e) {
      fail_with(ORCHARD_ERR_BAD_FILE, e.what());
    }
    handle->engine_options.n_ctx = o.n_ctx;
    handle->engine_options.kernels = load.kernels;
    handle->engine_options.n_threads = o.n_threads;
    handle->engine_options.kv_cache = kv_type;
    const orchard::Tokenizer& tok = *handle->tokenizer;
    if (!tok.chat_template().empty()) {
      const std::vector<int32_t> eos = tok.eos_ids();
      try {
        handle->chat_template.emplace(tok.chat_template(), token_text_or_empty(tok, tok.bos_id()),
                                      token_text_or_empty(tok, eos.empty() ? std::nullopt : std::optional(eos.front())));
      } catch (const orchard::Error& e) {
        handle->chat_template_error = e.what();
      }
    }
    *out = handle.release();
    return ORCHARD_OK;
  });
}

void orchard_model_free(orchard_model* model) {
  if (!model || model->magic != kModelMagic) return;
  model->magic = 0;
  delete model;
}

int orchard_model_get_info(const orchard_model* model, orchard_model_info* info) {
  return guarded("orchard_model_get_info", [&] {
    const orchard_model& m = checked(model);
    require(info != nullptr, "info is NULL");
    check_struct_size(info, "info");
    const orchard::Tokenizer& tok = *m.tokenizer;
    const orchard::ModelConfig& config = m.model->config();
    const std::vector<int32_t> eos = tok.eos_ids();
    info->n_vocab = tok.vocab_size();
    info->n_ctx_train = config.context_length;
    info->n_params = m.model->parameter_count();
    info->bos_token = tok.bos_id().value_or(-1);
    info->eos_token = eos.empty() ? -1 : eos.front();
    info->add_bos = tok.adds_bos() && tok.bos_id() ? 1 : 0;
    info->has_chat_template = tok.chat_template().empty() ? 0 : 1;
    info->architecture = config.architecture.c_str();
    return ORCHARD_OK;
  });
}

int orchard_tokenize(const orchard_model* model, const char* text, size_t len, int add_bos, int32_t* tokens,
                     size_t capacity, size_t* n_tokens) {
  return guarded("orchard_tokenize", [&] {
    const orchard_model& m = checked(model);
    require(n_tokens != nullptr, "n_tokens is NULL");
    require(text != nullptr || len == 0, "text is NULL but len is not 0");
    require(tokens != nullptr || capacity == 0, "tokens is NULL but capacity is not 0");
    const std::string_view input = len ? std::string_view(text, len) : std::string_view();
    check_utf8(input, "text");
    const std::vector<int32_t> ids = m.tokenizer->encode(input, add_bos != 0);
    *n_tokens = ids.size();
    if (capacity < ids.size())
      fail_with(ORCHARD_ERR_BUFFER_TOO_SMALL, "the text has ", ids.size(), " tokens; the buffer holds ", capacity);
    if (!ids.empty()) std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
    return ORCHARD_OK;
  });
}

int orchard_detokenize(const orchard_model* model, const int32_t* tokens, size_t n_tokens, int skip_special,
                       char* text, size_t capacity, size_t* len) {
  return guarded("orchard_detokenize", [&] {
    const orchard_model& m = checked(model);
    require(len != nullptr, "len is NULL");
    require(tokens != nullptr || n_tokens == 0, "tokens is NULL but n_tokens is not 0");
    const int64_t vocab = m.tokenizer->vocab_size();
    for (size_t i = 0; i < n_tokens; ++i)
      if (tokens[i] < 0 || tokens[i] >= vocab)
        fail_with(ORCHARD_ERR_OUT_OF_RANGE, "token id ", tokens[i], " (at index ", i,
                  ") is outside the vocabulary (0 to ", vocab - 1, ")");
    const std::string decoded =
        m.tokenizer->decode(std::span<const int32_t>(tokens, n_tokens), skip_special != 0);
    return put_text(decoded, text, capacity, len);
  });
}

int orchard_apply_chat_template(const orchard_model* model, const char* messages_json, const char* tools_json,
                                int add_generation_prompt, char* text, size_t capacity, size_t* len) {
  return guarded("orchard_apply_chat_template", [&] {
    const orchard_model& m = checked(model);
    require(messages_json != nullptr, "messages_json is NULL");
    require(len != nullptr, "len is NULL");
    if (!m.chat_template) {
      if (!m.chat_template_error.empty())
        fail_with(ORCHARD_ERR_BAD_FILE, "the model's chat template does not parse: ", m.chat_template_error);
      fail_with(ORCHARD_ERR_NOT_FOUND, m.model->path(), ": the model has no chat template");
    }
    check_utf8(messages_json, "messages_json");
    if (tools_json) check_utf8(tools_json, "tools_json");
    // Template errors (bad JSON, raise_exception on messages it does not accept) are
    // orchard::Error: the caller's input, ORCHARD_ERR_INVALID_ARGUMENT by `guarded`.
    const std::string rendered =
        m.chat_template->render_chat(messages_json, tools_json ? tools_json : "", add_generation_prompt != 0);
    return put_text(rendered, text, capacity, len);
  });
}

int orchard_session_create(const orchard_model* model, orchard_session** out) {
  if (out) *out = nullptr;
  return guarded("orchard_session_create", [&] {
    const orchard_model& m = checked(model);
    require(out != nullptr, "out is NULL");
    auto handle = std::make_unique<orchard_session>();
    // An engine that cannot be made (a context too large for memory, ...) is the options' fault.
    handle->session = std::make_unique<orchard::Session>(m.model, m.tokenizer, m.engine_options);
    *out = handle.release();
    return ORCHARD_OK;
  });
}

void orchard_session_free(orchard_session* session) {
  if (!session || session->magic != kSessionMagic) return;
  session->magic = 0;
  delete session;
}

int orchard_session_reset(orchard_session* session) {
  return guarded("orchard_session_reset", [&] {
    orchard_session& s = checked(session);
    std::lock_guard<std::mutex> lock(s.generating);
    s.session->reset();
    return ORCHARD_OK;
  });
}

int orchard_session_cancel(orchard_session* session) {
  return guarded("orchard_session_cancel", [&] {
    orchard_session& s = checked(session);
    s.cancel = true;
    return ORCHARD_OK;
  });
}

int orchard_session_generate(orchard_session* session, const int32_t* prompt, size_t n_prompt,
                             const orchard_sampling_options* options, orchard_token_callback callback,
                             void* user_data, orchard_generate_result* result) {
  return guarded("orchard_session_generate", [&] {
    orchard_session& s = checked(session);
    require(prompt != nullptr || n_prompt == 0, "prompt is NULL but n_prompt is not 0");
    require(n_prompt > 0, "the prompt has no tokens");
    if (result) check_struct_size(result, "result");
    const orchard_sampling_options o = given_or_default(options, orchard_sampling_options_init);
    orchard::GenerationJob job;
    job.options = stream_options(o);
    orchard::Engine& engine = s.session->engine();
    const int64_t vocab = engine.model().config().n_vocab;
    for (size_t i = 0; i < n_prompt; ++i)
      if (prompt[i] < 0 || prompt[i] >= vocab)
        fail_with(ORCHARD_ERR_OUT_OF_RANGE, "prompt token id ", prompt[i], " (at index ", i,
                  ") is outside the model's vocabulary (0 to ", vocab - 1, ")");
    try {
      engine.check_prompt_fits(static_cast<int64_t>(n_prompt));
    } catch (const orchard::Error& e) {
      fail_with(ORCHARD_ERR_OUT_OF_RANGE, e.what());
    }
    job.prompt.assign(prompt, prompt + n_prompt);

    std::lock_guard<std::mutex> lock(s.generating);
    s.cancel = false;
    bool stopped_by_callback = false;
    std::string callback_error;
    job.on_step = [&](const orchard::TokenStep& step) {
      if (s.cancel.load()) return false;
      const bool generated = step.token >= 0 && step.stop != orchard::StopReason::end_of_sequence;
      if (!callback || (!generated && step.text.empty())) return true;
      int stop = 0;
      try {
        stop = callback(step.text.c_str(), step.text.size(), generated ? step.token : -1, user_data);
      } catch (const std::exception& e) {
        callback_error = str_cat("the token callback threw: ", e.what());
        return false;
      } catch (...) {
        callback_error = "the token callback threw an exception";
        return false;
      }
      // A stop asked on the step that ends generation anyway changes nothing.
      if (stop != 0 && step.stop == orchard::StopReason::none) {
        stopped_by_callback = true;
        return false;
      }
      return true;
    };
    const orchard::JobSummary summary = engine.run(std::move(job));
    if (!callback_error.empty()) fail_with(ORCHARD_ERR_INTERNAL, callback_error);
    if (!summary.error.empty()) fail_with(ORCHARD_ERR_INTERNAL, summary.error);
    if (result) {
      result->stop_reason = stopped_by_callback ? ORCHARD_STOP_CALLBACK : stop_code(summary.stop);
      result->prompt_tokens = summary.prompt_tokens;
      result->reused_tokens = summary.cached_prompt_tokens;
      result->completion_tokens = summary.completion_tokens;
    }
    return ORCHARD_OK;
  });
}

}  // extern "C"
