// commands.h: the subcommands of dsv4-calib. Each registers its options on the CLI11 app and
// returns the function that runs it (returning the process exit code).
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace dsv4::launch {

using Command = std::function<int()>;

Command cmd_make_model_register(CLI::App& app);
Command cmd_inspect_register(CLI::App& app);
Command cmd_forward_register(CLI::App& app);
Command cmd_solve_register(CLI::App& app);
Command cmd_tokenize_register(CLI::App& app);
Command cmd_plan_register(CLI::App& app);
Command cmd_eval_register(CLI::App& app);
Command cmd_verify_register(CLI::App& app);
Command cmd_dequant_register(CLI::App& app);
Command cmd_preflight_register(CLI::App& app);
Command cmd_report_register(CLI::App& app);
// The main job (`dsv4-calib --recipe R ...`): its options live on the top-level app itself.
Command cmd_calibrate_register(CLI::App& app);

}  // namespace dsv4::launch
