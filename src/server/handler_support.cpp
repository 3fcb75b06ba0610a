#include "server/handler_support.h"

#include <atomic>
#include <cstdio>

#include "server/chunk_template.h"

namespace orchard::server {

using Clock = std::chrono::steady_clock;

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%llx%06llx", prefix, static_cast<unsigned long long>(unix_time()),
                static_cast<unsigned long long>(counter.fetch_add(1)));
  return buf;
}

std::string to_text(const json& j) { return to_json_text(j); }

// Writes the gathered server-sent events in one write (one send for every token the engine
// produced since the last write) and empties `events`; false once the client is gone. With
// nothing to write (text held back while it may be a tool call) the connection is looked at.
bool send_events(ClientConnection& out, std::string& events, bool open) {
  const bool ok = open && (events.empty() ? out.client_present(":\n") : out.write(events));
  events.clear();
  return ok;
}

json usage_json(const JobSummary& s) {
  return json{{"prompt_tokens", s.prompt_tokens},
              {"completion_tokens", s.completion_tokens},
              {"total_tokens", s.prompt_tokens + s.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", s.cached_prompt_tokens}}}};
}

json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json call = {{"id", new_id("call")}, {"type", "function"},
                 {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments_json}}}};
    if (with_index) call["index"] = i;
    out.push_back(std::move(call));
  }
  return out;
}

std::shared_ptr<RequestChannel> submit(Engine& engine, ChannelWaker& waker, const PreparedJob& prepared,
                                       std::shared_ptr<const Adapter> adapter, Clock::duration write_interval) {
  auto channel = std::make_shared<RequestChannel>(waker, write_interval);
  auto job = std::make_shared<GenerationJob>();
  job->prompt = prepared.prompt;
  job->options = prepared.options;
  job->adapter = std::move(adapter);
  job->on_step = [channel](const TokenStep& step) { return channel->push(step); };
  job->abandoned = [channel] { return channel->cancelled(); };
  job->on_done = [channel](const JobSummary& summary) { channel->close(summary); };
  engine.submit(job);
  return channel;
}

// A response that is not streamed. Its status is known once the job has started: a job the
// engine refuses ends before its first token, with its error. A job still running then finishes
// in a deferred body, which watches the connection: a client that leaves before the end cancels
// its generation.
ApiResponse answer_when_done(std::shared_ptr<RequestChannel> channel, Answer answer) {
  channel->wait_started();
  std::vector<TokenStep> steps;
  if (channel->take_all(steps, Clock::duration::zero())) {
    const JobSummary summary = channel->summary();
    if (!summary.error.empty()) throw RequestError(500, summary.error);
    return json_response(200, answer(steps, summary));
  }
  ApiResponse response;
  response.content_type = "application/json";
  response.write_body = [channel, answer](ClientConnection& out) {
    std::vector<TokenStep> steps;
    while (!channel->take_all(steps, std::chrono::milliseconds(10)))
      if (!out.client_present(kJsonProbe)) {
        channel->cancel();
        return false;
      }
    const JobSummary summary = channel->summary();
    if (!summary.error.empty()) return false;  // the status is out: only a cut connection tells
    out.write(to_text(answer(steps, summary)));
    return true;
  };
  return response;
}

std::string ToolCallHold::release(const std::vector<TokenStep>& steps) {
  std::string text;
  for (const TokenStep& step : steps) {
    full += step.text;
    if (!holding) {
      text += step.text;
      continue;
    }
    held += step.text;
    if (!may_start_tool_call(held)) text += held, held.clear(), holding = false;
  }
  return text;
}

ApiResponse event_stream(std::function<bool(ClientConnection&)> write_body) {
  ApiResponse response;
  response.content_type = "text/event-stream";
  response.write_body = std::move(write_body);
  return response;
}

}  // namespace orchard::server
