// RFC 9162 §2.1 Merkle trees over SHA-256, for the private cloud node's transparency log: the tree
// hash, inclusion and consistency proofs as the log server makes them, and their verifiers as a
// client runs them on what a log sent.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "cloud/bytes.h"

namespace orchard::cloud {

// The 0x00 and 0x01 prefixes keep a leaf from ever hashing the same as an inner node
// (RFC 9162 §2.1.1), so a proof cannot pass an inner node off as a leaf.
Bytes merkle_leaf_hash(ByteView leaf);                   // SHA-256(0x00 || leaf)
Bytes merkle_node_hash(ByteView left, ByteView right);   // SHA-256(0x01 || left || right)

// MTH over leaf hashes (not leaves) in log order; the empty tree's root is SHA-256("").
Bytes merkle_root(std::span<const Bytes> leaf_hashes);

// The log server's proofs (RFC 9162 §2.1.3.1 PATH, §2.1.4.1 PROOF), each listed from the bottom of
// the tree up, as the verifiers read them. Throw orchard::Error when index >= the tree's size, or
// size1 is 0 or over it; size1 equal to it gives the empty proof.
std::vector<Bytes> inclusion_proof(std::span<const Bytes> leaf_hashes, uint64_t index);
std::vector<Bytes> consistency_proof(std::span<const Bytes> leaf_hashes, uint64_t size1);

// The client's checks (RFC 9162 §2.1.3.2, §2.1.4.2). Everything is what a log sent, so anything
// malformed (an index past the tree, a hash not 32 bytes, a proof too long or too short) is false:
// they never throw. Edges the RFC leaves open: size1 == 0 or size1 > size2 is false; size1 == size2
// is true only for an empty proof and equal roots.
bool verify_inclusion(uint64_t index, uint64_t size, ByteView leaf_hash, std::span<const Bytes> proof, ByteView root);
bool verify_consistency(uint64_t size1, uint64_t size2, ByteView root1, ByteView root2,
                        std::span<const Bytes> proof);

}  // namespace orchard::cloud
