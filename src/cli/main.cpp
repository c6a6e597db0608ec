// ziprerank: a multimodal listwise reranker. This file is the program's edge: it parses the
// command line, sets up logging, runs one command and maps exceptions to exit codes.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/cli.hpp"
#include "cli/commands_eval.hpp"
#include "cli/commands_render.hpp"
#include "cli/commands_serve.hpp"
#include "cli/commands_train.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/runtime.hpp"

namespace ziprerank::cli {

void add_model_options(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option(
      "--model", o.model,
      "Model folder (Hugging Face layout); default: the embedded model, or $ZIPRERANK_MODEL");
  cmd->add_option("--device", o.device, "Compute device: cpu, cuda or cuda:N")
      ->capture_default_str();
  cmd->add_option(
         "--dtype", o.dtype,
         "Compute dtype: auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16")
      ->capture_default_str();
  cmd->add_option("--matmul", o.matmul,
                  "Matrix products at float32 compute on CPU: bfloat16 (inputs rounded to "
                  "bfloat16, float32 accumulation; 2-3x faster on CPUs with AMX-BF16), float32, "
                  "or auto (bfloat16 where a short measurement, kept per host in "
                  "~/.cache/ziprerank, finds them clearly faster)")
      ->check(CLI::IsMember({"auto", "float32", "fp32", "bfloat16", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--threads", o.threads,
                  "Compute threads (0 = OpenBLAS's own count: OPENBLAS_NUM_THREADS, else every "
                  "core); on CPU, pages are encoded this many at a time, one thread "
                  "each")
      ->capture_default_str();
}

std::string resolve_model(const CommonOptions& o, int* encode_workers) {
  const int workers = configure_threads(o.threads);
  if (encode_workers) *encode_workers = workers;
  if (!o.model.empty()) return o.model;
  if (const char* env = std::getenv("ZIPRERANK_MODEL"); env && *env) {
    if (!std::filesystem::is_directory(env)) {
      throw InputError(std::string("ZIPRERANK_MODEL names '") + env +
                       "', which is not a model folder; set it to one, unset it for the "
                       "embedded model, or pass --model");
    }
    spdlog::info("using the model folder ZIPRERANK_MODEL names: {}", env);
    return env;
  }
  const std::string dir = default_model_dir();
  spdlog::info("using the embedded model at {}", dir);
  return dir;
}

}  // namespace ziprerank::cli

int main(int argc, char** argv) {
  using namespace ziprerank;
  use_native_blas_kernels(argv);
  remember_program_arguments(argv);
  tune_allocator();
  CLI::App app{
      "ziprerank: rerank document pages for a query with a vision-language model.\n"
      "Results go to stdout, logs to stderr."};
  app.set_version_flag("--version", std::string("ziprerank ") + version_string());
  app.require_subcommand(1);
  app.fallthrough();
  bool verbose = false;
  std::string log_level = "info";
  app.add_flag("-v,--verbose", verbose, "Verbose logging (same as --log-level debug)");
  app.add_option("--log-level", log_level, "Log level: trace, debug, info, warn, error, off")
      ->capture_default_str();

  cli::Handler handler;
  cli::register_model_commands(app, handler);
  cli::register_pipeline_commands(app, handler);
  cli::register_eval_command(app, handler);
  cli::register_render_command(app, handler);
  cli::register_serve_command(app, handler);
  cli::register_train_command(app, handler);

  // The first word that is not an option must be a command, even beside --help (which would
  // otherwise print the general help and exit 0 for a mistyped command).
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--log-level") {
      ++i;
      continue;
    }
    if (arg.empty() || arg[0] == '-') continue;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) known = known || sub->get_name() == arg;
    if (!known) {
      std::cerr << "ziprerank: error: unknown command '" << arg << "'\n"
                << "Run with --help for the commands.\n";
      return static_cast<int>(ExitCode::kUsage);
    }
    break;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "ziprerank: error: " << e.what() << "\n"
              << "Run with --help for usage.\n";
    return static_cast<int>(ExitCode::kUsage);
  }

  try {
    setup_logging(verbose ? "debug" : log_level);
    warn_if_reference_blas();
    if (!handler) throw InternalError("no command handler registered");
    const int code = handler();
    std::cout.flush();
    return code;
  } catch (const Error& e) {
    spdlog::shutdown();
    std::cerr << "ziprerank: error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::bad_alloc&) {
    std::cerr << "ziprerank: error: out of memory\n";
    return static_cast<int>(ExitCode::kInternal);
  } catch (const std::exception& e) {
    std::cerr << "ziprerank: internal error: " << e.what() << "\n";
    return static_cast<int>(ExitCode::kInternal);
  }
}
