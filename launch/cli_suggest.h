// cli_suggest.h: the message for command-line arguments nobody expected, in the user's order and
// with the nearest known flag or subcommand for each typo (header-only: main.cpp and its test).
//
//   catch (const CLI::ExtrasError&) {
//     log_error("%s", cli_extras_message(app).c_str());
//     // "unexpected argument(s): --num-sample 8 (did you mean --num-samples?); see dsv4-calib --help"
//   }
//
// CLI11 2.1's ExtrasError lists the arguments last-first (it keeps argv reversed); App::remaining()
// keeps them in command-line order, per (sub)command, which is what this reads.
// Tests: tests/launch/test_cli_suggest.cpp, tests/e2e/cli_user_errors.sh.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace dsv4::launch {

// Levenshtein distance (insert, delete, substitute: 1 each).
inline size_t cli_edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `word`, or "" when none is close: at most 2 edits, and fewer than a
// third of the word's length for short words, so that `-x` suggests nothing rather than `-v`.
inline std::string cli_nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const std::string& c : candidates) {
    const size_t d = cli_edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  const size_t limit = std::min<size_t>(2, std::max<size_t>(1, word.size() / 3));
  return best_d <= limit ? best : "";
}

// The flags ("--num-samples", "-v") of `app` and its non-subcommand option groups.
inline std::vector<std::string> cli_flag_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* o : app.get_options()) {
    for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
    for (const std::string& s : o->get_snames()) names.push_back("-" + s);
  }
  return names;
}

// "unexpected argument(s): A B C (did you mean --x?); see PROG [SUB] --help". Reads the
// arguments left over in `app` (the main job's flags) and in each subcommand it parsed; a flag is
// matched against the flags of the command it was given to (a subcommand also accepts the
// top-level flags), a bare word against the subcommand names.
inline std::string cli_extras_message(const CLI::App& app, const std::string& program) {
  std::vector<std::string> extras = app.remaining();
  const CLI::App* scope = &app;
  for (const CLI::App* sub : app.get_subcommands()) {
    const std::vector<std::string> more = sub->remaining();
    extras.insert(extras.end(), more.begin(), more.end());
    scope = sub;
  }
  std::vector<std::string> flags = cli_flag_names(*scope);
  if (scope != &app) {
    const std::vector<std::string> top = cli_flag_names(app);
    flags.insert(flags.end(), top.begin(), top.end());
  }
  std::vector<std::string> subcommands;
  for (const CLI::App* sub : app.get_subcommands({})) subcommands.push_back(sub->get_name());

  std::string list;
  std::vector<std::string> hints;
  for (const std::string& e : extras) {
    list += (list.empty() ? "" : " ") + e;
    std::string hint;
    if (e.rfind("-", 0) == 0) {
      hint = cli_nearest(e.substr(0, e.find('=')), flags);  // "--num-sample=8" -> "--num-sample"
    } else if (scope == &app) {
      hint = cli_nearest(e, subcommands);
    }
    if (!hint.empty() && std::find(hints.begin(), hints.end(), hint) == hints.end()) hints.push_back(hint);
  }
  std::string out = std::string(extras.size() == 1 ? "unexpected argument: " : "unexpected arguments: ") + list;
  for (size_t i = 0; i < hints.size(); ++i) {
    out += (i == 0 ? " (did you mean " : " or ") + hints[i] + (i + 1 == hints.size() ? "?)" : "");
  }
  const std::string command = scope == &app ? program : program + " " + scope->get_name();
  return out + "; see " + command + " --help";
}

}  // namespace dsv4::launch
