// libFuzzer target: relevance judgements for `ziprerank eval` (batch JSONL or TREC qrels, format
// detected as the CLI does). Parsing must only ever fail with an InputError; accepted judgements
// evaluate a run drawn from them into metrics in [0, 1], and the reports format.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "fuzz_eval.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ziprerank::Qrels qrels;
  try {
    qrels = ziprerank::parse_qrels(text, "qrels.jsonl");
  } catch (const ziprerank::InputError&) {
    return 0;
  }
  // A run from the judgements: candidates (or relevant ids) in reverse order with one unjudged id
  // in front; every fourth query failed, every fifth missing.
  ziprerank::Run run;
  run.origin = "run";
  for (size_t q = 0; q < qrels.queries.size(); ++q) {
    const auto& j = qrels.queries[q];
    FUZZ_CHECK(!j.query_id.empty());
    FUZZ_CHECK(j.has_candidates || j.candidates.empty());
    if (q % 5 == 4) continue;
    ziprerank::RunEntry e;
    e.query_id = j.query_id;
    if (q % 4 == 3) {
      e.failed = true;
      e.error = "failed";
    } else {
      // A ranking never repeats an id (the run parser refuses that), so neither does this one.
      std::set<std::string> ranked = {"\x01unjudged"};
      e.ids.push_back("\x01unjudged");
      const auto& pool = j.has_candidates ? j.candidates : j.relevant;
      for (auto it = pool.rbegin(); it != pool.rend(); ++it) {
        if (ranked.insert(*it).second) e.ids.push_back(*it);
      }
      e.scores.assign(e.ids.size(), 0.0);
    }
    run.queries.push_back(std::move(e));
  }
  ziprerank::EvalOptions options;
  options.metrics.cutoffs = {1, 3, 10};
  if (!qrels.queries.empty() && qrels.queries.size() % 2 == 0) {
    options.expected_domains = ziprerank::mmdocir_domains();
    options.metrics.denominator = ziprerank::Denominator::kRetrieved;
  }
  ziprerank::fuzz::check_evaluation(run, qrels, options);
  return 0;
}
