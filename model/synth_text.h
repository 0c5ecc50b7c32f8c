// synth_text.h: a deterministic synthetic calibration set for the synthetic checkpoints: chat
// records ({"messages": [user, assistant]} JSONL, the format the real calibration sets use) of
// short English-like sentences, so the whole job runs on a fresh machine with no download.
// The text carries no meaning; a random-weight model has none to lose either.
//
//   write_file_atomic(dir + "/calib.jsonl", synth_calibration_jsonl(64, /*seed=*/0));
//
// Tests: tests/model/test_synth.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace dsv4::model {

std::string synth_calibration_jsonl(int records, uint64_t seed);

}  // namespace dsv4::model
