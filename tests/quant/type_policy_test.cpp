// Per-tensor type choices: fallbacks for rows that blocks do not divide, the fixed layouts, and
// the budgets of Orchard's 4-bit recipes.
#include <gtest/gtest.h>

#include "base/error.h"
#include "quant/type_policy.h"

namespace orchard {
namespace {

TEST(TypePolicy, FallsBackWhenBlocksDoNotDivideRows) {
  EXPECT_EQ(fit_row_length(DType::Q4_K, 512), DType::Q4_K);
  EXPECT_EQ(fit_row_length(DType::Q4_K, 64), DType::Q4_0);
  EXPECT_EQ(fit_row_length(DType::Q6_K, 96), DType::Q8_0);
  EXPECT_EQ(fit_row_length(DType::Q4_K, 172), DType::F16);  // stories260K's ffn_down
  EXPECT_EQ(fit_row_length(DType::Q8_0, 172), DType::F16);
}

TEST(TypePolicy, UnknownTypeListsTheChoices) {
  try {
    find_recipe("q3_xs");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--type"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("q4_os"), std::string::npos);
  }
}

// A model of 8 layers shaped like a small Qwen: tied embedding, GQA.
std::vector<TensorInfo> model(bool tied) {
  std::vector<TensorInfo> t;
  t.push_back({"token_embd.weight", TensorRole::token_embedding, -1, {1024, 32000}, tied});
  for (int l = 0; l < 8; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    t.push_back({p + "attn_norm.weight", TensorRole::vector, -1, {1024}, tied});
    t.push_back({p + "attn_q.weight", TensorRole::attn_q, l, {1024, 1024}, tied});
    t.push_back({p + "attn_k.weight", TensorRole::attn_k, l, {1024, 256}, tied});
    t.push_back({p + "attn_v.weight", TensorRole::attn_v, l, {1024, 256}, tied});
    t.push_back({p + "attn_output.weight", TensorRole::attn_output, l, {1024, 1024}, tied});
    t.push_back({p + "ffn_gate.weight", TensorRole::ffn_gate, l, {1024, 4096}, tied});
    t.push_back({p + "ffn_up.weight", TensorRole::ffn_up, l, {1024, 4096}, tied});
    t.push_back({p + "ffn_down.weight", TensorRole::ffn_down, l, {4096, 1024}, tied});
  }
  if (!tied) t.push_back({"output.weight", TensorRole::output, -1, {1024, 32000}, tied});
  return t;
}

double bits_per_weight(const std::vector<TensorInfo>& tensors, const std::vector<DType>& types) {
  double bits = 0, weights = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].role == TensorRole::vector) continue;
    const int64_t rows = tensors[i].shape[1];
    bits += 8.0 * static_cast<double>(row_bytes(types[i], tensors[i].shape[0]) * rows);
    weights += static_cast<double>(tensors[i].shape[0] * rows);
  }
  return bits / weights;
}

TEST(TypePolicy, BudgetedRecipesStayWithinTheirBudgets) {
  for (bool tied : {true, false}) {
    const auto tensors = model(tied);
    const auto os = choose_types(find_recipe("q4_os"), tensors, 8);
    const auto om = choose_types(find_recipe("q4_om"), tensors, 8);
    const auto km = choose_types(find_recipe("q4_k_m"), tensors, 8);
    const auto q40 = choose_types(find_recipe("q4_0"), tensors, 8);
    double weights = 0;
    for (const TensorInfo& t : tensors)
      if (t.role != TensorRole::vector) weights += static_cast<double>(t.shape[0] * t.shape[1]);
    EXPECT_LE(bits_per_weight(tensors, os), 4.53 + 8.0 * 128 * 1024 / weights);
    EXPECT_GT(bits_per_weight(tensors, os), 4.5);  // the budget is spent, not ignored
    EXPECT_LE(bits_per_weight(tensors, om), bits_per_weight(tensors, km));
    EXPECT_LT(bits_per_weight(tensors, os), bits_per_weight(tensors, q40));
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].role == TensorRole::vector) {
        EXPECT_EQ(os[i], DType::F32);
        continue;
      }
      EXPECT_TRUE(os[i] == DType::Q4_K || os[i] == DType::Q6_K) << tensors[i].name;
      if (tensors[i].role == TensorRole::attn_v) {
        EXPECT_EQ(om[i], DType::Q6_K) << tensors[i].name;
      }
    }
  }
}

// The golden models' shape: 2 layers, hidden 256, vocab 1024, tied embedding (1.4M weights).
std::vector<TensorInfo> tiny_model() {
  std::vector<TensorInfo> t;
  t.push_back({"token_embd.weight", TensorRole::token_embedding, -1, {256, 1024}, true});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    t.push_back({p + "attn_q.weight", TensorRole::attn_q, l, {256, 256}, true});
    t.push_back({p + "attn_k.weight", TensorRole::attn_k, l, {256, 128}, true});
    t.push_back({p + "attn_v.weight", TensorRole::attn_v, l, {256, 128}, true});
    t.push_back({p + "attn_output.weight", TensorRole::attn_output, l, {256, 256}, true});
    t.push_back({p + "ffn_gate.weight", TensorRole::ffn_gate, l, {256, 512}, true});
    t.push_back({p + "ffn_up.weight", TensorRole::ffn_up, l, {256, 512}, true});
    t.push_back({p + "ffn_down.weight", TensorRole::ffn_down, l, {512, 256}, true});
  }
  return t;
}

// On a small model 4.53 bits per weight leaves less than one tensor's upgrade: the fixed
// allowance must still buy the most sensitive tensors (attn_v first), within Q4_0's size.
TEST(TypePolicy, CompactRecipeSpendsItsBudgetOnSmallModels) {
  const auto tensors = tiny_model();
  const auto os = choose_types(find_recipe("q4_os"), tensors, 2);
  const auto q40 = choose_types(find_recipe("q4_0"), tensors, 2);
  EXPECT_LE(bits_per_weight(tensors, os), bits_per_weight(tensors, q40));
  EXPECT_GT(bits_per_weight(tensors, os), 4.53);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].role == TensorRole::attn_v) {
      EXPECT_EQ(os[i], DType::Q6_K) << tensors[i].name;
    }
  }
}

// The Qwen2.5-1.5B shape: q4_os must stay within 28.5% of the f16 file. Counting matrices only
// (the f16 file's norms and metadata are in both files, which only lowers the ratio).
TEST(TypePolicy, CompactRecipeFitsTheOnePointFiveBShape) {
  std::vector<TensorInfo> t;
  t.push_back({"token_embd.weight", TensorRole::token_embedding, -1, {1536, 151936}, true});
  for (int l = 0; l < 28; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    t.push_back({p + "attn_q.weight", TensorRole::attn_q, l, {1536, 1536}, true});
    t.push_back({p + "attn_k.weight", TensorRole::attn_k, l, {1536, 256}, true});
    t.push_back({p + "attn_v.weight", TensorRole::attn_v, l, {1536, 256}, true});
    t.push_back({p + "attn_output.weight", TensorRole::attn_output, l, {1536, 1536}, true});
    t.push_back({p + "ffn_gate.weight", TensorRole::ffn_gate, l, {1536, 8960}, true});
    t.push_back({p + "ffn_up.weight", TensorRole::ffn_up, l, {1536, 8960}, true});
    t.push_back({p + "ffn_down.weight", TensorRole::ffn_down, l, {8960, 1536}, true});
  }
  const auto os = choose_types(find_recipe("q4_os"), t, 28);
  EXPECT_LE(bits_per_weight(t, os) / 16.0, 0.285);
  EXPECT_GT(bits_per_weight(t, os), 4.5);
}

TEST(TypePolicy, FixedLayouts) {
  const auto tensors = model(true);
  const auto q8 = choose_types(find_recipe("q8_0"), tensors, 8);
  const auto q40 = choose_types(find_recipe("q4_0"), tensors, 8);
  EXPECT_EQ(q8[0], DType::Q8_0);
  EXPECT_EQ(q40[0], DType::Q6_K);  // the tied embedding is the output head
  EXPECT_EQ(q40[2], DType::Q4_0);
  EXPECT_EQ(q8[1], DType::F32);    // norms stay float
}

}  // namespace
}  // namespace orchard
