// pipeline.cpp: the layer-sequential loop (see pipeline.h). Each segment is one layer step:
//
//   decode -> pass A (statistics) -> reduce to owners -> solve (owners) -> share -> put -> pass B
//          -> states for the snapshot -> background write and commit files (settled before the
//             next pass B)
//
// The steps run on a LayerExecutor (calib/layer_executor.h), so this file has no CPU or GPU
// branch; the segment plan (calib/segment_plan.h) says what each segment holds and who solves it.
#include "calib/pipeline.h"

#include <map>
#include <set>

#include "calib/layer_executor.h"
#include "calib/layer_stats.h"
#include "calib/segment_commit.h"
#include "calib/segment_plan.h"
#include "calib/solved_share.h"
#include "common/check.h"
#include "common/stopwatch.h"
#include "common/log.h"
#include "dist/run_phase.h"
#include "model/forward.h"

namespace dsv4::calib {
namespace {

// What every step of a run reads: its inputs, the plan, the executor, the report it fills.
struct RunContext {
  const PipelineInputs& in;
  const Recipe& r;
  const model::ModelConfig& c;
  dist::Communicator& comm;
  const SegmentPlan& plan;
  LayerExecutor& x;
  PipelineReport& report;
  std::vector<char> share_wire;  // solved_share's wire image, kept from layer to layer
};

// A committed segment's staged modules in the order of the segment's modules.
std::vector<SolvedModule> staged_in_order(const RunCheckpoint& ck, int seg, const std::vector<const PlannedModule*>& mods) {
  std::vector<SolvedModule> staged = ck.staged(seg);
  std::vector<SolvedModule> ordered(mods.size());
  for (size_t i = 0; i < mods.size(); ++i) {
    for (SolvedModule& m : staged) {
      if (m.module == mods[i]->names.release) ordered[i] = std::move(m);
    }
    DSV4_CHECK_IN("resume", ordered[i].module == mods[i]->names.release, "staged segment %d lacks %s", seg,
                  mods[i]->names.release.c_str());
  }
  return ordered;
}

// The input of the first segment to compute: embeddings, or the newest snapshot, then the
// committed layers after it replayed with their quantized weights (staged by the journal).
void states_resume(RunContext& run, int first_segment) {
  dist::RunPhase::set("resume", "replay");
  const PipelineInputs& in = run.in;
  RunCheckpoint* ck = in.checkpoint;
  int replay_from = 1;  // segment of layer 0
  std::vector<std::vector<float>> states;
  // A GPTAQ run never writes a snapshot (it would lack the full-precision stream): it replays.
  DSV4_CHECK_IN("resume", !(ck && run.r.gptaq() && ck->snapshot_segment() >= 1),
                "the run directory holds an activation snapshot, which a GPTAQ run (calibration.gptq.asymmetric) "
                "cannot resume from; start again with --restart");
  if (ck && ck->snapshot_segment() >= 1) {
    states = ck->load_snapshot(in.first_sample, static_cast<int64_t>(in.samples.size()), in.sample_lengths,
                               run.c.hc_dim());
    replay_from = ck->snapshot_segment() + 1;
  } else {
    for (const auto& ids : in.samples) states.push_back(model::model_embed_state(*in.source, run.c, ids));
  }
  run.x.load_states(std::move(states));
  for (int seg = replay_from; seg < first_segment; ++seg) {
    const std::vector<const PlannedModule*>& mods = run.plan.modules[static_cast<size_t>(seg)];
    run.x.decode(seg - 1);
    if (!mods.empty() && run.r.calibration.propagate_error) {
      std::vector<SolvedModule> ordered = staged_in_order(*ck, seg, mods);
      run.x.put(mods, ordered);
    }
    run.x.pass_b(false);
    log_info("replayed %s from its committed weights", artifact_segment_name(seg, run.c).c_str());
  }
}

// Pass A's statistics of a segment: the Hessians of its GPTQ modules, the input absmax of its
// static-activation modules, the routed tokens per expert; nothing when no module needs data.
bool segment_pass_a(RunContext& run, int seg, LayerStats& stats, LayerReport& lr) {
  dist::RunPhase::set(lr.name, "pass A");
  bool pass_a = false;
  for (const PlannedModule* m : run.plan.modules[static_cast<size_t>(seg)]) {
    if (!m->needs_data()) continue;
    pass_a = true;
    if (m->scheme->gptq_solved()) stats.want_hessian(m->names.release, m->scheme->hessian);
    if (m->scheme->static_acts) stats.want_amax(m->names.release);
  }
  const auto t = SteadyClock::now();
  // With propagate_error pass B recomputes the layer's output with the quantized weights: pass
  // A's outputs are never read, only its statistics.
  if (pass_a) run.x.pass_a(stats, run.r.calibration.propagate_error ? PassAOutput::kDiscard : PassAOutput::kKeep);
  lr.seconds_forward = seconds_since(t);
  return pass_a;
}

// Each partial Hessian to its owner; absmax and expert token counts to every rank.
void segment_reduce(RunContext& run, int seg, LayerStats& stats, LayerReport& lr) {
  dist::RunPhase::set(lr.name, "reduce");
  const std::vector<const PlannedModule*>& mods = run.plan.modules[static_cast<size_t>(seg)];
  const std::vector<int>& owner = run.plan.owners[static_cast<size_t>(seg)];
  std::map<HessianKey, std::set<int>> solvers;  // the ranks solving with each Hessian
  for (size_t i = 0; i < mods.size(); ++i) {
    if (mods[i]->scheme && mods[i]->scheme->gptq_solved()) solvers[mods[i]->scheme->hessian].insert(owner[i]);
  }
  const auto t = SteadyClock::now();
  PipelineReport& rep = run.report;
  rep.hessian_bytes_partial_peak = std::max<uint64_t>(rep.hessian_bytes_partial_peak, stats.hessian_bytes());
  stats.reduce_to_owners(run.comm, solvers, run.c.n_routed_experts);
  rep.hessian_bytes_owned_peak = std::max<uint64_t>(rep.hessian_bytes_owned_peak, stats.hessian_bytes());
  lr.hessians = static_cast<int64_t>(stats.num_hessians());
  lr.expert_tokens.assign(static_cast<size_t>(run.c.n_routed_experts), 0);
  for (const auto& [e, n] : stats.expert_tokens()) lr.expert_tokens[static_cast<size_t>(e)] = n;
  lr.seconds_reduce = seconds_since(t);
}

// This rank's modules solved; the others' left empty for the share.
std::vector<SolvedModule> segment_solve(RunContext& run, int seg, LayerStats& stats, LayerReport& lr) {
  dist::RunPhase::set(lr.name, "solve");
  const auto t = SteadyClock::now();
  const std::vector<const PlannedModule*>& mods = run.plan.modules[static_cast<size_t>(seg)];
  std::vector<SolvedModule> solved(mods.size());
  std::vector<size_t> mine;
  for (size_t i = 0; i < mods.size(); ++i) {
    if (run.plan.owners[static_cast<size_t>(seg)][i] == run.comm.rank()) mine.push_back(i);
  }
  run.x.solve(mods, mine, stats, solved);
  for (size_t i : mine) {
    if (solved[i].fallback == quant::GptqFallback::kNone) continue;
    log_warn("%s: %s (%lld tokens)", solved[i].module.c_str(), std::string(quant::gptq_fallback_name(solved[i].fallback)).c_str(),
             static_cast<long long>(solved[i].tokens));
  }
  lr.seconds_solve = seconds_since(t);
  return solved;
}

// Every rank gets every solved module (pass B needs them all, the writer too), and with `put`
// they go into the executor's block (decoded there when another rank solved them).
void segment_share(RunContext& run, int seg, std::vector<SolvedModule>& solved, bool put, LayerReport& lr) {
  dist::RunPhase::set(lr.name, "share");
  const auto t = SteadyClock::now();
  const std::vector<const PlannedModule*>& mods = run.plan.modules[static_cast<size_t>(seg)];
  const SolvedShareStats shared =
      solved_share(solved, run.plan.owners[static_cast<size_t>(seg)], run.comm, run.in.threads, run.share_wire);
  if (run.comm.world() > 1 && !mods.empty()) {
    log_info("%s: shared %.2f GB of solved modules: pack %.2f s, broadcast %.2f s (%.2f GB/s), unpack %.2f s",
             lr.name.c_str(), shared.bytes / 1e9, shared.seconds_pack, shared.seconds_transfer,
             shared.seconds_transfer > 0 ? shared.bytes / 1e9 / shared.seconds_transfer : 0.0, shared.seconds_unpack);
  }
  if (put) run.x.put(mods, solved);
  lr.seconds_share = seconds_since(t);
  for (const SolvedModule& s : solved) {
    lr.modules.push_back({s.module, s.method, s.loss, s.rel_error, s.rtn_rel_error, s.dampening_frac_used, s.fallback,
                          s.tokens, s.seconds, s.heldout});
  }
}

// Checks the inputs, totals the samples over the ranks and checks that a recipe needing data has some.
void samples_count(RunContext& run) {
  int64_t counts[2] = {static_cast<int64_t>(run.in.samples.size()), 0};
  for (const auto& ids : run.in.samples) counts[1] += static_cast<int64_t>(ids.size());
  run.comm.all_reduce(counts, 2, dist::ElemType::kI64, dist::ReduceOp::kSum);
  run.report.samples = counts[0];
  run.report.tokens = counts[1];
  DSV4_CHECK_IN("pipeline", run.plan.last_data_layer < 0 || run.report.samples > 0,
                "the recipe needs calibration data (GPTQ or static activation scales) but there are no samples");
}

}  // namespace

PipelineReport pipeline_run(const PipelineInputs& in, ArtifactWriter* writer,
                            const std::function<void(const LayerReport&)>& on_layer) {
  DSV4_CHECK_IN("pipeline", in.recipe && in.plan && in.config && in.source && in.layout, "incomplete inputs");
  const auto run_start = SteadyClock::now();
  const Recipe& r = *in.recipe;
  const model::ModelConfig& c = *in.config;
  std::unique_ptr<dist::Communicator> self = in.comm ? nullptr : dist::communicator_self();
  dist::Communicator& comm = in.comm ? *in.comm : *self;
  const int num_segments = in.layout->num_segments;
  const SegmentPlan plan = segment_plan_build(r, *in.plan, c, num_segments, comm.world());
  const std::unique_ptr<LayerExecutor> x = layer_executor_create(
      {.recipe = &r, .plan = in.plan, .config = &c, .source = in.source, .samples = &in.samples,
       .first_sample = in.first_sample, .mode = in.mode,
       .threads = in.threads, .forward = plan.last_data_layer >= 0, .cuda = in.device == ComputeDevice::kCuda,
       .gpu = in.gpu, .gpu_memory = in.gpu_memory,
       // Pass A's Hessians stay on the GPU for its solves when the reduce can take device buffers
       // (one rank, or NCCL): no 4.4 GB round trip through the host per full-width layer.
       .hessians_on_device = comm.world() == 1 || comm.backend() == "nccl"});
  PipelineReport report;
  RunContext run{in, r, c, comm, plan, *x, report, {}};
  samples_count(run);
  RunCheckpoint* ck = in.checkpoint;
  const int first_segment = ck ? ck->first_segment() : 0;
  if (plan.last_data_layer >= 0 && first_segment - 1 <= plan.last_data_layer) states_resume(run, first_segment);
  // Declared after the executor, whose states its pending job may read: destroyed first.
  SegmentCommitter commits(writer, ck, in.first_sample, on_layer, report.layers);

  for (int seg = first_segment; seg < num_segments; ++seg) {
    const auto seg_start = SteadyClock::now();
    LayerReport lr;
    lr.segment = seg;
    lr.name = artifact_segment_name(seg, c);
    const int layer = seg - 1;
    const bool forward = plan.forward(seg);
    // The journal's commit of this segment: a snapshot of the next layer's input, or else (with
    // error propagation) the solved weights staged, so that a resume can replay this layer.
    const bool more_forward = forward && layer < plan.last_data_layer;
    // GPTAQ runs take no snapshot: it would need the full-precision stream too. Their commits stage
    // the solved weights instead, and a resume replays both streams from the embeddings.
    const bool snapshot_due = ck && more_forward && (layer + 1) % r.run.checkpoint_every == 0 && !r.gptaq();
    const bool replay_needs_weights = ck && more_forward && r.calibration.propagate_error && !snapshot_due;

    // Decode only what the forward needs (solves decode their own source weights); the next
    // segment's source bytes start coming from disk while this one computes (at full width a
    // layer is ~3.7 GB of FP8/MXFP4, and a cold checkpoint is read at disk speed).
    dist::RunPhase::set(lr.name, "decode");
    auto t = SteadyClock::now();
    x->decode(forward ? layer : -1);
    lr.seconds_decode = seconds_since(t);
    if (seg + 1 < num_segments) in.source->prefetch(artifact_segment_name(seg + 1, c) + ".");

    LayerStats stats(r.calibration.all_experts, r.calibration.w2_input, r.calibration.hessian_sums);
    LayerStats heldout(r.calibration.all_experts, r.calibration.w2_input, r.calibration.hessian_sums);
    LayerStats cross(r.calibration.all_experts, r.calibration.w2_input, r.calibration.hessian_sums);
    if (r.calibration.heldout.enabled()) stats.set_heldout(&heldout, &r.calibration.heldout);
    if (r.gptaq()) stats.set_cross(&cross);  // GPTAQ's ΔX·Xᵀ beside the Hessians
    const bool pass_a = segment_pass_a(run, seg, stats, lr);
    if (pass_a) segment_reduce(run, seg, stats, lr);
    std::vector<SolvedModule> solved = segment_solve(run, seg, stats, lr);
    // Pass B reads every module's weight, unless it reuses pass A's output.
    const bool reuse_pass_a = pass_a && !r.calibration.propagate_error;
    segment_share(run, seg, solved, forward && !reuse_pass_a, lr);

    // The previous segment's files are durable once its background job ends; its journal line
    // goes in now (a collective), before pass B overwrites the states its snapshot reads.
    t = SteadyClock::now();
    commits.settle(false);
    lr.seconds_wait = seconds_since(t);

    // Pass B: the next layer's input from the quantized layer (or the source layer's output).
    dist::RunPhase::set(lr.name, "pass B");
    t = SteadyClock::now();
    if (forward) x->pass_b(reuse_pass_a);
    const std::vector<std::vector<float>>* states = forward ? x->states_for_snapshot(snapshot_due) : nullptr;
    lr.seconds_forward += seconds_since(t);

    // Write the segment and its commit files in the background while the next segment computes.
    lr.seconds = seconds_since(seg_start);
    commits.start(std::move(lr), std::move(solved), states, snapshot_due, replay_needs_weights);
  }
  commits.settle(true);
  const LayerExecutor::Memory mem = x->memory();
  if (mem.gpu >= 0) {  // the arena is sized to the GPU; its high water is what the run used of it
    log_info("GPU %d memory: arena high water %.1f of %.1f GB, besides the planned block, Hessians and states",
             mem.gpu, mem.arena_high_water / 1e9, mem.arena_bytes / 1e9);
    report.gpu = mem.gpu;
    report.gpu_kept_bytes = mem.kept_bytes;
    report.gpu_arena_bytes = mem.arena_bytes;
    report.gpu_arena_high_water = mem.arena_high_water;
  }
  dist::RunPhase::set("finish", "");
  report.seconds = seconds_since(run_start);
  return report;
}

}  // namespace dsv4::calib
