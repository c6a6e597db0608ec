// `ziprerank eval` run as a user would: small run and qrels files written to a temporary folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_runner.hpp"

using namespace ziprerank::test;
namespace fs = std::filesystem;

namespace {

class EvalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("zr_eval_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return shell_quote(p.string());
  }

  fs::path dir_;
};

// Two domains; q3 fails in the run and q4 is missing from it.
const char* kQueries =
    R"({"query_id": "q1", "query": "a", "candidates": [{"id": "d#0", "image": "0.png"}, {"id": "d#1", "image": "1.png"}], "relevant": ["d#1"], "domain": "Laws"}
{"query_id": "q2", "query": "b", "candidates": [{"id": "d#0", "image": "0.png"}, {"id": "d#1", "image": "1.png"}], "relevant": ["d#0", "d#1"], "domain": "Laws"}
{"query_id": "q3", "query": "c", "candidates": [{"id": "e#0", "image": "e0.png"}], "relevant": ["e#0"], "domain": "News"}
{"query_id": "q4", "query": "d", "candidates": [{"id": "e#0", "image": "e0.png"}], "relevant": ["e#0"], "domain": "News"}
)";

const char* kRun =
    R"({"query_id": "q1", "ranking": [{"id": "d#0", "score": 2.0}, {"id": "d#1", "score": 1.0}], "timing_ms": {"total": 1.0}}
{"query_id": "q2", "ranking": [{"id": "d#1", "score": 3.0}, {"id": "d#0", "score": 3.0}]}
{"query_id": "q3", "error": "cannot decode e0.png"}
)";

}  // namespace

TEST_F(EvalCli, HelpDocumentsFlagsAndDefinitions) {
  const CliResult r = run_cli("eval --help");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s :
       {"--run", "--qrels", "--k", "--domains", "--denominator", "--format", "--run-format",
        "--qrels-format", "|R∩G|/k", "retrieved", "macro", "micro"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  }
}

TEST_F(EvalCli, TableWithWarningsForFailedAndMissingQueries) {
  const std::string q = write("queries.jsonl", kQueries);
  const std::string run = write("run.jsonl", kRun);
  const CliResult r = run_cli("eval --run " + run + " --qrels " + q + " --k 1,2");
  ASSERT_EQ(r.code, 0) << r.err;
  // q1: its one relevant page at rank 2 -> R@1 0, R@2 1, nDCG@2 = d(1)/d(0) = 63.1, MRR 1/2,
  // MAP 1/2, P@1 0, P@2 1/2. q2: both relevant pages on top -> R@1 1/2, every other metric 1.
  // Laws = mean of q1, q2; News = 0 (q3 failed, q4 missing); macro = Laws/2; micro = sum/4.
  EXPECT_EQ(r.out,
            "domain  queries    R@1    R@2  nDCG@1  nDCG@2  MRR@2  MAP@2    P@1    P@2\n"
            "Laws          2   25.0  100.0    50.0    81.5   75.0   75.0   50.0   75.0\n"
            "News          2    0.0    0.0     0.0     0.0    0.0    0.0    0.0    0.0\n"
            "macro         4   12.5   50.0    25.0    40.8   37.5   37.5   25.0   37.5\n"
            "micro         4   12.5   50.0    25.0    40.8   37.5   37.5   25.0   37.5\n");
  EXPECT_NE(r.err.find("1 judged query has an error record"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("q3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("1 judged query is missing from the run"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("q4"), std::string::npos) << r.err;
}

TEST_F(EvalCli, JsonMatchesTrecInputs) {
  const std::string q = write("queries.jsonl", kQueries);
  const std::string run = write("run.jsonl", kRun);
  const CliResult j = run_cli("eval --format json --run " + run + " --qrels " + q);
  ASSERT_EQ(j.code, 0) << j.err;
  const auto a = nlohmann::json::parse(j.out);
  EXPECT_EQ(a["metrics"][0], "R@1");
  EXPECT_EQ(a["cutoffs"], nlohmann::json::parse("[1, 3, 5, 10]"));
  EXPECT_DOUBLE_EQ(a["micro"]["values"]["R@1"].get<double>(), 0.125);
  EXPECT_DOUBLE_EQ(a["micro"]["values"]["MRR@10"].get<double>(), 0.375);
  EXPECT_EQ(a["counts"]["error_records"], 1);
  EXPECT_EQ(a["counts"]["missing_from_run"], 1);

  // The same run and judgements in TREC form give the same numbers (formats auto-detected).
  const std::string trec_run = write("run.trec",
                                     "q1 Q0 d#0 1 2 ziprerank\n"
                                     "q1 Q0 d#1 2 1 ziprerank\n"
                                     "q2 Q0 d#1 1 3 ziprerank\n"
                                     "q2 Q0 d#0 2 3 ziprerank\n");
  const std::string qrels =
      write("qrels.txt", "q1 0 d#1 1\nq2 0 d#0 1\nq2 0 d#1 1\nq3 0 e#0 1\nq4 0 e#0 1\n");
  const CliResult t = run_cli("eval --format json --run " + trec_run + " --qrels " + qrels);
  ASSERT_EQ(t.code, 0) << t.err;
  const auto b = nlohmann::json::parse(t.out);
  EXPECT_EQ(a["micro"], b["micro"]);
  EXPECT_TRUE(b["domains"].empty());
  EXPECT_TRUE(b["macro"].is_null());
  EXPECT_EQ(b["counts"]["missing_from_run"], 2);
}

TEST_F(EvalCli, MmdocirDomainsAverageOverAllTen) {
  const std::string q = write("queries.jsonl", kQueries);
  const std::string run = write("run.jsonl", kRun);
  const CliResult r =
      run_cli("eval --format json --domains mmdocir --k 2 --run " + run + " --qrels " + q);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["domains"].size(), 10u);
  EXPECT_EQ(j["macro"]["domains"], 10);
  // Laws has R@2 = 1; the nine other domains (News included) count 0.
  EXPECT_DOUBLE_EQ(j["macro"]["values"]["R@2"].get<double>(), 0.1);
}

TEST_F(EvalCli, DenominatorRetrievedFollowsReferenceCode) {
  const std::string q = write("q.jsonl", R"({"query_id": "q", "relevant": ["a"]})");
  const std::string run = write("r.jsonl", R"({"query_id": "q", "ranking": [{"id": "a"}]})");
  const CliResult k = run_cli("eval --format json --k 5 --run " + run + " --qrels " + q);
  const CliResult n =
      run_cli("eval --format json --k 5 --denominator retrieved --run " + run + " --qrels " + q);
  ASSERT_EQ(k.code, 0) << k.err;
  ASSERT_EQ(n.code, 0) << n.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(k.out)["micro"]["values"]["P@5"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(n.out)["micro"]["values"]["P@5"].get<double>(), 1.0);
}

TEST_F(EvalCli, BadInputAndBadFlags) {
  const std::string q = write("queries.jsonl", kQueries);
  const std::string bad =
      write("bad.jsonl", std::string(kRun) + "{\"query_id\": \"q9\", \"ranking\": [}\n");
  CliResult r = run_cli("eval --run " + bad + " --qrels " + q);
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("bad.jsonl:4"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  const std::string dup = write("dup.jsonl", std::string(kRun) + kRun);
  r = run_cli("eval --run " + dup + " --qrels " + q);
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("dup.jsonl:4"), std::string::npos) << r.err;

  r = run_cli("eval --run " + write("r.jsonl", kRun) + " --qrels " +
              shell_quote((dir_ / "none").string()));
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("cannot open"), std::string::npos) << r.err;

  r = run_cli("eval --run " + write("r.jsonl", kRun) + " --qrels " + q + " --k 0");
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_cli("eval --run " + write("r.jsonl", kRun) + " --qrels " + q + " --format xml");
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_cli("eval --qrels " + q);
  EXPECT_EQ(r.code, 2) << r.err;
}

TEST_F(EvalCli, PerQueryRowsAndTheRunTagAsTrecEvalGivesThem) {
  const std::string q = write("queries.jsonl", kQueries);
  const std::string run = write("run.jsonl", kRun);
  // -q: every evaluated query's row (qrels order; failed and missing ones at 0), then the usual.
  CliResult r = run_cli("eval -q --run " + run + " --qrels " + q + " --k 1,2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "query/domain  queries    R@1    R@2  nDCG@1  nDCG@2  MRR@2  MAP@2    P@1    P@2\n"
            "q1                  1    0.0  100.0     0.0    63.1   50.0   50.0    0.0   50.0\n"
            "q2                  1   50.0  100.0   100.0   100.0  100.0  100.0  100.0  100.0\n"
            "q3                  1    0.0    0.0     0.0     0.0    0.0    0.0    0.0    0.0\n"
            "q4                  1    0.0    0.0     0.0     0.0    0.0    0.0    0.0    0.0\n"
            "Laws                2   25.0  100.0    50.0    81.5   75.0   75.0   50.0   75.0\n"
            "News                2    0.0    0.0     0.0     0.0    0.0    0.0    0.0    0.0\n"
            "macro               4   12.5   50.0    25.0    40.8   37.5   37.5   25.0   37.5\n"
            "micro               4   12.5   50.0    25.0    40.8   37.5   37.5   25.0   37.5\n");
  r = run_cli("eval --per-query --format json --run " + run + " --qrels " + q + " --k 1,2");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["queries"].size(), 4u);
  EXPECT_EQ(j["queries"][0]["query_id"], "q1");
  EXPECT_EQ(j["queries"][0]["domain"], "Laws");
  EXPECT_DOUBLE_EQ(j["queries"][0]["values"]["R@2"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["queries"][1]["values"]["R@1"].get<double>(), 0.5);
  EXPECT_TRUE(j["run_tag"].is_null());
  EXPECT_FALSE(
      nlohmann::json::parse(run_cli("eval --format json --run " + run + " --qrels " + q).out)
          .contains("queries"));

  // With -q (or -t) a TREC run's tag names the run atop the table (the plain table stays as it
  // was); JSON always carries it; -t names the run otherwise. The run can come from stdin.
  const std::string trec_text = "q1 Q0 d#0 1 2 bm25-v2\nq1 Q0 d#1 2 1 bm25-v2\n";
  const std::string trec = write("run.trec", trec_text);
  r = run_cli("eval -q --run " + trec + " --qrels " + q + " --k 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("run  bm25-v2\nquery/domain", 0), 0u) << r.out;
  r = run_cli("eval --run " + trec + " --qrels " + q + " --k 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("domain ", 0), 0u) << r.out;
  r = run_cli("eval --format json -t mine --run - --qrels " + q, trec_text);
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["run_tag"], "mine");
  EXPECT_EQ(j["counts"]["missing_from_run"], 3);
}
