// Partitions a range so that the elements satisfying `keep` come first, leaving exactly the order
// std::partition leaves for a bidirectional range as libstdc++ implements it: scanning from both
// ends, the j-th rejected element from the front trades places with the j-th kept element from
// the back, until the scans meet. The sampler draws by walking its candidates in this order, so
// the same seed keeps giving the same tokens; unlike that scan, this finds the elements to trade
// without a data-dependent branch per element, which matters when a 150k vocabulary splits at
// random (each mispredicted branch costs more than the whole test).
#pragma once
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

namespace orchard {

// Returns the number of kept elements; `scratch` is reused between calls to avoid allocation.
template <typename T, typename Keep>
size_t two_ended_partition(std::span<T> items, Keep keep, std::vector<size_t>& scratch) {
  const size_t n = items.size();
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) kept += keep(items[i]) ? 1 : 0;
  // After the scans, [0, kept) holds the kept elements: the rejected ones in there, in order from
  // the front, trade places with the kept ones in [kept, n), in order from the back.
  scratch.resize(n + 1);
  size_t rejected_front = 0;
  for (size_t i = 0; i < kept; ++i) {
    scratch[rejected_front] = i;
    rejected_front += keep(items[i]) ? 0 : 1;
  }
  size_t* from_back = scratch.data() + rejected_front;
  size_t kept_back = 0;
  for (size_t i = n; i-- > kept;) {
    from_back[kept_back] = i;
    kept_back += keep(items[i]) ? 1 : 0;
  }
  for (size_t j = 0; j < rejected_front; ++j) std::swap(items[scratch[j]], items[from_back[j]]);
  return kept;
}

}  // namespace orchard
