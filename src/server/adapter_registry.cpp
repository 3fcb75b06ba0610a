#include "server/adapter_registry.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "orchard/adapter.h"
#include "orchard/error.h"
#include "server/openai_protocol.h"

namespace orchard::server {
namespace {

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

[[noreturn]] void not_found(const std::string& name, const std::string& why) {
  throw RequestError(404, "the model '" + name + "' does not exist" + why, "model", "model_not_found");
}

}  // namespace

void AdapterRegistry::require_updates() const {
  if (!allow_updates_)
    throw RequestError(403, "adapters cannot be loaded or unloaded on this server (start it with --allow-adapter-updates)",
                       "", "adapter_updates_disabled");
}

bool valid_adapter_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

AdapterRegistry::AdapterRegistry(std::shared_ptr<const Model> model, std::string base_id, bool offers_adapters,
                                 bool allow_updates)
    : model_(std::move(model)),
      base_id_(std::move(base_id)),
      offers_adapters_(offers_adapters || allow_updates),
      allow_updates_(allow_updates) {}

ModelChoice AdapterRegistry::resolve(const std::optional<std::string>& model) const {
  if (!model || model->empty() || *model == base_id_) return {base_id_, nullptr};
  std::string name = *model;
  bool explicit_adapter = false;
  // "BASE:NAME": an adapter name holds no ':', so the last one separates.
  if (const size_t colon = name.rfind(':'); colon != std::string::npos) {
    const std::string base = name.substr(0, colon);
    if (base == base_id_ || base == "base") name = name.substr(colon + 1), explicit_adapter = true;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const AdapterEntry& e : entries_)
      if (e.name == name) return {e.name, e.adapter};
  }
  if (explicit_adapter) not_found(*model, ": no adapter '" + name + "' is loaded (GET /v1/models lists them)");
  if (offers_adapters_)
    not_found(*model, ": this server offers '" + base_id_ + "' and its adapters (GET /v1/models lists them)");
  return {base_id_, nullptr};
}

AdapterEntry AdapterRegistry::add(const AdapterSpec& spec, bool at_start) {
  if (!at_start) require_updates();
  if (!valid_adapter_name(spec.name))
    throw RequestError(400, "'name' must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'", "name", "invalid_value");
  if (spec.name == base_id_ || spec.name == "base")
    throw RequestError(400, "'name' '" + spec.name + "' is the base model's", "name", "invalid_value");
  if (!(std::fabs(spec.scale) <= kMaxScale))
    throw RequestError(400, "'scale' must be between -" + std::to_string(kMaxScale) + " and " + std::to_string(kMaxScale),
                       "scale", "invalid_value");
  if (spec.path.empty()) throw RequestError(400, "'path' must name an adapter file or folder", "path", "invalid_value");
  auto in_use = [&] {
    for (const AdapterEntry& e : entries_)
      if (e.name == spec.name) return true;
    return false;
  };
  auto refuse_in_use = [&] {
    throw RequestError(409, "an adapter named '" + spec.name + "' is already loaded (DELETE /v1/adapters/" + spec.name +
                                " first)", "name", "adapter_exists");
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (in_use()) refuse_in_use();
    if (entries_.size() >= kMaxAdapters)
      throw RequestError(400, "this server holds " + std::to_string(kMaxAdapters) + " adapters already; unload one first",
                         "name", "too_many_adapters");
  }
  // Outside the lock: reading a file takes a while, and requests resolve their models meanwhile.
  AdapterEntry entry{.name = spec.name, .path = spec.path, .scale = spec.scale, .created = unix_time(), .adapter = nullptr};
  try {
    entry.adapter = Adapter::load(*model_, spec.path, spec.scale);
  } catch (const Error& e) {
    throw RequestError(400, "cannot load adapter '" + spec.name + "': " + e.what(), "path", "invalid_adapter");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (in_use()) refuse_in_use();  // the same name added meanwhile
  entries_.push_back(entry);
  return entry;
}

void AdapterRegistry::remove(const std::string& name) {
  require_updates();
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const AdapterEntry& e) { return e.name == name; });
  if (it == entries_.end()) not_found(name, ": no adapter of that name is loaded");
  entries_.erase(it);
}

std::vector<AdapterEntry> AdapterRegistry::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_;
}

}  // namespace orchard::server
