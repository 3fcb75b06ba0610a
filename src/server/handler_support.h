// What every API the server speaks (OpenAI's chat and completions, and whatever else answers
// through OpenAIHandler) does the same way: ids and times, JSON bodies, a job submitted to the
// engine with its tokens gathered in a RequestChannel, an answer that waits for its generation
// while it watches the client, and a body of server-sent events written over time.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "orchard/engine.h"
#include "server/api_message.h"
#include "server/chat_service.h"
#include "server/request_channel.h"

namespace orchard::server {

class AdapterRegistry;
class ChannelWaker;

// What an API answered through OpenAIHandler (Responses, Ollama's) needs of it: OpenAIHandler
// passes its own objects, so that every API turns requests into jobs, picks adapters and streams
// the same way.
struct HandlerContext {
  ChatService& service;
  Engine& engine;
  ChannelWaker& waker;
  AdapterRegistry& adapters;
  const HandlerOptions& options;
};

int64_t unix_time();
// "PREFIX-<hex time><hex counter>": unique within the process.
std::string new_id(const char* prefix);
// JSON text that never throws on partial UTF-8 (token strings in logprobs may be).
std::string to_text(const json& j);

// Written while a client that finished sending waits (ClientConnection::client_present): what
// each kind of answer ignores before or between its events.
constexpr std::string_view kJsonProbe = " ", kSseProbe = ":\n";

// Writes the gathered events in one write and empties `events`; false once the client is gone.
// With nothing to write the connection is looked at.
bool send_events(ClientConnection& out, std::string& events, bool open);

// OpenAI's usage object of a finished job.
json usage_json(const JobSummary& s);
// OpenAI's tool_calls array (with "index" in stream chunks).
json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index);

// Submits the prepared job; its tokens arrive in the returned channel, at most one write per
// `write_interval` (zero: as they come).
std::shared_ptr<RequestChannel> submit(Engine& engine, ChannelWaker& waker, const PreparedJob& prepared,
                                       std::shared_ptr<const Adapter> adapter,
                                       std::chrono::steady_clock::duration write_interval);

// A response that is not streamed: `answer` turns the finished job into its body. Its status is
// known once the job has started (a job the engine refuses is a 500 with its error); a job still
// running finishes in a deferred body that watches the client and cancels the job if it leaves.
using Answer = std::function<json(const std::vector<TokenStep>&, const JobSummary&)>;
ApiResponse answer_when_done(std::shared_ptr<RequestChannel> channel, Answer answer);

// A stream's text when the request has tools: text that may be the start of a tool call is held
// back until that is decided (the Responses and Ollama streams).
struct ToolCallHold {
  explicit ToolCallHold(bool tools) : holding(tools) {}
  // The text of `steps` that may go out now.
  std::string release(const std::vector<TokenStep>& steps);
  std::string held, full;  // held back so far; everything generated
  bool holding;
};

// A text/event-stream response written by `write_body`.
ApiResponse event_stream(std::function<bool(ClientConnection&)> write_body);

}  // namespace orchard::server
