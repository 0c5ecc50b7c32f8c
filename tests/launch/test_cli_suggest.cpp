// test_cli_suggest.cpp: the message for unexpected command-line arguments (launch/cli_suggest.h):
// arguments in command-line order (CLI11's own error lists them last-first), the nearest flag of
// the command they were given to, the nearest subcommand for a bare word, nothing for noise. The
// distance rule itself: tests/common/test_suggest.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "launch/cli_suggest.h"

namespace dsv4::launch {
namespace {

// The app shape of main.cpp: the main job's flags on the top level, subcommands with their own.
struct Cli {
  CLI::App app{"t"};
  int64_t num_samples = 0, seq_len = 0, eval_samples = 0;
  std::string recipe, model;
  Cli() {
    app.require_subcommand(0, 1);
    app.add_option("--recipe", recipe);
    app.add_option("--num-samples", num_samples);
    app.add_option("--seq-len", seq_len);
    CLI::App* eval = app.add_subcommand("eval", "e");
    eval->add_option("--model", model);
    eval->add_option("--num-samples", eval_samples);
    app.add_subcommand("verify", "v");
  }
  // The message for `args`, or "parsed" when CLI11 accepted them.
  std::string message(std::vector<std::string> args) {
    std::vector<const char*> argv = {"dsv4-calib"};
    for (const std::string& a : args) argv.push_back(a.c_str());
    try {
      app.parse(static_cast<int>(argv.size()), argv.data());
    } catch (const CLI::ExtrasError&) {
      return cli_extras_message(app, "dsv4-calib");
    }
    return "parsed";
  }
};

TEST(CliSuggest, ListsInOrderAndSuggestsTheNearestFlag) {
  EXPECT_EQ(Cli().message({"--recipe", "r.yaml", "--num-sample", "8", "--seq-len", "4"}),
            "unexpected arguments: --num-sample 8 (did you mean --num-samples?); see dsv4-calib --help");
  EXPECT_EQ(Cli().message({"--num-sample", "8", "foo", "--seqlen", "3"}),
            "unexpected arguments: --num-sample 8 foo --seqlen 3 (did you mean --num-samples or --seq-len?); "
            "see dsv4-calib --help");
  EXPECT_EQ(Cli().message({"--num-sample=8"}),
            "unexpected argument: --num-sample=8 (did you mean --num-samples?); see dsv4-calib --help");
}

TEST(CliSuggest, SubcommandFlagsAndSubcommandNames) {
  EXPECT_EQ(Cli().message({"eval", "--mdoel", "m", "--x"}),
            "unexpected arguments: --mdoel m --x (did you mean --model?); see dsv4-calib eval --help");
  EXPECT_EQ(Cli().message({"verfy", "out"}),
            "unexpected arguments: verfy out (did you mean verify?); see dsv4-calib --help");
  EXPECT_EQ(Cli().message({"--recipe", "r.yaml"}), "parsed");
}

}  // namespace
}  // namespace dsv4::launch
