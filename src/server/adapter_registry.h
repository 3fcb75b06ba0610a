// The LoRA adapters a server offers by name (issue 20), and what a request's "model" field
// chooses among the base and them. Each adapter is loaded once (Adapter::load) and shared: a job
// holds its adapter's shared_ptr, so unloading one (DELETE /v1/adapters/NAME) takes it from the
// list while the jobs already running on it finish with it.
//
// Model names (docs/server.md, "Adapters"):
//   - absent, null or "", or the base's id: the base;
//   - an adapter's name, or "BASE:NAME" where BASE is the base's id or the word "base": that
//     adapter; an unknown NAME in the second form is always a 404 (model_not_found);
//   - any other name: the base on a server that offers no adapters (not started with --lora or
//     --allow-adapter-updates), so that clients which send their usual model name ("gpt-4o-mini")
//     keep working; a 404 on one that does, where a misspelt adapter must not quietly get the
//     base's answers. The rule depends on how the server was started, never on which adapters
//     happen to be loaded at the time.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace orchard {
class Adapter;
class Model;
}  // namespace orchard

namespace orchard::server {

// One adapter as given to `orchard serve --lora NAME=PATH[:SCALE]` or POST /v1/adapters.
struct AdapterSpec {
  std::string name;
  std::string path;  // a PEFT folder or a GGUF LoRA file
  float scale = 1.0f;  // multiplies the adapter's own alpha / rank
};

struct AdapterEntry {
  std::string name;
  std::string path;
  float scale = 1.0f;
  int64_t created = 0;  // unix seconds of its loading, the model object's "created"
  std::shared_ptr<const Adapter> adapter;
};

// What a request's "model" chose: the id its answer names and the adapter (null: the base).
struct ModelChoice {
  std::string id;
  std::shared_ptr<const Adapter> adapter;
};

class AdapterRegistry {
 public:
  // `base_id`: the base's model id (its file's name). `offers_adapters`: whether unknown model
  // names are refused (above). `allow_updates`: whether add() and remove() are allowed at run time.
  AdapterRegistry(std::shared_ptr<const Model> model, std::string base_id, bool offers_adapters, bool allow_updates);

  // Throws RequestError 404 (model_not_found) for a name that chooses nothing (above).
  ModelChoice resolve(const std::optional<std::string>& model) const;

  // Loads an adapter of the base and offers it under spec.name. RequestError: 403 without
  // allow_updates (unless `at_start`), 400 for a bad name or scale or a file Adapter::load
  // refuses (its message, which names the file and the problem), 409 for a name in use.
  // At start the adapters of --lora come through here too (at_start: no 403).
  AdapterEntry add(const AdapterSpec& spec, bool at_start = false);
  // Stops offering `name`; jobs running on it keep it. RequestError 403 without allow_updates,
  // 404 for a name that is not loaded.
  void remove(const std::string& name);

  std::vector<AdapterEntry> list() const;  // in the order they were loaded
  const std::string& base_id() const { return base_id_; }
  bool offers_adapters() const { return offers_adapters_; }
  bool updates_allowed() const { return allow_updates_; }

  // Throws RequestError 403 (adapter_updates_disabled) unless updates are allowed.
  void require_updates() const;

  // At most this many adapters are loaded at once: each holds its matrices in memory.
  static constexpr size_t kMaxAdapters = 256;
  // A scale beyond this is a mistake (adapters are trained at 1).
  static constexpr int kMaxScale = 1000;

 private:
  std::shared_ptr<const Model> model_;
  const std::string base_id_;
  const bool offers_adapters_, allow_updates_;
  mutable std::mutex mutex_;
  std::vector<AdapterEntry> entries_;
};

// True when `name` is a valid adapter name: 1 to 64 of A-Z a-z 0-9 . _ - (no ':', which
// separates the base from the adapter in "BASE:NAME"; nothing a URL path must escape).
bool valid_adapter_name(const std::string& name);

}  // namespace orchard::server
