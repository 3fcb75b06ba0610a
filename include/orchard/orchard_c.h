/* Orchard's C API: a small, stable interface for programs in C and for other languages' foreign
 * function interfaces (the Python binding in bindings/python/ uses it through ctypes).
 *
 * Conventions
 * - C99. Opaque handles (orchard_model, orchard_session); no C++ type or exception crosses it.
 * - Every function that can fail returns an int status: ORCHARD_OK (0) or a negative
 *   ORCHARD_ERR_* code. Only the functions that cannot fail return something else: the free
 *   functions (void; NULL is accepted and ignored, as free() does), orchard_version,
 *   orchard_status_name and orchard_last_error.
 * - Error text is per thread: orchard_last_error() describes the most recent orchard_* call made
 *   on the calling thread (empty after a call that succeeded). Read it on the thread that made the
 *   failing call, before that thread calls orchard_* again.
 * - Nothing aborts on bad input: null handles and pointers, wrong struct sizes, text that is not
 *   valid UTF-8, token ids outside the vocabulary, paths that do not exist, buffers too small and
 *   option values out of range each return an error code and text.
 * - Structs passed in or out start with `struct_size`, which must be sizeof the struct of this
 *   header (the *_init functions set it; in output structs the caller sets it, e.g.
 *   `orchard_generate_result r = {.struct_size = sizeof r};`). A later version that adds fields
 *   at the end will keep accepting this version's size.
 * - Text in and out is UTF-8. Output text is written to a caller buffer with snprintf's rule:
 *   *len receives the text's length without the terminating NUL, and the buffer needs len + 1
 *   bytes; when it is smaller the call returns ORCHARD_ERR_BUFFER_TOO_SMALL, still sets *len,
 *   and writes nothing (pass NULL and 0 to ask for the size).
 *
 * Threads
 * - A model is immutable once loaded: orchard_model_get_info, orchard_tokenize,
 *   orchard_detokenize, orchard_apply_chat_template and orchard_session_create may be called on
 *   one model from any number of threads at once.
 * - A session is one conversation: calls on one session are serialized (a second
 *   orchard_session_generate waits for the first). orchard_session_cancel is the exception: it
 *   may be called from any thread while a generation runs. Different sessions of one model
 *   generate in parallel.
 * - The token callback runs on one of the engine's threads, not on the caller's.
 * - Freeing a handle while another thread uses it is undefined. A session keeps what it needs of
 *   its model: the model handle may be freed before its sessions.
 */
#ifndef ORCHARD_ORCHARD_C_H
#define ORCHARD_ORCHARD_C_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define ORCHARD_API __attribute__((visibility("default")))
#else
#define ORCHARD_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* This header's version. orchard_version() gives the library's, which may be newer. */
#define ORCHARD_C_API_VERSION 1

/* Status codes. */
enum {
  ORCHARD_OK = 0,
  ORCHARD_ERR_INVALID_ARGUMENT = -1, /* a null pointer or handle, a bad option, text that is not UTF-8, bad JSON */
  ORCHARD_ERR_NOT_FOUND = -2,        /* a file or folder that does not exist; a model without a chat template or tokenizer */
  ORCHARD_ERR_BAD_FILE = -3,         /* a file that exists but cannot be used (corrupt, unsupported, wrong tokenizer) */
  ORCHARD_ERR_OUT_OF_RANGE = -4,     /* a token id outside the vocabulary; a prompt that does not fit the context */
  ORCHARD_ERR_BUFFER_TOO_SMALL = -5, /* the caller's buffer is too small: the required size is reported */
  ORCHARD_ERR_NO_MEMORY = -6,        /* an allocation failed */
  ORCHARD_ERR_INTERNAL = -7          /* anything else (a bug: please report it with the error text) */
};

/* Why a generation ended. A generation stopped by the callback or by orchard_session_cancel is
 * not an error: the call returns ORCHARD_OK and the tokens generated so far count. */
enum {
  ORCHARD_STOP_NONE = 0,
  ORCHARD_STOP_END_OF_SEQUENCE = 1, /* the model produced an end-of-sequence token */
  ORCHARD_STOP_STOP_STRING = 2,     /* one of the stop strings appeared (its text is not delivered) */
  ORCHARD_STOP_MAX_TOKENS = 3,      /* max_tokens were generated */
  ORCHARD_STOP_CONTEXT_FULL = 4,    /* the session's context is full */
  ORCHARD_STOP_CALLBACK = 5,        /* the token callback returned nonzero */
  ORCHARD_STOP_CANCELLED = 6        /* orchard_session_cancel was called */
};

typedef struct orchard_model orchard_model;
typedef struct orchard_session orchard_session;

typedef struct orchard_model_options {
  uint32_t struct_size;      /* sizeof(orchard_model_options) */
  const char* kernels;       /* "fast" (NULL means fast) or "reference" (the scalar definition) */
  uint64_t memory_budget;    /* bytes; weights larger than this stream from storage (docs/flash.md). 0: off */
  int32_t n_threads;         /* forward-pass threads per session; 0: chosen from the model's size */
  int64_t n_ctx;             /* context of each session in tokens; 0: the model's trained length, capped at 4096 */
  const char* kv_cache_type; /* NULL or "auto" (f16 with the fast kernels, f32 with reference), "f32", "f16", "int8" */
} orchard_model_options;

typedef struct orchard_model_info {
  uint32_t struct_size;      /* sizeof(orchard_model_info), set by the caller */
  int64_t n_vocab;           /* the tokenizer's vocabulary: valid ids are 0 .. n_vocab - 1 */
  int64_t n_ctx_train;       /* the context length the model was trained with */
  int64_t n_params;
  int32_t bos_token;         /* -1: none */
  int32_t eos_token;         /* the first end-of-sequence token; -1: none */
  int32_t add_bos;           /* 1 when the model expects BOS at the start of a prompt */
  int32_t has_chat_template; /* 1 when orchard_apply_chat_template can work */
  const char* architecture;  /* "llama", "qwen2", "qwen3"; valid while the model handle lives */
} orchard_model_info;

/* Sampling: penalties, then top-k, top-p and min-p, then temperature, then a seeded draw. */
typedef struct orchard_sampling_options {
  uint32_t struct_size;    /* sizeof(orchard_sampling_options) */
  float temperature;       /* <= 0: greedy (argmax, lowest id on ties). Default 0.8 */
  int32_t top_k;           /* <= 0: off. Default 40 */
  float top_p;             /* in (0, 1]; 1: off. Default 0.95 */
  float min_p;             /* in [0, 1]; 0: off. Default 0.05 */
  float repeat_penalty;    /* > 0; 1: off (llama.cpp's definition). Default 1 */
  int32_t repeat_last_n;   /* >= 0: recent tokens (prompt included) the repeat penalty looks at. Default 64 */
  float presence_penalty;  /* OpenAI's definition; 0: off */
  float frequency_penalty; /* OpenAI's definition; 0: off */
  uint64_t seed;           /* the same seed gives the same text. Default 0 */
  int64_t max_tokens;      /* < 0: until the context is full. Default -1 */
  const char* const* stop; /* n_stop non-empty UTF-8 strings; generation ends before the first one */
  size_t n_stop;
} orchard_sampling_options;

typedef struct orchard_generate_result {
  uint32_t struct_size;      /* sizeof(orchard_generate_result), set by the caller */
  int32_t stop_reason;       /* ORCHARD_STOP_* */
  int64_t prompt_tokens;     /* tokens of the prompt */
  int64_t reused_tokens;     /* prompt tokens taken from the session's cache instead of computed */
  int64_t completion_tokens; /* tokens generated (an end-of-sequence token does not count) */
} orchard_generate_result;

/* Called for each generated token with its text: whole UTF-8 characters, possibly empty (a
 * character split over tokens arrives with its last token). `text` is NUL-terminated as well,
 * and valid only during the call. `token` is -1 for a last piece of text that comes with no new
 * token (the end of a character or of held-back stop-string text). Return 0 to go on, nonzero to
 * stop (ORCHARD_STOP_CALLBACK). Runs on an engine thread; must not unwind (no longjmp, no C++
 * exception: one is caught, ends the generation and is reported as ORCHARD_ERR_INTERNAL). */
typedef int (*orchard_token_callback)(const char* text, size_t len, int32_t token, void* user_data);

/* The library's version, "MAJOR.MINOR.PATCH". */
ORCHARD_API const char* orchard_version(void);
/* The text of the last orchard_* call on this thread: "" when it succeeded. Never NULL. */
ORCHARD_API const char* orchard_last_error(void);
/* "ORCHARD_OK", "ORCHARD_ERR_NOT_FOUND", ...; "ORCHARD_ERR_UNKNOWN" for other values. */
ORCHARD_API const char* orchard_status_name(int status);

/* Fill with the defaults (and struct_size). */
ORCHARD_API int orchard_model_options_init(orchard_model_options* options);
ORCHARD_API int orchard_sampling_options_init(orchard_sampling_options* options);

/* Loads a model: a .gguf file, a Hugging Face folder (config.json + safetensors) or a llama2.c
 * checkpoint. `tokenizer_path` may be NULL or "": the model's own (GGUF files carry one; a HF
 * folder's tokenizer.json; tokenizer.bin beside a llama2.c checkpoint). A llama2.c checkpoint
 * without one needs it, e.g. tok512.bin. `options` may be NULL for the defaults. On success *out
 * is a new handle for orchard_model_free; on failure *out is NULL. */
ORCHARD_API int orchard_model_load(const char* path, const char* tokenizer_path, const orchard_model_options* options,
                                   orchard_model** out);
ORCHARD_API void orchard_model_free(orchard_model* model);
ORCHARD_API int orchard_model_get_info(const orchard_model* model, orchard_model_info* info);

/* Token ids of `text` (`len` bytes; NULL with 0 is the empty text). `add_bos` nonzero prepends
 * BOS when the vocabulary has one. Special tokens written in the text become those tokens.
 * Text that is not valid UTF-8 is refused (ORCHARD_ERR_INVALID_ARGUMENT, naming the byte offset),
 * although the C++ Tokenizer::encode would encode it byte by byte: the C API takes text, and a
 * string that is not UTF-8 is more often a caller's encoding mistake than intended bytes.
 * On success *n_tokens is the count. When `capacity` is smaller: ORCHARD_ERR_BUFFER_TOO_SMALL,
 * *n_tokens the count needed, nothing written (`tokens` may be NULL with capacity 0). */
ORCHARD_API int orchard_tokenize(const orchard_model* model, const char* text, size_t len, int add_bos,
                                 int32_t* tokens, size_t capacity, size_t* n_tokens);

/* The text of `tokens` (always valid UTF-8; bytes that form no character become U+FFFD).
 * `skip_special` nonzero leaves out special tokens' text. An id outside 0 .. n_vocab - 1 is
 * ORCHARD_ERR_OUT_OF_RANGE. Output as described above (buffer of *len + 1 bytes). */
ORCHARD_API int orchard_detokenize(const orchard_model* model, const int32_t* tokens, size_t n_tokens,
                                   int skip_special, char* text, size_t capacity, size_t* len);

/* Renders the model's chat template as transformers' apply_chat_template does, for
 * `messages_json`, a JSON array of messages ({"role": ..., "content": ...}), and `tools_json`, a
 * JSON array of tools or NULL. No BOS is added beyond what the template writes: tokenize the
 * result with add_bos 0. ORCHARD_ERR_NOT_FOUND when the model has no template;
 * ORCHARD_ERR_BAD_FILE when its template does not parse; ORCHARD_ERR_INVALID_ARGUMENT for bad
 * JSON or messages the template refuses. Output as described above. */
ORCHARD_API int orchard_apply_chat_template(const orchard_model* model, const char* messages_json,
                                            const char* tools_json, int add_generation_prompt, char* text,
                                            size_t capacity, size_t* len);

/* A conversation: its own KV cache (the model options' n_ctx, kv_cache_type, n_threads), which
 * keeps the last generation's tokens, so that a prompt extending it (the next turn of the same
 * conversation) computes only its new tokens. */
ORCHARD_API int orchard_session_create(const orchard_model* model, orchard_session** out);
ORCHARD_API void orchard_session_free(orchard_session* session);
/* Forgets what the cache holds. */
ORCHARD_API int orchard_session_reset(orchard_session* session);
/* Stops the generation running on this session, if any, before its next token
 * (ORCHARD_STOP_CANCELLED). Thread-safe. A cancel that comes before a generation starts is
 * forgotten when it starts. */
ORCHARD_API int orchard_session_cancel(orchard_session* session);

/* Generates after `prompt` (the whole conversation's tokens, n_prompt >= 1, BOS included when
 * wanted), calling `callback` (may be NULL) for each token. `options` may be NULL for the
 * defaults; `result` may be NULL. Prompt ids outside the model's vocabulary and prompts that leave
 * no room in the context are ORCHARD_ERR_OUT_OF_RANGE. */
ORCHARD_API int orchard_session_generate(orchard_session* session, const int32_t* prompt, size_t n_prompt,
                                         const orchard_sampling_options* options, orchard_token_callback callback,
                                         void* user_data, orchard_generate_result* result);

#ifdef __cplusplus
}
#endif

#endif /* ORCHARD_ORCHARD_C_H */
