// The check the run and qrels targets share: evaluating a run against judgements gives metrics
// in [0, 1], and the report formats as a table and as JSON.
#pragma once

#include "fuzz_util.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/metrics.hpp"
#include "ziprerank/run_io.hpp"

namespace ziprerank::fuzz {

inline void check_metric_row(const MetricRow& row) {
  for (double v : row.values) FUZZ_CHECK(v >= 0.0 && v <= 1.0);  // also rejects NaN
}

/// Evaluates `run` against `qrels`; an InputError (e.g. no judged query has a relevant id) is an
/// accepted outcome, anything else is checked.
inline void check_evaluation(const Run& run, const Qrels& qrels, const EvalOptions& options) {
  EvalReport report;
  try {
    report = evaluate(run, qrels, options);
  } catch (const InputError&) {
    return;
  }
  check_metric_row(report.micro);
  check_metric_row(report.macro);
  for (const auto& row : report.domains) check_metric_row(row);
  format_eval_table(report);
  format_eval_json(report);
}

}  // namespace ziprerank::fuzz
