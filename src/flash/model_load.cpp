// Model::load: reads and binds the model (model/), then either packs the mapped weights or, when
// they are larger than the memory budget, switches them to limited-memory mode. It is defined
// here, in the layer above the model, because it is the one place that chooses between the two
// weight sources: model/ declares the interface (model/weight_source.h) and knows nothing of
// flash/, and no registration hook is needed (a static library drops a self-registering object
// file that nothing references). docs/architecture.md, "Layers".
#include "flash/flash_layout.h"
#include "flash/flash_weights.h"
#include "model/model_impl.h"

namespace orchard {

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
  const auto attempt = [&]() -> std::shared_ptr<const Model> {
    std::unique_ptr<Impl> impl = read_model(path);
    if (needs_streaming(*impl, options.memory_budget))
      load_flash_weights(*impl, options.memory_budget, options.kernels == KernelChoice::fast,
                         !options.flash_layout          ? std::string()
                         : options.flash_layout_dir.empty() ? FlashLayout::default_directory()
                                                            : options.flash_layout_dir,
                         options.on_progress);
    else if (options.kernels == KernelChoice::fast)
      pack_weights(*impl, options.on_progress, options.measure_activation_levels);
    if (options.on_progress) options.on_progress(1.0);
    return std::shared_ptr<const Model>(new Model(std::move(impl)));
  };
  try {
    return attempt();
  } catch (const FlashLayoutDamaged&) {
    // The damaged layout was removed when a resident matrix read from it failed its checksum:
    // loading again builds it anew (once; a second failure is an error).
    return attempt();
  }
}

}  // namespace orchard
