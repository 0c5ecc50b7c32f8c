// quality_gptq_vs_rtn.cpp: what GPTQ buys over round-to-nearest on synthetic DeepSeek-V4
// checkpoints, end to end: for each model and recipe, calibrate once with the recipe as shipped
// (GPTQ) and once with its GPTQModifier turned into a data-free QuantizationModifier (RTN, same
// scheme), then evaluate both artifacts against the source on held-out synthetic chat text:
// mean KL(source || artifact) of the next-token distributions, top-1 agreement, perplexity.
// Figures go to docs/QUALITY.md with the exact command.
//
//   bench_quality WORK_DIR [--calib-samples 64] [--eval-samples 16] [--seq-len 128]
//                 [--recipes w4a16_mtp.yaml,w3a16.yaml] [--models tiny,small,trained]
// (for an appmana-dsv4-int GPTQ twin, "rtn" is its data-free recipe: the seed's scale rules)
//
// Models: the built-in tiny (hidden 256, 8 experts) and "small" (hidden 512, 16 experts of
// intermediate 256, 8 heads; still minutes on a CPU), both random weights on synthetic chat text;
// "trained": the trained tiny fixture (tests/fixtures/trained_tiny: tiny's shape with a 4096-token
// vocabulary, trained on the Python 3.11 documentation), calibrated on its data/calib.jsonl (train
// text) and evaluated on data/heldout.jsonl (held-out documents).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "calib/calibrate.h"
#include "calib/eval.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/log.h"
#include "model/synth_model.h"
#include "model/synth_text.h"

namespace {

using namespace dsv4;
namespace fs = std::filesystem;

model::ModelConfig small_config() {
  model::ModelConfig c = model::ModelConfig::tiny();
  c.origin = "bench small";
  c.hidden_size = 512;
  c.num_heads = 8;
  c.head_dim = 64;
  c.q_lora_rank = 256;
  c.o_groups = 2;
  c.o_lora_rank = 128;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 4;
  c.moe_intermediate_size = 256;
  c.check();
  return c;
}

// A source checkpoint with its calibration and held-out evaluation sets.
struct DataPaths {
  std::string model, calib, eval;
};

DataPaths synth_model(const std::string& work, const std::string& name) {
  const std::string src = work + "/" + name;
  model::synth_checkpoint_write(name == "tiny" ? model::ModelConfig::tiny() : small_config(),
                                {.out_dir = src, .seed = 11, .calibration_records = 256});
  // Held-out evaluation text: another seed of the same generator.
  write_file_atomic(src + "/eval.jsonl", model::synth_calibration_jsonl(64, 12345));
  return {src, src + "/calib.jsonl", src + "/eval.jsonl"};
}

DataPaths trained_fixture() {
  const std::string f = std::string(DSV4_SOURCE_DIR) + "/tests/fixtures/trained_tiny";
  return {f + "/model", f + "/data/calib.jsonl", f + "/data/heldout.jsonl"};
}

struct Row {
  std::string model, recipe, method;
  calib::EvalResult eval;
  double calib_seconds = 0;
};

int run(int argc, char** argv) {
  DSV4_CHECK_IN("bench", argc >= 2,
                "usage: %s WORK_DIR [--calib-samples N] [--eval-samples N] [--seq-len L] [--recipes A,B] [--models M,N]",
                argv[0]);
  const std::string work = argv[1];
  int64_t calib_samples = 64, eval_samples = 16, seq_len = 128;
  std::vector<std::string> recipes = {"w4a16_mtp.yaml", "w3a16.yaml"}, models = {"tiny", "small"};
  const auto split = [](const std::string& v) {
    std::vector<std::string> out;
    for (size_t b = 0, e; b <= v.size(); b = e + 1) {
      e = v.find(',', b);
      if (e == std::string::npos) e = v.size();
      if (e > b) out.push_back(v.substr(b, e - b));
    }
    return out;
  };
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (k == "--calib-samples") calib_samples = v;
    else if (k == "--eval-samples") eval_samples = v;
    else if (k == "--seq-len") seq_len = v;
    else if (k == "--recipes") recipes = split(argv[i + 1]);
    else if (k == "--models") models = split(argv[i + 1]);
    else DSV4_FAIL("bench", "unknown option %s", k.c_str());
  }
  DSV4_CHECK_IN("bench", !fs::exists(work) || fs::is_empty(work), "%s exists and is not empty", work.c_str());
  make_directories(work);
  set_log_level(0);
  std::vector<Row> rows;
  for (const std::string& name : models) {
    DSV4_CHECK_IN("bench", name == "tiny" || name == "small" || name == "trained",
                  "unknown model %s (tiny, small, trained)", name.c_str());
    const DataPaths d = name == "trained" ? trained_fixture() : synth_model(work, name);
    const std::string& src = d.model;
    for (const std::string& recipe_name : recipes) {
      const char* recipe = recipe_name.c_str();
      for (const char* method : {"gptq", "rtn"}) {
        calib::Recipe r = calib::recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/" + recipe);
        const std::string out = work + "/" + name + "_" + recipe + "_" + method;
        calib::recipe_apply_overrides(r, {.model = src, .dataset = d.calib, .out = out,
                                          .num_samples = calib_samples, .seq_len = seq_len});
        if (std::string(method) == "rtn") {
          for (calib::RecipeModifier& m : r.modifiers) m.kind = calib::ModifierKind::kQuantization;
        }
        const auto t0 = std::chrono::steady_clock::now();
        calib::calibrate_run(r, {.progress = false});
        Row row{name, recipe, method, {}, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
        calib::EvalOptions eo;
        eo.model = out;
        eo.reference = src;
        eo.dataset.files = {d.eval};
        eo.dataset.num_samples = eval_samples;
        eo.dataset.seq_len = seq_len;
        row.eval = calib::eval_run(eo);
        std::printf("%-6s %-15s %-5s calib %6.1fs  ppl %9.3f (source %9.3f)  KL %.5f  top-1 %.4f  (%lld tokens)\n",
                    name.c_str(), recipe, method, row.calib_seconds, row.eval.perplexity,
                    row.eval.reference_perplexity, row.eval.kl_mean, row.eval.top1_agreement,
                    static_cast<long long>(row.eval.tokens));
        std::fflush(stdout);
        rows.push_back(std::move(row));
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_quality: %s\n", e.what());
    return 1;
  }
}
