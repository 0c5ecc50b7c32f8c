// test_eval_compare.cpp: the comparison table and JSON of `dsv4-calib eval` with several models
// (calib/eval_compare.h), from results built here: the source row first, one row per model in
// the order given, "-" / null where there is no reference, the chance-level note.
#include <gtest/gtest.h>

#include <string>

#include "calib/eval_compare.h"

namespace dsv4::calib {
namespace {

EvalResult result(const std::string& model, double ppl, double kl, double top1) {
  EvalResult r;
  r.model = model;
  r.reference = "src";
  r.mode = "fp32";
  r.samples.resize(4);
  r.tokens = 100;
  r.data_hash = 0xabc;
  r.perplexity = ppl;
  r.reference_perplexity = 50.0;
  r.kl_mean = kl;
  r.top1_agreement = top1;
  r.vocab_size = 512;
  return r;
}

TEST(EvalCompare, TableHasTheSourceThenEachModel) {
  EvalComparison c{{result("out_gptq", 51.5, 0.061234, 0.6125), result("out_rtn", 55.25, 0.114, 0.5)}, "src", 50.0};
  const std::string t = eval_compare_table(c);
  const size_t src = t.find("(source) src"), gptq = t.find("out_gptq"), rtn = t.find("out_rtn");
  ASSERT_NE(src, std::string::npos) << t;
  ASSERT_NE(gptq, std::string::npos) << t;
  ASSERT_NE(rtn, std::string::npos) << t;
  EXPECT_LT(src, gptq);
  EXPECT_LT(gptq, rtn);
  EXPECT_NE(t.find("4 samples"), std::string::npos) << t;
  EXPECT_NE(t.find("0.061234"), std::string::npos) << t;
  EXPECT_NE(t.find("0.6125"), std::string::npos) << t;
  EXPECT_NE(t.find("55.2500"), std::string::npos) << t;
  EXPECT_EQ(t.find("chance level"), std::string::npos) << "perplexities far below the vocabulary: no note";
  c.rows[1].perplexity = 400;
  EXPECT_NE(eval_compare_table(c).find("chance level"), std::string::npos);
}

TEST(EvalCompare, JsonRowsWithNullsWhereNothingIsMeasured) {
  const EvalComparison c{{result("a", 51.5, 0.06, 0.61), result("b", 55.0, 0.11, 0.5)}, "src", 50.0};
  const nlohmann::ordered_json j = eval_compare_json(c);
  ASSERT_EQ(j["rows"].size(), 3u);
  EXPECT_EQ(j["rows"][0]["role"], "source");
  EXPECT_EQ(j["rows"][0]["checkpoint"], "src");
  EXPECT_DOUBLE_EQ(j["rows"][0]["perplexity"].get<double>(), 50.0);
  EXPECT_TRUE(j["rows"][0]["kl_mean"].is_null());
  EXPECT_EQ(j["rows"][2]["checkpoint"], "b");
  EXPECT_DOUBLE_EQ(j["rows"][2]["kl_mean"].get<double>(), 0.11);
  EXPECT_EQ(j["samples"], 4);
  EXPECT_EQ(j["data_hash"], "0000000000000abc");
  // Without a reference: no source row, no KL or top-1.
  const EvalComparison plain{{result("a", 51.5, 0, 0)}, "", 0.0};
  const nlohmann::ordered_json p = eval_compare_json(plain);
  ASSERT_EQ(p["rows"].size(), 1u);
  EXPECT_TRUE(p["reference"].is_null());
  EXPECT_TRUE(p["rows"][0]["top1_agreement"].is_null());
  EXPECT_NE(eval_compare_table(plain).find("-"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::calib
