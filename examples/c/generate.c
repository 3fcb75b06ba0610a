/* Greedy generation through Orchard's C API (include/orchard/orchard_c.h).
 *
 *   orchard_c_example MODEL PROMPT [MAX_TOKENS [TOKENIZER]]
 *
 * Loads MODEL (a .gguf, a Hugging Face folder, or a llama2.c checkpoint with TOKENIZER), encodes
 * PROMPT with BOS, generates up to MAX_TOKENS (default 64) greedily and prints the generated text
 * (not the prompt) to stdout as it comes, then one newline. Errors go to stderr, exit code 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchard/orchard_c.h"

static int fail(const char* what, int status) {
  fprintf(stderr, "orchard_c_example: %s failed (%s): %s\n", what, orchard_status_name(status), orchard_last_error());
  return 1;
}

/* Called on an engine thread with each piece of text; returning nonzero would stop. */
static int print_piece(const char* text, size_t len, int32_t token, void* user_data) {
  (void)token;
  (void)user_data;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 5) {
    fprintf(stderr, "usage: %s MODEL PROMPT [MAX_TOKENS [TOKENIZER]]\n", argv[0]);
    return 2;
  }
  const char* model_path = argv[1];
  const char* prompt = argv[2];
  const long max_tokens = argc > 3 ? strtol(argv[3], NULL, 10) : 64;
  const char* tokenizer_path = argc > 4 ? argv[4] : NULL;

  orchard_model_options model_options;
  orchard_model_options_init(&model_options);
  orchard_model* model = NULL;
  int status = orchard_model_load(model_path, tokenizer_path, &model_options, &model);
  if (status != ORCHARD_OK) return fail("orchard_model_load", status);

  /* Ask for the size, then encode. */
  size_t n_tokens = 0;
  status = orchard_tokenize(model, prompt, strlen(prompt), 1, NULL, 0, &n_tokens);
  if (status != ORCHARD_OK && status != ORCHARD_ERR_BUFFER_TOO_SMALL) {
    orchard_model_free(model);
    return fail("orchard_tokenize", status);
  }
  int32_t* tokens = malloc((n_tokens ? n_tokens : 1) * sizeof(int32_t));
  if (!tokens) {
    orchard_model_free(model);
    fprintf(stderr, "orchard_c_example: out of memory\n");
    return 1;
  }
  status = orchard_tokenize(model, prompt, strlen(prompt), 1, tokens, n_tokens, &n_tokens);
  if (status != ORCHARD_OK) {
    free(tokens);
    orchard_model_free(model);
    return fail("orchard_tokenize", status);
  }

  orchard_session* session = NULL;
  status = orchard_session_create(model, &session);
  if (status != ORCHARD_OK) {
    free(tokens);
    orchard_model_free(model);
    return fail("orchard_session_create", status);
  }

  orchard_sampling_options sampling;
  orchard_sampling_options_init(&sampling);
  sampling.temperature = 0.0f; /* greedy */
  sampling.max_tokens = max_tokens;
  orchard_generate_result result = {.struct_size = sizeof result};
  status = orchard_session_generate(session, tokens, n_tokens, &sampling, print_piece, NULL, &result);
  fputc('\n', stdout);
  if (status == ORCHARD_OK)
    fprintf(stderr, "%lld prompt tokens, %lld generated, stop reason %d\n", (long long)result.prompt_tokens,
            (long long)result.completion_tokens, (int)result.stop_reason);

  const int exit_code = status == ORCHARD_OK ? 0 : fail("orchard_session_generate", status);
  orchard_session_free(session);
  free(tokens);
  orchard_model_free(model);
  return exit_code;
}
