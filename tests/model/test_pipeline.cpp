#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include "model_fixture.hpp"
#include "pipeline/stages.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/similarity.hpp"

using namespace ziprerank;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Reranker> tiny_reranker() {
  return Reranker::load(test::tiny_model_dir(), ModelOptions{});
}

// The reranker's stages one at a time.
ziprerank::detail::Stages stages(const Reranker& r) { return ziprerank::detail::Stages(r); }

// Pages through the vision tower with the model's own tile.
std::vector<std::shared_ptr<const EncodedPage>> encode(const Reranker& r,
                                                       const std::vector<PreprocessedImage>& pages,
                                                       StageTiming& timing, bool deepstack = true) {
  const ziprerank::detail::Stages s(r);
  return s.encode(pages, timing, s.model().vision_tile(), deepstack);
}

std::vector<PreprocessedImage> random_pages(int n, int64_t seed) {
  at::manual_seed(seed);
  std::vector<PreprocessedImage> pages;
  const std::vector<std::array<int64_t, 3>> grids = {{1, 4, 6}, {1, 2, 4}, {1, 6, 4}, {1, 4, 4}};
  for (int i = 0; i < n; ++i) {
    PreprocessedImage p;
    p.grid_thw = grids[i % grids.size()];
    p.pixel_values = at::rand({p.grid_thw[1] * p.grid_thw[2], 1536}) * 2 - 1;
    pages.push_back(p);
  }
  return pages;
}

}  // namespace

TEST(Prompt, TextMatchesTheReferenceWording) {
  const std::string expected =
      "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy "
      "to the query.\n\n"
      "I will provide you with 3 passages as images.\n"
      "Rank the passages based on their relevance to the search query.\n\n"
      "The images are provided in order: Picture 1 is passage [A], Picture 2 is passage [B], "
      "Picture 3 is passage [C].\n\n"
      "Search Query: hello\n\n"
      "Rank the passages above based on their relevance to the search query.\n"
      "The passages should be listed in descending order using identifiers.\n"
      "The most relevant passages should be listed first.\n"
      "The output format should be [A] > [B], etc.\n"
      "Only output the ranking results, do not say anything else.";
  EXPECT_EQ(ranking_prompt_text("hello", 3), expected);
}

TEST(Prompt, TokenSequenceWithTheRealQwenTokenizer) {
  const char* env = std::getenv("ZIPRERANK_QWEN3_TOKENIZER");
  const fs::path root = fs::path(ZIPRERANK_TEST_FIXTURES).parent_path().parent_path();
  const std::string path =
      env ? env : (root / ".cache/qwen3-tokenizer/package/models/tokenizer.json").string();
  if (!fs::exists(path))
    GTEST_SKIP() << "run scripts/fetch_qwen3_tokenizer.sh to fetch the Qwen3 tokenizer";
  const auto tok = load_bpe_tokenizer(path);
  ModelConfig c;  // Qwen3-VL token ids are the defaults
  const PromptTokens p = build_ranking_prompt(*tok, c, "hello world", {3, 2});
  const std::vector<int64_t> head = {151644, 872, 198};  // <|im_start|>user\n
  const std::vector<int64_t> tail = {151645, 198, 151644,
                                     77091,  198, 58};  // <|im_end|>\n<|im_start|>assistant\n[
  ASSERT_GT(p.ids.size(), head.size() + tail.size());
  EXPECT_EQ(std::vector<int64_t>(p.ids.begin(), p.ids.begin() + 3), head);
  EXPECT_EQ(std::vector<int64_t>(p.ids.end() - 6, p.ids.end()), tail);
  EXPECT_EQ(p.identifier_ids, (std::vector<int64_t>{32, 33}));
  ASSERT_EQ(p.image_starts.size(), 2u);
  const int64_t s0 = p.image_starts[0], s1 = p.image_starts[1];
  EXPECT_EQ(p.ids[s0 - 1], 151652);  // <|vision_start|> right after "else."
  for (int i = 0; i < 3; ++i) EXPECT_EQ(p.ids[s0 + i], 151655);
  EXPECT_EQ(p.ids[s0 + 3], 151653);
  EXPECT_EQ(p.ids[s1 - 1], 151652);
  EXPECT_EQ(s1, s0 + 5);
  // "else." then the first image with no separator.
  EXPECT_EQ(tok->decode({p.ids[s0 - 3], p.ids[s0 - 2]}), " else.");
}

TEST(Prompt, RejectsEmptyQueryAndTooManyImages) {
  ModelConfig c = tiny_model_config();
  auto tok = load_tokenizer(test::tiny_model_dir());
  const ModelConfig cfg = open_model_folder(test::tiny_model_dir()).config;
  EXPECT_THROW(build_ranking_prompt(*tok, cfg, "  \n", {1}), InputError);
  EXPECT_THROW(build_ranking_prompt(*tok, cfg, "q", std::vector<int64_t>(27, 1)), InputError);
  EXPECT_THROW(build_ranking_prompt(*tok, cfg, "q", {}), InputError);
}

TEST(Prompt, ParsesGeneratedRankingsLikeTheReference) {
  EXPECT_EQ(parse_generated_ranking("C] > [A] > [B]", 3), (std::vector<int>{2, 0, 1}));
  EXPECT_EQ(parse_generated_ranking("B] > [B] > [Z]", 3),
            (std::vector<int>{1, 0, 2}));  // dup, Z is no id
  EXPECT_EQ(parse_generated_ranking("B] > [S] > [A]", 3),
            (std::vector<int>{1, 0, 2}));  // S beyond n
  EXPECT_EQ(parse_generated_ranking("", 4), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(parse_generated_ranking("D] > [C", 4), (std::vector<int>{3, 2, 0, 1}));
  EXPECT_EQ(parse_generated_ranking("2] > [1]", 3),
            (std::vector<int>{1, 0, 2}));  // numbers when no letters
}

TEST(SlidingWindow, FollowsTheReferenceLoop) {
  // 25 candidates, window 20, stride 10: windows [5, 25) then [0, 15); each window reverses.
  std::vector<std::pair<int, int>> windows;
  const auto order = sliding_window_order(25, 20, 10, [&](int b, int e, const std::vector<int>&) {
    windows.emplace_back(b, e);
    std::vector<int> r(e - b);
    for (int i = 0; i < e - b; ++i) r[i] = e - b - 1 - i;
    return r;
  });
  EXPECT_EQ(windows, (std::vector<std::pair<int, int>>{{5, 25}, {0, 15}}));
  // After window 1: [0..4, 24, 23, ..., 5]; window 2 reverses positions 0..14.
  const std::vector<int> expected = {15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 4, 3, 2,
                                     1,  0,  14, 13, 12, 11, 10, 9,  8,  7,  6, 5};
  EXPECT_EQ(order, expected);
  windows.clear();
  sliding_window_order(7, 20, 10, [&](int b, int e, const std::vector<int>&) {
    windows.emplace_back(b, e);
    return std::vector<int>{0, 1, 2, 3, 4, 5, 6};
  });
  EXPECT_EQ(windows, (std::vector<std::pair<int, int>>{{0, 7}}));
}

TEST(SlidingWindow, ScoresEveryCandidateForEveryCount) {
  // The reference: up to a window's worth is one window; more slide from the back by the stride
  // until a window has started at position 0. Every candidate is in at least one window.
  for (int n = 1; n <= 45; ++n) {
    SCOPED_TRACE("n = " + std::to_string(n));
    std::vector<std::pair<int, int>> windows;
    std::vector<int> seen(n, 0);
    const auto order = sliding_window_order(n, 20, 10, [&](int b, int e, const std::vector<int>&) {
      windows.emplace_back(b, e);
      for (int p = b; p < e; ++p) ++seen[p];
      std::vector<int> r(e - b);
      std::iota(r.begin(), r.end(), 0);
      return r;
    });
    std::vector<std::pair<int, int>> expected;
    if (n <= 20) {
      expected.emplace_back(0, n);
    } else {
      for (int end = n;; end -= 10) {
        expected.emplace_back(std::max(0, end - 20), end);
        if (end - 20 <= 0) break;
      }
    }
    EXPECT_EQ(windows, expected);
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 0), 0);
    std::vector<int> identity(n);
    std::iota(identity.begin(), identity.end(), 0);
    EXPECT_EQ(order, identity);  // every window kept its order
  }
}

TEST(SlidingWindow, WindowsThatCannotOverlapAreAUsageError) {
  RerankOptions o;
  o.window = 10;
  o.stride = 10;
  EXPECT_THROW(o.validate(), UsageError);
  o.window = 5;
  EXPECT_THROW(o.validate(), UsageError);
  o.window = 11;
  EXPECT_NO_THROW(o.validate());
  o.window = 1;  // one page a window never compares pages; allowed (a single page)
  o.stride = 1;
  EXPECT_NO_THROW(o.validate());
}

TEST(Pruning, KeptCountRoundsHalfToEven) {
  EXPECT_EQ(kept_token_count(5, 0.5), 2);  // 2.5 -> 2
  EXPECT_EQ(kept_token_count(7, 0.5), 4);  // 3.5 -> 4
  EXPECT_EQ(kept_token_count(3, 0.1), 1);  // at least one
  EXPECT_EQ(kept_token_count(800, 0.25), 200);
  EXPECT_EQ(kept_token_count(9, 1.0), 9);
}

TEST(Pruning, SelectsTheTokensClosestToTheTextInSpatialOrder) {
  const at::Tensor e1 = at::tensor(std::vector<float>{1, 0, 0, 0}),
                   e2 = at::tensor(std::vector<float>{0, 1, 0, 0});
  const at::Tensor text = at::stack({e1, e1 * 3});
  const at::Tensor image = at::stack({e2, e1 * 0.5 + e2 * 0.1, -e1, e1 * 2, e2 - e1});
  const auto kept = select_visual_tokens(text, {image}, 0.4);  // k = 2
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_TRUE(at::equal(kept[0], at::tensor(std::vector<int64_t>{1, 3}, at::kLong)));
}

TEST(Pruning, TextModesCompareWithTheSpanTheyName) {
  auto rr = tiny_reranker();
  const Qwen3VLModel& m = stages(*rr).model();
  const std::string query = "net revenue by region";
  const PromptTokens prompt = build_ranking_prompt(stages(*rr).tokenizer(), m.config(), query, {4});
  ASSERT_LT(prompt.query_begin, prompt.query_end);
  ASSERT_LT(prompt.query_end, prompt.image_starts[0]);
  const std::vector<int64_t> qids(prompt.ids.begin() + prompt.query_begin,
                                  prompt.ids.begin() + prompt.query_end);
  std::string decoded = stages(*rr).tokenizer().decode(qids);
  decoded.erase(0, decoded.find_first_not_of(' '));
  EXPECT_EQ(decoded, query);

  // One page of four tokens: an instruction word that is not in the query, a query word, and two
  // blends (mostly the query word; mostly the instruction word). Keeping two: the reference mode
  // keeps both exact words, ziprerank's "query" keeps the query word and the blend that leans
  // to it.
  int64_t instruction = -1;
  for (int64_t i = prompt.query_begin - 1; i > 0 && instruction < 0; --i) {
    const int64_t id = prompt.ids[static_cast<size_t>(i)];
    if (std::count(qids.begin(), qids.end(), id) == 0) instruction = id;
  }
  ASSERT_GE(instruction, 0);
  const int64_t word = qids.front();
  const at::Tensor e = m.embed(at::tensor(std::vector<int64_t>{instruction, word}, at::kLong));
  VisionFeatures vf;
  vf.embeds = at::stack({e[0], e[1], e[1] + e[0] * 0.3, e[0] + e[1] * 0.3});
  vf.tokens_per_image = {4};
  for (size_t l = 0; l < m.config().vision.deepstack_visual_indexes.size(); ++l)
    vf.deepstack.push_back(at::zeros_like(vf.embeds));
  const std::vector<ImageGrid> grids = {{1, 4, 4}};
  ModelConfig query_only = m.config();
  query_only.qi_early_text_mode = "query";
  const PruningText all_text = pruning_text(m.config(), prompt);
  const PruningText query_text = pruning_text(query_only, prompt);
  EXPECT_EQ(query_text.begin, prompt.query_begin);
  EXPECT_EQ(query_text.end, prompt.query_end);
  // The reference's query_only: after the last newline before the first image, which in the
  // ranking prompt is the instruction's last line, not the query.
  ModelConfig reference_only = m.config();
  reference_only.qi_early_text_mode = "query_only";
  const PruningText line = pruning_text(reference_only, prompt);
  EXPECT_EQ(line.end, -1);
  std::vector<int64_t> line_ids;
  for (int64_t r : pruning_text_rows(reference_only, prompt.ids, line))
    line_ids.push_back(prompt.ids[static_cast<size_t>(r)]);
  EXPECT_EQ(stages(*rr).tokenizer().decode(line_ids),
            "Only output the ranking results, do not say anything else.");
  auto kept_rows = [&](const PruningText& t) {
    const AssembledSequence seq = assemble_sequence(m, prompt.ids, grids, vf, 0.5, t);
    const at::Tensor vis = seq.input.embeds.squeeze(0).index({seq.input.visual_mask.squeeze(0)});
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < vis.size(0); ++i)
      for (int64_t j = 0; j < 4; ++j)
        if (at::equal(vis[i], vf.embeds[j])) rows.push_back(j);
    return rows;
  };
  EXPECT_EQ(kept_rows(all_text), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(kept_rows(query_text), (std::vector<int64_t>{1, 2}));
}

TEST(Pruning, KeepRatioOneIsBitIdenticalToTheUnprunedSequence) {
  auto rr = tiny_reranker();
  const Qwen3VLModel& m = stages(*rr).model();
  const auto pages = random_pages(3, 4);
  std::vector<ImageGrid> grids;
  std::vector<at::Tensor> px;
  for (const auto& p : pages) {
    grids.push_back({p.grid_thw[0], p.grid_thw[1], p.grid_thw[2]});
    px.push_back(p.pixel_values);
  }
  const VisionFeatures vf = m.encode_images(at::cat(px), grids);
  const PromptTokens prompt =
      build_ranking_prompt(stages(*rr).tokenizer(), m.config(), "net revenue", vf.tokens_per_image);
  // Unpruned reference: scatter the visual tokens into the pad positions.
  const at::Tensor ids = at::tensor(prompt.ids, at::kLong);
  const at::Tensor mask = ids.eq(m.config().image_token_id);
  TextInput ref;
  ref.embeds = m.embed(ids).index_put({mask}, vf.embeds).unsqueeze(0);
  ref.position_ids = mrope_position_ids(prompt.ids, grids, m.config()).unsqueeze(1);
  ref.visual_mask = mask.unsqueeze(0);
  ref.deepstack = vf.deepstack;
  const at::Tensor ref_hidden = m.forward(ref);
  const AssembledSequence one = assemble_sequence(m, prompt.ids, grids, vf, 1.0);
  EXPECT_EQ(one.visual_after, one.visual_before);
  EXPECT_TRUE(at::equal(m.forward(one.input), ref_hidden)) << "keep 1.0 must be bit-identical";

  const AssembledSequence half = assemble_sequence(m, prompt.ids, grids, vf, 0.5);
  EXPECT_EQ(half.kept_per_image, (std::vector<int64_t>{3, 1, 3}));  // 6->3, 2->1, 6->3
  EXPECT_EQ(half.input.embeds.size(1), one.input.embeds.size(1) - 7);
  // Kept tokens keep their original (t, h, w) positions: every pruned position exists in the full
  // one.
  const at::Tensor full_pos = one.input.position_ids.squeeze(1).t();   // [S, 3]
  const at::Tensor kept_pos = half.input.position_ids.squeeze(1).t();  // [S', 3]
  const at::Tensor vis = half.input.visual_mask.squeeze(0);
  const at::Tensor kp = kept_pos.index({vis});
  for (int64_t i = 0; i < kp.size(0); ++i) {
    EXPECT_TRUE((full_pos == kp[i]).all(1).any().item<bool>()) << "position row " << i;
  }
  // Text after the images keeps its original positions too (positions are not renumbered).
  EXPECT_TRUE(at::equal(kept_pos[-1], full_pos[-1]));
  ASSERT_EQ(half.input.deepstack.size(), vf.deepstack.size());
  EXPECT_EQ(half.input.deepstack[0].size(0), half.visual_after);
}

TEST(Reranker, ScoresEveryCandidateAndOrdersByLogit) {
  auto rr = tiny_reranker();
  const auto pages = random_pages(5, 8);
  const std::vector<std::string> ids = {"a", "b", "c", "d", "e"};
  RerankOptions o;
  o.keep_ratio = 1.0;
  const RerankResult r = stages(*rr).rerank("some query", ids, pages, o);
  ASSERT_EQ(r.ranking.size(), 5u);
  EXPECT_EQ(r.windows, 1);
  for (size_t i = 1; i < r.ranking.size(); ++i)
    EXPECT_GE(r.ranking[i - 1].score, r.ranking[i].score);
  for (const auto& p : r.ranking) EXPECT_DOUBLE_EQ(p.score, p.logit);
  // Single pass == one forward pass: the same window scored twice gives identical scores.
  const RerankResult again = stages(*rr).rerank("some query", ids, pages, o);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(again.ranking[i].id, r.ranking[i].id);

  o.scoring = Scoring::kGenerate;
  const RerankResult g = stages(*rr).rerank("some query", ids, pages, o);
  EXPECT_EQ(g.ranking.size(), 5u);
  EXPECT_LE(g.tokens.generated, 25);
  EXPECT_DOUBLE_EQ(g.ranking[0].score, 5.0);  // n - rank
}

TEST(Reranker, ReadsGenerationConfig) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("zr_gen_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_FALSE(load_generation_settings(dir.string()).from_file);
  std::ofstream(dir / "generation_config.json")
      << R"({"do_sample": true, "temperature": 0.7, "top_k": 20, "repetition_penalty": 1.05,
             "eos_token_id": [151645, 151643], "min_new_tokens": 2})";
  const GenerationSettings g = load_generation_settings(dir.string());
  EXPECT_TRUE(g.from_file);
  EXPECT_DOUBLE_EQ(g.repetition_penalty, 1.05);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
  EXPECT_EQ(g.min_new_tokens, 2);
  std::ofstream(dir / "generation_config.json") << R"({"repetition_penalty": -1})";
  EXPECT_THROW(load_generation_settings(dir.string()), InputError);
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": "x"})";
  EXPECT_THROW(load_generation_settings(dir.string()), InputError);
  std::ofstream(dir / "generation_config.json") << "{not json";
  EXPECT_THROW(load_generation_settings(dir.string()), InputError);
  fs::remove_all(dir);
}

TEST(Reranker, GenerateFollowsTheModelsGenerationConfig) {
  // generation_config.json's repetition_penalty applies to greedy decoding as in transformers:
  // every token already in the sequence, prompt included, has its logit divided (positive) or
  // multiplied (negative) by it. The first generated token, worked out by hand from the logits
  // at the "[" position, must lead the decoded text with and without a penalty.
  const std::string dir = test::tiny_model_dir();
  std::shared_ptr<const Qwen3VLModel> model = Qwen3VLModel::load(dir, ModelOptions{});
  std::shared_ptr<const Tokenizer> tok = load_tokenizer(dir);
  const auto pages = random_pages(3, 21);
  const std::string query = "which page shows revenue";
  RerankOptions o;
  o.scoring = Scoring::kGenerate;
  // A penalty below 1 favours tokens already seen: with 1e-4 one of the prompt's wins, which
  // the plain argmax here is not, so the case tells a penalised decoder from a plain one.
  for (const double penalty : {1.0, 1e-4}) {
    SCOPED_TRACE("repetition_penalty " + std::to_string(penalty));
    ModelFolder folder = open_model_folder(dir);
    EXPECT_FALSE(folder.generation.from_file);
    folder.generation.repetition_penalty = penalty;
    folder.generation.min_new_tokens = 1;
    const Reranker rr(folder, model, tok);
    StageTiming t;
    const auto encoded = encode(rr, pages, t);
    std::vector<const VisionFeatures*> feats;
    std::vector<ImageGrid> grids;
    std::vector<int64_t> counts;
    for (const auto& p : encoded) {
      feats.push_back(&p->features);
      grids.push_back(p->grid);
      counts.push_back(p->features.embeds.size(0));
    }
    TokenCounts tc;
    const WindowScores ws = stages(rr).score_window(query, feats, grids, o, t, tc);
    const PromptTokens prompt = build_ranking_prompt(*tok, model->config(), query, counts);
    VisionFeatures joined;
    std::vector<at::Tensor> embeds;
    for (const auto* f : feats) embeds.push_back(f->embeds);
    joined.embeds = at::cat(embeds);
    for (size_t l = 0; l < feats[0]->deepstack.size(); ++l) {
      std::vector<at::Tensor> level;
      for (const auto* f : feats) level.push_back(f->deepstack[l]);
      joined.deepstack.push_back(at::cat(level));
    }
    joined.tokens_per_image = counts;
    const AssembledSequence seq = assemble_sequence(*model, prompt.ids, grids, joined, 1.0);
    at::Tensor logits = model->logits(model->forward(seq.input).select(1, -1)).reshape({-1});
    const int64_t unpenalised = logits.argmax().item<int64_t>();
    for (const int64_t id : std::set<int64_t>(prompt.ids.begin(), prompt.ids.end())) {
      const float v = logits[id].item<float>();
      logits[id] = v < 0 ? v * penalty : v / penalty;
    }
    logits[model->config().eos_token_id] = -INFINITY;  // min_new_tokens = 1
    logits[model->config().pad_token_id] = -INFINITY;
    const int64_t first = logits.argmax().item<int64_t>();
    const std::string lead = tok->decode({first});
    ASSERT_FALSE(lead.empty());
    EXPECT_EQ(ws.generated.substr(0, lead.size()), lead) << ws.generated;
    if (penalty != 1.0) {
      EXPECT_GT(std::count(prompt.ids.begin(), prompt.ids.end(), first), 0);
      EXPECT_NE(first, unpenalised);
    }
  }
}

TEST(Reranker, SimilarityScoringSumsEachQueryWordsBestMatchWeightedByLength) {
  auto rr = tiny_reranker();
  const auto pages = random_pages(4, 8);
  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  const std::string query = "Whale oil,";
  // The sums by hand: per word, the mean of its pieces' unit embeddings (" Whale" and " whale",
  // then " oil"); per page, each word's best cosine-mean over the visual tokens scored, times the
  // word's length. At keep 1.0 every token is scored; below it, the tokens pruning keeps.
  StageTiming t;
  const auto encoded = encode(*rr, pages, t);
  const auto unit_mean = [&](const std::vector<std::string>& forms) {
    std::vector<int64_t> pieces;
    for (const auto& f : forms)
      for (int64_t id : stages(*rr).tokenizer().encode(f)) pieces.push_back(id);
    at::Tensor e = stages(*rr).model().embed(at::tensor(pieces, at::kLong)).to(at::kFloat);
    return (e / e.norm(2, {1}, true)).mean(0);
  };
  const std::vector<std::pair<at::Tensor, double>> words = {{unit_mean({" Whale", " whale"}), 5.0},
                                                            {unit_mean({" oil"}), 3.0}};
  std::vector<int64_t> counts;
  std::vector<at::Tensor> all;
  for (const auto& e : encoded) {
    all.push_back(e->features.embeds.to(at::kFloat));
    counts.push_back(all.back().size(0));
  }
  const at::Tensor text = pruning_text_embeds(
      stages(*rr).model(),
      build_ranking_prompt(stages(*rr).tokenizer(), stages(*rr).model().config(), query, counts));
  for (double keep : {1.0, 0.25}) {
    RerankOptions o;
    o.scoring = Scoring::kSimilarity;
    o.keep_ratio = keep;
    const RerankResult r = stages(*rr).rerank(query, ids, pages, o);
    ASSERT_EQ(r.ranking.size(), 4u);
    EXPECT_EQ(r.tokens.input, 0);  // no language-model pass
    const auto kept = select_visual_tokens(text, all, keep);
    std::map<std::string, double> want;
    int64_t kept_total = 0, total = 0;
    for (size_t p = 0; p < all.size(); ++p) {
      const at::Tensor v = keep < 1.0 ? all[p].index_select(0, kept[p]) : all[p];
      kept_total += v.size(0);
      total += all[p].size(0);
      double sum = 0;
      for (const auto& [dir, weight] : words)
        sum += weight * (at::mv(v, dir) / v.norm(2, {1})).max().item<double>();
      want[ids[p]] = sum;
    }
    EXPECT_EQ(r.tokens.visual_before, total);
    EXPECT_EQ(r.tokens.visual_after, kept_total);
    if (keep < 1.0) EXPECT_LT(kept_total, total);
    for (size_t i = 0; i < r.ranking.size(); ++i) {
      EXPECT_NEAR(r.ranking[i].score, want[r.ranking[i].id], 1e-4) << keep << r.ranking[i].id;
      if (i > 0) EXPECT_GE(r.ranking[i - 1].score, r.ranking[i].score);
    }
    EXPECT_THROW(stages(*rr).rerank(" ... !? ", ids, pages, o), InputError);
  }
  EXPECT_EQ(parse_scoring("similarity"), Scoring::kSimilarity);
  EXPECT_THROW(parse_scoring("maxsim"), UsageError);
}

TEST(Reranker, PagesEncodedByParallelWorkersGetTheSameFeatures) {
  auto rr = tiny_reranker();
  const auto pages = random_pages(5, 13);
  StageTiming t;
  const auto one = encode(*rr, pages, t);
  const int blas = openblas_threads();
  rr->set_encode_workers(3);  // shares of 1, 2 and 2 pages
  const auto three = encode(*rr, pages, t);
  EXPECT_EQ(openblas_threads(), blas);  // put back
  ASSERT_EQ(three.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_TRUE(three[i]) << i;
    EXPECT_EQ(three[i]->grid.h, one[i]->grid.h);
    EXPECT_TRUE(at::allclose(three[i]->features.embeds, one[i]->features.embeds, 1e-5, 1e-6)) << i;
    ASSERT_EQ(three[i]->features.deepstack.size(), one[i]->features.deepstack.size());
    for (size_t l = 0; l < one[i]->features.deepstack.size(); ++l)
      EXPECT_TRUE(
          at::allclose(three[i]->features.deepstack[l], one[i]->features.deepstack[l], 1e-5, 1e-6));
  }
  // More workers than pages, and a failing page: the error reaches the caller.
  rr->set_encode_workers(8);
  EXPECT_EQ(encode(*rr, {pages[0]}, t).size(), 1u);
  std::vector<PreprocessedImage> bad = pages;
  bad[3].pixel_values = bad[3].pixel_values.narrow(1, 0, 10);
  EXPECT_THROW(encode(*rr, bad, t), InputError);
  EXPECT_EQ(openblas_threads(), blas);
  EXPECT_THROW(rr->set_encode_workers(0), UsageError);
}

TEST(Reranker, PagesAreEncodedAsManyAtATimeAsThereAreComputeThreads) {
  // Whichever library multiplies (OpenBLAS, or MKL in the PyTorch wheel's libtorch), --threads N
  // encodes N pages at a time on CPU, one thread each; a one-worker tower would run on a single
  // thread (the wheel's build did: its vision tower took 2x as long).
  const int blas = openblas_threads(), torch_threads = at::get_num_threads();
  const int workers = configure_threads(2);
  EXPECT_EQ(workers, 2);
  auto rr = tiny_reranker();
  rr->set_encode_workers(workers);
  EXPECT_EQ(stages(*rr).page_workers(), 2u);
  if (blas > 0) set_openblas_threads(blas);
  at::set_num_threads(torch_threads);
}

TEST(Reranker, ImagesPreparedOnWorkersEqualOneAtATime) {
  const fs::path dir = fs::path(ZIPRERANK_TEST_FIXTURES) / "images";
  std::vector<Image> images;
  for (const char* f : {"down_480x360.png", "gray.jpg", "page_1300x517.png", "photo_420.jpg"})
    images.push_back(load_image((dir / f).string()));
  RerankOptions o;
  auto rr = tiny_reranker();
  rr->set_encode_workers(3);
  StageTiming t;
  const std::vector<PreprocessedImage> all = stages(*rr).prepare_all(images, o, &t);
  ASSERT_EQ(all.size(), images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const PreprocessedImage one = stages(*rr).prepare(images[i], o);
    EXPECT_EQ(all[i].grid_thw, one.grid_thw) << i;
    EXPECT_TRUE(at::equal(all[i].pixel_values, one.pixel_values)) << i;
  }
  EXPECT_GT(t.preprocess, 0);
  EXPECT_TRUE(stages(*rr).prepare_all({}, o).empty());
}

TEST(Reranker, PageFilesDecodedOnParallelWorkersRankTheSame) {
  const fs::path images = fs::path(ZIPRERANK_TEST_FIXTURES) / "images";
  std::vector<PageRef> pages;
  for (const char* f :
       {"down_480x360.png", "gray.jpg", "page_1300x517.png", "photo_420.jpg", "rgba_203x150.png"})
    pages.push_back({f, (images / f).string(), 0});
  // A PDF page too (drawn under a lock), from the sample document.
  const fs::path pdf = fs::path(ZIPRERANK_TEST_FIXTURES).parent_path().parent_path() / "data" /
                       "samples" / "constitution.pdf";
  ASSERT_TRUE(fs::exists(pdf));
  pages.push_back({"constitution.pdf#2", pdf.string(), 2});
  RerankOptions o;
  o.keep_ratio = 1.0;
  auto rr = tiny_reranker();
  const RerankResult one = rr->rerank_pages("a query", pages, o);
  rr->set_encode_workers(2);
  const RerankResult two = rr->rerank_pages("a query", pages, o);
  ASSERT_EQ(one.ranking.size(), pages.size());
  ASSERT_EQ(two.ranking.size(), pages.size());
  for (size_t i = 0; i < pages.size(); ++i) {
    EXPECT_EQ(one.ranking[i].id, two.ranking[i].id);
    EXPECT_NEAR(one.ranking[i].logit, two.ranking[i].logit, 1e-4);
  }
  EXPECT_GT(two.timing.decode, 0);
  EXPECT_GT(two.timing.preprocess, 0);
  // A missing file fails the call with its path, from whichever worker read it.
  pages.push_back({"gone.png", (images / "gone.png").string(), 0});
  try {
    rr->rerank_pages("a query", pages, o);
    ADD_FAILURE() << "no error for a missing page";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gone.png"), std::string::npos) << e.what();
  }
}

TEST(Reranker, SimilarityScoringSkipsTheDeepStackMergersWhichLogitsScoringNeeds) {
  auto rr = tiny_reranker();
  const auto pages = random_pages(3, 11);
  const std::vector<std::string> ids = {"a", "b", "c"};
  StageTiming t;
  const auto full = encode(*rr, pages, t);
  const auto lean = encode(*rr, pages, t, /*deepstack=*/false);
  ASSERT_EQ(lean.size(), 3u);
  for (size_t i = 0; i < lean.size(); ++i) {
    EXPECT_TRUE(lean[i]->features.deepstack.empty());
    EXPECT_EQ(full[i]->features.deepstack.size(), 2u);
    EXPECT_TRUE(at::equal(lean[i]->features.embeds, full[i]->features.embeds));
  }
  RerankOptions o;
  o.scoring = Scoring::kSimilarity;
  const RerankResult a = stages(*rr).rank_encoded("whale oil", ids, full, o);
  const RerankResult b = stages(*rr).rank_encoded("whale oil", ids, lean, o);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.ranking[i].id, b.ranking[i].id);
    EXPECT_EQ(a.ranking[i].logit, b.ranking[i].logit);
  }
  // rerank() encodes without them for similarity scoring: the same scores.
  const RerankResult c = stages(*rr).rerank("whale oil", ids, pages, o);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a.ranking[i].logit, c.ranking[i].logit);
  o.scoring = Scoring::kLogits;
  EXPECT_THROW(stages(*rr).rank_encoded("whale oil", ids, lean, o), InternalError);
  EXPECT_NO_THROW(stages(*rr).rank_encoded("whale oil", ids, full, o));
}

TEST(Reranker, PagesAreEncodedAsTheWindowReachesThemAndTheRankingCanBeStopped) {
  // 25 candidates, window 8, stride 4: the first window encodes 8 pages, each later one the 4
  // it newly shows; the ranking equals the one from pages encoded up front.
  auto rr = tiny_reranker();
  const auto pages = random_pages(25, 31);
  std::vector<std::string> ids;
  for (int i = 0; i < 25; ++i) ids.push_back("p" + std::to_string(i));
  RerankOptions o;
  o.window = 8;
  o.stride = 4;
  std::vector<RankProgress> seen;
  o.progress = [&](const RankProgress& p) { seen.push_back(p); };
  const RerankResult lazy = stages(*rr).rerank("a query", ids, pages, o);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().pages_encoded, 25);
  EXPECT_EQ(seen.back().windows_done, lazy.windows);
  EXPECT_EQ(seen.back().windows_total, lazy.windows);
  EXPECT_EQ(lazy.windows, 6);  // [17,25) [13,21) [9,17) [5,13) [1,9) [0,5)
  std::vector<int> encoded_before_window;
  int encoded = 0;
  for (const RankProgress& p : seen) {
    if (p.pages_encoded != encoded) {
      encoded = p.pages_encoded;
    } else {
      encoded_before_window.push_back(encoded);
    }
  }
  EXPECT_EQ(encoded_before_window, (std::vector<int>{8, 12, 16, 20, 24, 25}));
  StageTiming t;
  o.progress = nullptr;
  const RerankResult upfront = stages(*rr).rank_encoded("a query", ids, encode(*rr, pages, t), o);
  ASSERT_EQ(upfront.ranking.size(), lazy.ranking.size());
  for (size_t i = 0; i < lazy.ranking.size(); ++i) {
    EXPECT_EQ(upfront.ranking[i].id, lazy.ranking[i].id);
    EXPECT_EQ(upfront.ranking[i].logit, lazy.ranking[i].logit);
  }
  // A stop request ends the ranking between windows with Interrupted.
  int windows = 0;
  o.progress = [&](const RankProgress& p) { windows = p.windows_done; };
  o.should_stop = [&] { return windows >= 2; };
  EXPECT_THROW(stages(*rr).rerank("a query", ids, pages, o), Interrupted);
  EXPECT_EQ(windows, 2);
}

TEST(Reranker, OversizedRequestsAreOneClearInputError) {
  auto rr = tiny_reranker();
  const auto pages = random_pages(4, 41);
  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  RerankOptions o;
  o.max_candidates = 3;
  try {
    stages(*rr).rerank("a query", ids, pages, o);
    ADD_FAILURE() << "no error for 4 candidates above a cap of 3";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("4 candidates in one query, above the cap of 3"),
              std::string::npos)
        << e.what();
  }
  o.max_candidates = 4;
  const std::string long_query(3000, 'x');
  try {
    stages(*rr).rerank(long_query, ids, pages, o);
    ADD_FAILURE() << "no error for a 3000-byte query";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--max-query-tokens"), std::string::npos) << e.what();
  }
  o.max_query_tokens = 100000;
  o.scoring = Scoring::kSimilarity;
  EXPECT_NO_THROW(stages(*rr).rerank(long_query, ids, pages, o));
  o.max_query_tokens = 0;
  EXPECT_THROW(stages(*rr).rerank("q", ids, pages, o), UsageError);

  // A window whose positions run past the model's max_position_embeddings.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("zr_short_" + std::to_string(::getpid()));
  InitOptions init;
  init.out_dir = dir.string();
  init.overwrite = true;
  ModelConfig c = tiny_model_config();
  c.text.max_position_embeddings = 64;
  init_model_folder(c, qwen3_vl_preprocessor_config(), init);
  const auto short_model = Reranker::load(dir.string(), ModelOptions{});
  try {
    stages(*short_model).rerank("a query", ids, pages, RerankOptions{});
    ADD_FAILURE() << "no error past max_position_embeddings";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("past the model's max_position_embeddings (64)"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(Similarity, QueryWordsDropPunctuationAndWeighByCharacters) {
  auto rr = tiny_reranker();
  const Tokenizer& tok = stages(*rr).tokenizer();
  const auto words = similarity_words(tok, "  \"Whale-oil,\" lamps -- na\u00efve!\n");
  ASSERT_EQ(words.size(), 3u);  // "--" has no piece
  EXPECT_EQ(words[0].text, "Whale-oil");
  EXPECT_DOUBLE_EQ(words[0].weight, 9.0);
  std::vector<int64_t> want = tok.encode(" Whale-oil");
  for (int64_t id : tok.encode(" whale-oil")) want.push_back(id);
  EXPECT_EQ(words[0].pieces, want);
  EXPECT_EQ(words[1].text, "lamps");
  EXPECT_EQ(words[1].pieces, tok.encode(" lamps"));  // already lower case: no second form
  EXPECT_EQ(words[2].text, "na\u00efve");
  EXPECT_DOUBLE_EQ(words[2].weight, 5.0);  // characters, not bytes
  EXPECT_EQ(word_pieces(tok, "(lamps)."), tok.encode(" lamps"));
  EXPECT_THROW(similarity_words(tok, ""), InputError);
  EXPECT_THROW(similarity_words(tok, " -- ; "), InputError);
}

TEST(Similarity, AWordScoresFullyOnlyWhereAllItsPiecesMeetAndLongWordsWeighMore) {
  // Orthonormal "embeddings": id k is the k-th unit vector of an 8-wide space.
  const at::Tensor table = at::eye(8, at::kFloat);
  const auto embed = [&](const at::Tensor& ids) { return table.index_select(0, ids); };
  SimilarityWord two_pieces{"ab", {0, 1}, 2.0};
  SimilarityWord short_word{"c", {2}, 1.0};
  const SimilarityQuery q = similarity_query({two_pieces, short_word}, embed);
  ASSERT_EQ(q.directions.sizes(), (at::IntArrayRef{2, 8}));
  // Page 1: one token shows both pieces. Page 2: the pieces sit in two different tokens.
  const at::Tensor together = at::stack({table[0] + table[1], table[5]});
  const at::Tensor apart = at::stack({table[0], table[1], table[5]});
  const double s_together = similarity_score(q, together);
  const double s_apart = similarity_score(q, apart);
  EXPECT_NEAR(s_together, 2.0 * std::sqrt(0.5), 1e-5);  // cos((1,1)/sqrt2, pieces) = 0.707 each
  EXPECT_NEAR(s_apart, 2.0 * 0.5, 1e-5);                // mean of cos 1 and cos 0
  EXPECT_GT(s_together, s_apart);
  // The short word alone scores its weight (1) times a perfect match.
  EXPECT_NEAR(similarity_score(q, table[2].unsqueeze(0)), 1.0, 1e-5);
  // A token matching nothing scores 0; an empty page scores 0; a wrong width is an input error.
  EXPECT_NEAR(similarity_score(q, table[7].unsqueeze(0)), 0.0, 1e-6);
  EXPECT_EQ(similarity_score(q, at::zeros({0, 8})), 0.0);
  EXPECT_THROW(similarity_score(q, at::zeros({3, 4})), InputError);
}
