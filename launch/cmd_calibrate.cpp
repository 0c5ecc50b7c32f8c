// cmd_calibrate.cpp: the main job. Its options sit on the top-level app (no subcommand):
//
//   dsv4-calib --recipe recipes/w4a16_mtp.yaml --model runs/tiny --dataset calib.jsonl --out runs/q
//   dsv4-calib --recipe R --num-samples 64 --seq-len 256          # the recipe's model/dataset/out
//
// Under mpirun every rank runs this (`mpirun -n 8 dsv4-calib --recipe R`): MPI bring-up, an MPI
// communicator with the recipe's collective timeout, and on an error on any rank the message
// with rank, host and phase followed by an abort of the whole job (no rank is left waiting).
//
// The flags override the recipe's model.path, dataset.files, output.dir, dataset.num_samples and
// dataset.seq_len, so one recipe serves many runs; the resolved recipe is written beside the
// artifact as recipe.yaml.
#include <CLI/CLI.hpp>

#include <memory>

#include "calib/calibrate.h"
#include "calib/recipe.h"
#include "common/check.h"
#include "dist/communicator.h"
#include "dist/run_phase.h"
#include "dist/topology.h"
#include "launch/commands.h"

#ifndef DSV4_VERSION
#define DSV4_VERSION "dev"
#endif
#ifndef DSV4_COMMIT
#define DSV4_COMMIT "unknown"
#endif

namespace dsv4::launch {
namespace {

struct CalibrateArgs {
  std::string recipe, model, out;
  std::vector<std::string> datasets;
  int64_t num_samples = -1, seq_len = -1;
  int threads = 0;
  bool restart = false;
  std::string device = "cpu";
  std::string comm = "auto";
};

int run_calibrate(const CalibrateArgs& a) {
  DSV4_CHECK_IN("cli", !a.recipe.empty(),
                "nothing to do: pass --recipe R for a calibration run, or a subcommand (see --help)");
  calib::Recipe recipe = calib::recipe_load(a.recipe);
  calib::RecipeOverrides o;
  if (!a.model.empty()) o.model = a.model;
  if (!a.out.empty()) o.out = a.out;
  if (a.num_samples >= 0) o.num_samples = a.num_samples;
  if (a.seq_len >= 0) o.seq_len = a.seq_len;
  calib::recipe_apply_overrides(recipe, o);
  // Several --dataset flags replace the recipe's list as a whole.
  if (!a.datasets.empty()) recipe.dataset.files = a.datasets;
  calib::CalibrateOptions co;
  co.threads = a.threads;
  co.restart = a.restart;
  co.device = a.device == "cuda" ? calib::ComputeDevice::kCuda : calib::ComputeDevice::kCpu;
  co.tool_version = DSV4_VERSION;
  co.tool_commit = DSV4_COMMIT;

  const dist::Topology topo = dist::topology_init(nullptr, nullptr);
  co.gpu = topo.local_rank;  // one rank per GPU of its host
  // NCCL between the GPUs of a --device cuda job (device Hessians reduced in place, host data
  // staged), MPI on the host otherwise; one rank needs neither unless asked.
  const double timeout = recipe.run.collective_timeout_s;
  const bool nccl = a.comm == "nccl" || (a.comm == "auto" && topo.world > 1 && a.device == "cuda");
  std::unique_ptr<dist::Communicator> comm = nccl               ? dist::communicator_nccl(timeout, topo.local_rank)
                                             : topo.world > 1 ? dist::communicator_mpi(timeout)
                                                              : dist::communicator_self();
  co.comm = comm.get();
  dist::run_rank_job(topo.world, comm, [&] { calib::calibrate_run(recipe, co); });
  return 0;
}

}  // namespace

Command cmd_calibrate_register(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  app.add_option("--recipe", a->recipe, "calibration recipe YAML (the main job)")->check(CLI::ExistingFile);
  app.add_option("--model", a->model, "release checkpoint directory (overrides model.path)");
  app.add_option("--dataset", a->datasets, "calibration data file(s) (override dataset.files)");
  app.add_option("--out", a->out, "output directory, must not exist or be empty (overrides output.dir)");
  app.add_option("--num-samples", a->num_samples, "calibration samples (overrides dataset.num_samples)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seq-len", a->seq_len, "tokens per sample (overrides dataset.seq_len)")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", a->threads, "threads for module solves (0: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--device", a->device,
                 "where the forward passes run: cpu (fp32 numeric mode) or cuda (bf16 numeric mode, on the rank's "
                 "GPU: its index among the ranks of its host; GPTQ of integer schemes also runs there, other solves "
                 "on the CPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--comm", a->comm,
                 "the ranks' collectives: auto (nccl for --device cuda with several ranks, else mpi), mpi (host "
                 "memory), or nccl (one rank per GPU; Hessians reduced on the GPUs)")
      ->check(CLI::IsMember({"auto", "mpi", "nccl"}))
      ->capture_default_str();
  app.add_flag("--restart", a->restart,
               "discard the interrupted run in the output directory and start over (default: resume it)");
  return [a] { return run_calibrate(*a); };
}

}  // namespace dsv4::launch
