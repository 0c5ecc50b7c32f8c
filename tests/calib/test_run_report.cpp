// test_run_report.cpp: report.html (calib/run_report.h) is one self-contained page: the run's data
// embedded (and escaped so no string can end its <script>), Chart.js and the script inlined, no
// reference to the network; several runs go into one page; the model card (calib/model_card.h)
// has the Hugging Face front matter, the data hashes, and eval numbers when present.
#include <gtest/gtest.h>

#include <regex>

#include "calib/model_card.h"
#include "calib/run_report.h"
#include "common/check.h"
#include "common/fs.h"
#include "tests/scratch_dir.h"

namespace dsv4::calib {
namespace {

using nlohmann::ordered_json;

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

ReportRun run_named(const std::string& label) {
  ReportRun r;
  r.label = label;
  r.manifest = ordered_json::parse(R"j({
    "tool": {"name": "dsv4-calib", "version": "0.1.0", "commit": "abc"},
    "recipe": {"origin": "recipes/w4a16_mtp.yaml", "fnv1a64": "1234"},
    "source": {"dir": "/models/src", "mtp_stages": 1}, "world_size": 2,
    "forward": {"device": "cuda", "numeric_mode": "bf16"},
    "ranks": [{"rank": 0, "host": "node1", "host_rss_peak_bytes": 1000000000, "gpu": {"device": 0}},
              {"rank": 1, "host": "node1", "host_rss_peak_bytes": 900000000, "gpu": {"device": 1}}],
    "dataset": {"files": [{"path": "calib.jsonl", "format": "jsonl", "records": 64}], "num_samples": 2,
                "num_tokens": 64, "options": {"seq_len": 32, "seed": 42}, "hash_algorithm": "fnv",
                "samples_hash": "feedbeef", "samples": [{"hash": "aaaa1111"}, {"hash": "bbbb2222"}]},
    "totals": {"gptq": 24, "rtn": 0, "fallbacks": 1, "seconds": 12.5},
    "layers": [{"segment": "layers.0", "seconds": {"total": 1, "decode": 0, "forward": 0.5, "reduce": 0, "solve": 0.5,
                "share": 0, "wait": 0, "write": 0.1}, "methods": {"gptq": 24}, "fallbacks": 1,
                "mean_rel_error": 0.002, "mean_rtn_rel_error": 0.008, "expert_tokens": [0, 5],
                "modules": [{"module": "layers.0.ffn.experts.0.w1</script><script>alert(1)", "method": "gptq",
                             "rel_error": 0.002, "rtn_rel_error": 0.008}]}]})j");
  r.starts = {ordered_json::parse(R"({"event": "run_start", "resumed": false, "first_segment": 0, "world_size": 2})"),
              ordered_json::parse(R"({"event": "run_start", "resumed": true, "first_segment": 1, "world_size": 2})")};
  r.ends = {ordered_json::parse(R"({"event": "run_end", "seconds": 12.5})")};
  return r;
}

TEST(RunReport, OnePageWithTheDataEmbeddedAndNothingFromTheNetwork) {
  const std::string html = report_html({run_named("gptq"), run_named("rtn")});
  EXPECT_TRUE(html.starts_with("<!DOCTYPE html>"));
  EXPECT_NE(html.find("<title>dsv4-calib report: gptq vs rtn</title>"), std::string::npos);
  EXPECT_NE(html.find("Chart.js v3.9.1"), std::string::npos) << "the renderer is inlined";
  EXPECT_NE(html.find("getElementById('dsv4-data')"), std::string::npos) << "the script is inlined";
  EXPECT_NE(html.find(R"("samples_hash":"feedbeef")"), std::string::npos) << "the manifest is embedded";
  EXPECT_EQ(count_of(html, R"("label":")"), 2u) << "both runs";
  // A module name holding "</script>" cannot end the data element early: '<' is escaped.
  EXPECT_EQ(count_of(html, "</script>"), 3u) << "the data, Chart.js and the script";
  EXPECT_NE(html.find(R"(experts.0.w1\u003c/script>)"), std::string::npos);
  // Self-contained: no element loads anything (a URL in Chart.js's license comment is text).
  for (const char* ref : {"<script src", "<link", "src=\"http", "href=\"http", "@import", "url(http"}) {
    EXPECT_EQ(html.find(ref), std::string::npos) << ref;
  }
  EXPECT_FALSE(std::regex_search(html, std::regex(R"((src|href)\s*=\s*["']?(https?:)?//)"))) << "no remote reference";
}

TEST(RunReport, SeveralRunsNeedAPageName) {
  try {
    report_write({"/a", "/b"}, "");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user());
    EXPECT_NE(std::string(e.what()).find("--out FILE.html"), std::string::npos) << e.what();
  }
  const std::string dir = testing::scratch_path("no_manifest");
  make_directories(dir);
  try {
    report_write({dir}, "");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no calib_manifest.json"), std::string::npos) << e.what();
  }
}

TEST(ModelCard, FrontMatterDataHashesEvalAndServe) {
  ReportRun r = run_named("DeepSeek-V4-Flash-W4A16");
  const ordered_json cfg = ordered_json::parse(R"({"num_hidden_layers": 43, "n_routed_experts": 256,
      "quantization_config": {"ignore": ["re:^head$", "re:^mtp\\.0\\..*"]}})");
  const std::string yaml = "model:\n  path: x\n";
  std::string card = model_card_markdown({.run = r, .recipe_yaml = yaml, .config = cfg});
  EXPECT_TRUE(card.starts_with("---\nbase_model: deepseek-ai/DeepSeek-V4-Flash\nbase_model_relation: quantized\n"
                               "library_name: transformers\n")) << card.substr(0, 200);
  EXPECT_NE(card.find("\n- compressed-tensors\n"), std::string::npos);
  EXPECT_NE(card.find("\n- w4a16_mtp\n---\n"), std::string::npos) << "the recipe's name is a tag";
  EXPECT_NE(card.find("`feedbeef`"), std::string::npos);
  EXPECT_NE(card.find("- `bbbb2222`"), std::string::npos);
  EXPECT_NE(card.find("```yaml\nmodel:\n  path: x\n```"), std::string::npos);
  EXPECT_NE(card.find("- `re:^mtp\\.0\\..*`"), std::string::npos) << "the ignore list";
  EXPECT_NE(card.find("The MTP block (1 stage(s)"), std::string::npos);
  EXPECT_NE(card.find("2 rank(s) on 1 host(s), cuda forward (bf16), 2 GPU(s)"), std::string::npos);
  EXPECT_NE(card.find("12.5 s over 2 processes (resumed 1 time(s))"), std::string::npos);
  EXPECT_NE(card.find("0.002 (round-to-nearest on the same weights: 0.008)"), std::string::npos);
  EXPECT_NE(card.find("No `eval` results yet"), std::string::npos);
  EXPECT_NE(card.find("vllm serve DeepSeek-V4-Flash-W4A16 --tensor-parallel-size 8"), std::string::npos);
  r.eval = ordered_json::parse(R"({"samples": 8, "tokens": 504, "data_hash": "cafe", "perplexity": 12.5,
                                   "reference_perplexity": 12.25, "kl_mean": 0.0625, "top1_agreement": 0.875})");
  card = model_card_markdown({.run = r, .recipe_yaml = yaml, .config = cfg});
  EXPECT_NE(card.find("| 12.5 | 12.25 | 0.0625 | 0.875 |"), std::string::npos) << card;
  // Not the release's shape: the source directory's name, not a Hugging Face link.
  const ordered_json tiny = ordered_json::parse(R"({"num_hidden_layers": 4, "n_routed_experts": 8})");
  card = model_card_markdown({.run = r, .recipe_yaml = yaml, .config = tiny});
  EXPECT_TRUE(card.starts_with("---\nbase_model: src\n")) << card.substr(0, 80);
  EXPECT_EQ(card.find("huggingface.co/src"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::calib
