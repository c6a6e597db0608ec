#include "cli/commands_eval.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "ziprerank/errors.hpp"
#include "ziprerank/metrics.hpp"
#include "ziprerank/run_io.hpp"

namespace ziprerank::cli {

namespace {

struct EvalArgs {
  std::string run, qrels;
  std::string run_format = "auto";
  std::string qrels_format = "auto";
  std::vector<int> k = {1, 3, 5, 10};
  std::vector<std::string> domains;
  std::string denominator = "k";
  std::string format = "table";
  bool per_query = false;
  std::string run_tag;  ///< empty: a TREC run's own tag
};

constexpr const char* kFooter =
    "Metrics, with R = the top k of a ranking (run order, best first) and G = the relevant ids:\n"
    "  R@k = |R∩G|/|G|;  P@k = |R∩G|/k;  nDCG@k: binary gain, discount 1/log2(i+2), ideal DCG\n"
    "  over min(k,|G|) positions;  MRR@K = 1/rank of the first hit in the top K;  MAP@K = mean\n"
    "  of AP = sum over hits in the top K of (hits so far/rank) / number of hits (MMDocIR's AP,\n"
    "  not trec_eval's, which divides by |G|). K = the largest --k.\n"
    "  --denominator retrieved divides P@k by |R| and takes the ideal DCG over min(|R|,|G|), as\n"
    "  MMDocIR's reference code does; this differs only for rankings shorter than k.\n"
    "Rows: with -q each query first, then each domain, \"macro\" (mean of the domain means) and\n"
    "\"micro\" (mean over queries, trec_eval's \"all\").\n"
    "Queries with an error record in the run, or missing from it, count as empty rankings (0);\n"
    "run queries absent from the qrels are ignored. Both are reported as warnings on stderr.\n"
    "Table values are x100 with one decimal, as in MMDocIR's tables; --format json gives\n"
    "fractions at full precision.";

RunFormat to_run_format(const std::string& s) {
  if (s == "jsonl") return RunFormat::kJsonl;
  if (s == "trec") return RunFormat::kTrec;
  return RunFormat::kAuto;
}

QrelsFormat to_qrels_format(const std::string& s) {
  if (s == "jsonl") return QrelsFormat::kJsonl;
  if (s == "trec") return QrelsFormat::kTrec;
  return QrelsFormat::kAuto;
}

int run_eval(const EvalArgs& a) {
  EvalOptions options;
  std::vector<int> k = a.k;
  std::sort(k.begin(), k.end());
  k.erase(std::unique(k.begin(), k.end()), k.end());
  if (k.empty() || k.front() < 1) throw UsageError("--k needs positive cut-offs, e.g. --k 1,3,5");
  options.metrics.cutoffs = k;
  options.per_query = a.per_query;
  options.metrics.denominator =
      a.denominator == "retrieved" ? Denominator::kRetrieved : Denominator::kCutoff;
  for (const std::string& d : a.domains) {
    if (d == "mmdocir") {
      const auto& all = mmdocir_domains();
      options.expected_domains.insert(options.expected_domains.end(), all.begin(), all.end());
    } else if (!d.empty()) {
      options.expected_domains.push_back(d);
    }
  }

  const Qrels qrels = read_qrels(a.qrels, to_qrels_format(a.qrels_format));
  // "-": the run from standard input (a pipe; read_run reads anonymous pipes).
  const Run run = read_run(a.run == "-" ? "/dev/stdin" : a.run, to_run_format(a.run_format));
  EvalReport report = evaluate(run, qrels, options);
  if (!a.run_tag.empty()) report.run_tag = a.run_tag;
  for (const std::string& w : report.warnings) spdlog::warn("{}", w);
  for (const std::string& n : report.notes) spdlog::info("{}", n);

  std::cout << (a.format == "json" ? format_eval_json(report)
                                   : format_eval_table(report, a.per_query || !a.run_tag.empty()));
  return 0;
}

}  // namespace

void register_eval_command(CLI::App& app, Handler& handler) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd =
      app.add_subcommand("eval", "Recall, nDCG, MRR, MAP and Precision of a run against qrels");
  cmd->add_option("--run", a->run,
                  "Run JSONL (`ziprerank batch` output) or TREC run file; - = standard input")
      ->required();
  cmd->add_option("--qrels", a->qrels,
                  "Queries JSONL with `relevant` ids and `domain` (the batch input) or TREC qrels")
      ->required();
  cmd->add_option("--run-format", a->run_format,
                  "auto (JSONL if the first line starts with '{'), jsonl or trec")
      ->check(CLI::IsMember({"auto", "jsonl", "trec"}))
      ->capture_default_str();
  cmd->add_option("--qrels-format", a->qrels_format, "auto, jsonl or trec")
      ->check(CLI::IsMember({"auto", "jsonl", "trec"}))
      ->capture_default_str();
  cmd->add_option("--k", a->k, "Cut-offs, comma-separated, e.g. 1,3,5 (MMDocIR reports R@1/3/5)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--domains", a->domains,
                  "Domains the macro average runs over, comma-separated; a listed domain with no "
                  "queries counts as 0. `mmdocir` = MMDocIR's 10 domains (its \"Avg\"). Default: "
                  "the domains present")
      ->delimiter(',');
  cmd->add_option("--denominator", a->denominator,
                  "k: P@k divides by k; retrieved: by the top-k list's length, as MMDocIR's "
                  "reference code (see below)")
      ->check(CLI::IsMember({"k", "retrieved"}))
      ->capture_default_str();
  cmd->add_option("--format", a->format, "Output: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->add_flag(
      "-q,--per-query", a->per_query,
      "Also give every evaluated query's own metrics, before the summary rows (as "
      "trec_eval -q, headed by the run tag when known): table rows labelled with the query "
      "id, or \"queries\" in JSON");
  cmd->add_option("-t,--run-tag", a->run_tag,
                  "The run's name in the report (a \"run\" line atop the table, \"run_tag\" in "
                  "JSON); default: a TREC run's tag column, none for a JSONL run");
  cmd->footer(kFooter);
  cmd->callback([&handler, a] { handler = [a] { return run_eval(*a); }; });
}

}  // namespace ziprerank::cli
