// verify_finite.cpp: the `finite` check (verify.h): no tensor of the artifact or of its source holds
// NaN or infinity (issue 26: a NaN in mtp.0.attn_norm, copied byte for byte, passed every other
// check). The scan is common/finite_scan.h's, the one `inspect` and the decoders use.
#include "calib/verify_check.h"

#include "common/check.h"
#include "common/finite_scan.h"

namespace dsv4::calib::verify_detail {

bool finite_check(const Checkpoint& art, const Checkpoint& src, int threads, VerifyCheck& c) {
  bool source_finite = true;
  for (const auto& [which, ckpt] : {std::pair{"artifact", &art}, std::pair{"source", &src}}) {
    const std::vector<TensorNonFinite> found = checkpoint_non_finite(*ckpt, threads);
    c.checked += static_cast<int64_t>(ckpt->num_tensors()) - static_cast<int64_t>(found.size());
    for (const TensorNonFinite& t : found) note_fail(c, std::string(which) + " " + t.text());
    if (ckpt == &src) source_finite = found.empty();
  }
  finish(c, c.failed == 0 ? strfmt("no NaN or infinity in %lld tensors", ll(c.checked))
                          : strfmt("%lld tensor(s) hold NaN or infinity", ll(c.failed)));
  if (!source_finite) c.detail += "; the source is damaged: the checks that decode it cannot run";
  return source_finite;
}

}  // namespace dsv4::calib::verify_detail
