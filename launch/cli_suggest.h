// cli_suggest.h: the message for command-line arguments nobody expected, in the user's order and
// with the nearest known flag or subcommand for each typo (common/suggest.h; header-only: main.cpp
// and its test).
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

#include "common/suggest.h"

namespace dsv4::launch {

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
      hint = suggest_nearest(e.substr(0, e.find('=')), flags);  // "--num-sample=8" -> "--num-sample"
    } else if (scope == &app) {
      hint = suggest_nearest(e, subcommands);
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
