// cmd_preflight.cpp: `dsv4-calib preflight`: before an overnight job, under the same launcher,
// checks what the job leans on: every rank's host, local rank and GPU; the all-reduce bandwidth
// of the communicator the job's collectives use (NCCL on device buffers with --device cuda, MPI on
// host buffers otherwise; dist/bandwidth.h); and, with --out, the output disk's write speed with
// fsync and its free space, once per host. Writes nothing that stays.
//
//   mpirun -n 8 dsv4-calib preflight --device cuda --out /data/q    # the 8-GPU machine
//   dsv4-calib preflight --max-mb 16 --out /tmp                      # one process
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/device.h"
#include "common/fs.h"
#include "dist/bandwidth.h"
#include "dist/communicator.h"
#include "dist/run_phase.h"
#include "dist/topology.h"
#include "launch/commands.h"
#include "launch/env_options.h"

namespace dsv4::launch {
namespace {

struct PreflightArgs {
  std::string device = "cpu", out;
  int64_t max_mb = 256, disk_mb = 1024;
  int iters = 10;
  double timeout_s = 300;
  bool json = false;
};

// Writes `bytes` to a scratch file in `dir` (or its nearest existing parent) with fsync, then
// removes it: the sustained write speed the artifact and the journal will see.
nlohmann::ordered_json disk_probe(const std::string& dir, uint64_t bytes) {
  const std::string where = nearest_existing_path(dir);
  const std::string path = where + "/.dsv4_preflight." + std::to_string(getpid());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DSV4_CHECK_IN("preflight", fd >= 0, "cannot create %s to time the disk", path.c_str());
  std::vector<char> block(64u << 20);
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 131);
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t written = 0;
  bool ok = true;
  while (ok && written < bytes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(block.size(), bytes - written));
    ok = ::write(fd, block.data(), n) == static_cast<ssize_t>(n);
    written += n;
  }
  ok = ok && ::fsync(fd) == 0;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  ::unlink(path.c_str());
  DSV4_CHECK_IN("preflight", ok, "writing %llu bytes to %s failed (disk full?)", static_cast<unsigned long long>(bytes),
                path.c_str());
  return {{"dir", where},
          {"bytes", bytes},
          {"seconds", seconds},
          {"write_fsync_gbs", seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0.0},
          {"available_bytes", filesystem_available_bytes(where)}};
}

int run_preflight(const PreflightArgs& a) {
  const EnvOptions env = env_options_read();
  dist::RunPhase::set_fault(env.fault);
  const dist::Topology topo = dist::topology_init(nullptr, nullptr, {.mpi_launched = env.mpi_launched});
  const bool cuda = a.device == "cuda";
  std::unique_ptr<dist::Communicator> comm;
  dist::run_rank_job(topo.world, comm, [&] {
    if (cuda) {
      DSV4_USER_CHECK("preflight", built_with_cuda(), "--device cuda: this dsv4-calib was built without CUDA");
      DSV4_USER_CHECK("preflight", topo.local_rank < device_count(),
                      "--device cuda: rank %d is rank %d of %d on host %s, which has %d visible GPU(s); start at "
                      "most one rank per GPU on each host",
                      topo.rank, topo.local_rank, topo.local_world, topo.host.c_str(), device_count());
    }
    comm = cuda ? dist::communicator_nccl(a.timeout_s, topo.local_rank)
                : (topo.world > 1 ? dist::communicator_mpi(a.timeout_s, env.mpi_wait) : dist::communicator_self());
    dist::RunPhase::set("preflight", "ranks");
    nlohmann::ordered_json me = {{"rank", topo.rank}, {"host", topo.host}, {"local_rank", topo.local_rank},
                                 {"device", cuda ? device_describe(topo.local_rank) : std::string("cpu")}};
    std::vector<std::string> ranks = comm->all_gather_strings(me.dump());

    dist::RunPhase::set("preflight", "all-reduce");
    const dist::AllReduceSweep sweep =
        dist::all_reduce_sweep(*comm, static_cast<size_t>(a.max_mb) << 20, a.iters, cuda);

    nlohmann::ordered_json disk = nullptr;
    if (!a.out.empty()) {
      dist::RunPhase::set("preflight", "disk");
      if (topo.local_rank == 0) disk = disk_probe(a.out, static_cast<uint64_t>(a.disk_mb) << 20);
    }
    std::vector<std::string> disks = comm->all_gather_strings(disk.dump());

    if (topo.rank == 0) {
      nlohmann::ordered_json j;
      j["world"] = topo.world;
      j["ranks"] = nlohmann::ordered_json::array();
      for (const std::string& r : ranks) j["ranks"].push_back(nlohmann::ordered_json::parse(r));
      j["all_reduce"] = {{"backend", sweep.backend}, {"device_buffers", sweep.on_device}, {"iters", sweep.iters},
                         {"points", nlohmann::ordered_json::array()}};
      for (const dist::AllReducePoint& p : sweep.points) {
        j["all_reduce"]["points"].push_back({{"bytes", p.bytes}, {"seconds", p.seconds}, {"algbw_gbs", p.algbw_gbs},
                                             {"busbw_gbs", p.busbw_gbs},
                                             {"reduce_seconds", p.reduce_seconds},
                                             {"reduce_algbw_gbs", p.reduce_algbw_gbs}});
      }
      j["disk"] = nlohmann::ordered_json::array();
      for (size_t r = 0; r < disks.size(); ++r) {
        nlohmann::ordered_json d = nlohmann::ordered_json::parse(disks[r]);
        if (d.is_null()) continue;
        d["host"] = j["ranks"][r]["host"];
        j["disk"].push_back(d);
      }
      if (a.json) {
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        std::printf("preflight: %d rank(s)\n", topo.world);
        for (const auto& r : j["ranks"]) {
          std::printf("  rank %d on %s (local %d): %s\n", r["rank"].get<int>(), r["host"].get<std::string>().c_str(),
                      r["local_rank"].get<int>(), r["device"].get<std::string>().c_str());
        }
        std::printf("%s", dist::all_reduce_sweep_text(sweep).c_str());
        for (const auto& d : j["disk"]) {
          std::printf("disk on %s, %s: %.2f GB written with fsync in %.2f s: %.2f GB/s; %.1f GB available\n",
                      d["host"].get<std::string>().c_str(), d["dir"].get<std::string>().c_str(),
                      d["bytes"].get<double>() / 1e9, d["seconds"].get<double>(), d["write_fsync_gbs"].get<double>(),
                      d["available_bytes"].get<double>() / 1e9);
        }
      }
    }
  });
  return 0;
}

}  // namespace

Command cmd_preflight_register(CLI::App& app) {
  auto args = std::make_shared<PreflightArgs>();
  CLI::App* sub = app.add_subcommand(
      "preflight", "check the ranks, GPUs, all-reduce bandwidth and output disk a job will use (run it under the "
                   "job's launcher); writes nothing that stays");
  sub->add_option("--device", args->device, "cuda: NCCL all-reduce on each rank's GPU; cpu: MPI on host memory")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  sub->add_option("--max-mb", args->max_mb, "largest all-reduce, in MiB (sizes double from 1 MiB)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--iters", args->iters, "timed all-reduces per size")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--out", args->out, "output directory to time (or its nearest existing parent)");
  sub->add_option("--disk-mb", args->disk_mb, "MiB written to time the disk")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--timeout", args->timeout_s, "collective watchdog, seconds")->capture_default_str();
  sub->add_flag("--json", args->json, "print the results as JSON (rank 0)");
  return [args] { return run_preflight(*args); };
}

}  // namespace dsv4::launch
