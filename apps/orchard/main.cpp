// orchard: the command-line front end. Each subcommand is a file in this folder that registers
// itself with a RegisterCommand object; this file only dispatches and turns errors into exit codes.
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "command.h"
#include "orchard/error.h"

namespace orchard::cli {

std::map<std::string, Command>& command_registry() {
  static std::map<std::string, Command> registry;
  return registry;
}

}  // namespace orchard::cli

namespace {

void print_usage() {
  std::fprintf(stderr, "usage: orchard <command> [options]\n\ncommands:\n");
  for (const auto& [name, command] : orchard::cli::command_registry())
    std::fprintf(stderr, "  %-12s %s\n", name.c_str(), command.summary.c_str());
}

// The options of each subcommand, as the README lists them. Kept here rather than in each
// command's registration so that `orchard NAME --help` works for every command, whatever options
// its parser knows (the parser takes every `--name` but its flags to need a value).
const char* usage_of(const std::string& name) {
  static const std::map<std::string, const char*> usage = {
      {"info", "orchard info --model PATH [--tensors]"},
      {"logits", "orchard logits --model PATH --tokens 1,2,3 --out FILE [--kernels reference|fast] [--ctx-size N]\n"
                 "               [--activations measured|two]\n"
                 "               [--kv-type f16|int8|f32] [--threads N] [--memory-budget SIZE] [--verbose]"},
      {"run", "orchard run --model PATH --prompt TEXT [--raw] [--temperature T] [--top-k K] [--top-p P]\n"
              "            [--min-p P] [--repeat-penalty R] [--max-tokens N] [--seed S] [--tokenizer PATH]\n"
              "            [--ctx-size N] [--kernels reference|fast] [--kv-type f16|int8|f32] [--memory-budget SIZE]\n"
              "            [--activations measured|two] [--verbose]"},
      {"tokenize", "orchard tokenize (--tokenizer PATH | --model PATH) --text-file F"},
      {"detokenize", "orchard detokenize (--tokenizer PATH | --model PATH) (--ids 1,2,3 | --ids-file F)"},
      {"template", "orchard template --tokenizer-config PATH --input-json F [--template-name NAME]"},
      {"chat", "orchard chat --model PATH [--system TEXT] [--temperature T] [--max-tokens N] [--ctx-size N]"},
      {"serve", "orchard serve --model PATH [--host H] [--port N] [--parallel K] [--ctx-size N] [--threads N]\n"
                "              [--kv-type f32|f16|int8] [--stream-interval-ms MS] [--memory-budget SIZE]\n"
                "              [--kernels reference|fast] [--activations measured|two] [--tokenizer PATH] [--admin-port N]\n"
                "              [--no-prefix-reuse]\n"
                "              [--private [--key-rotation-s S] [--replay-window-s S] [--node-name N]\n"
                "                [--release NOTE --attester software|tpm:TCTI [--attester-key F] --log-url URL\n"
                "                 --log-token-file F [--log-ca-file PEM] [--attestation-validity-s S] [--binary PATH]]\n"
                "                [--token-issuer-key PUB --token-issuer-name NAME --token-store FILE [--token-origin-info T]]]"},
      {"bench", "orchard bench --model PATH [-p 512] [-n 128] [-r 3] [-t 2] [--kernels fast] [--json]\n"
                "              [--kv-type f32|f16|int8] [--memory-budget SIZE] [--verbose] [--batch B]\n"
                "              [--activations measured|two]"},
      {"quantize", "orchard quantize --model IN --out OUT.gguf --type q4_os|q4_om|q4_0|q4_k_m|q6_k|q8_0|f16|bf16|f32\n"
                   "                 [--calibration TEXT | --calibration-tokens-file IDS] [--calibration-tokens N]\n"
                   "                 [--calibration-chunk N] [--tokenizer PATH] [--threads N]"},
      {"kld", "orchard kld --base M0 --model M1 (--text-file F | --tokens-file F | --sequences N) [--seq-len L] [--seed S]"},
      {"perplexity", "orchard perplexity --model M (--text-file F | --tokens-file F | --sequences N) [--seq-len L]"},
      {"cloud ask", "orchard cloud ask --relay URL (--prompt TEXT | --request-file JSON) [--stream] [--max-tokens N]\n"
                    "                  [--ca-file PEM] [--plain-ohttp] [--source-address IP] [--tokens WALLET]\n"
                    "                  [--log-key VKEY --release-key VKEY[,VKEY] [--witness-key VKEY[,VKEY]]\n"
                    "                   [--log URL] [--state FILE] [--attester-identity ID[,ID]]]"},
      {"cloud load", "orchard cloud load --relay URL [--clients 16] [--seconds 60] [--max-tokens 64] [--ca-file PEM]\n"
                     "                   [--plaintext] [--prompt TEXT]"},
      {"key generate", "orchard key generate --name NAME --out FILE   (an Ed25519 signing key; prints its vkey)"},
      {"key public", "orchard key public --key FILE   (prints the key's vkey)"},
      {"train", "orchard train --model BASE --data F.jsonl --steps N --out DIR [--batch-tokens T] [--lr LR] [--eval F]\n"
                "              [--lora-rank R --lora-alpha A --lora-targets q,k,v,o,gate,up,down]\n"
                "              [--loss ce|kd|rkl|jsd] [--kd-alpha A] [--kd-temperature T] [--jsd-beta B] [--rationale-weight W]\n"
                "              [--warmup N] [--min-lr X] [--weight-decay W] [--clip C] [--accumulate K] [--seed S]\n"
                "              [--recompute] [--threads N] [--kernels fast|reference] [--eval-every N]\n"
                "              [--checkpoint-every N] [--resume DIR] [--max-seq N] [--truncate]   (docs/training.md)"},
      {"distill collect", "orchard distill collect --teacher URL --prompts FILE --out DATA.jsonl [--endpoint chat|completions]\n"
                          "                        [--api-key-env VAR] [--model NAME] [--concurrency N] [--rate R] [--top-logprobs K]\n"
                          "                        [--samples S] [--max-tokens M] [--temperature T] [--retries N] [--timeout S]\n"
                          "                        [--ca-file PEM]"},
      {"distill train", "orchard distill train --model STUDENT --data COLLECTED(.jsonl|pack) --out DIR --steps N --lr LR\n"
                        "                      [--eval HELD_OUT(.jsonl|pack)] [--no-reasoning] [every orchard train flag; defaults\n"
                        "                      --loss kd --kd-alpha 0.5 --kd-temperature 1]   (log.jsonl: \"eval\": agreement, kl, ce)\n"
                        "                      [--on-policy LAMBDA --teacher URL [--api-key-env VAR] [--ca-file PEM]\n"
                        "                       [--on-policy-max-tokens N] [--on-policy-temperature T] [--on-policy-top-k K]\n"
                        "                       [--on-policy-concurrency N]]   (GKD: the student answers, the teacher scores)"},
      {"distill eval", "orchard distill eval --student MODEL [--adapter DIR] (--data HELD_OUT(.jsonl|pack) |\n"
                       "                     --teacher URL --prompts HELD_OUT_PROMPTS [--endpoint completions|chat] [--cache FILE]\n"
                       "                     [--api-key-env VAR] [--ca-file PEM] [--model NAME] [--top-logprobs K] [--temperature T]\n"
                       "                     [--concurrency N]) [--teacher-score] [--max-tokens N] [--out EVAL.json]\n"
                       "                     [--batch-tokens T] [--threads N] [--max-seq N] [--truncate]"},
      {"distill pack", "orchard distill pack --data COLLECTED.jsonl --student MODEL --out FILE.otk [--no-reasoning] [--max-seq N]\n"
                       "                     [--truncate] [--value-bits Q] [--check-logits zero|student|none] [--check-examples N]"},
      {"distill report", "orchard distill report (--run LABEL=DIR[:EVAL.json][,LABEL=...] | --runs FILE) --out REPORT.html\n"
                         "                       [--title TEXT]   (LABEL is GROUP/NAME: runs of a group are summarized together)"},
      {"router explain", "orchard router explain --model LOCAL --prompt TEXT [--config FILE] [--class device-only|private-cloud-allowed]\n"
                         "                       [--model-name NAME] [--kernels reference|fast]   (the decision as JSON, docs/router.md)"},
      {"router calibrate", "orchard router calibrate --model LOCAL --prompts FILE.jsonl --cloud-fraction F --out CONFIG.json\n"
                           "                         [--mode pre] [--config IN.json] [--kernels reference|fast]\n"
                           "                         (FILE.jsonl: {\"prompt\"} or {\"messages\"} per line; docs/router.md)"},
      {"train init", "orchard train init --like MODEL.gguf [--layers N] [--dim D] [--heads H] [--kv-heads K] [--ffn F] [--seed S] --out NEW.gguf"},
      {"train merge", "orchard train merge --model BASE.gguf --adapter DIR --out MERGED.gguf"},
      {"train eval", "orchard train eval --model M --data F.jsonl [--adapter DIR]   (mean cross-entropy, JSON)"},
      {"train check", "orchard train check --manifest FILE --case NAME --out FILE.f32 [--kernels reference|fast]   (a gradient case, written in the manifest's layout)"},
      {"release measure", "orchard release measure --name NAME --model PATH [--binary PATH] [serve --private's options]\n"
                          "                        (prints the release statement: what a node with these options measures)"},
      {"release sign", "orchard release sign --key FILE --statement FILE --out NOTE"},
      {"log serve", "orchard log serve --dir DIR --key FILE [--origin NAME] [--host H] [--port N]\n"
                    "                  [--append-token-file F] [--witness URL[,URL] --witness-vkey VKEY[,VKEY]] [--ca-file PEM]"},
      {"log append", "orchard log append (--url URL --token-file F | --dir DIR) --entry FILE [--ca-file PEM]"},
      {"log witness", "orchard log witness --key FILE --log-vkey VKEY --state FILE [--origin NAME] [--host H] [--port N]"},
      {"tokens keygen", "orchard tokens keygen --out KEY [--public-out PUB] [--bits 2048]"},
      {"tokens issue", "orchard tokens issue --key KEY --clients FILE [--host H] [--port N] [--rate N] [--period-s S]"},
      {"tokens fetch", "orchard tokens fetch --issuer URL --issuer-key PUB --auth-env VAR --count N --wallet FILE\n"
                       "                     [--issuer-name NAME] [--origin-info TEXT] [--ca-file PEM]"},
  };
  const auto it = usage.find(name);
  return it == usage.end() ? nullptr : it->second;
}

bool asks_for_help(int argc, char** argv) {
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  std::string name = argv[1];
  auto& registry = orchard::cli::command_registry();
  // Two-word commands ("cloud ask"): the second word is part of the name.
  if (argc > 2 && registry.count(name + " " + argv[2])) {
    name += std::string(" ") + argv[2];
    ++argv;
    --argc;
  }
  auto it = registry.find(name);
  if (it == registry.end()) {
    std::fprintf(stderr, "orchard: unknown command '%s'\n", name.c_str());
    print_usage();
    return 2;
  }
  if (asks_for_help(argc, argv)) {
    // Help goes to stdout and exits 0, as with `orchard --help`'s list.
    const char* usage = usage_of(name);
    std::printf("usage: %s\n\n%s\n", usage ? usage : ("orchard " + name + " [options]").c_str(), it->second.summary.c_str());
    return 0;
  }
  try {
    orchard::cli::Args args(name, std::vector<std::string>(argv + 2, argv + argc), it->second.flags);
    return it->second.run(args);
  } catch (const orchard::Error& e) {
    std::fprintf(stderr, "orchard: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "orchard: error: out of memory\n");
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orchard: internal error: %s\n", e.what());
    return 1;
  }
}
