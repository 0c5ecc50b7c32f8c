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

// sentences > 0: every answer has that many sentences (about 10 tokens each: long records for
// full-length calibration samples); 0: 3 to 8, drawn per record.
std::string synth_calibration_jsonl(int records, uint64_t seed, int sentences = 0);

}  // namespace dsv4::model
