// Commands of the reranking pipeline and training. Their flags are declared here so that --help
// documents the full interface; each command reports plainly when this build cannot run it yet.
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank::cli {

namespace {

struct PipelineArgs {
  CommonOptions common;
  std::string query;
  std::vector<std::string> pages;
  std::string input, output, run, qrels;
  std::string format = "jsonl";
  std::string scoring = "logits";
  double keep_ratio = 0.5;
  int window = 20;
  int stride = 10;
  int top_k = 0;
  bool resume = false;
  std::string shard;
};

[[noreturn]] void unavailable(const std::string& command) {
  throw Error(ExitCode::kInternal, "`ziprerank " + command +
                                       "` is not implemented in this version yet; see README.md "
                                       "for the commands available now");
}

void add_ranking_options(CLI::App* cmd, PipelineArgs& a) {
  add_model_options(cmd, a.common);
  cmd->add_option("--keep-ratio", a.keep_ratio,
                  "Fraction of each page's visual tokens kept by query-aware pruning (1.0 = off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--scoring", a.scoring,
                  "logits: one forward pass, one logit per candidate; generate: greedy decoding "
                  "of the ranking (slow baseline)")
      ->check(CLI::IsMember({"logits", "generate"}))
      ->capture_default_str();
  cmd->add_option("--window", a.window, "Candidates per forward pass (sliding window)")
      ->check(CLI::Range(1, 26))
      ->capture_default_str();
  cmd->add_option("--stride", a.stride, "Sliding-window stride")->check(CLI::PositiveNumber)->capture_default_str();
}

}  // namespace

void register_pipeline_commands(CLI::App& app, Handler& handler) {
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("rank", "Rank the pages of image files, folders or PDFs for one query");
    add_ranking_options(cmd, *a);
    cmd->add_option("-q,--query", a->query, "The search query")->required();
    cmd->add_option("-p,--pages", a->pages, "Image files, folders of images, or PDF files")->required();
    cmd->add_option("--format", a->format, "Output: jsonl or table")
        ->check(CLI::IsMember({"jsonl", "table"}))
        ->capture_default_str();
    cmd->add_option("--top-k", a->top_k, "Print only the best K pages (0 = all)")->capture_default_str();
    cmd->callback([&handler] { handler = [] { unavailable("rank"); return 0; }; });
  }
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("batch", "Rerank many queries from a JSONL file (resumable, shardable)");
    add_ranking_options(cmd, *a);
    cmd->add_option("-i,--input", a->input, "Queries JSONL")->required();
    cmd->add_option("-o,--output", a->output, "Run JSONL to write")->required();
    cmd->add_flag("--resume", a->resume, "Skip queries already finished in --output");
    cmd->add_option("--shard", a->shard, "Run shard K/N of the input (K in 1..N)");
    cmd->callback([&handler] { handler = [] { unavailable("batch"); return 0; }; });
  }
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("eval", "Recall, nDCG, MRR, MAP and Precision of a run against qrels");
    cmd->add_option("--run", a->run, "Run JSONL (or TREC run file)")->required();
    cmd->add_option("--qrels", a->qrels, "Queries JSONL with `relevant` ids (or TREC qrels)")->required();
    cmd->add_option("--format", a->format, "Output: table or json")->capture_default_str();
    cmd->callback([&handler] { handler = [] { unavailable("eval"); return 0; }; });
  }
  {
    auto* cmd = app.add_subcommand("render", "Render text passages or documents to page images");
    cmd->callback([&handler] { handler = [] { unavailable("render"); return 0; }; });
  }
  {
    auto* cmd = app.add_subcommand(
        "train", "Train: stage 1 (rendered-text listwise pretraining) or stage 2 (page distillation)");
    cmd->callback([&handler] { handler = [] { unavailable("train"); return 0; }; });
  }
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("bench", "Per-stage latency across scoring modes and keep ratios");
    add_model_options(cmd, a->common);
    cmd->callback([&handler] { handler = [] { unavailable("bench"); return 0; }; });
  }
}

}  // namespace ziprerank::cli
