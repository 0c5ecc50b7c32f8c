// fuzz_config_json.cpp: the bytes as a checkpoint's config.json, through what
// ModelConfig::from_file does after reading the file (json_parse with the depth guard, then
// from_json: keys, types, bounds) and then check(), as every command does. from_file turns
// nlohmann's parse_error into a dsv4::Error; here it is the same expected answer.
// Seeds: tests/fuzz/corpus/config_json/ (the tiny preset's config and a variant).
#include <cstddef>
#include <cstdint>

#include "common/json_guard.h"
#include "model/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  fuzz::expect_errors([&] {
    nlohmann::json j;
    try {
      j = json_parse(fuzz::text(data, size), "config.json");
    } catch (const nlohmann::json::parse_error&) {
      return;  // from_file: "config.json: not valid JSON: ..."
    }
    const model::ModelConfig c = model::ModelConfig::from_json(j, "config.json");
    c.check();
  });
  return 0;
}
