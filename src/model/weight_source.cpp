#include "model/weight_source.h"

#include "tensor/dequantize.h"

namespace orchard {

MappedWeights::MappedWeights(const Model::Impl& model)
    : model_(model), packed_embedding_(model.packed.find(model.weights.token_embedding)) {}

void MappedWeights::embedding_row(int32_t token, float* out) {
  const TensorRef& embedding = model_.weights.token_embedding;
  // A tied output matrix was packed (and its mapped pages released) at load: read the packed copy.
  if (packed_embedding_) packed_row_to_f32(*packed_embedding_, token, out);
  else dequantize_row(embedding.type, embedding.row(token), out, model_.config.dim);
}

std::unique_ptr<WeightSource> open_weight_source(const Model::Impl& model) {
  if (model.flash) return model.flash->open(model);
  return std::make_unique<MappedWeights>(model);
}

}  // namespace orchard
