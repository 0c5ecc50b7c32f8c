// hessian_key.cpp: hessian_id_describe (see hessian_key.h).
#include "calib/hessian_key.h"

namespace dsv4::calib {

std::string hessian_id_describe(const HessianId& id) {
  const HessianKey& k = id.key;
  std::string s = "layers." + std::to_string(k.layer) + " ";
  switch (k.input) {
    case HessianInput::kAttnInput: s += "attention input"; break;
    case HessianInput::kQr: s += "attention qr"; break;
    case HessianInput::kSharedW13: s += "shared expert w1/w3"; break;
    case HessianInput::kExpertW13:
      s += k.all_experts() ? "all experts' w1/w3" : "expert " + std::to_string(k.expert) + " w1/w3";
      break;
    case HessianInput::kOwn: {
      std::string leaf(model::linear_role_leaf(k.role));
      if (const size_t e = leaf.find(".E."); e != std::string::npos) leaf.replace(e + 1, 1, std::to_string(k.expert));
      s += leaf;
      break;
    }
  }
  if (id.group >= 0) s += " group " + std::to_string(id.group);
  return s;
}

}  // namespace dsv4::calib
