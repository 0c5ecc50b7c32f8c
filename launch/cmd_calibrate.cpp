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

#include <unistd.h>

#include <memory>

#include "calib/calibrate.h"
#include "calib/cpu_only.h"
#include "calib/heldout.h"
#include "calib/recipe.h"
#include "common/check.h"
#include "common/device.h"
#include "dist/communicator.h"
#include "dist/run_phase.h"
#include "dist/topology.h"
#include "launch/commands.h"
#include "launch/env_options.h"

#ifndef DSV4_VERSION
#define DSV4_VERSION "dev"
#endif
#ifndef DSV4_COMMIT
#define DSV4_COMMIT "unknown"
#endif

namespace dsv4::launch {
namespace {

struct CalibrateArgs {
  std::string recipe, model, out, profile;
  std::vector<std::string> datasets;
  int64_t num_samples = -1, seq_len = -1;
  int threads = 0;
  bool restart = false;
  bool allow_empty = false;
  std::string device = "cpu";
  std::string comm = "auto";
  double gpu_memory_gb = 0.0;
};

// This rank's GPU and collectives for a --device cuda job. One rank per GPU of its host is the
// rule (GPU = local rank; NCCL by default with several ranks). More ranks than GPUs share them
// (GPU = local rank mod GPUs) only when told how much each may take (--gpu-memory: each rank's
// arena would otherwise take all the GPU's free memory) and over MPI (NCCL refuses two ranks on
// one GPU). A single-GPU machine runs a multi-rank GPU job this way.
struct RankGpu {
  int gpu = 0;
  bool nccl = false;
};
RankGpu rank_gpu(const CalibrateArgs& a, const dist::Topology& topo) {
  const bool cuda = a.device == "cuda";
  const int gpus = cuda ? device_count() : 0;
  DSV4_USER_CHECK("cli", !cuda || gpus > 0, "--device cuda: %s",
                  built_with_cuda() ? "no usable CUDA device on this machine"
                                    : "this dsv4-calib was built without CUDA (configure with the cuda preset)");
  const bool shared = gpus > 0 && topo.local_world > gpus;
  if (shared) {
    DSV4_USER_CHECK("cli", a.comm != "nccl",
                    "--comm nccl needs a GPU per rank, but host %s runs %d ranks on %d GPU(s); start at most %d ranks "
                    "per host, or let ranks share GPUs with --comm mpi --gpu-memory GB",
                    topo.host.c_str(), topo.local_world, gpus, gpus);
    DSV4_USER_CHECK("cli", a.gpu_memory_gb > 0,
                    "host %s runs %d ranks on %d GPU(s), so ranks share GPUs: give each its share with --gpu-memory GB "
                    "(or start at most %d ranks per host)",
                    topo.host.c_str(), topo.local_world, gpus, gpus);
  }
  const bool nccl = a.comm == "nccl" || (a.comm == "auto" && topo.world > 1 && cuda && !shared);
  return {shared ? topo.local_rank % gpus : topo.local_rank, nccl};
}

int run_calibrate(const CalibrateArgs& a) {
  DSV4_USER_CHECK("cli", !a.recipe.empty(),
                  "nothing to do: pass --recipe R for a calibration run, or a subcommand (see --help)");
  calib::Recipe recipe = calib::recipe_load(a.recipe);
  calib::RecipeOverrides o;
  if (!a.model.empty()) o.model = a.model;
  if (!a.out.empty()) o.out = a.out;
  if (a.num_samples >= 0) o.num_samples = a.num_samples;
  if (a.seq_len >= 0) o.seq_len = a.seq_len;
  if (!a.profile.empty()) o.profile = calib::output_profile_parse(a.profile, "--profile");
  calib::recipe_apply_overrides(recipe, o);
  // Several --dataset flags replace the recipe's list as a whole.
  if (!a.datasets.empty()) recipe.dataset.files = a.datasets;
  calib::CalibrateOptions co;
  co.threads = a.threads;
  co.restart = a.restart;
  co.allow_empty = a.allow_empty;
  co.device = a.device == "cuda" ? calib::ComputeDevice::kCuda : calib::ComputeDevice::kCpu;
  co.tool_version = DSV4_VERSION;
  co.tool_commit = DSV4_COMMIT;
  co.gpu_memory = static_cast<uint64_t>(a.gpu_memory_gb * 1e9);

  // Before any GPU is asked for, so the message names the recipe's section (also on a CPU build).
  calib::cpu_only_check(recipe, a.device == "cuda");
  const EnvOptions env = env_options_read();
  // The live bar only on a terminal; a log file or mpirun's forwarding gets plain lines (Open MPI
  // hands its ranks a pseudo-terminal even when its own output goes to a file).
  co.progress_bar = ::isatty(STDOUT_FILENO) == 1 && !env.mpi_launched;
  dist::RunPhase::set_fault(env.fault);
  const dist::Topology topo = dist::topology_init(nullptr, nullptr, {.mpi_launched = env.mpi_launched});
  std::unique_ptr<dist::Communicator> comm;
  dist::run_rank_job(topo.world, comm, [&] {
    const RankGpu g = rank_gpu(a, topo);
    co.gpu = g.gpu;
    // NCCL between the GPUs of a --device cuda job (device Hessians reduced in place, host data
    // staged), MPI on the host otherwise; one rank needs neither unless asked.
    const double timeout = recipe.run.collective_timeout_s;
    comm = g.nccl ? dist::communicator_nccl(timeout, g.gpu)
                  : (topo.world > 1 ? dist::communicator_mpi(timeout, env.mpi_wait) : dist::communicator_self());
    co.comm = comm.get();
    calib::calibrate_run(recipe, co);
  });
  return 0;
}

}  // namespace

Command cmd_calibrate_register(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  app.add_option("--recipe", a->recipe, "calibration recipe YAML (the main job)")->check(CLI::ExistingFile);
  app.add_option("--model", a->model, "release checkpoint directory (overrides model.path)");
  app.add_option("--dataset", a->datasets, "calibration data file(s) (override dataset.files)");
  app.add_option("--out", a->out, "output directory, must not exist or be empty (overrides output.dir)");
  app.add_option("--profile", a->profile, "output profile: vllm, appmana-dsv4-int or turboquant (overrides output.profile)");
  app.add_option("--num-samples", a->num_samples, "calibration samples (overrides dataset.num_samples)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seq-len", a->seq_len, "tokens per sample (overrides dataset.seq_len)")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", a->threads, "threads for module solves (0: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--device", a->device,
                 "where the forward passes run: cpu (fp32 numeric mode) or cuda (bf16 numeric mode, on the rank's "
                 "GPU: its index among the ranks of its host, modulo the GPUs when ranks share them; GPTQ of integer schemes also runs there, other solves "
                 "on the CPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--comm", a->comm,
                 "the ranks' collectives: auto (nccl for --device cuda with several ranks, else mpi), mpi (host "
                 "memory), or nccl (one rank per GPU; Hessians reduced on the GPUs)")
      ->check(CLI::IsMember({"auto", "mpi", "nccl"}))
      ->capture_default_str();
  app.add_option("--gpu-memory", a->gpu_memory_gb,
                 "GB each rank may take on its GPU with --device cuda (kept block, Hessians, states and arena; "
                 "default: all free memory). Needed when ranks share GPUs (more ranks than GPUs on a host, with "
                 "--comm mpi)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--restart", a->restart,
               "discard the interrupted run in the output directory and start over (default: resume it)");
  app.add_flag("--allow-empty", a->allow_empty,
               "accept a recipe that quantizes no module (the artifact is then the source's weights); without it "
               "that is an error");
  return [a] { return run_calibrate(*a); };
}

}  // namespace dsv4::launch
