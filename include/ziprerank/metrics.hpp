// Ranking metrics as MMDocIR defines them, and their aggregation per domain (torch-free).
//
// For one query, R = the first k ids of the ranking (fewer when the ranking is shorter) and
// G = the relevant ids:
//   Recall@k    = |R∩G| / |G|
//   Precision@k = |R∩G| / k            (kRetrieved: / |R|, as MMDocIR's reference code)
//   nDCG@k      = DCG / IDCG, binary gain, discount 1/log2(i+2) for 0-based rank i; IDCG sums
//                 min(k, |G|) ideal positions (kRetrieved: min(|R|, |G|))
//   MRR@k       = 1 / (1-based rank of the first hit within R), 0 without a hit
//   MAP@k       = mean over queries of AP = Σ over hits in R of (hits so far / rank) / #hits in R,
//                 0 without a hit. Dividing by the hits found rather than by |G| is MMDocIR's
//                 definition; trec_eval's AP divides by |G|.
// The two denominators differ only when a ranking has fewer than k entries: MMDocIR's code
// divides by the length of the retrieved list, FORMATS.md divides by k (the default here).
// MRR and MAP are computed within the top K for K = the largest cut-off, as MMDocIR computes them
// within its retrieved top-k list; pass a large cut-off for uncut values.
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

#include "ziprerank/run_io.hpp"

namespace ziprerank {

enum class Denominator {
  kCutoff,     ///< Precision@k divides by k; IDCG over min(k, |G|) positions (FORMATS.md)
  kRetrieved,  ///< Precision@k divides by |R|; IDCG over min(|R|, |G|) (MMDocIR's code)
};

using IdSet = std::unordered_set<std::string>;

// Single-query metrics. `ranking` is best first; k >= 1.
double recall_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k);
double precision_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k,
                      Denominator denominator = Denominator::kCutoff);
double ndcg_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k,
                 Denominator denominator = Denominator::kCutoff);
double reciprocal_rank_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k);
double average_precision_at_k(const std::vector<std::string>& ranking, const IdSet& relevant,
                              int k);

struct MetricOptions {
  std::vector<int> cutoffs = {1, 3, 5, 10};  ///< sorted ascending, unique, each >= 1
  Denominator denominator = Denominator::kCutoff;
};

/// Column names, in the order query_metrics returns values: R@k for every k, nDCG@k for every k,
/// MRR@K, MAP@K (K = largest cut-off), P@k for every k.
std::vector<std::string> metric_names(const MetricOptions& options);

/// All metrics of one query, in metric_names order.
std::vector<double> query_metrics(const std::vector<std::string>& ranking, const IdSet& relevant,
                                  const MetricOptions& options);

/// Metric values averaged over a group of queries (a domain, all queries, or the domains).
struct MetricRow {
  std::string label;           ///< the domain, "macro", "micro", or a query's id
  std::string domain;          ///< a query's row: its domain (may be empty)
  int queries = 0;             ///< queries averaged (for macro: over all its domains)
  int domains = 0;             ///< macro only: domains averaged
  std::vector<double> values;  ///< in metric_names order; fractions in [0, 1]
};

struct EvalOptions {
  MetricOptions metrics;
  /// Domains the macro average runs over, in report order. A listed domain with no queries
  /// counts as 0 in the macro average (MMDocIR's "Avg" over its 10 domains). Empty: the domains
  /// present, sorted by name.
  std::vector<std::string> expected_domains;
  /// Also report every evaluated query's own metrics (EvalReport::queries), as trec_eval -q.
  bool per_query = false;
};

struct EvalReport {
  std::string run_tag;             ///< the run's name in the report (a TREC run's tag unless given)
  std::vector<MetricRow> queries;  ///< per_query: one row per evaluated query, in qrels order
  std::vector<std::string> metric_names;
  MetricOptions metrics;
  std::vector<MetricRow> domains;  ///< one row per domain; empty when no query has a domain
  MetricRow macro;                 ///< meaningful only when !domains.empty()
  MetricRow micro;
  int evaluated = 0;         ///< queries with judgements that entered the averages
  int error_records = 0;     ///< of those: the run holds an error record (empty ranking)
  int missing_from_run = 0;  ///< of those: absent from the run (empty ranking)
  int not_in_qrels = 0;      ///< run queries without judgements (ignored)
  int without_relevant = 0;  ///< judged queries with no relevant id (left out: recall undefined)
  int relevant_outside_candidates = 0;  ///< queries whose relevant ids are not all candidates
  int outside_expected_domains = 0;     ///< queries whose domain is not in expected_domains
  std::vector<std::string> warnings;    ///< one line each, for the user
  std::vector<std::string> notes;       ///< facts worth a line that need no action
};

/// Joins the run with the judgements and averages. Failed and missing queries count as empty
/// rankings (every metric 0); queries only in the run are ignored. Both cases are reported in
/// `warnings` with their counts.
EvalReport evaluate(const Run& run, const Qrels& qrels, const EvalOptions& options);

/// Table of domain rows, then "macro" and "micro"; values ×100 with one decimal. Query rows, when
/// present, come first (as trec_eval -q prints each query before "all"). With `run_line` a known
/// run tag heads the table as a "run TAG" line (trec_eval's runid).
std::string format_eval_table(const EvalReport& report, bool run_line = false);

/// The report as JSON text (values as fractions, full precision).
std::string format_eval_json(const EvalReport& report);

/// The 10 MMDocIR domains, as spelled in MMDocIR_annotations.jsonl.
const std::vector<std::string>& mmdocir_domains();

}  // namespace ziprerank
