#include "cloud/merkle.h"

#include <algorithm>
#include <bit>

#include "base/error.h"
#include "cloud/crypto.h"

namespace orchard::cloud {
namespace {

using Leaves = std::span<const Bytes>;

// RFC 9162 splits a tree of n >= 2 leaves at k, the largest power of two below n, so that the left
// subtree is always complete and stays the same as the log grows.
size_t split(size_t n) { return std::bit_floor(n - 1); }

// Roots are public, so a plain comparison (no constant time) is enough.
bool same(ByteView a, ByteView b) { return std::ranges::equal(a, b); }

bool all_hashes(std::span<const Bytes> hashes) {
  return std::ranges::all_of(hashes, [](const Bytes& h) { return h.size() == kSha256Size; });
}

// RFC 9162 §2.1.3.1 PATH(m, D[n]): the sibling subtree roots from the leaf up.
void path(Leaves leaves, uint64_t m, std::vector<Bytes>& out) {
  if (leaves.size() <= 1) return;
  const size_t k = split(leaves.size());
  if (m < k) {
    path(leaves.first(k), m, out);
    out.push_back(merkle_root(leaves.subspan(k)));
  } else {
    path(leaves.subspan(k), m - k, out);
    out.push_back(merkle_root(leaves.first(k)));
  }
}

// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b). `whole` (the RFC's b) says the subtree of m leaves is the
// old tree itself, whose root the verifier already holds, so it is left out of the proof.
void subproof(uint64_t m, Leaves leaves, bool whole, std::vector<Bytes>& out) {
  if (m == leaves.size()) {
    if (!whole) out.push_back(merkle_root(leaves));
    return;
  }
  const size_t k = split(leaves.size());  // m < n and m >= 1, so n >= 2
  if (m <= k) {
    subproof(m, leaves.first(k), whole, out);
    out.push_back(merkle_root(leaves.subspan(k)));
  } else {
    subproof(m - k, leaves.subspan(k), false, out);
    out.push_back(merkle_root(leaves.first(k)));
  }
}

// The verifiers walk node indexes fn and sn (the last node) up one level per step. A node that is
// the last of its level and a left child has no sibling: it moves up unchanged until it is a right
// child (LSB set), whose sibling the hash just taken was. The fn != 0 test only bounds the loop.
void rise(uint64_t& fn, uint64_t& sn) {
  while (fn != 0 && (fn & 1) == 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

}  // namespace

Bytes merkle_leaf_hash(ByteView leaf) {
  Bytes in;
  in.reserve(1 + leaf.size());
  put_u8(in, 0x00);
  put_bytes(in, leaf);
  return sha256(in);
}

Bytes merkle_node_hash(ByteView left, ByteView right) {
  Bytes in;
  in.reserve(1 + left.size() + right.size());
  put_u8(in, 0x01);
  put_bytes(in, left);
  put_bytes(in, right);
  return sha256(in);
}

Bytes merkle_root(Leaves leaf_hashes) {
  if (leaf_hashes.empty()) return sha256({});
  if (leaf_hashes.size() == 1) return leaf_hashes[0];
  const size_t k = split(leaf_hashes.size());
  return merkle_node_hash(merkle_root(leaf_hashes.first(k)), merkle_root(leaf_hashes.subspan(k)));
}

std::vector<Bytes> inclusion_proof(Leaves leaf_hashes, uint64_t index) {
  if (index >= leaf_hashes.size())
    fail("merkle: inclusion proof for leaf ", index, " of a tree of ", leaf_hashes.size());
  std::vector<Bytes> out;
  path(leaf_hashes, index, out);
  return out;
}

std::vector<Bytes> consistency_proof(Leaves leaf_hashes, uint64_t size1) {
  // Size 0 has nothing to prove (every tree extends the empty one) and the verifier refuses it.
  if (size1 == 0 || size1 > leaf_hashes.size())
    fail("merkle: consistency proof from size ", size1, " to a tree of ", leaf_hashes.size());
  std::vector<Bytes> out;
  subproof(size1, leaf_hashes, true, out);
  return out;
}

// RFC 9162 §2.1.3.2. Every step shifts sn right at least once, so a proof longer than the tree is
// tall stops at sn == 0 after at most 64 hashes, however long it is.
bool verify_inclusion(uint64_t index, uint64_t size, ByteView leaf_hash, std::span<const Bytes> proof, ByteView root) {
  if (index >= size) return false;
  if (leaf_hash.size() != kSha256Size || root.size() != kSha256Size || !all_hashes(proof)) return false;
  uint64_t fn = index;
  uint64_t sn = size - 1;
  Bytes r(leaf_hash.begin(), leaf_hash.end());
  for (const Bytes& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      r = merkle_node_hash(p, r);
      rise(fn, sn);
    } else {
      r = merkle_node_hash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && same(r, root);
}

// RFC 9162 §2.1.4.2, which requires 0 < size1 < size2; the equal case is settled by the roots alone.
bool verify_consistency(uint64_t size1, uint64_t size2, ByteView root1, ByteView root2,
                        std::span<const Bytes> proof) {
  if (size1 == 0 || size1 > size2) return false;
  if (root1.size() != kSha256Size || root2.size() != kSha256Size) return false;
  if (size1 == size2) return proof.empty() && same(root1, root2);
  if (proof.empty() || !all_hashes(proof)) return false;
  // An old tree of a power-of-two size is a complete subtree of the new one, so the proof leaves
  // its root out (the RFC's b); the walk starts from root1 instead of the proof's first hash.
  const bool complete = std::has_single_bit(size1);
  const ByteView start = complete ? root1 : ByteView(proof[0]);
  const std::span<const Bytes> rest = complete ? proof : proof.subspan(1);
  uint64_t fn = size1 - 1;
  uint64_t sn = size2 - 1;
  // The walk starts at the largest complete subtree that ends with the old tree's last leaf.
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  Bytes fr(start.begin(), start.end());
  Bytes sr = fr;
  for (const Bytes& c : rest) {
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      fr = merkle_node_hash(c, fr);
      sr = merkle_node_hash(c, sr);
      rise(fn, sn);
    } else {
      sr = merkle_node_hash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && same(fr, root1) && same(sr, root2);
}

}  // namespace orchard::cloud
