// libFuzzer target: a run file for `ziprerank eval` (run JSONL or TREC run, format detected as the
// CLI does). Parsing must only ever fail with an InputError; an accepted run evaluates against
// judgements drawn from it into metrics in [0, 1], and the reports format.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_eval.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ziprerank::Run run;
  try {
    run = ziprerank::parse_run(text, "run.jsonl");
  } catch (const ziprerank::InputError&) {
    return 0;
  }
  // Judgements from the run itself: every third ranked id of each query is relevant, plus one id
  // the run never ranks; queries alternate between two domains.
  ziprerank::Qrels qrels;
  qrels.origin = "qrels";
  for (size_t q = 0; q < run.queries.size(); ++q) {
    const auto& entry = run.queries[q];
    FUZZ_CHECK(entry.ids.size() == entry.scores.size());
    FUZZ_CHECK(!entry.query_id.empty());
    ziprerank::QrelsEntry j;
    j.query_id = entry.query_id;
    j.domain = q % 2 ? "odd" : "even";
    for (size_t i = 0; i < entry.ids.size(); i += 3) j.relevant.push_back(entry.ids[i]);
    if (q % 3 == 0) j.relevant.push_back("\x01never-ranked");
    qrels.queries.push_back(std::move(j));
  }
  ziprerank::EvalOptions options;
  options.metrics.cutoffs = {1, 2, 5, 100};
  ziprerank::fuzz::check_evaluation(run, qrels, options);
  return 0;
}
