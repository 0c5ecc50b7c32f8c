// artifact_layout.cpp: source tensors x plan -> the artifact's tensor list (see artifact_layout.h).
#include "calib/artifact_layout.h"

#include <algorithm>
#include <map>

#include "calib/profile_appmana.h"
#include "calib/profile_layout.h"
#include "common/check.h"
#include "quant/quant_scheme.h"

namespace dsv4::calib {
namespace {

int leading_index(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return -1;
  int v = 0;
  size_t i = prefix.size();
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) v = v * 10 + (name[i] - '0');
  return v;
}

// appmana-dsv4-int: the source's shard of every tensor (see the header). Leaves the layout as
// it is when a quantized module's segment would have to move (a source not stored layer by layer).
void keep_source_shards(ArtifactLayout& layout, const Checkpoint& source) {
  const std::vector<std::string> files = source.shard_files();
  std::map<std::string, int> file_index;
  for (size_t i = 0; i < files.size(); ++i) file_index[files[i]] = static_cast<int>(i);
  std::vector<OutputTensor> t = layout.tensors;
  for (OutputTensor& x : t) {
    const std::string of = x.origin == OutputOrigin::kAlias ? "" : (x.module >= 0 ? x.source + ".weight" : x.source);
    x.shard = of.empty() ? static_cast<int>(files.size()) : file_index.at(source.file_of(of));
  }
  std::stable_sort(t.begin(), t.end(), [](const OutputTensor& a, const OutputTensor& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.segment != b.segment ? a.segment < b.segment : a.name < b.name;
  });
  int running = 0;
  for (OutputTensor& x : t) {
    running = std::max(running, x.segment);
    if (x.origin == OutputOrigin::kQuantized && x.segment != running) return;
    x.segment = running;
  }
  // Shard indices renumbered densely in order (a source shard whose tensors all left is dropped).
  std::vector<std::string> names;
  int last = -1;
  for (OutputTensor& x : t) {
    if (x.shard != last) {
      last = x.shard;
      names.push_back(x.shard < static_cast<int>(files.size()) ? files[static_cast<size_t>(x.shard)]
                                                                : std::string(kAppmanaMtpSharedShard));
    }
    x.shard = static_cast<int>(names.size()) - 1;
  }
  layout.tensors = std::move(t);
  layout.shard_names = std::move(names);
  if (layout.shard_names.back() == kAppmanaMtpSharedShard) layout.index_metadata.emplace_back("mtp_shared_tensors", "materialized");
  layout.index_total_size_string = true;  // the converter writes str(total_size); no loader reads it
}

}  // namespace

std::string_view output_origin_name(OutputOrigin o) {
  switch (o) {
    case OutputOrigin::kCopy: return "copy";
    case OutputOrigin::kDecodeBf16: return "decode_bf16";
    case OutputOrigin::kQuantized: return "quantized";
    case OutputOrigin::kAlias: return "alias";
  }
  return "?";
}

uint64_t ArtifactLayout::bytes() const {
  uint64_t total = 0;
  for (const OutputTensor& t : tensors) total += TensorSpec{t.name, t.dtype, t.shape}.bytes();
  return total;
}

std::vector<TensorSpec> ArtifactLayout::specs() const {
  std::vector<TensorSpec> out;
  out.reserve(tensors.size());
  for (const OutputTensor& t : tensors) out.push_back({t.name, t.dtype, t.shape});
  return out;
}

int artifact_segment(std::string_view name, const model::ModelConfig& config) {
  if (const int l = leading_index(name, "layers."); l >= 0) return 1 + l;
  if (const int s = leading_index(name, "mtp."); s >= 0) return 1 + config.num_layers + s;
  return 0;
}

std::string artifact_segment_name(int segment, const model::ModelConfig& config) {
  if (segment == 0) return "top";
  if (segment <= config.num_layers) return "layers." + std::to_string(segment - 1);
  return "mtp." + std::to_string(segment - 1 - config.num_layers);
}

bool module_writes_g_idx(const PlannedModule& m) {
  if (!m.quantized()) return false;
  const quant::Strategy s = m.scheme->scheme.weights.strategy;
  return m.scheme->gptq_solved() && m.scheme->gptq.actorder == quant::ActOrder::kGroup &&
         (s == quant::Strategy::kGroup || s == quant::Strategy::kTensorGroup) && m.role != model::LinearRole::kAttnWoA;
}

ArtifactLayout artifact_layout(const Recipe& recipe, const ModulePlan& plan, const model::ModelConfig& config,
                               const Checkpoint& source) {
  std::map<std::string, int> module_index;
  for (size_t i = 0; i < plan.modules.size(); ++i) module_index[plan.modules[i].names.release] = static_cast<int>(i);

  ArtifactLayout layout;
  int mtp_stages = 0;
  for (const std::string& name : source.names()) {
    const TensorInfo& info = source.info(name);
    const int segment = artifact_segment(name, config);
    if (segment > config.num_layers) mtp_stages = std::max(mtp_stages, segment - config.num_layers);
    const bool is_weight = name.ends_with(".weight"), is_scale = name.ends_with(".scale");
    const auto m = (is_weight || is_scale) ? module_index.find(name.substr(0, name.rfind('.'))) : module_index.end();
    if (m == module_index.end()) {
      layout.tensors.push_back({name, info.dtype, info.shape, OutputOrigin::kCopy, name, -1, "", segment});
      continue;
    }
    const PlannedModule& pm = plan.modules[static_cast<size_t>(m->second)];
    if (is_scale) {
      // A `.scale` belongs to an FP8/MXFP4 weight, which is either quantized or decoded below.
      DSV4_CHECK_IN("artifact", pm.source != model::TensorEncoding::kPlain,
                    "%s in %s: a .scale beside a weight the inventory expects in BF16", name.c_str(),
                    source.dir().c_str());
      continue;
    }
    if (pm.quantized()) {
      const ModuleScheme& ms = *pm.scheme;
      std::vector<quant::EncodedTensor> leaves = profile_module_layout(pm, module_writes_g_idx(pm));
      for (quant::EncodedTensor& t : quant::activation_layout(ms.scheme)) leaves.push_back(std::move(t));
      for (const quant::EncodedTensor& t : leaves) {
        layout.tensors.push_back({pm.names.release + "." + t.name, t.dtype, t.shape, OutputOrigin::kQuantized,
                                  pm.names.release, m->second, t.name, segment});
      }
    } else if (pm.source != model::TensorEncoding::kPlain) {
      layout.tensors.push_back({name, DType::kBF16, {pm.rows, pm.cols}, OutputOrigin::kDecodeBf16, pm.names.release,
                                m->second, "", segment});
    } else {
      layout.tensors.push_back({name, info.dtype, info.shape, OutputOrigin::kCopy, name, -1, "", segment});
    }
  }
  if (recipe.output.mtp_aliases) {
    for (int s = 0; s < mtp_stages; ++s) {
      const std::string p = "mtp." + std::to_string(s) + ".";
      const int segment = 1 + config.num_layers + s;
      for (const auto& [alias, of] : {std::pair<std::string, std::string>{p + "head.weight", "head.weight"},
                                      {p + "emb.tok_emb.weight", "embed.weight"}}) {
        DSV4_CHECK_IN("artifact", !source.contains(alias),
                      "%s already holds %s; mtp_aliases would overwrite it (set output.mtp_aliases: false)",
                      source.dir().c_str(), alias.c_str());
        const TensorInfo& info = source.info(of);
        layout.tensors.push_back({alias, info.dtype, info.shape, OutputOrigin::kAlias, of, -1, "", segment});
      }
    }
  }
  std::stable_sort(layout.tensors.begin(), layout.tensors.end(), [](const OutputTensor& a, const OutputTensor& b) {
    return a.segment != b.segment ? a.segment < b.segment : a.name < b.name;
  });
  layout.num_segments = 1 + config.num_layers + mtp_stages;
  if (recipe.output.profile == OutputProfile::kAppmanaDsv4Int) keep_source_shards(layout, source);
  return layout;
}

}  // namespace dsv4::calib
