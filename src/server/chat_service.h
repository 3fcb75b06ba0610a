// The model behind the OpenAI API: turns validated requests into generation jobs (chat
// template, tools, constrained output) and finished generations into response JSON.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "orchard/model.h"
#include "orchard/tokenizer.h"
#include "runtime/constraint/json_schema_constraint.h"
#include "runtime/token_stream.h"
#include "runtime/tool_calls.h"
#include "server/openai_protocol.h"
#include "template/chat_template.h"

namespace orchard::server {

enum class FinishReason { stop, length, tool_calls };
std::string finish_reason_name(FinishReason reason);
FinishReason finish_reason_of(StopReason stop);

struct PreparedJob {
  std::vector<int32_t> prompt;
  StreamOptions options;
  bool tools_enabled = false;  // the reply may hold tool calls to parse
  std::string prompt_text;     // a completion's prompt as text (what `echo` repeats)
};

// A reply of a request with tools: the text outside tool-call blocks and the calls. When the
// generation was `cut` (it stopped for length), a tool call left open (a `<tool_call>` without
// its `</tool_call>`) is incomplete: it is dropped, with its markup (`dropped`), and the content
// is the text before it, trimmed.
struct ToolReply {
  std::string content;
  std::vector<ToolCall> calls;
  bool dropped = false;
};
ToolReply parse_tool_reply(std::string_view text, bool cut);

class ChatService {
 public:
  // `n_ctx`: the context of each of the engine's slots (Engine::n_ctx). `chat_template`: Jinja
  // that replaces the model's own template (--chat-template, --chat-template-file), or gives one
  // to a model without; empty: the model's. A given template that does not parse throws
  // orchard::Error (the model's own is reported per request instead, as before).
  ChatService(std::shared_ptr<const Tokenizer> tokenizer, std::string model_name, int64_t n_ctx,
              std::string chat_template = "");

  // Throw RequestError for requests the model cannot serve (prompt beyond the context, a
  // schema Orchard cannot compile, ...). `cancelled` (may be empty) is asked while a schema
  // compiles: a client that left stops its compilation.
  PreparedJob prepare(const ChatRequest& request, const std::function<bool()>& cancelled = {});
  // A completion's job: its first prompt's (every prompt checked), as prepare_all's first.
  PreparedJob prepare(const CompletionRequest& request);
  // One job per prompt of a completion request (`prompts`, else `prompt`), in order, each
  // checked before any is submitted: a token id outside the vocabulary is a 400 naming its prompt.
  std::vector<PreparedJob> prepare_all(const CompletionRequest& request);

  const std::string& model_name() const { return model_name_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

  // Logprobs of one token in the chat API's shape.
  json token_logprob_json(const TokenStep& step) const;
  // Where a completion's logprobs stand, from one stream chunk to the next.
  struct LogprobCursor {
    int64_t offset = 0;            // in the choice's text, in bytes, of the next token
    int64_t generated_offset = 0;  // where the generated tokens start (after an echoed prompt)
    bool generating = false;
    int32_t first_prompt_token = -1;  // >= 0: still to open the lists, logprob null (echo)
    std::shared_ptr<StreamingDecoder> prompt_text;  // the echoed prompt decoded so far (made at first use)
  };
  // The legacy completions API's logprobs of `steps` (those with a token, the prompt's first when
  // they were asked for): {tokens, token_logprobs, top_logprobs, text_offset}. Offsets index the
  // choice's text, as OpenAI's: a prompt token's is where its text starts in the echoed prompt (the
  // prompt's tokens decoded in order: a BOS adds nothing, nor the space a SentencePiece tokenizer
  // puts before the first word; capped at the prompt's length), so that the tokens at or after
  // `generated_offset` are exactly the continuation's (scoring a text, issue 18); the generated ones
  // start at `generated_offset` and advance by each token's bytes.
  json completion_logprobs_json(const std::vector<TokenStep>& steps, LogprobCursor& cursor) const;

 private:
  // The schema compiled with the wrapper, from the cache when a request used it before. `param`
  // names the request field a schema came from, for the error when it cannot be compiled.
  std::shared_ptr<const CompiledSchema> compile_schema(const json& schema, const std::string& prefix, const std::string& suffix,
                                                       const char* param, const std::function<bool()>& cancelled);
  // Refuses a prompt that is empty or leaves no room in the context, and caps max_tokens to the
  // room left. `param` names the request field that holds the prompt, for its errors.
  void fit_to_context(PreparedJob& job, std::optional<int64_t> max_tokens, const char* param);

  std::shared_ptr<const Tokenizer> tokenizer_;
  std::string model_name_;
  int64_t n_ctx_;
  std::string bos_text_, eos_text_;
  std::string template_source_;  // the override, else the model's; empty: none
  // The chat template parsed once (null when there is none or it does not parse; rendering
  // then reports the error per request).
  std::shared_ptr<const JinjaTemplate> chat_template_;
  std::shared_ptr<const TokenVocabulary> vocabulary_;
  // Compiles outside its lock: a schema that takes long delays no request that does not use it.
  SchemaCache schema_cache_;
};

}  // namespace orchard::server
