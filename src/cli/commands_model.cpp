// Commands about model folders: inspect, init, tokenize.
#include <spdlog/spdlog.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli.hpp"
#include "core/json_util.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/inspect.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/model_init.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank::cli {

namespace {

struct InspectArgs {
  CommonOptions common;
  std::string format = "table";
};

struct InitArgs {
  std::string config;
  std::string preprocessor;
  std::string tokenizer;
  std::string out;
  std::string dtype = "float32";
  std::string name;
  uint64_t seed = 0;
  int match_heads = 0;
  double spelling_embeddings = 0.0;
  bool zero_deepstack = false;
  bool force = false;
};

struct TokenizeArgs {
  std::string model;
};

int run_inspect(const InspectArgs& a) {
  const std::string dir = resolve_model(a.common);
  const InspectResult r = inspect_model(dir);
  if (a.format == "json") {
    // Paths (the folder, file names) need not be UTF-8: such bytes become U+FFFD.
    std::cout << r.report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << format_inspect_table(r.report);
  }
  std::cout << "peak RSS     " << format_bytes(static_cast<double>(peak_rss_bytes())) << "\n";
  return r.valid ? 0 : static_cast<int>(ExitCode::kBadInput);
}

int run_init(const InitArgs& a) {
  ModelConfig config = a.config.empty() ? tiny_model_config() : load_model_config(a.config);
  PreprocessorConfig pre = a.preprocessor.empty() ? qwen3_vl_preprocessor_config()
                                                  : load_preprocessor_config(a.preprocessor);
  if (pre.patch_size != config.vision.patch_size ||
      pre.merge_size != config.vision.spatial_merge_size ||
      pre.temporal_patch_size != config.vision.temporal_patch_size) {
    throw UsageError("the preprocessor's patch/merge/temporal sizes (" +
                     std::to_string(pre.patch_size) + "/" + std::to_string(pre.merge_size) + "/" +
                     std::to_string(pre.temporal_patch_size) +
                     ") differ from the vision config's; pass a matching --preprocessor");
  }
  InitOptions o;
  o.out_dir = a.out;
  o.tokenizer_src = a.tokenizer;
  o.seed = a.seed;
  o.dtype = a.dtype;
  o.name = a.name;
  o.overwrite = a.force;
  o.match_heads = a.match_heads;
  o.spelling_embeddings = a.spelling_embeddings;
  o.zero_deepstack = a.zero_deepstack;
  init_model_folder(config, pre, o);
  std::cout << a.out << "\n";
  return 0;
}

int run_tokenize(const TokenizeArgs& a) {
  const auto tok = load_tokenizer(a.model.empty() ? default_model_dir() : a.model);
  spdlog::debug("tokenizer: {} ({} ids)", tok->kind(), tok->vocab_size());
  std::string line;
  size_t lineno = 0;
  while (std::getline(std::cin, line)) {
    ++lineno;
    if (line.empty()) continue;
    const std::string origin = "stdin line " + std::to_string(lineno);
    const auto value = detail::parse_json(line, origin);
    if (!value.is_string()) {
      throw InputError(origin + ": expected a JSON string such as \"hello world\"");
    }
    const auto ids = tok->encode(value.get<std::string>());
    std::cout << nlohmann::json(ids).dump() << "\n";
  }
  return 0;
}

}  // namespace

void register_model_commands(CLI::App& app, Handler& handler) {
  {
    auto args = std::make_shared<InspectArgs>();
    auto* cmd = app.add_subcommand("inspect",
                                   "Show a model folder's architecture, parameters and dtypes, "
                                   "and check its weights against its config");
    add_model_options(cmd, args->common);
    cmd->add_option("--format", args->format, "Output format: table or json")
        ->check(CLI::IsMember({"table", "json"}))
        ->capture_default_str();
    cmd->callback([args, &handler] { handler = [args] { return run_inspect(*args); }; });
  }
  {
    auto args = std::make_shared<InitArgs>();
    auto* cmd = app.add_subcommand(
        "init", "Write a randomly initialised model folder (for tests and as a training seed)");
    add_output_folder_option(cmd, args->out, "Folder to write");
    cmd->add_option("--config", args->config,
                    "config.json describing the architecture (default: a tiny built-in config)");
    cmd->add_option(
        "--preprocessor", args->preprocessor,
        "preprocessor_config.json (default: Qwen3-VL's: patch 16, merge 2, mean/std 0.5)");
    cmd->add_option(
        "--tokenizer", args->tokenizer,
        "tokenizer.json or tokenizer.model to copy (default: a byte-level BPE with no "
        "merges; the config's vocab size and special-token ids are then set to its own)");
    cmd->add_option("--dtype", args->dtype, "Stored dtype: float32 or bfloat16")
        ->check(CLI::IsMember({"float32", "bfloat16"}))
        ->capture_default_str();
    cmd->add_option("--name", args->name,
                    "Name recorded in config.json (default: the folder name)");
    cmd->add_option("--seed", args->seed, "Random seed")->capture_default_str();
    cmd->add_option("--match-heads", args->match_heads,
                    "First-layer query heads that start as token-matching heads (a token attends "
                    "to earlier copies of itself, e.g. query words seen again on a page); 0 = "
                    "plain random initialisation")
        ->capture_default_str();
    cmd->add_option("--spelling-embeddings", args->spelling_embeddings,
                    "Weight in [0, 1) of a spelling code in each word piece's embedding "
                    "(characters by place, length, word start): pieces that look alike start "
                    "close, so a vision tower learning to read gets credit for partly read "
                    "words; 0 = plain random")
        ->capture_default_str();
    cmd->add_flag("--zero-deepstack", args->zero_deepstack,
                  "DeepStack mergers start with a zero output projection: the language model "
                  "first sees the tower only through the merged visual tokens");
    cmd->add_flag("--force", args->force, "Overwrite an existing model folder");
    cmd->callback([args, &handler] { handler = [args] { return run_init(*args); }; });
  }
  {
    auto args = std::make_shared<TokenizeArgs>();
    auto* cmd = app.add_subcommand(
        "tokenize",
        "Read one JSON string per line on stdin, write its token ids as a JSON array per line");
    cmd->add_option(
        "--model", args->model,
        "Folder holding tokenizer.json or tokenizer.model (default: the embedded model)");
    cmd->callback([args, &handler] { handler = [args] { return run_tokenize(*args); }; });
  }
}

}  // namespace ziprerank::cli
