// test_suggest.cpp: edit distance and the nearest-word rule behind "did you mean ...?"
// (common/suggest.h), for flags and recipe keys alike.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/suggest.h"

namespace dsv4 {
namespace {

TEST(Suggest, EditDistance) {
  EXPECT_EQ(suggest_edit_distance("", ""), 0u);
  EXPECT_EQ(suggest_edit_distance("--num-sample", "--num-samples"), 1u);
  EXPECT_EQ(suggest_edit_distance("--mdoel", "--model"), 2u);
  EXPECT_EQ(suggest_edit_distance("abc", ""), 3u);
}

TEST(Suggest, NearestFlag) {
  const std::vector<std::string> flags = {"--num-samples", "--seq-len", "--model", "-v"};
  EXPECT_EQ(suggest_nearest("--num-sample", flags), "--num-samples");
  EXPECT_EQ(suggest_nearest("--seqlen", flags), "--seq-len");
  EXPECT_EQ(suggest_nearest("--x", flags), "") << "two edits from -v is noise, not a typo of it";
  EXPECT_EQ(suggest_nearest("--entirely-else", flags), "");
}

TEST(Suggest, NearestRecipeKey) {
  const std::vector<std::string> keys = {"files", "num_samples", "seq_len", "seed"};
  EXPECT_EQ(suggest_nearest("num_sample", keys), "num_samples");
  EXPECT_EQ(suggest_nearest("seqlen", keys), "seq_len");
  EXPECT_EQ(suggest_nearest("tokenizer", keys), "");
  EXPECT_EQ(suggest_nearest("x", {}), "");
}

}  // namespace
}  // namespace dsv4
