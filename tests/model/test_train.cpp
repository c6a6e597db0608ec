// Training: the losses against hand-computed values, the data formats and their errors, and the
// trainer on a tiny random model (overfitting a batch, save/load, exact resumption).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "model_fixture.hpp"
#include "pipeline/stages.hpp"
#include "train/data.hpp"
#include "train/grounding.hpp"
#include "train/optimizer.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/render.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/train.hpp"

#ifdef ZIPRERANK_BINARY
#include "../cli/cli_runner.hpp"
#endif

using namespace ziprerank;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kFixtures = fs::path(ZIPRERANK_TEST_FIXTURES) / "train";

double softplus(double x) { return std::log1p(std::exp(x)); }

at::Tensor vec(std::vector<double> v) { return at::tensor(v, at::kDouble); }

// A fresh folder under the temporary directory, removed when the test ends.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& name)
      : path(fs::temp_directory_path() / ("zr_train_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  operator const fs::path&() const { return path; }
  fs::path operator/(const std::string& leaf) const { return path / leaf; }
};

fs::path write_lines(const fs::path& dir, const std::string& name,
                     const std::vector<std::string>& lines) {
  const fs::path p = dir / name;
  std::ofstream out(p);
  for (const auto& l : lines) out << l << "\n";
  return p;
}

// Expects InputError whose message names `where` (file:line) and contains `what`.
void expect_input_error(const std::function<void()>& fn, const std::string& where,
                        const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming " << where << " and '" << what << "'";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(where), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

std::vector<at::Tensor> parameters_of(const Qwen3VLModel& m) {
  std::vector<at::Tensor> out;
  for (const auto& [name, t] : m.named_parameters()) out.push_back(t.detach().clone());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Losses

TEST(TrainLosses, RankNetWeightsPairsByTheirRanks) {
  // y_true = the model's scores sorted descending, reassigned in teacher order:
  // sorted = [2, 1, 0.5]; rank_of = [1, 0, 2] -> y_true = [1, 2, 0.5]; ranks r = [2, 1, 3].
  const at::Tensor scores = vec({2.0, 0.5, 1.0});
  const double loss = ranknet_loss(scores, {1, 0, 2}).item<double>();
  // Pairs with y_true_i > y_true_j: (0,2) w 1/5, (1,0) w 1/3, (1,2) w 1/4; mean over 3 pairs.
  const double expected =
      (softplus(-(2.0 - 1.0)) / 5 + softplus(-(0.5 - 2.0)) / 3 + softplus(-(0.5 - 1.0)) / 4) / 3;
  EXPECT_NEAR(loss, expected, 1e-12);
}

TEST(TrainLosses, RankNetSkipsTiesAndIsUndefinedWithoutPairs) {
  // y_true ties between 0 and 1: only (0,2) and (1,2) count; a stable sort ranks 0 before 1.
  const double loss = rank_net(vec({1, 2, 3}), vec({1, 1, 0}), true).item<double>();
  EXPECT_NEAR(loss, (softplus(-(1.0 - 3.0)) / (1 + 3) + softplus(-(2.0 - 3.0)) / (2 + 3)) / 2,
              1e-12);
  const double unweighted = rank_net(vec({1, 2, 3}), vec({1, 1, 0}), false).item<double>();
  EXPECT_NEAR(unweighted, (softplus(2.0) + softplus(1.0)) / 2, 1e-12);
  EXPECT_TRUE(std::isnan(ranknet_loss(vec({1, 1, 1}), {0, 1, 2}).item<double>()));
}

TEST(TrainLosses, RankNetGradientFollowsTheTeacher) {
  at::Tensor s = vec({0.0, 0.0, 0.0}) + vec({0.3, 0.2, 0.1});
  s.set_requires_grad(true);
  ranknet_loss(s, {2, 0, 1}).backward();  // teacher: B > C > A
  const at::Tensor g = s.grad();
  EXPECT_GT(g[0].item<double>(), 0);  // A should go down
  EXPECT_LT(g[1].item<double>(), 0);  // B should go up
}

TEST(TrainLosses, SoftRankingTargetPutsGroundTruthFirst) {
  // Order: gt 1, then ranking without gt: 2, 0, 3 -> weights 1, 1/2, 1/4, 1/8 over 15/8.
  const auto p = soft_ranking_target(4, {2, 0, 1, 3}, {1}, 0.5);
  const std::vector<double> expected = {0.25 / 1.875, 1 / 1.875, 0.5 / 1.875, 0.125 / 1.875};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], expected[i], 1e-15) << i;
  // Several ground truths keep their given order.
  const auto q = soft_ranking_target(4, {2, 0, 1, 3}, {3, 1}, 0.5);
  EXPECT_NEAR(q[3], 1 / 1.875, 1e-15);
  EXPECT_NEAR(q[1], 0.5 / 1.875, 1e-15);
  EXPECT_NEAR(q[2], 0.25 / 1.875, 1e-15);
}

TEST(TrainLosses, Top1AgreementAsksWhetherTheTeachersFirstScoresHighest) {
  const at::Tensor s = at::tensor(std::vector<double>{0.1, 0.9, 0.3});
  EXPECT_EQ(top1_agreement(s, {1, 0, 2}), 1.0);
  EXPECT_EQ(top1_agreement(s, {0, 1, 2}), 0.0);
  EXPECT_EQ(top1_agreement(s, {1, 0, 2}, {2}), 0.0);  // the ground truth outranks the teacher
  EXPECT_EQ(top1_agreement(s, {0, 1, 2}, {1}), 1.0);
  EXPECT_EQ(top1_agreement(s, {1, 0, 2}, {7}), 1.0);  // out of range: the teacher's first
  // Equal highest scores: the first of them counts as first.
  EXPECT_EQ(top1_agreement(at::tensor(std::vector<double>{0.5, 0.5}), {1, 0}), 0.0);
  EXPECT_EQ(top1_agreement(at::tensor(std::vector<double>{0.5, 0.5}), {0, 1}), 1.0);
  EXPECT_TRUE(std::isnan(top1_agreement(s, {})));
}

TEST(TrainLosses, SoftRankingLossIgnoresMinusInfinityPadding) {
  const double inf = std::numeric_limits<double>::infinity();
  // Candidate 2 is padding: the order is gt 0, then 1, 3 -> weights 1, 1/2, 1/4 over 7/4.
  const double loss =
      soft_ranking_loss(vec({1, 2, -inf, 0.5}), {2, 0, 1, 3}, {0}, 0.5).item<double>();
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.5));
  const double expected =
      -((1 / 1.75) * (1 - lse) + (0.5 / 1.75) * (2 - lse) + (0.25 / 1.75) * (0.5 - lse));
  EXPECT_NEAR(loss, expected, 1e-12);
  // The same as the unpadded list.
  EXPECT_NEAR(soft_ranking_loss(vec({1, 2, 0.5}), {0, 1, 2}, {0}, 0.5).item<double>(), expected,
              1e-12);
  EXPECT_EQ(soft_ranking_loss(vec({-inf, -inf}), {0, 1}, {0}, 0.5).item<double>(), 0.0);
}

TEST(TrainLosses, GenerationCrossEntropyOnAToyExample) {
  const at::Tensor logits = at::tensor({1.0f, 2.0f, 3.0f, 0.0f, 0.0f, 0.0f}).view({2, 3});
  const double nll = token_nll_sum(logits, at::tensor({2, 0}, at::kLong)).item<double>();
  const double expected =
      (std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0) + std::log(3.0);
  EXPECT_NEAR(nll, expected, 1e-5);
}

TEST(TrainOptimizer, ClipGradNormScalesAllGradientsTogether) {
  train::AdamW opt(0.9, 0.999, 1e-8);
  at::Tensor a = at::zeros({2}).set_requires_grad(true);
  at::Tensor b = at::zeros({1}).set_requires_grad(true);
  at::Tensor unused = at::zeros({3}).set_requires_grad(true);
  opt.add("a", a, 0.0);
  opt.add("b", b, 0.0);
  opt.add("unused", unused, 0.0);  // no gradient: skipped
  (a * at::tensor({3.0f, 0.0f})).sum().add((b * 4.0f).sum()).backward();
  EXPECT_NEAR(opt.clip_grad_norm(10.0), 5.0, 1e-9);  // under the limit: unchanged
  EXPECT_FLOAT_EQ(a.grad()[0].item<float>(), 3.0f);
  EXPECT_NEAR(opt.clip_grad_norm(1.0), 5.0, 1e-9);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-6);
  EXPECT_NEAR(b.grad()[0].item<double>(), 0.8, 1e-6);
  EXPECT_FALSE(unused.grad().defined());
}

TEST(TrainSchedule, CosineWithLinearWarmup) {
  EXPECT_EQ(cosine_with_warmup(0, 10, 110), 0.0);
  EXPECT_DOUBLE_EQ(cosine_with_warmup(5, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(cosine_with_warmup(10, 10, 110), 1.0);
  EXPECT_NEAR(cosine_with_warmup(60, 10, 110), 0.5, 1e-15);
  EXPECT_NEAR(cosine_with_warmup(110, 10, 110), 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(cosine_with_warmup(0, 0, 4), 1.0);
}

// ---------------------------------------------------------------------------------------------
// Data

TEST(TrainData, ReorderedCandidatesKeepTheirRankingAndGroundTruth) {
  train::TrainExample ex;
  for (const char* id : {"a", "b", "c", "d"})
    ex.pages.push_back(PageRef{id, std::string(id) + ".png"});
  ex.ranking = {2, 0, 3, 1};
  ex.gt = {2};
  ex.target = "[C] > [A] > [D] > [B]";
  train::reorder_candidates(ex, {3, 2, 1, 0});
  ASSERT_EQ(ex.pages.size(), 4u);
  EXPECT_EQ(ex.pages[0].id, "d");
  EXPECT_EQ(ex.pages[3].path, "a.png");
  EXPECT_EQ(ex.ranking, (std::vector<int64_t>{1, 3, 0, 2}));
  EXPECT_EQ(ex.gt, (std::vector<int64_t>{1}));
  EXPECT_EQ(ex.target, "[B] > [D] > [A] > [C]");
  EXPECT_EQ(ex.pages[static_cast<size_t>(ex.gt[0])].id, "c");  // the same page is relevant

  train::TrainExample passages;
  passages.passages = {"first", "second", "third"};
  passages.ranking = {0, 1, 2};
  train::reorder_candidates(passages, {1, 2, 0});
  EXPECT_EQ(passages.passages, (std::vector<std::string>{"second", "third", "first"}));
  EXPECT_EQ(passages.ranking, (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(passages.target, "[C] > [A] > [B]");
  EXPECT_THROW(train::reorder_candidates(passages, {0, 0, 1}), InternalError);
  EXPECT_THROW(train::reorder_candidates(passages, {0, 1}), InternalError);
}

TEST(TrainData, RankZephyrRegexesMatchPython) {
  std::ifstream in(kFixtures / "rank_zephyr_regex_cases.json");
  const json cases = json::parse(in);
  ASSERT_FALSE(cases.empty());
  for (const json& c : cases) {
    const std::string text = c["text"];
    SCOPED_TRACE(text);
    EXPECT_EQ(train::rank_zephyr_passage_section(text), c["section"].get<std::string>());
    const auto items = train::rank_zephyr_items(train::rank_zephyr_passage_section(text));
    ASSERT_EQ(items.size(), c["items"].size());
    for (size_t i = 0; i < items.size(); ++i) {
      EXPECT_EQ(std::string(1, items[i].first), c["items"][i][0].get<std::string>());
      EXPECT_EQ(items[i].second, c["items"][i][1].get<std::string>());
    }
    std::string query;
    const bool found = train::rank_zephyr_query(text, &query);
    ASSERT_EQ(found, !c["query"].is_null());
    if (found) {
      EXPECT_EQ(query, c["query"].get<std::string>());
    }
  }
  EXPECT_EQ(train::python_strip("\u3000 x y\u00a0\n"), "x y");
}

TEST(TrainData, Stage1FormatsGiveTheSameKindOfSample) {
  train::TrainDataset data((kFixtures / "stage1.jsonl").string(), 1, {});
  ASSERT_EQ(data.size(), 2u);
  const auto ours = data.get(0);
  EXPECT_EQ(ours.ranking, (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(ours.target, "[C] > [A] > [B]");
  const auto conv = data.get(1);
  EXPECT_EQ(conv.query, "what is a lunar eclipse");
  ASSERT_EQ(conv.passages.size(), 3u);
  EXPECT_EQ(conv.passages[0],
            "A lunar eclipse happens when the Earth passes between the Sun and the Moon.");
  // The last item runs to the end of the greedy section, as in the reference.
  EXPECT_EQ(
      conv.passages[2],
      "The Moon turns red during a total lunar eclipse.\n\nSearch Query: what is a lunar eclipse.");
  EXPECT_EQ(conv.ranking, (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(conv.target, "[C] > [A] > [B]");
  EXPECT_EQ(train::rank_positions(conv.ranking), (std::vector<int64_t>{1, 2, 0}));
  EXPECT_NE(data.content_hash(), 0u);
}

TEST(TrainData, Stage2ReferenceRowsAreSanitisedAsTheReference) {
  train::Stage2Options o;
  o.pages_dir = (kFixtures / "pages").string();
  train::TrainDataset data((kFixtures / "stage2_reference.jsonl").string(), 2, o);
  const auto a = data.get(0);
  ASSERT_EQ(a.pages.size(), 10u);  // candidate_page_ids[:10]
  EXPECT_EQ(a.pages[7].id, "report.pdf#7");
  EXPECT_EQ(fs::path(a.pages[7].path).filename(), "7.png");
  // openai_ranking[:10] = [11, 3, 3, 0, 15, "2", 7, 1, 9, 4]: valid once each -> 3 0 7 1 9 4,
  // then the missing positions ascending: 2 5 6 8.
  EXPECT_EQ(a.ranking, (std::vector<int64_t>{3, 0, 7, 1, 9, 4, 2, 5, 6, 8}));
  EXPECT_EQ(a.gt, (std::vector<int64_t>{7}));
  EXPECT_EQ(a.target, "[D] > [A] > [H] > [B] > [J] > [E] > [C] > [F] > [G] > [I]");
  // No ground truth: the teacher's first choice stands in; the flat {doc}_{page} layout works.
  const auto b = data.get(1);
  EXPECT_EQ(b.gt, (std::vector<int64_t>{1}));
  EXPECT_EQ(fs::path(b.pages[0].path).filename(), "memo_2.png");

  o.force_gt_top1 = true;
  o.max_candidates = 8;
  train::TrainDataset forced((kFixtures / "stage2_reference.jsonl").string(), 2, o);
  EXPECT_EQ(forced.get(0).ranking, (std::vector<int64_t>{7, 3, 0, 1, 2, 4, 5, 6}));
}

TEST(TrainData, Stage2OurFormatTakesIdsOrIndices) {
  train::TrainDataset data((kFixtures / "stage2.jsonl").string(), 2, {});
  const auto s = data.get(0);
  EXPECT_EQ(s.ranking, (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(s.gt, (std::vector<int64_t>{1}));
  EXPECT_TRUE(fs::exists(s.pages[0].path));
}

TEST(TrainData, BadInputNamesFileLineAndField) {
  const ScratchDir dir("bad");
  const std::string good = R"({"query": "q", "passages": ["a", "b"], "ranking": [1, 0]})";
  auto stage1 = [&](const std::string& bad, const std::string& what) {
    const fs::path p = write_lines(dir, "s1.jsonl", {good, "", bad});
    expect_input_error([&] { train::TrainDataset(p.string(), 1, {}); }, p.string() + ":3", what);
  };
  stage1(R"({"query": "q", "passages": ["a", "b"], "ranking": [1, 0)", "malformed JSON");
  stage1(R"({"passages": ["a", "b"], "ranking": [1, 0]})", "'query'");
  stage1(R"({"query": "q", "ranking": [1, 0]})", "'passages'");
  stage1(R"({"query": "q", "passages": ["a", "b"]})", "'ranking'");
  stage1(R"({"query": "q", "passages": ["a", "b"], "ranking": [1, 1]})", "not a permutation");
  stage1(R"({"query": "q", "passages": ["a", "b"], "ranking": [0, 2]})", "not a permutation");
  stage1(R"({"query": "q", "passages": ["a", "b", "c"], "ranking": [0, 1]})", "not a permutation");
  stage1(R"({"query": "  ", "passages": ["a", "b"], "ranking": [1, 0]})", "query is empty");
  json many = {
      {"query", "q"}, {"passages", std::vector<std::string>(27, "p")}, {"ranking", json::array()}};
  for (int i = 0; i < 27; ++i) many["ranking"].push_back(i);
  stage1(many.dump(), "27 passages; at most 26");
  stage1(
      R"({"conversations": [{"value": "s"}, {"value": "passages\n[A] x\n[C] y\nSearch Query: q.\n"}, {"value": "[A] > [C]"}]})",
      "labelled [C], expected [B]");
  stage1(
      R"({"conversations": [{"value": "s"}, {"value": "passages\n[A] x\n[B] y\nSearch Query: q.\n"}, {"value": "[A] > [A]"}]})",
      "not a permutation");
  stage1(
      R"({"conversations": [{"value": "s"}, {"value": "passages\n[A] x\n[B] y\nRank the\n"}, {"value": "[A] > [B]"}]})",
      "Search Query");

  // Stage 2: missing images, in both formats.
  const fs::path img = kFixtures / "pages" / "memo_0.png";
  json row = {{"query_id", "q"},
              {"query", "q"},
              {"candidates",
               {{{"id", "a"}, {"image", img.string()}}, {{"id", "b"}, {"image", "nowhere.png"}}}},
              {"ranking", {"b", "a"}}};
  fs::path p = write_lines(dir, "s2.jsonl", {row.dump()});
  expect_input_error([&] { train::TrainDataset(p.string(), 2, {}); }, p.string() + ":1",
                     "nowhere.png");
  row["candidates"][1]["image"] = img.string();
  row["ranking"] = {"b", "c"};
  p = write_lines(dir, "s2.jsonl", {row.dump()});
  expect_input_error([&] { train::TrainDataset(p.string(), 2, {}); }, p.string() + ":1",
                     "unknown candidate id 'c'");
  const json ref = {{"query", "q"},
                    {"doc_name", "memo"},
                    {"candidate_page_ids", {0, 9}},
                    {"openai_ranking", {0, 1}}};
  p = write_lines(dir, "ref.jsonl", {ref.dump()});
  expect_input_error([&] { train::TrainDataset(p.string(), 2, {}); }, p.string() + ":1",
                     "--pages-dir");
  train::Stage2Options o;
  o.pages_dir = (kFixtures / "pages").string();
  expect_input_error([&] { train::TrainDataset(p.string(), 2, o); }, p.string() + ":1", "page 9");
}

// ---------------------------------------------------------------------------------------------
// Trainer on a tiny random model

namespace {

const std::vector<std::string> kOverfitData = {
    R"({"query": "lunar eclipse colour", "passages": ["The Moon turns red during a total lunar eclipse.", "Solar panels convert light into electricity.", "Tides follow the Moon around the Earth."], "ranking": [0, 2, 1]})",
    R"({"query": "solar power", "passages": ["Wind farms need steady wind.", "Photovoltaic cells turn sunlight into power.", "Coal plants burn fuel."], "ranking": [1, 0, 2]})",
};

TrainOptions tiny_options(const fs::path& dir, const fs::path& data) {
  TrainOptions o;
  o.stage = 1;
  o.data = data.string();
  o.init = test::tiny_model_dir();
  o.output = (dir / "out").string();
  o.batch_size = 2;
  o.grad_accum = 1;
  o.warmup_steps = 0;
  o.lr = 2e-3;
  o.log_every = 1000;
  return o;
}

// The model's ranking of one stage-1 line through the inference pipeline.
std::vector<std::string> rank_line(const Reranker& r, const std::string& line,
                                   std::vector<double>* logits) {
  const json j = json::parse(line);
  std::vector<PreprocessedImage> pages;
  std::vector<std::string> ids;
  const ziprerank::detail::Stages stages(r);
  for (size_t i = 0; i < j["passages"].size(); ++i) {
    pages.push_back(
        stages.prepare(render_passage(j["passages"][i].get<std::string>()), RerankOptions{}));
    ids.push_back(std::to_string(i));
  }
  RerankOptions o;
  o.keep_ratio = 1.0;
  const RerankResult res = stages.rerank(j["query"], ids, pages, o);
  std::vector<std::string> order;
  for (const auto& p : res.ranking) {
    order.push_back(p.id);
    if (logits) logits->push_back(p.logit);
  }
  return order;
}

}  // namespace

TEST(Trainer, OverfitsATinyBatchAndSavesAFolderThatScoresTheSame) {
  const ScratchDir dir("overfit");
  const fs::path data = write_lines(dir, "train.jsonl", kOverfitData);
  TrainOptions o = tiny_options(dir, data);
  o.max_steps = 25;
  o.metrics_file = (dir / "metrics.jsonl").string();
  Trainer trainer(o);
  const auto before = parameters_of(*trainer.model());
  const TrainSummary s = trainer.run();
  ASSERT_EQ(s.history.size(), 25u);
  // Every tensor trains, including those the model uses through views (the patch kernel), except
  // the DeepStack level injected after the last decoder layer: it only reaches visual positions,
  // whose outputs no loss reads.
  const auto after = parameters_of(*trainer.model());
  for (size_t i = 0; i < after.size(); ++i) {
    const std::string& name = trainer.model()->named_parameters()[i].first;
    if (name.rfind("model.visual.deepstack_merger_list.1.", 0) == 0) continue;
    EXPECT_FALSE(at::equal(before[i], after[i])) << name;
  }
  const double first = s.history.front().loss, last = s.history.back().loss;
  EXPECT_LT(last, 0.6 * first) << "loss " << first << " -> " << last;
  EXPECT_GT(s.history.front().rank_loss, 0);
  EXPECT_GT(s.tokens, 0);
  // By the end the identifier logits put the teacher's first passage first in every sample.
  EXPECT_EQ(s.history.back().rank_top1, 1.0);
  for (const StepMetrics& m : s.history) {
    EXPECT_GE(m.rank_top1, 0.0);
    EXPECT_LE(m.rank_top1, 1.0);
  }

  // The trained model ranks its training batch as the teacher did.
  const Reranker trained(trainer.folder(), trainer.model(), trainer.tokenizer());
  std::vector<double> before_save;
  EXPECT_EQ(rank_line(trained, kOverfitData[0], &before_save),
            (std::vector<std::string>{"0", "2", "1"}));
  EXPECT_EQ(rank_line(trained, kOverfitData[1], &before_save),
            (std::vector<std::string>{"1", "0", "2"}));

  // The saved folder loads as a model and gives the same logits: to float rounding, since the
  // loaded model runs the fused inference kernels where the trainable one runs autograd's ops.
  const auto loaded = Reranker::load(o.output, ModelOptions{});
  EXPECT_FALSE(loaded->folder().random_init);
  EXPECT_EQ(loaded->folder().name, "out");
  std::vector<double> after_load;
  rank_line(*loaded, kOverfitData[0], &after_load);
  rank_line(*loaded, kOverfitData[1], &after_load);
  ASSERT_EQ(before_save.size(), after_load.size());
  for (size_t i = 0; i < before_save.size(); ++i)
    EXPECT_NEAR(before_save[i], after_load[i], 1e-5 * (1 + std::abs(before_save[i]))) << i;

  std::ifstream cfg(fs::path(o.output) / "config.json");
  const json note = json::parse(cfg)["ziprerank"];
  EXPECT_EQ(note["training"]["steps"], 25);
  EXPECT_EQ(note["training"]["stage"], 1);
  EXPECT_TRUE(fs::exists(fs::path(o.output) / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(fs::path(o.output) / "preprocessor_config.json"));
  std::ifstream metrics(o.metrics_file);
  int lines = 0;
  for (std::string l; std::getline(metrics, l);) ++lines;
  EXPECT_EQ(lines, 25);
}

TEST(Trainer, TrainingTheLanguageModelDropsTheInitsListOfTrainedScorings) {
  const ScratchDir dir("scorings");
  const fs::path data = write_lines(dir, "train.jsonl", kOverfitData);
  // An init whose config.json says it was trained for similarity scoring only.
  const fs::path init = dir / "init";
  fs::copy(test::tiny_model_dir(), init, fs::copy_options::recursive);
  json cfg;
  {
    std::ifstream in(init / "config.json");
    cfg = json::parse(in);
  }
  cfg["ziprerank"]["trained_scorings"] = json::array({"similarity"});
  std::ofstream(init / "config.json") << cfg.dump(2);
  const auto saved_list = [](const std::string& out) {
    std::ifstream in(fs::path(out) / "config.json");
    return json::parse(in)["ziprerank"].value("trained_scorings", json::array());
  };

  TrainOptions tower = tiny_options(dir, data);
  tower.init = init.string();
  tower.output = (dir / "tower").string();
  tower.max_steps = 1;
  tower.align_weight = 1.0;
  tower.align_only = true;  // the tower alone: the list still holds
  Trainer(tower).run();
  EXPECT_EQ(saved_list(tower.output), json::array({"similarity"}));

  TrainOptions ranking = tiny_options(dir, data);
  ranking.init = init.string();
  ranking.output = (dir / "ranking").string();
  ranking.max_steps = 1;
  Trainer(ranking).run();
  EXPECT_EQ(saved_list(ranking.output), json::array());  // the language model trained: dropped
}

TEST(Trainer, HeldOutMeasurementsDoNotChangeTraining) {
  const ScratchDir dir("heldout");
  const fs::path data = write_lines(dir, "train.jsonl", kOverfitData);
  const fs::path held = write_lines(dir, "held.jsonl", {kOverfitData[1]});
  TrainOptions plain = tiny_options(dir, data);
  plain.max_steps = 12;
  plain.output = (dir / "plain").string();
  Trainer a(plain);
  const TrainSummary sa = a.run();
  EXPECT_TRUE(sa.evals.empty());

  TrainOptions o = plain;
  o.output = (dir / "measured").string();
  o.eval_data = held.string();
  o.eval_every = 5;
  o.eval_shuffle = false;  // the sample as trained on, candidates in the same order
  o.metrics_file = (dir / "metrics.jsonl").string();
  Trainer b(o);
  const TrainSummary sb = b.run();
  // Before the first step, every 5 steps, and after the last.
  ASSERT_EQ(sb.evals.size(), 4u);
  const std::vector<int64_t> steps = {sb.evals[0].step, sb.evals[1].step, sb.evals[2].step,
                                      sb.evals[3].step};
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 5, 10, 12}));
  for (const EvalMetrics& e : sb.evals) {
    EXPECT_EQ(e.samples, 1);
    EXPECT_TRUE(std::isnan(e.align_loss));  // off
    EXPECT_GE(e.rank_top1, 0.0);
    EXPECT_LE(e.rank_top1, 1.0);
  }
  // The held-out sample is a training sample here: the model learns it.
  EXPECT_LT(sb.evals.back().rank_loss, sb.evals.front().rank_loss);
  EXPECT_LT(sb.evals.back().gen_loss, sb.evals.front().gen_loss);
  // Measuring takes no step, draws nothing and leaves no gradient: the same trajectory.
  const auto pa = parameters_of(*a.model()), pb = parameters_of(*b.model());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(at::equal(pa[i], pb[i])) << i;
  for (size_t i = 0; i < sa.history.size(); ++i)
    EXPECT_EQ(sa.history[i].loss, sb.history[i].loss) << i;
  // A measurement of the final weights equals the last one.
  const EvalMetrics again = b.evaluate();
  EXPECT_DOUBLE_EQ(again.rank_loss, sb.evals.back().rank_loss);
  EXPECT_DOUBLE_EQ(again.gen_loss, sb.evals.back().gen_loss);

  // The metrics file holds the 12 step lines and 4 marked lines (5 with the call above).
  std::ifstream metrics(o.metrics_file);
  int step_lines = 0, eval_lines = 0;
  for (std::string l; std::getline(metrics, l);) {
    const json j = json::parse(l);
    if (j.value("eval", false)) {
      ++eval_lines;
      EXPECT_TRUE(j.contains("rank_top1"));
      EXPECT_FALSE(j.contains("align_loss"));
    } else {
      ++step_lines;
    }
  }
  EXPECT_EQ(step_lines, 12);
  EXPECT_EQ(eval_lines, 5);

  TrainOptions bad = plain;
  bad.output = (dir / "bad").string();
  bad.eval_every = 3;
  EXPECT_THROW(Trainer{bad}, UsageError);
  EXPECT_THROW(a.evaluate(), UsageError);
  bad.eval_every = 0;
  bad.eval_data = (dir / "missing.jsonl").string();
  EXPECT_THROW(Trainer{bad}, InputError);
}

TEST(Trainer, ResumingFromACheckpointEqualsUninterruptedTraining) {
  const ScratchDir dir("resume");
  std::vector<std::string> lines = kOverfitData;
  lines.push_back(
      R"({"query": "tides", "passages": ["Tides rise twice a day.", "Rain falls."], "ranking": [0, 1]})");
  const fs::path data = write_lines(dir, "train.jsonl", lines);
  // 3 samples, micro-batches of 2, 2 per step: 1 step per epoch, a partial micro-batch in each,
  // a reshuffle every step; warm-up and cosine decay over 4 steps; bf16 output weights so the
  // float32 masters must come from the optimizer state.
  auto options = [&](const std::string& out) {
    TrainOptions o = tiny_options(dir, data);
    o.output = (dir / out).string();
    o.grad_accum = 2;
    o.warmup_steps = 1;
    o.max_steps = 4;
    o.save_dtype = "bfloat16";
    o.keep_ratio = 0.5;
    return o;
  };
  TrainOptions full = options("full");
  full.save_every = 2;
  Trainer a(full);
  a.run();
  const auto expected = parameters_of(*a.model());
  const std::string ckpt = (fs::path(full.output) / "checkpoints" / "step-00000002").string();
  ASSERT_TRUE(fs::exists(fs::path(ckpt) / "trainer_state.json"));

  TrainOptions resumed = options("resumed");
  resumed.resume = ckpt;
  resumed.init.clear();
  Trainer b(resumed);
  EXPECT_EQ(b.step(), 2);
  const TrainSummary s = b.run();
  EXPECT_EQ(s.start_step, 2);
  EXPECT_EQ(s.steps, 4);
  const auto got = parameters_of(*b.model());
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(at::equal(got[i], expected[i])) << b.model()->named_parameters()[i].first;
  }
  // The checkpoint is itself a loadable model folder.
  EXPECT_NO_THROW(Reranker::load(ckpt, ModelOptions{}));

  TrainOptions changed = options("changed");
  changed.resume = ckpt;
  changed.lr = 1e-3;
  EXPECT_THROW(Trainer{changed}, UsageError);

  // A checkpoint written before a setting existed lacks its key: resuming is fine while the
  // setting keeps its default, and refused when it would change the trajectory.
  const fs::path state_path = fs::path(ckpt) / "trainer_state.json";
  json state = json::parse(std::ifstream(state_path));
  state["settings"].erase("max_grad_norm");
  std::ofstream(state_path) << state.dump();
  TrainOptions older = options("older");
  older.resume = ckpt;
  older.init.clear();
  EXPECT_NO_THROW(Trainer{older});
  older.max_grad_norm = 1.0;
  EXPECT_THROW(Trainer{older}, UsageError);

  // Resuming from a checkpoint that the run itself prunes (--keep-checkpoints) still saves
  // complete folders: the source's side files were read at start.
  TrainOptions pruned = options("pruned");
  pruned.resume = ckpt;
  pruned.init.clear();
  pruned.checkpoint_dir = (fs::path(full.output) / "checkpoints").string();
  pruned.save_every = 1;
  pruned.keep_checkpoints = 1;
  pruned.max_grad_norm = 0.0;
  Trainer c(pruned);
  c.run();
  EXPECT_FALSE(fs::exists(ckpt));
  EXPECT_NO_THROW(Reranker::load(pruned.output, ModelOptions{}));
}

TEST(Trainer, Stage2TrainsOnPagesWithPruningAndCanFreezeVision) {
  const ScratchDir dir("stage2");
  TrainOptions o;
  o.stage = 2;
  o.data = (kFixtures / "stage2_reference.jsonl").string();
  o.pages_dir = (kFixtures / "pages").string();
  o.max_candidates = 4;
  o.force_gt_top1 = true;
  o.init = test::tiny_model_dir();
  o.output = (dir / "out").string();
  o.batch_size = 2;
  o.grad_accum = 1;
  o.warmup_steps = 0;
  o.max_steps = 2;
  o.lr = 1e-3;
  o.keep_ratio = 0.5;
  o.freeze_vision = true;
  o.freeze_embeddings = true;
  Trainer t(o);
  const auto before = parameters_of(*t.model());
  const TrainSummary s = t.run();
  ASSERT_EQ(s.history.size(), 2u);
  EXPECT_TRUE(std::isfinite(s.history[0].loss));
  EXPECT_GT(s.history[0].rank_loss, 0);
  const auto after = parameters_of(*t.model());
  const auto& names = t.model()->named_parameters();
  int checked = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i].first;
    const bool vision = name.rfind("model.visual.", 0) == 0;
    const bool embeddings = name == "model.language_model.embed_tokens.weight";
    if (vision || embeddings) {
      EXPECT_TRUE(at::equal(before[i], after[i])) << name;
    }
    if (embeddings) ++checked;
    if (name == "lm_head.weight" || name == "model.language_model.layers.0.mlp.up_proj.weight") {
      EXPECT_FALSE(at::equal(before[i], after[i])) << name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3);
  {
    std::ifstream in(fs::path(o.output) / "config.json");
    const json cfg = json::parse(in);
    EXPECT_EQ(cfg["ziprerank"]["training"]["freeze_embeddings"], true);
  }
  EXPECT_NO_THROW(Reranker::load(o.output, ModelOptions{}));

  // A frozen tower's features are kept per page: the same run without the cache gives the same
  // losses (pages are then encoded together instead of one by one).
  TrainOptions uncached = o;
  uncached.output = (dir / "uncached").string();
  uncached.vision_cache_bytes = 0;
  const TrainSummary u = Trainer(uncached).run();
  ASSERT_EQ(u.history.size(), s.history.size());
  for (size_t i = 0; i < u.history.size(); ++i) {
    EXPECT_NEAR(u.history[i].loss, s.history[i].loss, 1e-4 * std::abs(s.history[i].loss)) << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Word grounding

namespace {
// A tokenizer whose pieces are whole words: "▁" + word -> its index in a fixed list.
class WordListTokenizer : public Tokenizer {
 public:
  explicit WordListTokenizer(std::vector<std::string> words) : words_(std::move(words)) {}
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t b = text.find_first_not_of(' ', pos);
      if (b == std::string::npos) break;
      size_t e = text.find(' ', b);
      if (e == std::string::npos) e = text.size();
      const std::string w = text.substr(b, e - b);
      const auto it = std::find(words_.begin(), words_.end(), w);
      out.push_back(it == words_.end() ? 0 : static_cast<int64_t>(it - words_.begin()));
      pos = e;
    }
    return out;
  }
  std::string decode(const std::vector<int64_t>&) const override { return {}; }
  std::optional<int64_t> token_to_id(const std::string&) const override { return std::nullopt; }
  int64_t vocab_size() const override { return static_cast<int64_t>(words_.size()); }
  std::string id_to_token(int64_t id) const override { return words_.at(static_cast<size_t>(id)); }
  std::string kind() const override { return "word-list"; }

 private:
  std::vector<std::string> words_;
};
}  // namespace

TEST(InitSpelling, PiecesThatLookAlikeStartClose) {
  const WordListTokenizer tok({"<|im_end|>", "\xe2\x96\x81whale", "\xe2\x96\x81whales",
                               "\xe2\x96\x81Whale", "\xe2\x96\x81nation", "whale", "ing",
                               "\xc4\xa0whale"});
  at::manual_seed(3);
  const at::Tensor original = at::randn({9, 64}) * 0.02;
  at::Tensor embed = original.clone();
  write_spelling_embeddings(tok, 0.8, 0.02, embed);
  auto cos = [&](int a, int b) {
    return (at::dot(embed[a], embed[b]) / (embed[a].norm() * embed[b].norm())).item<double>();
  };
  EXPECT_TRUE(at::equal(embed[0], original[0]));  // special tokens keep their rows
  EXPECT_TRUE(at::equal(embed[8], original[8]));  // beyond the tokenizer's vocabulary
  for (int i = 1; i <= 7; ++i) EXPECT_NEAR(embed[i].norm().item<double>(), 0.02 * 8, 1e-5);
  EXPECT_GT(cos(1, 3), 0.5);        // case folded: the same spelling
  EXPECT_GT(cos(1, 2), 0.25);       // one letter more
  EXPECT_GT(cos(1, 5), 0.4);        // the same letters, not at a word start
  EXPECT_GT(cos(1, 7), cos(1, 5));  // byte-level BPE's word-start mark reads as SentencePiece's
  EXPECT_GT(cos(1, 2), cos(1, 4) + 0.2);  // "whale" is nearer "whales" than "nation"
  EXPECT_LT(cos(1, 3), 0.99);             // still distinct rows
  EXPECT_THROW(write_spelling_embeddings(tok, 1.0, 0.02, embed), UsageError);
}

TEST(TrainGrounding, WordsLandOnTheMergedTokenThatShowsThem) {
  auto tok = std::make_shared<WordListTokenizer>(
      std::vector<std::string>{"<unk>", "whale", "ship", "Ship", "sea", "ahab"});
  train::WordPieces pieces(tok);
  // A 200x100 image resized to 128x64 (grid 1 x 4 x 8 patches of 16, merged 2x2: 2 rows x 4
  // columns of 32-px cells). Word centres in image pixels map through the 0.64 scale.
  const std::vector<train::PlacedWord> words = {
      {"whale,", 10, 10},   // (6.4, 6.4) -> row 0, col 0; trailing punctuation dropped
      {"Ship", 60, 10},     // (38.4, 6.4) -> row 0, col 1; its lower-case form too
      {"sea", 60, 20},      // (38.4, 12.8) -> row 0, col 1
      {"ahab", 190, 90},    // (121.6, 57.6) -> row 1, col 3
      {"...", 100, 50},     // punctuation only: no pieces
      {"whale", 250, 10}};  // outside the image: ignored
  train::GroundingTargets t;
  train::add_grounding_targets(words, 200, 100, {1, 4, 8}, 16, 2, /*token_offset=*/100, pieces, &t);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.token_index, (std::vector<int64_t>{100, 101, 107}));
  EXPECT_EQ(t.pieces[0], (std::vector<int64_t>{1}));
  EXPECT_EQ(t.pieces[1], (std::vector<int64_t>{3, 2, 4}));
  EXPECT_EQ(t.pieces[2], (std::vector<int64_t>{5}));
}

TEST(TrainGrounding, WordsOnGridStartAtTheirCellAndRunRight) {
  const WordListTokenizer tok({"<pad>", "whale", "sea", "ship"});
  // A 64x64 image on a 4x4 patch grid (patch 16, merge 2): 2x2 cells of 32 pixels.
  const std::vector<train::PlacedWord> words = {
      {"whale", 40, 10}, {"sea", 45, 12}, {"ship", 10, 50}, {"lost", 200, 10}};
  const std::vector<int64_t> grid = train::words_on_grid(words, 64, 64, {1, 4, 4}, 16, 2, tok, 0);
  // whale -> cell 1; sea shares it, so takes the next free cell (2); ship's cell (2) is then
  // taken, so it moves on to 3; a word outside the image is dropped.
  EXPECT_EQ(grid, (std::vector<int64_t>{0, 1, 2, 3}));
  // Resized grids scale the word positions: the same words on a 128x128 decode.
  const std::vector<train::PlacedWord> big = {{"ship", 20, 100}};
  EXPECT_EQ(train::words_on_grid(big, 128, 128, {1, 4, 4}, 16, 2, tok, 0),
            (std::vector<int64_t>{0, 0, 3, 0}));
}

TEST(TrainGrounding, LossIsTheCrossEntropyOverCosineLogits) {
  // Vocabulary of two orthogonal embeddings; scale 20.
  const at::Tensor emb = at::tensor({1.0f, 0.0f, 0.0f, 3.0f}).reshape({2, 2});
  train::GroundingTargets t;
  t.token_index = {1};
  t.pieces = {{0}};
  // A token pointing at word 0 (length does not matter): loss log(1 + e^-20).
  at::Tensor v = at::tensor({0.0f, 0.0f, 5.0f, 0.0f}).reshape({2, 2});
  EXPECT_NEAR(train::grounding_loss(v, emb, t).item<double>(), std::log1p(std::exp(-20.0)), 1e-7);
  // Halfway between both words: log 2; with both words as targets (uniform): still log 2.
  v = at::tensor({0.0f, 0.0f, 1.0f, 1.0f}).reshape({2, 2});
  EXPECT_NEAR(train::grounding_loss(v, emb, t).item<double>(), std::log(2.0), 1e-6);
  t.pieces = {{0, 1}};
  EXPECT_NEAR(train::grounding_loss(v, emb, t).item<double>(), std::log(2.0), 1e-6);
  // The gradient moves the token, never the embeddings (they are constants).
  v = v.clone().set_requires_grad(true);
  t.pieces = {{1}};
  const at::Tensor e = emb.clone().set_requires_grad(true);
  train::grounding_loss(v, e, t).backward();
  EXPECT_FALSE(e.grad().defined());
  EXPECT_LT(v.grad()[1][1].item<double>(), 0);  // toward word 1
  EXPECT_GT(v.grad()[1][0].item<double>(), 0);
  EXPECT_EQ(v.grad()[0].abs().sum().item<double>(), 0);
  EXPECT_FALSE(train::grounding_loss(v, emb, train::GroundingTargets{}).defined());
}

TEST(TrainGrounding, PassageWordsFollowTheDrawnLines) {
  const std::string text = "The whale surfaced beside the ship while the crew watched in silence.";
  const PassageLayout layout = layout_passage(text);
  const auto words = train::passage_words(text, PassageRenderOptions{});
  size_t expected = 0;
  for (int i = 0; i < layout.drawn_lines; ++i) {
    std::istringstream in(layout.lines[static_cast<size_t>(i)]);
    for (std::string w; in >> w;) ++expected;
  }
  ASSERT_EQ(words.size(), expected);
  EXPECT_EQ(words.front().text, "The");
  EXPECT_EQ(words.back().text, "silence.");
  // Each word's centre has ink under it on the drawn passage, and words run left to right
  // within a line and top to bottom across lines.
  const Image img = render_passage(text);
  for (size_t i = 0; i < words.size(); ++i) {
    const auto& w = words[i];
    ASSERT_GT(w.cx, 0);
    ASSERT_LT(w.cx, img.width);
    int dark = 0;
    for (int dy = -3; dy <= 3; ++dy) {
      for (int dx = -6; dx <= 6; ++dx) {
        const int x = static_cast<int>(w.cx) + dx, y = static_cast<int>(w.cy) + dy;
        if (img.rgb[(static_cast<size_t>(y) * img.width + x) * 3] < 128) ++dark;
      }
    }
    EXPECT_GT(dark, 0) << w.text;
    if (i > 0 && words[i - 1].cy == w.cy) EXPECT_GT(w.cx, words[i - 1].cx) << w.text;
    if (i > 0) EXPECT_GE(w.cy, words[i - 1].cy) << w.text;
  }
}

TEST(TrainGrounding, PageWordIndexReadsTheRenderSidecar) {
  const ScratchDir dir("words");
  {
    std::ofstream out(dir / "words.json");
    out << R"({"pages": [{"index": 0, "file": "page_000.png"}, {"index": 1, "file": "page_001.png"}],
               "words": [{"page": 1, "text": "Pequod", "box": [10, 20, 30, 40]}]})";
  }
  train::PageWordIndex index;
  const auto* words = index.find((dir / "page_001.png").string());
  ASSERT_NE(words, nullptr);
  ASSERT_EQ(words->size(), 1u);
  EXPECT_EQ((*words)[0].text, "Pequod");
  EXPECT_EQ((*words)[0].cx, 20);
  EXPECT_EQ((*words)[0].cy, 30);
  EXPECT_EQ(index.find((dir / "page_000.png").string()), nullptr);  // no words on it
  const ScratchDir bare("nowords");
  EXPECT_EQ(index.find((bare / "page_000.png").string()), nullptr);
  const ScratchDir bad("badwords");
  {
    std::ofstream out(bad / "words.json");
    out << R"({"pages": [{"file": "p.png"}], "words": [{"page": 3, "text": "x", "box": [0,0,1,1]}]})";
  }
  EXPECT_THROW(index.find((bad / "p.png").string()), InputError);
}

TEST(Trainer, GroundingAndCandidateLossesTrainAndAreLogged) {
  const ScratchDir dir("grounding");
  const fs::path data = write_lines(dir, "train.jsonl", kOverfitData);
  TrainOptions o = tiny_options(dir, data);
  o.max_steps = 12;
  o.align_weight = 1.0;
  o.candidate_weight = 1.0;
  o.metrics_file = (dir / "metrics.jsonl").string();
  Trainer trainer(o);
  const TrainSummary s = trainer.run();
  ASSERT_EQ(s.history.size(), 12u);
  EXPECT_GT(s.history.front().align_loss, 0);
  EXPECT_GT(s.history.front().candidate_loss, 0);
  EXPECT_LT(s.history.back().align_loss, s.history.front().align_loss);
  EXPECT_LT(s.history.back().candidate_loss, s.history.front().candidate_loss);
  std::ifstream metrics(o.metrics_file);
  std::string first;
  std::getline(metrics, first);
  const json line = json::parse(first);
  EXPECT_TRUE(line.contains("align_loss"));
  EXPECT_TRUE(line.contains("candidate_loss"));
  EXPECT_TRUE(line.contains("candidate_top1"));
  EXPECT_TRUE(line.contains("rank_top1"));
  o.freeze_vision = true;
  o.output = (dir / "frozen").string();
  EXPECT_THROW(Trainer{o}, UsageError);
  o.freeze_vision = false;
  o.metrics_file = (dir / "no-such-folder" / "metrics.jsonl").string();
  try {
    Trainer{o};
    ADD_FAILURE() << "a metrics file in a missing folder must be refused before training";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-folder' does not exist"), std::string::npos)
        << e.what();
  }

  // --align-only trains the vision tower alone; --init-vision joins it to another model.
  TrainOptions v = tiny_options(dir, data);
  v.output = (dir / "vision").string();
  v.max_steps = 2;
  v.align_weight = 1.0;
  v.align_only = true;
  Trainer vision_only(v);
  const auto init_params = parameters_of(*vision_only.model());
  vision_only.run();
  const auto& names = vision_only.model()->named_parameters();
  const auto trained = parameters_of(*vision_only.model());
  TrainOptions j = tiny_options(dir, data);
  j.output = (dir / "joined").string();
  j.init_vision = v.output;
  Trainer joined(j);
  const auto got = parameters_of(*joined.model());
  for (size_t i = 0; i < names.size(); ++i) {
    const bool vis = names[i].first.rfind("model.visual.", 0) == 0;
    // Only the tower moved in the vision-only run; the joined model has it and the init's rest.
    // (DeepStack mergers feed the language model only, so the grounding loss leaves them.)
    const bool deepstack = names[i].first.find("deepstack") != std::string::npos;
    if (!deepstack) EXPECT_EQ(at::equal(trained[i], init_params[i]), !vis) << names[i].first;
    EXPECT_TRUE(at::equal(got[i], vis ? trained[i] : init_params[i])) << names[i].first;
  }
}

TEST(Trainer, AlignCropTrainsTheTowerOnWindowsOfThePages) {
  // Two 320x320 pages, each with words drawn in two places, and a words.json sidecar.
  const ScratchDir dir("aligncrop");
  const fs::path pages = dir / "pages";
  fs::create_directories(pages);
  PassageRenderOptions ro;
  ro.size = 320;
  save_png(render_passage("whale harpoon ocean captain ship sailor", ro),
           (pages / "p0.png").string());
  save_png(render_passage("congress union treasury nation people law", ro),
           (pages / "p1.png").string());
  {
    std::ofstream out(pages / "words.json");
    out << R"({"pages": [{"file": "p0.png"}, {"file": "p1.png"}], "words": [)"
        << R"({"page": 0, "text": "whale", "box": [20, 20, 60, 40]},)"
        << R"({"page": 0, "text": "ship", "box": [200, 250, 240, 270]},)"
        << R"({"page": 1, "text": "union", "box": [20, 20, 60, 40]},)"
        << R"({"page": 1, "text": "nation", "box": [250, 280, 300, 300]}]})";
  }
  const fs::path data = write_lines(
      dir, "train.jsonl",
      {R"({"query_id": "a", "query": "whale", "candidates": [{"id": "p0", "image": "pages/p0.png"},)"
       R"( {"id": "p1", "image": "pages/p1.png"}], "relevant": ["p0"], "ranking": ["p0", "p1"]})"});
  TrainOptions o = tiny_options(dir, data);
  o.stage = 2;
  o.batch_size = 1;
  o.max_steps = 6;
  o.align_weight = 1.0;
  o.align_only = true;
  o.align_crop = 256;
  o.metrics_file = (dir / "metrics.jsonl").string();
  Trainer t(o);
  const TrainSummary s = t.run();
  ASSERT_EQ(s.history.size(), 6u);
  // A 256-pixel window of a 320-pixel page holds at least one of its two far-apart words in
  // some steps and the loss is then positive; steps whose windows hold none read 0.
  double total = 0;
  for (const StepMetrics& m : s.history) {
    EXPECT_TRUE(std::isfinite(m.align_loss));
    EXPECT_EQ(m.rank_loss, 0);
    total += m.align_loss;
  }
  EXPECT_GT(total, 0);

  TrainOptions bad = o;
  bad.output = (dir / "bad").string();
  bad.align_only = false;
  EXPECT_THROW(Trainer{bad}, UsageError);  // crops cut the relevant text out of ranking samples
  bad.align_only = true;
  bad.align_crop = -1;
  EXPECT_THROW(Trainer{bad}, UsageError);

  // Stage 2 with the pages' words in place of their pixels: the language model trains on them.
  TrainOptions text = tiny_options(dir, data);
  text.stage = 2;
  text.output = (dir / "text").string();
  text.batch_size = 1;
  text.max_steps = 2;
  text.text_candidates = true;
  text.candidate_weight = 1.0;
  const TrainSummary ts = Trainer(text).run();
  ASSERT_EQ(ts.history.size(), 2u);
  EXPECT_GT(ts.history[0].rank_loss, 0);
  EXPECT_GT(ts.history[0].candidate_loss, 0);
  fs::remove(pages / "words.json");
  text.output = (dir / "text-nowords").string();
  EXPECT_THROW(Trainer(text).run(), InputError);  // no sidecar: nothing to show
}

// ---------------------------------------------------------------------------------------------
// The command line (built when the test target is given the binary's path)

#ifdef ZIPRERANK_BINARY
TEST(TrainCli, TrainsAModelThatRankLoadsAndReportsBadLines) {
  const ScratchDir dir("cli");
  const fs::path data = write_lines(dir, "train.jsonl", kOverfitData);
  const std::string base = "train --stage 1 --data " + test::shell_quote(data.string()) +
                           " --init " + test::shell_quote(test::tiny_model_dir()) +
                           " --batch-size 2 --grad-accum 1 " + "--warmup 0 --lr 1e-3 --log-every 1";
  const fs::path out = dir / "model";
  const test::CliResult ok = test::run_cli(base + " --max-steps 2 --metrics " +
                                           test::shell_quote((dir / "m.jsonl").string()) + " -o " +
                                           test::shell_quote(out.string()));
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.err.find("step 2/2"), std::string::npos) << ok.err;
  EXPECT_NE(ok.err.find("tokens/s"), std::string::npos) << ok.err;
  EXPECT_TRUE(ok.out.empty());
  EXPECT_NO_THROW(Reranker::load(out.string(), ModelOptions{}));

  // The same output again needs --force.
  EXPECT_EQ(test::run_cli(base + " --max-steps 1 -o " + test::shell_quote(out.string())).code, 2);

  const fs::path bad =
      write_lines(dir, "bad.jsonl", {kOverfitData[0], R"({"query": "q", "passages": ["a"]})"});
  const test::CliResult r =
      test::run_cli("train --stage 1 --data " + test::shell_quote(bad.string()) + " --init " +
                    test::shell_quote(test::tiny_model_dir()) + " -o " +
                    test::shell_quote((dir / "never").string()));
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find(bad.string() + ":2"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "never" / "config.json"));
}
#endif
