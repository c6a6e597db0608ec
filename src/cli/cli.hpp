// Shared pieces of the command-line front end. The CLI only parses flags and calls the library.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace ziprerank {
struct ModelOptions;
}

namespace ziprerank::cli {

/// Options every model-using command accepts.
struct CommonOptions {
  std::string model;  ///< empty = the embedded default model
  std::string device = "cpu";
  std::string dtype = "auto";
  std::string matmul = "auto";
  int threads = 0;
};

/// Adds --model/--device/--dtype/--matmul/--threads to a subcommand.
void add_model_options(CLI::App* cmd, CommonOptions& options);
/// Applies --threads and returns the model folder (resolving the default). `encode_workers`, when
/// given, receives how many pages to encode at once (see configure_threads).
std::string resolve_model(const CommonOptions& options, int* encode_workers = nullptr);
/// Whether libtorch's pool should take the threads for this model (give_threads_to_libtorch_
/// products): its products go through libtorch (bfloat16 compute or products, on CPU) and it is
/// wide enough (hidden size >= 1024) to gain; the embedded model is not.
bool libtorch_threads_pay(const std::string& dir, const ModelOptions& mo);
/// Where libtorch_threads_pay: runs the program again with a passive OpenMP wait policy when it
/// is not set (rerun_with_passive_openmp), then gives libtorch's pool the threads.
void settle_product_threads(const std::string& dir, const ModelOptions& mo);

/// -o/--output for a command that writes a folder, required, listed first; --out, its former
/// spelling, stays accepted (hidden from --help) so that older scripts keep working.
inline void add_output_folder_option(CLI::App* cmd, std::string& out, const std::string& what) {
  cmd->add_option("-o,--output", out, what + " (required)");
  cmd->add_option("--out", out, "Former spelling of --output")->group("");
  cmd->parse_complete_callback([&out] {
    if (out.empty()) throw CLI::RequiredError("-o,--output");
  });
}

/// Each command group registers its subcommands; the callback runs after parsing and returns the
/// process exit code.
using Handler = std::function<int()>;
void register_model_commands(CLI::App& app, Handler& handler);
void register_pipeline_commands(CLI::App& app, Handler& handler);

}  // namespace ziprerank::cli
