// verify_keys.cpp: the checks of which tensors the artifact holds (verify.h): `key_set` (exactly
// the layout's tensors, dtypes and shapes equal; counts per family), `no_source_scale` (no source
// `.scale` / `weight_scale_inv` leaked) and `mtp_unquantized` (nothing under `mtp.` quantized).
#include "calib/verify_check.h"

#include <map>
#include <set>

#include "common/check.h"
#include "model/inventory.h"

namespace dsv4::calib::verify_detail {

void key_set_check(const Expected& e, const Checkpoint& art, VerifyReport& report, VerifyCheck& c) {
  std::set<std::string> expected;
  for (const OutputTensor& t : e.layout.tensors) {
    expected.insert(t.name);
    if (!art.contains(t.name)) {
      note_fail(c, t.name + ": missing (" + std::string(output_origin_name(t.origin)) + ")");
      continue;
    }
    const TensorInfo& i = art.info(t.name);
    if (i.dtype != t.dtype || i.shape != t.shape) {
      note_fail(c, t.name + ": " + spec_string(i.dtype, i.shape) + ", expected " + spec_string(t.dtype, t.shape));
    } else {
      note_ok(c);
    }
  }
  std::map<std::string, int64_t> families;
  for (const std::string& n : art.names()) {
    ++families[model::tensor_family(n)];
    if (!expected.count(n)) note_fail(c, n + ": not in the layout (extra)");
  }
  report.families.assign(families.begin(), families.end());
  finish(c, strfmt("%zu tensors expected, %zu present in %zu families", e.layout.tensors.size(), art.num_tensors(),
                   families.size()));
}

void source_scale_check(const Expected& e, const Checkpoint& art, VerifyCheck& c) {
  // appmana-dsv4-int keeps the release's `.scale` name for its own BF16 scales: those the layout
  // places as a quantized module's `scale` are not leaks.
  std::set<std::string> own;
  for (const OutputTensor& t : e.layout.tensors) {
    if (t.origin == OutputOrigin::kQuantized && t.leaf == "scale") own.insert(t.name);
  }
  for (const std::string& n : art.names()) {
    if ((n.ends_with(".scale") && !own.count(n)) || n.ends_with("_scale_inv")) {
      note_fail(c, n + ": source-style scale tensor");
    } else {
      note_ok(c);
    }
  }
  finish(c, c.failed ? "source scales leaked into the artifact"
                     : own.empty() ? "no .scale / weight_scale_inv tensor"
                                   : strfmt("no source .scale / weight_scale_inv; %zu .scale of the profile's own", own.size()));
}

void mtp_unquantized_check(const Expected& e, const Checkpoint& art, VerifyCheck& c) {
  if (e.recipe.output.profile == OutputProfile::kAppmanaDsv4Int) {
    // The dsv4_int seed quantizes the MTP block like the main layers (its loader expects that);
    // what must hold is that MTP is kept: every MTP tensor the layout plans is there, as planned.
    int64_t n = 0;
    for (const OutputTensor& t : e.layout.tensors) {
      if (!t.name.starts_with("mtp.")) continue;
      ++n;
      if (!art.contains(t.name)) note_fail(c, t.name + ": missing");
      else note_ok(c);
    }
    finish(c, c.failed ? "MTP tensors missing" : strfmt("%lld MTP tensors kept (quantized as the recipe says)", ll(n)));
    return;
  }
  static const std::set<std::string> kQuantLeaves = {
      "weight_packed", "weight_scale",  "weight_global_scale", "weight_zero_point", "weight_g_idx",
      "weight_shape",  "input_scale",   "input_global_scale",  "input_zero_point",  "scale",
      "tq_packed",     "tq_norms"};
  for (const std::string& n : art.names()) {
    if (!n.starts_with("mtp.")) continue;
    const std::string leaf = n.substr(n.rfind('.') + 1);
    const DType d = art.info(n).dtype;
    if (kQuantLeaves.count(leaf)) note_fail(c, n + ": quantization tensor under mtp.");
    else if (leaf == "weight" && d != DType::kBF16 && d != DType::kF32)
      note_fail(c, n + ": " + std::string(dtype_name(d)) + " (expected BF16 or F32)");
    else note_ok(c);
  }
  for (const PlannedModule& m : e.plan.modules) {
    if (m.layer >= e.config.num_layers && m.quantized()) {
      note_fail(c, m.names.release + ": the recipe quantizes it (" + m.scheme->key_path + ")");
    }
  }
  finish(c, c.failed ? "the MTP block is quantized" : strfmt("%lld MTP tensors, none quantized", ll(c.checked)));
}

}  // namespace dsv4::calib::verify_detail
