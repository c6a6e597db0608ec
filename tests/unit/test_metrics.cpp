// Metrics against values worked out by hand from the definitions in FORMATS.md / MMDocIR, and the
// run and qrels readers, including their error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ziprerank/errors.hpp"
#include "ziprerank/metrics.hpp"
#include "ziprerank/run_io.hpp"

using namespace ziprerank;

namespace {

using Ids = std::vector<std::string>;

// Discount of 0-based rank i.
double d(int i) { return 1.0 / std::log2(i + 2.0); }

// Expects InputError whose message contains every fragment.
template <typename F>
void expect_input_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no InputError thrown";
  } catch (const InputError& e) {
    for (const std::string& frag : fragments) {
      EXPECT_NE(std::string(e.what()).find(frag), std::string::npos)
          << "'" << frag << "' not in: " << e.what();
    }
  }
}

size_t column(const EvalReport& r, const std::string& name) {
  for (size_t i = 0; i < r.metric_names.size(); ++i) {
    if (r.metric_names[i] == name) return i;
  }
  ADD_FAILURE() << "no column " << name;
  return 0;
}

}  // namespace

TEST(Metrics, MultipleRelevantPages) {
  const Ids ranking = {"a", "b", "c", "d", "e"};
  const IdSet g = {"b", "d"};
  EXPECT_DOUBLE_EQ(recall_at_k(ranking, g, 1), 0.0);
  EXPECT_DOUBLE_EQ(recall_at_k(ranking, g, 3), 0.5);
  EXPECT_DOUBLE_EQ(recall_at_k(ranking, g, 5), 1.0);
  EXPECT_DOUBLE_EQ(precision_at_k(ranking, g, 1), 0.0);
  EXPECT_DOUBLE_EQ(precision_at_k(ranking, g, 3), 1.0 / 3);
  EXPECT_DOUBLE_EQ(precision_at_k(ranking, g, 5), 2.0 / 5);
  // Hits at 0-based ranks 1 and 3; the ideal puts both relevant pages at ranks 0 and 1.
  EXPECT_DOUBLE_EQ(ndcg_at_k(ranking, g, 1), 0.0);
  EXPECT_DOUBLE_EQ(ndcg_at_k(ranking, g, 3), d(1) / (d(0) + d(1)));
  EXPECT_DOUBLE_EQ(ndcg_at_k(ranking, g, 5), (d(1) + d(3)) / (d(0) + d(1)));
  EXPECT_DOUBLE_EQ(reciprocal_rank_at_k(ranking, g, 5), 0.5);
  EXPECT_DOUBLE_EQ(reciprocal_rank_at_k(ranking, g, 1), 0.0);
  // AP@5 = (1/2 + 2/4) / 2; AP@3 sees only the first hit: (1/2) / 1.
  EXPECT_DOUBLE_EQ(average_precision_at_k(ranking, g, 5), 0.5);
  EXPECT_DOUBLE_EQ(average_precision_at_k(ranking, g, 3), 0.5);
}

TEST(Metrics, AveragePrecisionDividesByHitsFound) {
  // Hits at ranks 1, 3, 5 of four relevant pages: MMDocIR divides by the 3 hits, not by |G| = 4.
  const Ids ranking = {"r1", "n1", "r2", "n2", "r3"};
  const IdSet g = {"r1", "r2", "r3", "r4"};
  EXPECT_DOUBLE_EQ(average_precision_at_k(ranking, g, 5), (1.0 + 2.0 / 3 + 3.0 / 5) / 3);
  EXPECT_DOUBLE_EQ(average_precision_at_k(ranking, g, 1), 1.0);
  EXPECT_DOUBLE_EQ(average_precision_at_k({"n1", "n2"}, g, 5), 0.0);
  EXPECT_DOUBLE_EQ(recall_at_k(ranking, g, 5), 0.75);
}

TEST(Metrics, RelevantPageNotAmongCandidates) {
  // "z" is relevant but was never a candidate, so recall stays at 1/2 however deep we look.
  const Ids ranking = {"a", "b"};
  const IdSet g = {"a", "z"};
  EXPECT_DOUBLE_EQ(recall_at_k(ranking, g, 1), 0.5);
  EXPECT_DOUBLE_EQ(recall_at_k(ranking, g, 10), 0.5);
  EXPECT_DOUBLE_EQ(ndcg_at_k(ranking, g, 5), d(0) / (d(0) + d(1)));
  EXPECT_DOUBLE_EQ(reciprocal_rank_at_k(ranking, g, 5), 1.0);
  EXPECT_DOUBLE_EQ(average_precision_at_k(ranking, g, 5), 1.0);
}

TEST(Metrics, CutoffLargerThanRanking) {
  const Ids ranking = {"x", "a"};
  const IdSet g = {"a"};
  EXPECT_DOUBLE_EQ(recall_at_k(ranking, g, 10), 1.0);
  EXPECT_DOUBLE_EQ(precision_at_k(ranking, g, 10), 0.1);
  EXPECT_DOUBLE_EQ(precision_at_k(ranking, g, 10, Denominator::kRetrieved), 0.5);
  EXPECT_DOUBLE_EQ(ndcg_at_k(ranking, g, 10), d(1));
  EXPECT_DOUBLE_EQ(reciprocal_rank_at_k(ranking, g, 10), 0.5);
  EXPECT_DOUBLE_EQ(average_precision_at_k(ranking, g, 10), 0.5);

  // The ideal DCG is where the two denominators part: k=5, |G|=2, one candidate.
  const Ids one = {"a"};
  const IdSet two = {"a", "z"};
  EXPECT_DOUBLE_EQ(ndcg_at_k(one, two, 5), d(0) / (d(0) + d(1)));
  EXPECT_DOUBLE_EQ(ndcg_at_k(one, two, 5, Denominator::kRetrieved), 1.0);
  EXPECT_DOUBLE_EQ(precision_at_k(one, two, 5), 0.2);
  EXPECT_DOUBLE_EQ(precision_at_k(one, two, 5, Denominator::kRetrieved), 1.0);
}

TEST(Metrics, EmptyRankingScoresZeroInBothModes) {
  const IdSet g = {"a"};
  for (Denominator den : {Denominator::kCutoff, Denominator::kRetrieved}) {
    MetricOptions o;
    o.denominator = den;
    for (double v : query_metrics({}, g, o)) EXPECT_EQ(v, 0.0);
  }
}

TEST(Metrics, NamesFollowCutoffs) {
  MetricOptions o;
  o.cutoffs = {1, 3, 5};
  EXPECT_EQ(metric_names(o), (Ids{"R@1", "R@3", "R@5", "nDCG@1", "nDCG@3", "nDCG@5", "MRR@5",
                                  "MAP@5", "P@1", "P@3", "P@5"}));
  const std::vector<double> v = query_metrics({"a", "b"}, {"b"}, o);
  ASSERT_EQ(v.size(), 11u);
  EXPECT_DOUBLE_EQ(v[1], 1.0);         // R@3
  EXPECT_DOUBLE_EQ(v[6], 0.5);         // MRR@5
  EXPECT_DOUBLE_EQ(v[10], 1.0 / 5.0);  // P@5
}

TEST(RunIo, TiedScoresKeepRunOrder) {
  // Equal scores: the run's order decides, so "b" is rank 1 and the hit "a" is rank 2.
  const ziprerank::Run run = parse_run(
      R"({"query_id": "q", "ranking": [{"id": "b", "score": 1.0}, {"id": "a", "score": 1.0}]})",
      "run.jsonl");
  ASSERT_EQ(run.queries.size(), 1u);
  EXPECT_EQ(run.queries[0].ids, (Ids{"b", "a"}));
  EXPECT_DOUBLE_EQ(reciprocal_rank_at_k(run.queries[0].ids, {"a"}, 10), 0.5);

  // TREC: the rank column orders (not the score); equal ranks keep file order.
  const ziprerank::Run trec = parse_run(
      "q Q0 c 3 9.0 t\n"
      "q Q0 b 1 1.0 t\n"
      "q Q0 a 1 1.0 t\n",
      "run.trec");
  EXPECT_EQ(trec.queries[0].ids, (Ids{"b", "a", "c"}));
  EXPECT_EQ(trec.queries[0].scores, (std::vector<double>{1.0, 1.0, 9.0}));
}

TEST(RunIo, ReadsErrorRecordsScoresAndIntegerIds) {
  const ziprerank::Run run = parse_run(
      "{\"query_id\": \"q1\", \"error\": \"image unreadable\"}\r\n"
      "\n"
      "{\"query_id\": 7, \"ranking\": [{\"id\": \"d#1\"}, {\"id\": \"d#2\", \"score\": -2.5}],"
      " \"timing_ms\": {\"total\": 3}}\n",
      "run.jsonl");
  ASSERT_EQ(run.queries.size(), 2u);
  EXPECT_TRUE(run.queries[0].failed);
  EXPECT_EQ(run.queries[0].error, "image unreadable");
  EXPECT_EQ(run.queries[1].query_id, "7");
  EXPECT_EQ(run.queries[1].line, 3);
  EXPECT_TRUE(std::isnan(run.queries[1].scores[0]));
  EXPECT_EQ(run.queries[1].scores[1], -2.5);
}

TEST(RunIo, TrecRoundTrip) {
  std::ostringstream out;
  write_trec_run(out, "doc.pdf_0",
                 {{"doc.pdf#3", 7.31}, {"doc.pdf#0", 0.1 + 0.2}, {"doc.pdf#9", -1e-300}},
                 "ziprerank");
  write_trec_run_line(out, "doc.pdf_1", "doc.pdf#2", 1, 42.0, "ziprerank");
  EXPECT_EQ(out.str(),
            "doc.pdf_0 Q0 doc.pdf#3 1 7.31 ziprerank\n"
            "doc.pdf_0 Q0 doc.pdf#0 2 0.30000000000000004 ziprerank\n"
            "doc.pdf_0 Q0 doc.pdf#9 3 -1e-300 ziprerank\n"
            "doc.pdf_1 Q0 doc.pdf#2 1 42 ziprerank\n");
  const ziprerank::Run run = parse_run(out.str(), "round.trec");
  ASSERT_EQ(run.queries.size(), 2u);
  EXPECT_EQ(run.queries[0].query_id, "doc.pdf_0");
  EXPECT_EQ(run.queries[0].ids, (Ids{"doc.pdf#3", "doc.pdf#0", "doc.pdf#9"}));
  EXPECT_EQ(run.queries[0].scores, (std::vector<double>{7.31, 0.1 + 0.2, -1e-300}));
  EXPECT_EQ(run.queries[1].ids, (Ids{"doc.pdf#2"}));

  expect_input_error([&] { write_trec_run_line(out, "q 1", "d", 1, 1.0, "t"); }, {"whitespace"});
  expect_input_error([&] { write_trec_run_line(out, "q", "", 1, 1.0, "t"); }, {"empty page id"});
  expect_input_error([&] { write_trec_run_line(out, "q", "d", 1, NAN, "t"); }, {"finite"});
}

TEST(RunIo, QrelsFromBatchJsonlAndTrec) {
  const Qrels q = parse_qrels(
      R"({"query_id": "q1", "query": "x", "candidates": [{"id": "a", "image": "a.png"}], "relevant": ["a", "b", "a"], "domain": "Laws"}
{"query_id": "q2", "candidates": []})",
      "queries.jsonl");
  ASSERT_EQ(q.queries.size(), 2u);
  EXPECT_EQ(q.queries[0].relevant, (Ids{"a", "b"}));
  EXPECT_EQ(q.queries[0].domain, "Laws");
  EXPECT_TRUE(q.queries[0].has_candidates);
  EXPECT_EQ(q.queries[0].candidates, (Ids{"a"}));
  EXPECT_TRUE(q.queries[1].relevant.empty());

  const Qrels t = parse_qrels("q1 0 a 1\nq2 0 x 0\nq1 0 b 2\nq1 0 c 0\n", "qrels.txt");
  ASSERT_EQ(t.queries.size(), 2u);
  EXPECT_EQ(t.queries[0].relevant, (Ids{"a", "b"}));
  EXPECT_TRUE(t.queries[1].relevant.empty());
  EXPECT_TRUE(t.queries[0].domain.empty());
}

TEST(RunIo, MalformedLinesNameFileAndLine) {
  expect_input_error(
      [] { parse_run("{\"query_id\": \"q\", \"ranking\": []}\n{oops\n", "r.jsonl"); },
      {"r.jsonl:2", "invalid JSON"});
  expect_input_error([] { parse_run("\n{\"ranking\": []}\n", "r.jsonl"); },
                     {"r.jsonl:2", "query_id"});
  expect_input_error(
      [] {
        parse_run(
            "{\"query_id\": \"q\", \"ranking\": []}\n{\"query_id\": \"p\", \"ranking\": []}\n"
            "{\"query_id\": \"q\", \"ranking\": []}\n",
            "r.jsonl");
      },
      {"r.jsonl:3", "'q'", "line 1"});
  expect_input_error([] { parse_run("{\"query_id\": \"q\", \"ranking\": {}}", "r.jsonl"); },
                     {"r.jsonl:1", "array"});
  expect_input_error([] { parse_run("{\"query_id\": \"q\"}", "r.jsonl"); },
                     {"r.jsonl:1", "ranking"});
  expect_input_error(
      [] { parse_run(R"({"query_id": "q", "ranking": [{"id": "a"}, {"id": "a"}]})", "r.jsonl"); },
      {"r.jsonl:1", "'a'", "twice"});
  expect_input_error([] { parse_run("[1, 2]", "r.jsonl", RunFormat::kJsonl); },
                     {"r.jsonl:1", "object"});
  expect_input_error([] { parse_run(R"({"query_id": "q", "ranking": [{"id": 1.5}]})", "r.jsonl"); },
                     {"r.jsonl:1", "ranking[0].id"});
  expect_input_error([] { parse_run("q Q0 a 1 2.0 t\nq Q0 b 2 1.0\n", "r.trec"); },
                     {"r.trec:2", "6 fields"});
  expect_input_error([] { parse_run("q Q0 a one 2.0 t\n", "r.trec"); }, {"r.trec:1", "rank"});
  expect_input_error([] { parse_run("q Q0 a 1 high t\n", "r.trec"); }, {"r.trec:1", "score"});
  expect_input_error([] { parse_run("q Q0 a 1 2 t\nq Q0 a 2 1 t\n", "r.trec"); },
                     {"r.trec:2", "line 1"});
  expect_input_error([] { parse_qrels("q 0 a\n", "qrels.txt"); }, {"qrels.txt:1", "4 fields"});
  expect_input_error([] { parse_qrels("q 0 a yes\n", "qrels.txt"); }, {"qrels.txt:1", "relevance"});
  expect_input_error([] { parse_qrels("{\"query_id\": \"q\", \"relevant\": \"a\"}", "qs.jsonl"); },
                     {"qs.jsonl:1", "relevant"});
  expect_input_error(
      [] { parse_qrels("{\"query_id\": \"q\"}\n{\"query_id\": \"q\"}\n", "qs.jsonl"); },
      {"qs.jsonl:2", "already appeared on line 1"});
  expect_input_error([] { parse_qrels("{\"query_id\": \"q\", \"domain\": 3}", "qs.jsonl"); },
                     {"qs.jsonl:1", "domain"});
}

TEST(Evaluate, DomainsMacroAndMicro) {
  // A: q1 hit at rank 1, q2 hit at rank 2; B: q3 no hit in the top 1 but at rank 3.
  const Qrels qrels = parse_qrels(
      R"({"query_id": "q1", "relevant": ["x"], "domain": "A"}
{"query_id": "q2", "relevant": ["y"], "domain": "A"}
{"query_id": "q3", "relevant": ["z"], "domain": "B"})",
      "qs.jsonl");
  const ziprerank::Run run = parse_run(
      R"({"query_id": "q1", "ranking": [{"id": "x"}, {"id": "n"}]}
{"query_id": "q2", "ranking": [{"id": "n"}, {"id": "y"}]}
{"query_id": "q3", "ranking": [{"id": "n"}, {"id": "m"}, {"id": "z"}]})",
      "run.jsonl");
  EvalOptions o;
  o.metrics.cutoffs = {1, 3};
  const EvalReport r = evaluate(run, qrels, o);
  EXPECT_EQ(r.evaluated, 3);
  EXPECT_TRUE(r.warnings.empty());
  ASSERT_EQ(r.domains.size(), 2u);
  EXPECT_EQ(r.domains[0].label, "A");
  EXPECT_EQ(r.domains[0].queries, 2);
  const size_t r1 = column(r, "R@1"), mrr = column(r, "MRR@3"), p3 = column(r, "P@3");
  EXPECT_DOUBLE_EQ(r.domains[0].values[r1], 0.5);
  EXPECT_DOUBLE_EQ(r.domains[1].values[r1], 0.0);
  EXPECT_DOUBLE_EQ(r.macro.values[r1], 0.25);
  EXPECT_DOUBLE_EQ(r.micro.values[r1], 1.0 / 3);
  // MRR: A = (1 + 1/2)/2 = 0.75, B = 1/3; macro = (0.75 + 1/3)/2, micro = (1 + 1/2 + 1/3)/3.
  EXPECT_DOUBLE_EQ(r.domains[0].values[mrr], 0.75);
  EXPECT_DOUBLE_EQ(r.macro.values[mrr], (0.75 + 1.0 / 3) / 2);
  EXPECT_DOUBLE_EQ(r.micro.values[mrr], (1.0 + 0.5 + 1.0 / 3) / 3);
  EXPECT_DOUBLE_EQ(r.micro.values[p3], 1.0 / 3);
  EXPECT_EQ(r.macro.domains, 2);
  EXPECT_EQ(r.micro.queries, 3);
}

TEST(Evaluate, TiedDomainMeansKeepNameOrder) {
  // Both domains average 0.5; rows stay sorted by name and the macro average is 0.5 too.
  const Qrels qrels = parse_qrels(
      R"({"query_id": "1", "relevant": ["a"], "domain": "Zeta"}
{"query_id": "2", "relevant": ["a"], "domain": "Zeta"}
{"query_id": "3", "relevant": ["a"], "domain": "Alpha"}
{"query_id": "4", "relevant": ["a"], "domain": "Alpha"})",
      "qs.jsonl");
  const ziprerank::Run run =
      parse_run("1 Q0 a 1 1 t\n2 Q0 b 1 1 t\n3 Q0 b 1 1 t\n4 Q0 a 1 1 t\n", "run.trec");
  EvalOptions o;
  o.metrics.cutoffs = {1};
  const EvalReport r = evaluate(run, qrels, o);
  ASSERT_EQ(r.domains.size(), 2u);
  EXPECT_EQ(r.domains[0].label, "Alpha");
  EXPECT_EQ(r.domains[1].label, "Zeta");
  EXPECT_DOUBLE_EQ(r.domains[0].values[0], 0.5);
  EXPECT_DOUBLE_EQ(r.domains[1].values[0], 0.5);
  EXPECT_DOUBLE_EQ(r.macro.values[0], 0.5);
  EXPECT_DOUBLE_EQ(r.micro.values[0], 0.5);
}

TEST(Evaluate, ExpectedDomainsCountEmptyOnesAsZero) {
  const Qrels qrels = parse_qrels(
      R"({"query_id": "1", "relevant": ["a"], "domain": "A"}
{"query_id": "2", "relevant": ["a"], "domain": "B"}
{"query_id": "3", "relevant": ["a"], "domain": "Other"})",
      "qs.jsonl");
  const ziprerank::Run run = parse_run("1 Q0 a 1 1 t\n2 Q0 a 1 1 t\n3 Q0 a 1 1 t\n", "run.trec");
  EvalOptions o;
  o.metrics.cutoffs = {1};
  o.expected_domains = {"B", "A", "Empty"};
  const EvalReport r = evaluate(run, qrels, o);
  // Listed order, then the unlisted domain; macro = (1 + 1 + 0) / 3 over the listed ones only.
  ASSERT_EQ(r.domains.size(), 4u);
  EXPECT_EQ(r.domains[0].label, "B");
  EXPECT_EQ(r.domains[2].label, "Empty");
  EXPECT_EQ(r.domains[2].queries, 0);
  EXPECT_EQ(r.domains[3].label, "Other");
  EXPECT_DOUBLE_EQ(r.macro.values[0], 2.0 / 3);
  EXPECT_EQ(r.macro.domains, 3);
  EXPECT_EQ(r.macro.queries, 2);
  EXPECT_DOUBLE_EQ(r.micro.values[0], 1.0);
  EXPECT_EQ(r.outside_expected_domains, 1);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("Other"), std::string::npos) << r.warnings[0];
}

TEST(Evaluate, ErrorRecordsAndMissingQueriesCountAsEmpty) {
  const Qrels qrels = parse_qrels(
      R"({"query_id": "q1", "relevant": ["a"], "candidates": [{"id": "a"}]}
{"query_id": "q2", "relevant": ["a"], "candidates": [{"id": "a"}]}
{"query_id": "q3", "relevant": ["a", "gone"], "candidates": [{"id": "a"}]}
{"query_id": "q4", "relevant": []})",
      "qs.jsonl");
  const ziprerank::Run run = parse_run(
      R"({"query_id": "q1", "error": "boom"}
{"query_id": "q3", "ranking": [{"id": "a"}]}
{"query_id": "extra", "ranking": [{"id": "a"}]})",
      "run.jsonl");
  EvalOptions o;
  o.metrics.cutoffs = {1};
  const EvalReport r = evaluate(run, qrels, o);
  EXPECT_EQ(r.evaluated, 3);
  EXPECT_EQ(r.error_records, 1);
  EXPECT_EQ(r.missing_from_run, 1);
  EXPECT_EQ(r.not_in_qrels, 1);
  EXPECT_EQ(r.without_relevant, 1);
  EXPECT_EQ(r.relevant_outside_candidates, 1);
  EXPECT_TRUE(r.domains.empty());
  // Only q3 scores: R@1 = 1/2 there, 0 for q1 and q2.
  EXPECT_DOUBLE_EQ(r.micro.values[column(r, "R@1")], 0.5 / 3);
  EXPECT_DOUBLE_EQ(r.micro.values[column(r, "MRR@1")], 1.0 / 3);
  ASSERT_EQ(r.warnings.size(), 4u);
  EXPECT_EQ(r.warnings[0].rfind("1 judged query has an error record", 0), 0u) << r.warnings[0];
  EXPECT_NE(r.warnings[0].find("q1"), std::string::npos);
  EXPECT_EQ(r.warnings[1].rfind("1 judged query is missing from the run", 0), 0u) << r.warnings[1];
  EXPECT_EQ(r.warnings[2].rfind("1 run query has no judgements", 0), 0u) << r.warnings[2];
  EXPECT_NE(r.warnings[2].find("extra"), std::string::npos);
  EXPECT_EQ(r.warnings[3].rfind("1 judged query has no relevant ids", 0), 0u) << r.warnings[3];
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("q3"), std::string::npos);
}

TEST(Evaluate, RejectsUnrelatedFilesAndEmptyJudgements) {
  const Qrels qrels = parse_qrels("q1 0 a 1\n", "qrels.txt");
  const ziprerank::Run run = parse_run("other Q0 a 1 1 t\n", "run.trec");
  expect_input_error([&] { evaluate(run, qrels, EvalOptions{}); },
                     {"run.trec", "qrels.txt", "'other'", "'q1'"});
  const Qrels none = parse_qrels("q1 0 a 0\n", "qrels.txt");
  expect_input_error([&] { evaluate(ziprerank::Run{}, none, EvalOptions{}); },
                     {"no query", "relevant"});
}

TEST(Evaluate, TableAndJsonOutput) {
  const Qrels qrels = parse_qrels(
      R"({"query_id": "1", "relevant": ["a"], "domain": "Laws"}
{"query_id": "2", "relevant": ["a", "b"], "domain": "News"})",
      "qs.jsonl");
  const ziprerank::Run run = parse_run("1 Q0 a 1 1 t\n2 Q0 c 1 1 t\n2 Q0 b 2 1 t\n", "run.trec");
  EvalOptions o;
  o.metrics.cutoffs = {1, 2};
  const EvalReport r = evaluate(run, qrels, o);
  // News: R@2 = 1/2, nDCG@2 = d(1)/(d(0)+d(1)) = 0.3869..., MRR@2 = MAP@2 = 0.5, P@2 = 0.5.
  EXPECT_EQ(format_eval_table(r),
            "domain  queries    R@1    R@2  nDCG@1  nDCG@2  MRR@2  MAP@2    P@1    P@2\n"
            "Laws          1  100.0  100.0   100.0   100.0  100.0  100.0  100.0   50.0\n"
            "News          1    0.0   50.0     0.0    38.7   50.0   50.0    0.0   50.0\n"
            "macro         2   50.0   75.0    50.0    69.3   75.0   75.0   50.0   50.0\n"
            "micro         2   50.0   75.0    50.0    69.3   75.0   75.0   50.0   50.0\n");
  const auto j = nlohmann::json::parse(format_eval_json(r));
  EXPECT_EQ(j["metrics"].size(), 8u);
  EXPECT_EQ(j["denominator"], "k");
  EXPECT_EQ(j["domains"][1]["domain"], "News");
  EXPECT_DOUBLE_EQ(j["domains"][1]["values"]["nDCG@2"].get<double>(), d(1) / (d(0) + d(1)));
  EXPECT_DOUBLE_EQ(j["macro"]["values"]["R@2"].get<double>(), 0.75);
  EXPECT_EQ(j["macro"]["domains"], 2);
  EXPECT_EQ(j["micro"]["queries"], 2);
  EXPECT_EQ(j["counts"]["evaluated"], 2);
}

TEST(Evaluate, MmdocirDomainListMatchesTheAnnotations) {
  // The real annotations live beside the repository (../shared), never inside it.
  const std::filesystem::path file = std::filesystem::path(ZIPRERANK_TEST_FIXTURES) / ".." / ".." /
                                     ".." / "shared" / "data" / "mmdocir" /
                                     "MMDocIR_annotations.jsonl";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "MMDocIR annotations not found at " << file;
  std::ifstream in(file);
  std::set<std::string> seen;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) seen.insert(nlohmann::json::parse(line).at("domain").get<std::string>());
  }
  const auto& listed = mmdocir_domains();
  EXPECT_EQ(seen, std::set<std::string>(listed.begin(), listed.end()));
  EXPECT_EQ(listed.size(), 10u);
}
