// fuzz_recipe_yaml.cpp: the bytes as a recipe YAML through recipe_parse (yaml-cpp, typed structs,
// unknown keys, check()); a recipe it accepts is written back with recipe_to_yaml and parsed
// again, which must succeed (recipe.h promises the round trip).
// Seeds: tests/fuzz/corpus/recipe_yaml/ (the shipped recipes/*.yaml).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "calib/recipe.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  bool parsed = false;
  std::string again;
  fuzz::expect_errors([&] {
    const calib::Recipe r = calib::recipe_parse(std::string(fuzz::text(data, size)), "recipe.yaml");
    parsed = true;
    again = calib::recipe_to_yaml(r);
  });
  // An accepted recipe's resolved YAML must parse: an Error here is a finding, not bad input.
  if (parsed) (void)calib::recipe_parse(again, "resolved recipe.yaml");
  return 0;
}
