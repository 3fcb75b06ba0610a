#include "server/chat_service.h"

#include "base/error.h"
#include "orchard/error.h"
#include "runtime/prompt_limits.h"
#include "template/chat_template.h"
#include "tokenizer/api_token_text.h"

namespace orchard::server {

std::string finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::tool_calls: return "tool_calls";
  }
  return "stop";
}

FinishReason finish_reason_of(StopReason stop) {
  return stop == StopReason::max_tokens || stop == StopReason::context_full ? FinishReason::length : FinishReason::stop;
}

ChatService::ChatService(std::shared_ptr<const Tokenizer> tokenizer, std::string model_name, int64_t n_ctx,
                         std::string chat_template)
    : tokenizer_(std::move(tokenizer)),
      model_name_(std::move(model_name)),
      n_ctx_(n_ctx),
      template_source_(chat_template.empty() ? tokenizer_->chat_template() : std::move(chat_template)),
      vocabulary_(TokenVocabulary::build(*tokenizer_)),
      schema_cache_(vocabulary_) {
  if (auto bos = tokenizer_->bos_id()) bos_text_ = tokenizer_->token_text(*bos);
  if (!tokenizer_->eos_ids().empty()) eos_text_ = tokenizer_->token_text(tokenizer_->eos_ids().front());
  if (template_source_ != tokenizer_->chat_template()) {
    chat_template_ = std::make_shared<const JinjaTemplate>(template_source_);  // given: must parse
  } else if (!template_source_.empty()) {
    try {
      chat_template_ = std::make_shared<const JinjaTemplate>(template_source_);
    } catch (const Error&) {
    }
  }
}

std::shared_ptr<const CompiledSchema> ChatService::compile_schema(const json& schema, const std::string& prefix,
                                                                  const std::string& suffix, const char* param,
                                                                  const std::function<bool()>& cancelled) {
  SchemaOptions options;
  options.prefix = prefix;
  options.suffix = suffix;
  options.cancelled = cancelled;
  try {
    return schema_cache_.get(schema.dump(), options);
  } catch (const Error& e) {
    throw RequestError(400, std::string("unsupported JSON schema: ") + e.what(), param, "invalid_schema");
  }
}

void ChatService::fit_to_context(PreparedJob& job, std::optional<int64_t> max_tokens, const char* param) {
  const int64_t prompt = static_cast<int64_t>(job.prompt.size());
  if (prompt == 0) throw RequestError(400, "the prompt is empty", param);
  // The engine refuses such a prompt with the same check; asking it here makes it a client
  // error (400, OpenAI's code) before the request is queued.
  try {
    check_prompt_fits(prompt, n_ctx_);
  } catch (const Error& e) {
    throw RequestError(400, e.what(), param, "context_length_exceeded");
  }
  const int64_t room = n_ctx_ - prompt;
  job.options.max_tokens = max_tokens ? std::min(*max_tokens, room) : room;
}

PreparedJob ChatService::prepare(const ChatRequest& r, const std::function<bool()>& cancelled) {
  PreparedJob job;
  const bool tools = !r.tools.is_null() && r.tool_choice != ToolChoiceMode::none;
  json extra = r.template_kwargs.is_null() ? json::object() : r.template_kwargs;
  if (template_source_.empty())
    throw RequestError(400, "this model has no chat template; use /v1/completions (or start the server with --chat-template)",
                       "messages", "no_chat_template");
  std::string text;
  try {
    const json tools_value = tools ? r.tools : json(nullptr);
    text = chat_template_ ? chat_template_->render(chat_template_context(r.messages, tools_value, true, bos_text_, eos_text_, extra))
                          : render_chat(template_source_, r.messages, tools_value, true, bos_text_, eos_text_, extra);
  } catch (const Error& e) {
    throw RequestError(400, std::string("the chat template could not render these messages: ") + e.what(), "messages");
  }
  job.prompt = tokenizer_->encode(text, false);
  job.options.sampling = r.sampling;
  job.options.stop = r.stop;
  job.options.top_logprobs = r.logprobs ? r.top_logprobs : -1;
  job.tools_enabled = tools;

  if (tools && (r.tool_choice == ToolChoiceMode::required || r.tool_choice == ToolChoiceMode::function)) {
    // A call to one of the allowed functions, with arguments that match its parameters.
    std::vector<std::pair<std::string, json>> allowed;
    for (const json& t : r.tools) {
      const json& function = t["function"];
      const std::string name = function["name"];
      if (r.tool_choice == ToolChoiceMode::function && name != r.forced_function) continue;
      allowed.emplace_back(name, function.contains("parameters") ? function["parameters"] : json());
    }
    // parse_chat_request guarantees a match (the forced function is among the tools); kept as a
    // client error rather than tool_call_schema's orchard::Error should that ever change.
    if (allowed.empty()) throw RequestError(400, "'tool_choice' allows none of the 'tools'", "tool_choice");
    const json call = tool_call_schema(allowed);
    const SchemaOptions wrapper = qwen_tool_call_options();
    job.options.constraint =
        std::make_shared<JsonSchemaConstraint>(compile_schema(call, wrapper.prefix, wrapper.suffix, "tools", cancelled));
  } else if (r.response_format == "json_object") {
    job.options.constraint = std::make_shared<JsonSchemaConstraint>(compile_schema(json{{"type", "object"}}, "", "", "response_format", cancelled));
  } else if (r.response_format == "json_schema") {
    job.options.constraint = std::make_shared<JsonSchemaConstraint>(compile_schema(r.response_schema, "", "", "response_format", cancelled));
  }
  fit_to_context(job, r.max_tokens, "messages");
  return job;
}

PreparedJob ChatService::prepare(const CompletionRequest& r) { return prepare_all(r).front(); }

std::vector<PreparedJob> ChatService::prepare_all(const CompletionRequest& r) {
  const std::vector<CompletionPrompt> given = r.prompts.empty() ? std::vector<CompletionPrompt>{{.text = r.prompt}} : r.prompts;
  std::vector<PreparedJob> jobs;
  const int64_t vocabulary = tokenizer_->vocab_size();
  for (size_t i = 0; i < given.size(); ++i) {
    const CompletionPrompt& p = given[i];
    PreparedJob job;
    const std::string where = given.size() > 1 ? str_cat("prompt[", i, "]") : std::string("the prompt");
    if (p.is_tokens) {
      for (const int32_t id : p.tokens)
        if (id < 0 || id >= vocabulary)
          throw RequestError(400, str_cat(where, " holds token id ", id, ", outside the vocabulary (0 to ", vocabulary - 1, ")"),
                             "prompt", "invalid_value");
      job.prompt = p.tokens;
      job.prompt_text = tokenizer_->decode(p.tokens);
    } else {
      job.prompt = tokenizer_->encode(p.text, tokenizer_->adds_bos());
      job.prompt_text = p.text;
    }
    job.options.sampling = r.sampling;
    // The same seed for every prompt: a choice is what its prompt alone would get.
    job.options.stop = r.stop;
    job.options.top_logprobs = r.logprobs;
    // The echoed prompt comes with its own tokens' logprobs (the score of a given text).
    if (r.echo && r.logprobs >= 0) job.options.prompt_logprobs = r.logprobs;
    if (given.size() > 1 && job.prompt.empty()) throw RequestError(400, where + " is empty", "prompt");
    fit_to_context(job, r.max_tokens, "prompt");
    jobs.push_back(std::move(job));
  }
  return jobs;
}

ToolReply parse_tool_reply(std::string_view text, bool cut) {
  ToolReply out;
  if (cut) {
    const size_t open = text.rfind(kToolCallOpen);
    if (open != std::string_view::npos && text.find(kToolCallClose, open) == std::string_view::npos) {
      text = text.substr(0, open);
      out.dropped = true;
    }
  }
  ParsedReply parsed = parse_tool_calls(text);
  out.content = std::move(parsed.content);
  out.calls = std::move(parsed.tool_calls);
  if (out.dropped) {
    const size_t end = out.content.find_last_not_of(" \t\r\n");
    out.content.erase(end == std::string::npos ? 0 : end + 1);
    const size_t begin = out.content.find_first_not_of(" \t\r\n");
    out.content.erase(0, begin == std::string::npos ? out.content.size() : begin);
  }
  return out;
}

json ChatService::token_logprob_json(const TokenStep& step) const {
  auto entry = [&](const TokenLogprob& t) {
    const std::string bytes = tokenizer_->token_bytes(t.token);
    json b = json::array();
    for (unsigned char c : bytes) b.push_back(static_cast<int>(c));
    return json{{"token", bytes}, {"logprob", t.logprob}, {"bytes", b}};
  };
  json out = entry(step.chosen);
  out["top_logprobs"] = json::array();
  for (const TokenLogprob& t : step.top) out["top_logprobs"].push_back(entry(t));
  return out;
}


json ChatService::completion_logprobs_json(const std::vector<TokenStep>& steps, LogprobCursor& cursor) const {
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), text_offset = json::array();
  auto add = [&](int32_t token, json logprob, json top, bool prompt) {
    const std::string bytes = tokenizer_->token_bytes(token);
    tokens.push_back(api_token_text(bytes));
    token_logprobs.push_back(std::move(logprob));
    top_logprobs.push_back(std::move(top));
    if (prompt) {
      if (!cursor.prompt_text) cursor.prompt_text = std::make_shared<StreamingDecoder>(*tokenizer_, true);
      text_offset.push_back(std::min(cursor.offset, cursor.generated_offset));
      cursor.offset += static_cast<int64_t>(cursor.prompt_text->push(token).size());
    } else {
      text_offset.push_back(cursor.offset);
      cursor.offset += static_cast<int64_t>(bytes.size());
    }
  };
  if (cursor.first_prompt_token >= 0) {
    // Nothing comes before the prompt's first token: no distribution gives it a logprob.
    add(cursor.first_prompt_token, nullptr, nullptr, true);
    cursor.first_prompt_token = -1;
  }
  for (const TokenStep& step : steps) {
    if (step.token < 0) continue;
    if (!step.prompt && !cursor.generating) {
      cursor.generating = true;
      cursor.offset = cursor.generated_offset;
    }
    // OpenAI's shape: {token text: logprob}, most likely first. Two ids of the same text keep the
    // likelier one's; the chosen token is always there, as OpenAI's (up to N + 1 entries).
    const std::string text = api_token_text(tokenizer_->token_bytes(step.chosen.token));
    json top = json::object();
    for (const TokenLogprob& t : step.top) {
      const std::string key = api_token_text(tokenizer_->token_bytes(t.token));
      if (!top.contains(key)) top[key] = t.logprob;
    }
    if (!top.contains(text)) top[text] = step.chosen.logprob;
    add(step.chosen.token, step.chosen.logprob, std::move(top), step.prompt);
  }
  return json{{"tokens", std::move(tokens)}, {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top_logprobs)}, {"text_offset", std::move(text_offset)}};
}

}  // namespace orchard::server
