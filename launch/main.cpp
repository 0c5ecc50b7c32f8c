// main.cpp: the dsv4-calib binary. Parses the command line (CLI11), runs one subcommand, and is
// the single place that turns an exception into an error line and a non-zero exit code.
//
//   dsv4-calib make-model --preset tiny --out /tmp/tiny
//   dsv4-calib inspect /tmp/tiny
//   dsv4-calib forward --model /tmp/tiny --ids ids.json
//   dsv4-calib tokenize --tokenizer /models/dsv4 --text "Hello" --json
//   dsv4-calib plan --recipe recipes/w4a16_mtp.yaml --model /tmp/tiny
//   dsv4-calib --recipe recipes/w4a16_mtp.yaml --model /tmp/tiny --dataset calib.jsonl --out /tmp/q
//   dsv4-calib verify /tmp/q --source /tmp/tiny
//   dsv4-calib eval --model /tmp/q --data calib.jsonl --reference /tmp/tiny
//   dsv4-calib --help
//
// What a failure prints: a user's mistake (dsv4::Error of kind kUser: a flag, recipe key, input
// file or output directory) prints its message alone, `-v 2` adds where it was raised; an
// internal error prints "[component] file:line: condition: message". Arguments nobody expected
// are listed in order with the nearest flag (cli_suggest.h); no arguments at all print the usage.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "common/check.h"
#include "common/log.h"
#include "launch/cli_suggest.h"
#include "launch/commands.h"

#ifndef DSV4_VERSION
#define DSV4_VERSION "dev"
#endif

int main(int argc, char** argv) {
  CLI::App app{"dsv4-calib: GPTQ calibration of DeepSeek-V4-Flash to a vLLM-ready checkpoint"};
  app.set_version_flag("--version", std::string("dsv4-calib ") + DSV4_VERSION);
  app.require_subcommand(0, 1);  // none: the main job, `dsv4-calib --recipe R`
  int verbosity = 1;
  app.add_option("-v,--verbosity", verbosity, "0 = warnings only, 1 = info, 2 = debug")
      ->check(CLI::Range(0, 2));

  const dsv4::launch::Command make_model = dsv4::launch::cmd_make_model_register(app);
  const dsv4::launch::Command inspect = dsv4::launch::cmd_inspect_register(app);
  const dsv4::launch::Command forward = dsv4::launch::cmd_forward_register(app);
  const dsv4::launch::Command solve = dsv4::launch::cmd_solve_register(app);
  const dsv4::launch::Command tokenize = dsv4::launch::cmd_tokenize_register(app);
  const dsv4::launch::Command plan = dsv4::launch::cmd_plan_register(app);
  const dsv4::launch::Command eval = dsv4::launch::cmd_eval_register(app);
  const dsv4::launch::Command verify = dsv4::launch::cmd_verify_register(app);
  const dsv4::launch::Command dequant = dsv4::launch::cmd_dequant_register(app);
  const dsv4::launch::Command preflight = dsv4::launch::cmd_preflight_register(app);
  const dsv4::launch::Command report = dsv4::launch::cmd_report_register(app);
  const dsv4::launch::Command calibrate = dsv4::launch::cmd_calibrate_register(app);

  app.footer(
      "First time? `bash launch/quickstart.sh` builds, makes a tiny checkpoint and calibrates it (README.md).\n"
      "The main job: dsv4-calib --recipe recipes/w4a16_mtp.yaml --model DIR --dataset FILE --out DIR\n"
      "Each subcommand has its own --help; docs/USAGE.md describes them all.");

  // Nothing asked for: the usage, rather than an error about a missing --recipe.
  if (argc <= 1) {
    std::fputs(app.help().c_str(), stdout);
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& e) {
    // CLI11 lists these last-first and suggests nothing; say them in order, with the nearest flag.
    dsv4::log_error("%s", dsv4::launch::cli_extras_message(app, "dsv4-calib").c_str());
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  dsv4::set_log_level(verbosity);
  try {
    if (app.got_subcommand("make-model")) return make_model();
    if (app.got_subcommand("inspect")) return inspect();
    if (app.got_subcommand("forward")) return forward();
    if (app.got_subcommand("solve")) return solve();
    if (app.got_subcommand("tokenize")) return tokenize();
    if (app.got_subcommand("plan")) return plan();
    if (app.got_subcommand("eval")) return eval();
    if (app.got_subcommand("verify")) return verify();
    if (app.got_subcommand("dequant")) return dequant();
    if (app.got_subcommand("preflight")) return preflight();
    if (app.got_subcommand("report")) return report();
    return calibrate();
  } catch (const dsv4::Error& e) {
    // A user's mistake in their words; where it was caught only with -v 2. Internal errors keep
    // the file, line and failing expression: they are for whoever fixes the code.
    dsv4::log_error("%s", e.what());
    if (e.user()) dsv4::log_debug("(%s)", e.detail().c_str());
    return 1;
  } catch (const std::exception& e) {
    dsv4::log_error("unexpected error: %s", e.what());
    return 1;
  }
  return 0;
}
