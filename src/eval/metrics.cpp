#include "ziprerank/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace {

size_t retrieved_size(const std::vector<std::string>& ranking, int k) {
  return std::min(ranking.size(), static_cast<size_t>(std::max(k, 0)));
}

int hits_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k) {
  const size_t n = retrieved_size(ranking, k);
  int hits = 0;
  for (size_t i = 0; i < n; ++i) hits += relevant.count(ranking[i]) ? 1 : 0;
  return hits;
}

double discount(size_t i) { return 1.0 / std::log2(static_cast<double>(i) + 2.0); }

const char* kNoDomain = "(no domain)";

std::string domain_label(const std::string& domain) { return domain.empty() ? kNoDomain : domain; }

// Lists a few ids so the user can find the queries without a flood of output.
std::string id_sample(const std::vector<std::string>& ids) {
  constexpr size_t kShown = 5;
  std::string s;
  for (size_t i = 0; i < ids.size() && i < kShown; ++i) s += (i ? ", " : "") + ids[i];
  if (ids.size() > kShown) s += ", ...";
  return s;
}

MetricRow mean_row(const std::string& label, const std::vector<const std::vector<double>*>& rows,
                   size_t width) {
  MetricRow r;
  r.label = label;
  r.queries = static_cast<int>(rows.size());
  r.values.assign(width, 0.0);
  if (rows.empty()) return r;
  for (const auto* v : rows) {
    for (size_t j = 0; j < width; ++j) r.values[j] += (*v)[j];
  }
  for (double& x : r.values) x /= static_cast<double>(rows.size());
  return r;
}

}  // namespace

double recall_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k) {
  if (relevant.empty()) return 0.0;
  return static_cast<double>(hits_at_k(ranking, relevant, k)) /
         static_cast<double>(relevant.size());
}

double precision_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k,
                      Denominator denominator) {
  const size_t denom =
      denominator == Denominator::kCutoff ? static_cast<size_t>(k) : retrieved_size(ranking, k);
  if (denom == 0) return 0.0;
  return static_cast<double>(hits_at_k(ranking, relevant, k)) / static_cast<double>(denom);
}

double ndcg_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k,
                 Denominator denominator) {
  const size_t n = retrieved_size(ranking, k);
  double dcg = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (relevant.count(ranking[i])) dcg += discount(i);
  }
  const size_t depth = denominator == Denominator::kCutoff ? static_cast<size_t>(k) : n;
  const size_t ideal = std::min(depth, relevant.size());
  double idcg = 0.0;
  for (size_t i = 0; i < ideal; ++i) idcg += discount(i);
  return idcg > 0.0 ? dcg / idcg : 0.0;
}

double reciprocal_rank_at_k(const std::vector<std::string>& ranking, const IdSet& relevant, int k) {
  const size_t n = retrieved_size(ranking, k);
  for (size_t i = 0; i < n; ++i) {
    if (relevant.count(ranking[i])) return 1.0 / static_cast<double>(i + 1);
  }
  return 0.0;
}

double average_precision_at_k(const std::vector<std::string>& ranking, const IdSet& relevant,
                              int k) {
  const size_t n = retrieved_size(ranking, k);
  int hits = 0;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (relevant.count(ranking[i])) {
      ++hits;
      sum += static_cast<double>(hits) / static_cast<double>(i + 1);
    }
  }
  return hits ? sum / hits : 0.0;
}

std::vector<std::string> metric_names(const MetricOptions& o) {
  std::vector<std::string> names;
  for (int k : o.cutoffs) names.push_back("R@" + std::to_string(k));
  for (int k : o.cutoffs) names.push_back("nDCG@" + std::to_string(k));
  if (!o.cutoffs.empty()) {
    const std::string top = std::to_string(o.cutoffs.back());
    names.push_back("MRR@" + top);
    names.push_back("MAP@" + top);
  }
  for (int k : o.cutoffs) names.push_back("P@" + std::to_string(k));
  return names;
}

std::vector<double> query_metrics(const std::vector<std::string>& ranking, const IdSet& relevant,
                                  const MetricOptions& o) {
  std::vector<double> v;
  for (int k : o.cutoffs) v.push_back(recall_at_k(ranking, relevant, k));
  for (int k : o.cutoffs) v.push_back(ndcg_at_k(ranking, relevant, k, o.denominator));
  if (!o.cutoffs.empty()) {
    v.push_back(reciprocal_rank_at_k(ranking, relevant, o.cutoffs.back()));
    v.push_back(average_precision_at_k(ranking, relevant, o.cutoffs.back()));
  }
  for (int k : o.cutoffs) v.push_back(precision_at_k(ranking, relevant, k, o.denominator));
  return v;
}

namespace {

// The run's query ids the qrels do not judge; throws InputError when that is every one of them
// (almost always the wrong pair of files).
std::vector<std::string> unjudged_run_queries(const Run& run, const Qrels& qrels) {
  std::unordered_set<std::string> judged;
  for (const QrelsEntry& q : qrels.queries) judged.insert(q.query_id);
  std::vector<std::string> not_in_qrels;
  for (const RunEntry& e : run.queries) {
    if (!judged.count(e.query_id)) not_in_qrels.push_back(e.query_id);
  }
  // Every run query unknown to the qrels almost always means the wrong pair of files.
  if (!run.queries.empty() && not_in_qrels.size() == run.queries.size()) {
    throw InputError("no query id of the run " + run.origin + " appears in the qrels " +
                     qrels.origin + " (run has e.g. '" + run.queries.front().query_id + "'" +
                     (qrels.queries.empty()
                          ? std::string()
                          : ", qrels e.g. '" + qrels.queries.front().query_id + "'") +
                     ")");
  }
  return not_in_qrels;
}

// Queries of the qrels that were not evaluated as ranked, by reason.
struct QueryTally {
  std::vector<std::string> failed, missing, not_in_qrels, no_relevant, outside;
};

void check_cutoffs(const MetricOptions& mo) {
  if (mo.cutoffs.empty()) throw UsageError("at least one cut-off k is needed");
  for (size_t i = 0; i < mo.cutoffs.size(); ++i) {
    if (mo.cutoffs[i] < 1 || (i && mo.cutoffs[i] <= mo.cutoffs[i - 1])) {
      throw UsageError("cut-offs must be positive and strictly increasing");
    }
  }
}

// The report's warnings and notes: queries that failed, are missing, unjudged, without relevant
// ids, in domains outside the expected list (`unexpected`), or with relevant pages outside their
// candidates.
void add_warnings(EvalReport& report, const QueryTally& t,
                  const std::vector<std::string>& unexpected, size_t evaluated) {
  auto warn = [&](size_t n, const std::string& text, const std::vector<std::string>& ids) {
    if (n) report.warnings.push_back(std::to_string(n) + " " + text + ": " + id_sample(ids));
  };
  warn(t.failed.size(),
       "judged quer" + std::string(t.failed.size() == 1 ? "y has" : "ies have") +
           " an error record in the run and count" + (t.failed.size() == 1 ? "s" : "") +
           " as an empty ranking (every metric 0)",
       t.failed);
  warn(t.missing.size(),
       "judged quer" + std::string(t.missing.size() == 1 ? "y is" : "ies are") +
           " missing from the run and count" + (t.missing.size() == 1 ? "s" : "") +
           " as an empty ranking (every metric 0)",
       t.missing);
  warn(t.not_in_qrels.size(),
       "run quer" + std::string(t.not_in_qrels.size() == 1 ? "y has" : "ies have") +
           " no judgements in the qrels and " + (t.not_in_qrels.size() == 1 ? "is" : "are") +
           " ignored",
       t.not_in_qrels);
  warn(t.no_relevant.size(),
       "judged quer" + std::string(t.no_relevant.size() == 1 ? "y has" : "ies have") +
           " no relevant ids and " + (t.no_relevant.size() == 1 ? "is" : "are") +
           " left out (recall is undefined)",
       t.no_relevant);
  if (report.outside_expected_domains) {
    warn(static_cast<size_t>(report.outside_expected_domains),
         "quer" + std::string(report.outside_expected_domains == 1 ? "y has" : "ies have") +
             " a domain that is not in the expected list; counted in micro, not in macro",
         unexpected);
  }
  if (!t.outside.empty()) {
    report.notes.push_back(
        std::to_string(t.outside.size()) + " of " + std::to_string(evaluated) +
        " judged queries have relevant pages outside their candidate list (first-stage misses); "
        "their recall cannot reach 1: " +
        id_sample(t.outside));
  }
}

}  // namespace

EvalReport evaluate(const Run& run, const Qrels& qrels, const EvalOptions& options) {
  const MetricOptions& mo = options.metrics;
  check_cutoffs(mo);

  EvalReport report;
  report.metrics = mo;
  report.metric_names = metric_names(mo);
  report.run_tag = run.tag;
  const size_t width = report.metric_names.size();

  std::unordered_map<std::string, const RunEntry*> by_id;
  for (const RunEntry& e : run.queries) by_id.emplace(e.query_id, &e);
  const std::vector<std::string> not_in_qrels = unjudged_run_queries(run, qrels);

  static const std::vector<std::string> kEmpty;
  std::vector<std::vector<double>> per_query;
  std::vector<std::string> domains_of;
  std::vector<std::string> failed, missing, no_relevant, outside;
  for (const QrelsEntry& q : qrels.queries) {
    if (q.relevant.empty()) {
      no_relevant.push_back(q.query_id);
      continue;
    }
    const IdSet relevant(q.relevant.begin(), q.relevant.end());
    const std::vector<std::string>* ranking = &kEmpty;
    auto it = by_id.find(q.query_id);
    if (it == by_id.end()) {
      missing.push_back(q.query_id);
    } else if (it->second->failed) {
      failed.push_back(q.query_id);
    } else {
      ranking = &it->second->ids;
    }
    if (q.has_candidates) {
      const IdSet cands(q.candidates.begin(), q.candidates.end());
      for (const std::string& id : q.relevant) {
        if (!cands.count(id)) {
          outside.push_back(q.query_id);
          break;
        }
      }
    }
    per_query.push_back(query_metrics(*ranking, relevant, mo));
    domains_of.push_back(q.domain);
    if (options.per_query) {
      MetricRow row;
      row.label = q.query_id;
      row.domain = q.domain;
      row.queries = 1;
      row.values = per_query.back();
      report.queries.push_back(std::move(row));
    }
  }
  if (per_query.empty()) {
    throw InputError("no query in the qrels " + qrels.origin +
                     " has relevant ids; nothing to evaluate");
  }

  report.evaluated = static_cast<int>(per_query.size());
  report.error_records = static_cast<int>(failed.size());
  report.missing_from_run = static_cast<int>(missing.size());
  report.not_in_qrels = static_cast<int>(not_in_qrels.size());
  report.without_relevant = static_cast<int>(no_relevant.size());
  report.relevant_outside_candidates = static_cast<int>(outside.size());

  std::vector<const std::vector<double>*> all;
  std::map<std::string, std::vector<const std::vector<double>*>> groups;
  for (size_t i = 0; i < per_query.size(); ++i) {
    all.push_back(&per_query[i]);
    groups[domain_label(domains_of[i])].push_back(&per_query[i]);
  }
  report.micro = mean_row("micro", all, width);

  const bool any_domain = std::any_of(domains_of.begin(), domains_of.end(),
                                      [](const std::string& d) { return !d.empty(); });
  std::vector<std::string> macro_domains;
  if (!options.expected_domains.empty()) {
    macro_domains = options.expected_domains;
  } else if (any_domain) {
    for (const auto& [label, rows] : groups) macro_domains.push_back(label);
  }
  if (!macro_domains.empty()) {
    report.macro.label = "macro";
    report.macro.values.assign(width, 0.0);
    std::vector<std::string> listed;
    for (const std::string& d : macro_domains) {
      if (std::find(listed.begin(), listed.end(), d) != listed.end()) continue;
      listed.push_back(d);
      auto g = groups.find(d);
      static const std::vector<const std::vector<double>*> kNone;
      MetricRow row = mean_row(d, g == groups.end() ? kNone : g->second, width);
      // A domain without queries still counts, with 0, so that the average is over a fixed set.
      for (size_t j = 0; j < width; ++j) report.macro.values[j] += row.values[j];
      report.macro.queries += row.queries;
      report.domains.push_back(std::move(row));
    }
    report.macro.domains = static_cast<int>(listed.size());
    for (double& x : report.macro.values) x /= static_cast<double>(listed.size());
    // Domains outside the expected list are shown but stay out of the macro average.
    for (const auto& [label, rows] : groups) {
      if (std::find(listed.begin(), listed.end(), label) != listed.end()) continue;
      report.outside_expected_domains += static_cast<int>(rows.size());
      report.domains.push_back(mean_row(label, rows, width));
    }
  }

  std::vector<std::string> unexpected;
  if (report.outside_expected_domains) {
    for (const auto& [label, rows] : groups) {
      if (std::find(macro_domains.begin(), macro_domains.end(), label) == macro_domains.end()) {
        unexpected.push_back(label);
      }
    }
  }
  add_warnings(report, QueryTally{failed, missing, not_in_qrels, no_relevant, outside}, unexpected,
               per_query.size());
  return report;
}

std::string format_eval_table(const EvalReport& r, bool run_line) {
  std::vector<const MetricRow*> rows;
  for (const MetricRow& q : r.queries) rows.push_back(&q);
  for (const MetricRow& d : r.domains) rows.push_back(&d);
  if (!r.domains.empty()) rows.push_back(&r.macro);
  rows.push_back(&r.micro);

  const std::string first = r.queries.empty() ? "domain" : "query/domain";
  size_t label_width = first.size();
  for (const MetricRow* row : rows) label_width = std::max(label_width, row->label.size());
  std::vector<size_t> widths;
  for (const std::string& name : r.metric_names) widths.push_back(std::max<size_t>(name.size(), 5));

  std::ostringstream out;
  auto pad_left = [](const std::string& s, size_t w) {
    return s.size() >= w ? s : std::string(w - s.size(), ' ') + s;
  };
  auto pad_right = [](const std::string& s, size_t w) {
    return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
  };
  if (run_line && !r.run_tag.empty()) out << "run  " << r.run_tag << "\n";
  out << pad_right(first, label_width) << "  " << pad_left("queries", 7);
  for (size_t j = 0; j < widths.size(); ++j) out << "  " << pad_left(r.metric_names[j], widths[j]);
  out << "\n";
  for (const MetricRow* row : rows) {
    out << pad_right(row->label, label_width) << "  " << pad_left(std::to_string(row->queries), 7);
    for (size_t j = 0; j < widths.size(); ++j) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.1f", 100.0 * row->values[j]);
      out << "  " << pad_left(buf, widths[j]);
    }
    out << "\n";
  }
  return out.str();
}

std::string format_eval_json(const EvalReport& r) {
  using ojson = nlohmann::ordered_json;
  auto values = [&](const MetricRow& row) {
    ojson v = ojson::object();
    for (size_t j = 0; j < r.metric_names.size(); ++j) v[r.metric_names[j]] = row.values[j];
    return v;
  };
  ojson j;
  j["run_tag"] = r.run_tag.empty() ? ojson(nullptr) : ojson(r.run_tag);
  j["metrics"] = r.metric_names;
  j["cutoffs"] = r.metrics.cutoffs;
  j["denominator"] = r.metrics.denominator == Denominator::kCutoff ? "k" : "retrieved";
  ojson domains = ojson::array();
  for (const MetricRow& d : r.domains) {
    domains.push_back({{"domain", d.label}, {"queries", d.queries}, {"values", values(d)}});
  }
  j["domains"] = std::move(domains);
  if (!r.domains.empty()) {
    j["macro"] = {
        {"domains", r.macro.domains}, {"queries", r.macro.queries}, {"values", values(r.macro)}};
  } else {
    j["macro"] = nullptr;
  }
  j["micro"] = {{"queries", r.micro.queries}, {"values", values(r.micro)}};
  if (!r.queries.empty()) {
    ojson queries = ojson::array();
    for (const MetricRow& q : r.queries) {
      queries.push_back({{"query_id", q.label}, {"domain", q.domain}, {"values", values(q)}});
    }
    j["queries"] = std::move(queries);
  }
  j["counts"] = {{"evaluated", r.evaluated},
                 {"error_records", r.error_records},
                 {"missing_from_run", r.missing_from_run},
                 {"not_in_qrels", r.not_in_qrels},
                 {"without_relevant", r.without_relevant},
                 {"relevant_outside_candidates", r.relevant_outside_candidates},
                 {"outside_expected_domains", r.outside_expected_domains}};
  j["warnings"] = r.warnings;
  // Ids and domains read from TREC files are bytes, not necessarily UTF-8: invalid sequences
  // become U+FFFD instead of making dump() throw.
  return j.dump(2, ' ', false, ojson::error_handler_t::replace) + "\n";
}

const std::vector<std::string>& mmdocir_domains() {
  static const std::vector<std::string> kDomains = {
      "Research report / Introduction",
      "Administration/Industry file",
      "Tutorial/Workshop",
      "Academic paper",
      "Brochure",
      "Financial report",
      "Guidebook",
      "Government",
      "Laws",
      "News",
  };
  return kDomains;
}

}  // namespace ziprerank
