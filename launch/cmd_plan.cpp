// cmd_plan.cpp: `dsv4-calib plan`: resolves a recipe on a model and prints the module -> scheme
// table by family, what is kept and why, the estimates and every warning, then the run's work and
// time estimate (calib/run_estimate.h) at the sgemm rate measured on this machine. Writes nothing.
//
//   dsv4-calib plan --recipe recipes/w4a16_mtp.yaml --model runs/tiny
//   dsv4-calib plan --recipe recipes/w4a16_mtp.yaml --preset flash      # the release's shape, no files
//   dsv4-calib plan --recipe R --model DIR --num-samples 32 --seq-len 64 # the estimate for that data
//   dsv4-calib plan --recipe R --model DIR --json                       # machine-readable
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "calib/artifact_decode.h"
#include "calib/data_sufficiency.h"
#include "calib/module_plan.h"
#include "calib/recipe.h"
#include "calib/run_estimate.h"
#include "common/check.h"
#include "common/safetensors.h"
#include "launch/commands.h"
#include "model/config.h"
#include "model/inventory.h"

namespace dsv4::launch {
namespace {

struct PlanArgs {
  std::string recipe, model, preset, profile;
  int64_t num_samples = -1, seq_len = -1;
  int threads = 0;
  bool json = false;
};

int run_plan(const PlanArgs& a) {
  calib::Recipe recipe = calib::recipe_load(a.recipe);
  calib::RecipeOverrides o;
  if (!a.model.empty()) o.model = a.model;
  if (a.num_samples >= 0) o.num_samples = a.num_samples;
  if (a.seq_len >= 0) o.seq_len = a.seq_len;
  if (!a.profile.empty()) o.profile = calib::output_profile_parse(a.profile, "--profile");
  calib::recipe_apply_overrides(recipe, o);
  model::ModelConfig config;
  int mtp_stages = 1;
  std::string source;
  if (!a.preset.empty()) {
    config = a.preset == "flash" ? model::ModelConfig::flash() : model::ModelConfig::tiny();
    source = "preset " + a.preset + " (" + std::to_string(mtp_stages) + " MTP stage)";
  } else {
    DSV4_USER_CHECK("plan", !recipe.model.empty(),
                    "%s: no model: set model.path in the recipe, or pass --model DIR or --preset flash|tiny",
                    a.recipe.c_str());
    calib::checkpoint_dir_check(recipe.model, "--model, or model.path in the recipe");
    config = model::ModelConfig::from_file(recipe.model + "/config.json");
    mtp_stages = model::inventory_mtp_stages(Checkpoint::open(recipe.model).names());
    source = recipe.model + " (" + std::to_string(mtp_stages) + " MTP stage(s) in the checkpoint)";
  }
  const calib::ModulePlan plan = calib::module_plan_build(recipe, config, mtp_stages);
  const double gflops = calib::measure_sgemm_gflops(a.threads);
  const int threads = calib::sgemm_probe_threads(a.threads);
  const calib::RunEstimate est = calib::run_estimate(recipe, plan, config, recipe.dataset.num_samples,
                                                     recipe.dataset.seq_len, gflops);
  // Too few tokens per Hessian column: said before the run (last line of the table, or in the
  // JSON's warnings).
  const std::optional<std::string> thin = recipe.needs_data() ? calib::data_sufficiency_warning(
      recipe, plan, config, recipe.dataset.num_samples, recipe.dataset.seq_len) : std::nullopt;
  if (a.json) {
    nlohmann::ordered_json j = calib::module_plan_json(recipe, plan);
    if (thin) j["warnings"].push_back(*thin);
    j["recipe"] = a.recipe;
    j["model"] = source;
    j["estimate"] = calib::run_estimate_json(est);
    j["estimate"]["sgemm_probe"] = {{"gflops", gflops}, {"threads", threads}};
    std::printf("%s\n", j.dump(1).c_str());
  } else {
    std::printf("recipe %s on %s\n%s%s  on this machine: sgemm probe %.1f GFLOP/s, %d thread(s)\n", a.recipe.c_str(),
                source.c_str(), calib::module_plan_table(recipe, plan).c_str(), calib::run_estimate_text(est).c_str(),
                gflops, threads);
    if (thin) std::printf("warning: %s\n", thin->c_str());
  }
  return 0;
}

}  // namespace

Command cmd_plan_register(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  CLI::App* sub = app.add_subcommand("plan", "Resolve a recipe on a model: the module -> scheme table, nothing written");
  sub->add_option("--recipe", a->recipe, "recipe YAML")->required()->check(CLI::ExistingFile);
  sub->add_option("--model", a->model, "release checkpoint directory (overrides the recipe's model.path)");
  sub->add_option("--preset", a->preset, "plan on a built-in shape instead of a checkpoint")
      ->check(CLI::IsMember({"flash", "tiny"}));
  sub->add_option("--profile", a->profile, "output profile: vllm, appmana-dsv4-int or turboquant (overrides output.profile)");
  sub->add_option("--num-samples", a->num_samples, "samples for the estimate (overrides dataset.num_samples)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--seq-len", a->seq_len, "tokens per sample for the estimate (overrides dataset.seq_len)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--threads", a->threads, "OpenBLAS threads of the sgemm probe (0: its default, as the forward)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", a->json, "print the plan as JSON");
  return [a] { return run_plan(*a); };
}

}  // namespace dsv4::launch
