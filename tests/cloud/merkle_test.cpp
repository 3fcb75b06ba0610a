// RFC 9162 Merkle trees against transparency-dev/merkle's vectors: the 8 reference leaves and the
// roots of their first 0..8, every inclusion and consistency case accepted or refused as its
// `valid` flag says; then the proofs made here, for every pair of sizes up to 8 and in a tree of
// 100 leaves, verified whole and refused with any one byte changed; and hostile sizes and lengths.
#include "cloud/merkle.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "cloud/crypto.h"
#include "test_paths.h"

namespace orchard::cloud {
namespace {

using nlohmann::json;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

const json& vectors() {
  static const json v = [] {
    const std::string path = test::shared_path("pcc/merkle-vectors.json");
    std::ifstream in(path);
    EXPECT_TRUE(in) << path;
    return json::parse(in);
  }();
  return v;
}

Bytes unhex(const json& v) { return from_hex(v.get<std::string>()); }
std::vector<Bytes> unhex_list(const json& v) {
  std::vector<Bytes> out;
  for (const json& h : v) out.push_back(unhex(h));
  return out;
}

std::vector<Bytes> reference_leaf_hashes() {
  std::vector<Bytes> out;
  for (const json& leaf : vectors().at("leaves")) out.push_back(merkle_leaf_hash(unhex(leaf)));
  return out;
}

std::span<const Bytes> first(const std::vector<Bytes>& hashes, size_t n) { return std::span(hashes).first(n); }

// Every proof of `proof` with one byte of one hash changed; `accepts` must refuse each.
template <typename Accepts>
void expect_each_flip_refused(const std::vector<Bytes>& proof, Accepts accepts, const std::string& what) {
  for (size_t i = 0; i < proof.size(); ++i) {
    for (size_t byte : {size_t{0}, size_t{17}, size_t{31}}) {
      std::vector<Bytes> bad = proof;
      bad[i][byte] ^= 0x01;
      EXPECT_FALSE(accepts(bad)) << what << ": proof[" << i << "] byte " << byte;
    }
  }
}

TEST(Merkle, Sha256) {
  EXPECT_EQ(to_hex(sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(sha256(as_bytes("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Merkle, ReferenceLeafHashesAndRoots) {
  const json& v = vectors();
  ASSERT_EQ(v.at("leaves").size(), 8u);
  const std::vector<Bytes> hashes = reference_leaf_hashes();
  for (size_t i = 0; i < hashes.size(); ++i)
    EXPECT_EQ(to_hex(hashes[i]), v.at("leaf_hashes").at(i).get<std::string>()) << "leaf " << i;
  ASSERT_EQ(v.at("roots_by_size").size(), 9u);
  for (size_t n = 0; n <= 8; ++n)
    EXPECT_EQ(to_hex(merkle_root(first(hashes, n))), v.at("roots_by_size").at(n).get<std::string>()) << "size " << n;
  // The inner-node prefix is what separates H(0x01 || l || r) from a leaf of the bytes l || r.
  EXPECT_EQ(merkle_root(first(hashes, 2)), merkle_node_hash(hashes[0], hashes[1]));
  EXPECT_NE(merkle_node_hash(hashes[0], hashes[1]), merkle_leaf_hash(Bytes()));
}

TEST(Merkle, InclusionVectors) {
  const json& cases = vectors().at("inclusion");
  size_t checked = 0, valid = 0;
  for (const json& c : cases) {
    const uint64_t index = c.at("leaf_index").get<uint64_t>();
    const uint64_t size = c.at("tree_size").get<uint64_t>();
    const bool expected = c.at("valid").get<bool>();
    const std::vector<Bytes> proof = unhex_list(c.at("proof"));
    EXPECT_EQ(verify_inclusion(index, size, unhex(c.at("leaf_hash")), proof, unhex(c.at("root"))), expected)
        << c.at("origin").get<std::string>() << ": " << c.at("desc").get<std::string>() << " (leaf " << index
        << " of " << size << ")";
    ++checked;
    if (expected) ++valid;
  }
  EXPECT_EQ(checked, 142u);
  EXPECT_EQ(checked, cases.size());
  EXPECT_GT(valid, 0u);
  EXPECT_LT(valid, checked);
}

TEST(Merkle, ConsistencyVectors) {
  const json& cases = vectors().at("consistency");
  size_t checked = 0, valid = 0;
  for (const json& c : cases) {
    const uint64_t size1 = c.at("size1").get<uint64_t>();
    const uint64_t size2 = c.at("size2").get<uint64_t>();
    const bool expected = c.at("valid").get<bool>();
    const std::vector<Bytes> proof = unhex_list(c.at("proof"));
    EXPECT_EQ(verify_consistency(size1, size2, unhex(c.at("root1")), unhex(c.at("root2")), proof), expected)
        << c.at("origin").get<std::string>() << ": " << c.at("desc").get<std::string>() << " (" << size1 << " to "
        << size2 << ")";
    ++checked;
    if (expected) ++valid;
  }
  EXPECT_EQ(checked, 139u);
  EXPECT_EQ(checked, cases.size());
  EXPECT_GT(valid, 0u);
  EXPECT_LT(valid, checked);
}

// The file's valid proofs over the reference tree are the RFC's PATH and PROOF, element for element:
// the server's proofs must be the same lists, not just ones that verify.
TEST(Merkle, GeneratedProofsMatchTheVectors) {
  const std::vector<Bytes> hashes = reference_leaf_hashes();
  const json& v = vectors();
  size_t inclusion = 0, consistency = 0;
  for (const json& c : v.at("inclusion")) {
    if (!c.at("valid").get<bool>()) continue;
    const uint64_t index = c.at("leaf_index").get<uint64_t>(), size = c.at("tree_size").get<uint64_t>();
    ASSERT_LE(size, 8u);
    if (unhex(c.at("leaf_hash")) != hashes[index]) continue;  // a tree of other leaves
    EXPECT_EQ(inclusion_proof(first(hashes, size), index), unhex_list(c.at("proof"))) << index << " of " << size;
    ++inclusion;
  }
  for (const json& c : v.at("consistency")) {
    if (!c.at("valid").get<bool>()) continue;
    const uint64_t size1 = c.at("size1").get<uint64_t>(), size2 = c.at("size2").get<uint64_t>();
    ASSERT_LE(size2, 8u);
    if (unhex(c.at("root2")) != merkle_root(first(hashes, size2))) continue;
    EXPECT_EQ(consistency_proof(first(hashes, size2), size1), unhex_list(c.at("proof"))) << size1 << " to " << size2;
    ++consistency;
  }
  EXPECT_GE(inclusion, 36u);    // every (index, size) up to 8
  EXPECT_GE(consistency, 28u);  // every 0 < size1 < size2 <= 8
}

// Inclusion of every leaf of the first `size` of `hashes`, refused with any byte flipped or the
// leaf or index moved. A size moved by one may pass: where both sizes give the path the same shape
// the hashes agree, since a root does not bind its size (the signed tree head binds the two).
void check_inclusion(const std::vector<Bytes>& hashes, uint64_t size) {
  const std::span<const Bytes> tree = first(hashes, size);
  const Bytes root = merkle_root(tree);
  for (uint64_t index = 0; index < size; ++index) {
    const std::vector<Bytes> proof = inclusion_proof(tree, index);
    const std::string what = std::to_string(index) + " of " + std::to_string(size);
    EXPECT_TRUE(verify_inclusion(index, size, hashes[index], proof, root)) << what;
    expect_each_flip_refused(
        proof, [&](const std::vector<Bytes>& bad) { return verify_inclusion(index, size, hashes[index], bad, root); },
        what);
    Bytes bad_root = root;
    bad_root[5] ^= 0x80;
    EXPECT_FALSE(verify_inclusion(index, size, hashes[index], proof, bad_root)) << what;
    if (size > 1) {
      const uint64_t other = (index + 1) % size;
      EXPECT_FALSE(verify_inclusion(index, size, hashes[other], proof, root)) << what;
      EXPECT_FALSE(verify_inclusion(other, size, hashes[index], proof, root)) << what;
    }
    EXPECT_FALSE(verify_inclusion(index, size, hashes[index], proof, merkle_root(first(hashes, size - 1)))) << what;
  }
}

void check_consistency(const std::vector<Bytes>& hashes, uint64_t size1, uint64_t size2) {
  const Bytes root1 = merkle_root(first(hashes, size1));
  const Bytes root2 = merkle_root(first(hashes, size2));
  const std::vector<Bytes> proof = consistency_proof(first(hashes, size2), size1);
  const std::string what = std::to_string(size1) + " to " + std::to_string(size2);
  EXPECT_TRUE(verify_consistency(size1, size2, root1, root2, proof)) << what;
  expect_each_flip_refused(
      proof, [&](const std::vector<Bytes>& bad) { return verify_consistency(size1, size2, root1, root2, bad); }, what);
  Bytes bad1 = root1, bad2 = root2;
  bad1[9] ^= 0x04;
  bad2[9] ^= 0x04;
  EXPECT_FALSE(verify_consistency(size1, size2, bad1, root2, proof)) << what;
  EXPECT_FALSE(verify_consistency(size1, size2, root1, bad2, proof)) << what;
  if (size1 == size2) {
    EXPECT_TRUE(proof.empty()) << what;
    return;
  }
  EXPECT_FALSE(verify_consistency(size2, size1, root2, root1, proof)) << what;
  if (!proof.empty()) {
    std::vector<Bytes> shorter(proof.begin(), proof.end() - 1), longer = proof;
    longer.push_back(root1);
    EXPECT_FALSE(verify_consistency(size1, size2, root1, root2, shorter)) << what;
    EXPECT_FALSE(verify_consistency(size1, size2, root1, root2, longer)) << what;
  }
}

TEST(Merkle, GeneratedProofsUpTo8Verify) {
  const std::vector<Bytes> hashes = reference_leaf_hashes();
  for (uint64_t size = 1; size <= 8; ++size) check_inclusion(hashes, size);
  for (uint64_t size2 = 1; size2 <= 8; ++size2)
    for (uint64_t size1 = 1; size1 <= size2; ++size1) check_consistency(hashes, size1, size2);
}

TEST(Merkle, GeneratedProofsInA100LeafTreeVerify) {
  std::mt19937_64 random(16);
  std::vector<Bytes> hashes;
  for (int i = 0; i < 100; ++i) {
    Bytes leaf(random() % 40);
    for (uint8_t& b : leaf) b = static_cast<uint8_t>(random());
    hashes.push_back(merkle_leaf_hash(leaf));
  }
  // Complete trees, one past and one short of them, and the whole odd-sized tree.
  for (uint64_t size : {31u, 32u, 33u, 64u, 65u, 100u}) {
    check_inclusion(hashes, size);
    for (uint64_t size1 = 1; size1 <= size; ++size1) check_consistency(hashes, size1, size);
  }
}

TEST(Merkle, GenerationRefusesSizesOutsideTheTree) {
  const std::vector<Bytes> hashes = reference_leaf_hashes();
  EXPECT_THROW(inclusion_proof(hashes, 8), Error);
  EXPECT_THROW(inclusion_proof(hashes, kMax), Error);
  EXPECT_THROW(inclusion_proof({}, 0), Error);
  EXPECT_THROW(consistency_proof(hashes, 0), Error);
  EXPECT_THROW(consistency_proof(hashes, 9), Error);
  EXPECT_TRUE(consistency_proof(hashes, 8).empty());
  EXPECT_TRUE(inclusion_proof(first(hashes, 1), 0).empty());
}

// What a hostile log may send: sizes near 2^64, proofs far longer than any tree is tall, hashes of
// the wrong length. All refused, none read out of bounds (the sanitizer build checks that).
TEST(Merkle, HostileInputIsRefused) {
  const std::vector<Bytes> hashes = reference_leaf_hashes();
  const Bytes root = merkle_root(hashes);
  const std::vector<Bytes> proof = inclusion_proof(hashes, 3);
  const std::vector<Bytes> huge(1000, Bytes(32, 0xab));
  ASSERT_TRUE(verify_inclusion(3, 8, hashes[3], proof, root));

  EXPECT_FALSE(verify_inclusion(kMax, kMax, hashes[3], proof, root));
  EXPECT_FALSE(verify_inclusion(kMax - 1, kMax, hashes[3], huge, root));
  EXPECT_FALSE(verify_inclusion(3, kMax, hashes[3], proof, root));
  EXPECT_FALSE(verify_inclusion(0, 0, hashes[3], {}, root));
  EXPECT_FALSE(verify_inclusion(3, 8, hashes[3], huge, root));
  EXPECT_FALSE(verify_inclusion(3, 8, Bytes(), proof, root));
  EXPECT_FALSE(verify_inclusion(3, 8, hashes[3], proof, Bytes(31, 0)));
  std::vector<Bytes> long_element = proof;
  long_element[1].push_back(0);
  EXPECT_FALSE(verify_inclusion(3, 8, hashes[3], long_element, root));
  std::vector<Bytes> empty_element = proof;
  empty_element[2].clear();
  EXPECT_FALSE(verify_inclusion(3, 8, hashes[3], empty_element, root));

  const Bytes root3 = merkle_root(first(hashes, 3));
  const std::vector<Bytes> cproof = consistency_proof(hashes, 3);
  ASSERT_TRUE(verify_consistency(3, 8, root3, root, cproof));
  EXPECT_FALSE(verify_consistency(kMax - 1, kMax, root3, root, cproof));
  EXPECT_FALSE(verify_consistency(kMax - 1, kMax, root3, root, huge));
  EXPECT_FALSE(verify_consistency(1, kMax, root3, root, huge));
  EXPECT_FALSE(verify_consistency(3, 8, root3, root, huge));
  EXPECT_FALSE(verify_consistency(kMax, kMax - 1, root3, root, cproof));
  EXPECT_FALSE(verify_consistency(0, 0, root, root, {}));
  EXPECT_FALSE(verify_consistency(0, 8, sha256({}), root, cproof));
  EXPECT_FALSE(verify_consistency(3, 8, Bytes(), root, cproof));
  EXPECT_FALSE(verify_consistency(3, 8, root3, Bytes(33, 0), cproof));
  EXPECT_FALSE(verify_consistency(8, 8, Bytes(12, 1), Bytes(12, 1), {}));
  EXPECT_TRUE(verify_consistency(kMax, kMax, root, root, {}));
  EXPECT_FALSE(verify_consistency(kMax, kMax, root, root, huge));
}

}  // namespace
}  // namespace orchard::cloud
