// orchard chat --model PATH: an interactive conversation in the terminal.
//   Enter sends; a line ending in '\' continues on the next line; """ starts and ends a block.
//   /reset forgets the conversation, /system TEXT sets the system prompt, /exit (or Ctrl-D) leaves.
//   Ctrl-C stops the answer being generated and returns to the prompt.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "command.h"
#include "adapter_options.h"
#include "model_options.h"
#include "orchard/engine.h"
#include "orchard/model.h"
#include "template/chat_template.h"

namespace orchard::cli {
namespace {

std::atomic<bool> interrupted{false};

void on_interrupt(int) { interrupted = true; }

// SIGINT without SA_RESTART: a blocked read returns, so Ctrl-C at the prompt is noticed too.
void install_interrupt_handler() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(SIGINT, &action, nullptr);
}

void draw_progress(double fraction) {
  const int width = 30, filled = static_cast<int>(fraction * width + 0.5);
  std::fprintf(stderr, "\rloading [%.*s%*s] %3d%%", filled, "##############################", width - filled, "",
               static_cast<int>(fraction * 100 + 0.5));
  std::fflush(stderr);
}

enum class Input { text, eof, interrupted };

// Reads one message: continuation lines and """ blocks make it multi-line.
Input read_message(std::string& message) {
  message.clear();
  bool block = false;
  std::string line;
  std::fputs(">>> ", stdout);
  std::fflush(stdout);
  while (true) {
    if (!std::getline(std::cin, line)) {
      if (interrupted.exchange(false)) {
        std::cin.clear();
        return Input::interrupted;
      }
      return message.empty() ? Input::eof : Input::text;
    }
    if (line == "\"\"\"") {
      if (block) return Input::text;
      block = true;
    } else if (block) {
      message += line + "\n";
    } else if (!line.empty() && line.back() == '\\') {
      message += line.substr(0, line.size() - 1) + "\n";
    } else {
      message += line;
      return Input::text;
    }
    std::fputs("... ", stdout);
    std::fflush(stdout);
  }
}

int run_chat(Args& args) {
  const std::string path = args.require("model");
  const std::string tokenizer_path = args.get_or("tokenizer", "");
  std::string system_prompt = args.get_or("system", "");
  const KernelChoice kernels = kernel_choice(args);
  uint64_t budget = memory_budget(args);
  const KvCacheType kv_cache = kv_cache_type(args);
  const int64_t n_ctx = context_size(args);
  const bool verbose = args.flag("verbose");
  const SpeculationArgs spec = speculation_args(args);
  const LoraArgs lora = lora_args(args);
  const std::optional<int64_t> max_tokens = args.get_int("max-tokens");
  StreamOptions options;
  options.sampling.temperature = static_cast<float>(args.get_double("temperature").value_or(0.7));
  options.sampling.seed = static_cast<uint64_t>(args.get_int("seed").value_or(static_cast<int64_t>(::getpid())));
  options.max_tokens = max_tokens.value_or(-1);
  const bool measure_levels = measure_activation_levels(args);
  args.finish();

  const SpeculationOptions speculation = load_speculation(spec, kernels, budget);
  LoadOptions load{.kernels = kernels, .memory_budget = budget, .measure_activation_levels = measure_levels};
  if (isatty(STDERR_FILENO)) load.on_progress = draw_progress;
  std::shared_ptr<const Model> model = Model::load(path, load);
  if (load.on_progress) std::fputs("\n", stderr);
  const std::vector<NamedAdapter> adapters = load_lora(lora, model, kernels);
  if (adapters.size() > 1) fail("orchard chat: a conversation applies one --lora (several together: --lora-merge)");
  auto tokenizer = load_model_tokenizer(*model, tokenizer_path);
  Session session(model, tokenizer,
                  {.n_ctx = n_ctx, .kernels = kernels, .kv_cache = kv_cache, .speculation = speculation});
  if (!adapters.empty()) session.set_adapter(adapters.front().adapter);
  const bool has_template = !tokenizer->chat_template().empty();
  const std::string bos = tokenizer->bos_id() ? tokenizer->token_text(*tokenizer->bos_id()) : "";
  const std::string eos = tokenizer->eos_ids().empty() ? "" : tokenizer->token_text(tokenizer->eos_ids().front());
  std::fprintf(stderr, "orchard chat: %s (%s). /reset, /system TEXT, /exit; Ctrl-C stops an answer.\n",
               path.c_str(), has_template ? "chat template" : "no chat template: plain completion");

  install_interrupt_handler();
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  std::string transcript;  // plain-completion models continue the whole text
  std::string message;
  while (true) {
    const Input input = read_message(message);
    if (input == Input::eof) break;
    if (input == Input::interrupted) {
      std::fputs("\n(Ctrl-D or /exit leaves)\n", stdout);
      continue;
    }
    if (message.empty()) continue;
    if (message == "/exit" || message == "/quit") break;
    if (message == "/reset") {
      messages = nlohmann::ordered_json::array();
      transcript.clear();
      session.reset();
      std::puts("(conversation cleared)");
      continue;
    }
    if (message.rfind("/system", 0) == 0) {
      system_prompt = message.size() > 8 ? message.substr(8) : "";
      messages = nlohmann::ordered_json::array();
      transcript.clear();
      std::puts("(system prompt set; conversation cleared)");
      continue;
    }

    std::vector<int32_t> prompt;
    if (has_template) {
      nlohmann::ordered_json turn = messages;
      if (!system_prompt.empty() && (turn.empty() || turn[0]["role"] != "system"))
        turn.insert(turn.begin(), {{"role", "system"}, {"content", system_prompt}});
      turn.push_back({{"role", "user"}, {"content", message}});
      prompt = tokenizer->encode(render_chat(tokenizer->chat_template(), turn, nullptr, true, bos, eos), false);
      messages = turn;
    } else {
      transcript += (transcript.empty() ? "" : "\n") + message;
      prompt = tokenizer->encode(transcript, tokenizer->adds_bos());
    }
    if (static_cast<int64_t>(prompt.size()) >= session.engine().n_ctx()) {
      std::puts("(the conversation no longer fits in the context; /reset to start again)");
      continue;
    }
    interrupted = false;
    std::string reply;
    const GenerateResult result = session.reply(prompt, options, [&](std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      reply += text;
      return true;
    }, &interrupted);
    std::fputs(result.stop == StopReason::cancelled ? " [stopped]\n" : "\n", stdout);
    if (verbose) print_speculation(result.summary, session.engine().flash_stats());
    interrupted = false;
    if (has_template) messages.push_back({{"role", "assistant"}, {"content", reply}});
    else transcript += reply;
  }
  std::fputs("\n", stdout);
  return 0;
}

const RegisterCommand kChat("chat", "talk with a model in the terminal", run_chat, {"verbose", "lora-merge"});

}  // namespace
}  // namespace orchard::cli
