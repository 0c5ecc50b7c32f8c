// suggest.h: the nearest known word to a typo, for "did you mean ...?" in user errors. One
// implementation for the command line (launch/cli_suggest.h) and recipe keys (calib/yaml_reader).
//
//   suggest_nearest("--num-sample", {"--num-samples", "--seq-len"})  // "--num-samples"
//   suggest_nearest("num_sample", reader_keys)                       // "num_samples"
//
// Tests: tests/common/test_suggest.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace dsv4 {

// Levenshtein distance (insert, delete, substitute: 1 each).
size_t suggest_edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `word`, or "" when none is close: at most 2 edits, and fewer than a
// third of the word's length for short words, so that `-x` suggests nothing rather than `-v`.
std::string suggest_nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace dsv4
