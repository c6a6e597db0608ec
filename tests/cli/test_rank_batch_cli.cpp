// End-to-end: rank and batch through the real binary on a tiny model and generated pages.
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include "cli_runner.hpp"
#include "pages_fixture.hpp"

using namespace ziprerank::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class RankBatch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("zr_e2e_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const CliResult r =
        run_cli("--log-level warn init --seed 5 --out " + shell_quote(model().string()));
    ASSERT_EQ(r.code, 0) << r.err;
    // The tests below rank with pruning unless they say otherwise.
    set_model_key(model(), "keep_ratio", 0.5);
    write_pages(dir_ / "pages", 24);
    write_pdf(dir_ / "doc.pdf", {"Annual report 2021", "Net revenue by year", "Safety warnings"});
    // 6 queries: 24-page windows (sliding), PDF pages, and mixed.
    std::ofstream q(dir_ / "queries.jsonl");
    for (int i = 0; i < 6; ++i) {
      json cands = json::array();
      const int n = i == 0 ? 24 : 3 + i;
      for (int p = 1; p <= n; ++p) {
        char name[32];
        std::snprintf(name, sizeof(name), "pages/page%02d.png", p);
        cands.push_back({{"id", "img#" + std::to_string(p)}, {"image", name}});
      }
      if (i % 2 == 1) cands.push_back({{"id", "doc#2"}, {"pdf", "doc.pdf"}, {"page", 2}});
      q << json{{"query_id", "q" + std::to_string(i)},
                {"query", "which page shows revenue " + std::to_string(i)},
                {"candidates", cands},
                {"relevant", {"img#2"}},
                {"domain", i < 3 ? "Report" : "Manual"}}
               .dump()
        << "\n";
    }
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path model() { return dir_ / "tiny"; }
  static std::string model_flag() { return "--model " + shell_quote(model().string()); }
  // Sets one ziprerank.* key in a model folder's config.json.
  static void set_model_key(const fs::path& folder, const std::string& key, const json& value) {
    json cfg = json::parse(std::ifstream(folder / "config.json"));
    cfg["ziprerank"][key] = value;
    std::ofstream(folder / "config.json") << cfg.dump(2);
  }
  // A copy of the tiny model (dir_/name) with one ziprerank.* key set.
  static fs::path model_copy(const std::string& name, const std::string& key, const json& value) {
    const fs::path own = dir_ / name;
    fs::remove_all(own);
    fs::copy(model(), own, fs::copy_options::recursive);
    set_model_key(own, key, value);
    return own;
  }
  // Writes the fixture's queries `copies` times to `path`, each copy's query ids suffixed.
  static void write_repeated_queries(const fs::path& path, int copies) {
    std::ofstream f(path);
    for (int copy = 0; copy < copies; ++copy) {
      for (json line : read_jsonl(slurp(dir_ / "queries.jsonl"))) {
        line["query_id"] = line["query_id"].get<std::string>() + "-" + std::to_string(copy);
        f << line.dump() << "\n";
      }
    }
  }
  // Starts the binary with `args` (appended to its quoted path, as run_cli) in the background.
  static pid_t start_cli(const std::string& args) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      const std::string cmd = "exec " + shell_quote(ZIPRERANK_BINARY) + args;
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }
  static fs::path dir_;
};
fs::path RankBatch::dir_;

}  // namespace

TEST_F(RankBatch, RanksAFolderAsJsonl) {
  const CliResult r = run_cli("rank " + model_flag() + " --query 'net revenue' --pages " +
                              shell_quote((dir_ / "pages").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 24u);
  std::set<std::string> ids;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["rank"].get<int>(), static_cast<int>(i + 1));
    ids.insert(lines[i]["id"].get<std::string>());
    if (i) EXPECT_GE(lines[i - 1]["score"].get<double>(), lines[i]["score"].get<double>());
  }
  EXPECT_EQ(ids.size(), 24u);
  EXPECT_TRUE(ids.count("page01.png") && ids.count("page24.png"));
  EXPECT_NE(r.err.find("RANDOMLY INITIALISED"), std::string::npos) << r.err;
}

TEST_F(RankBatch, MatmulChoosesBfloat16ProductsOrFloat32) {
  const std::string pages = " --query 'net revenue' --top-k 3 --pages " +
                            shell_quote((dir_ / "pages").string() + "/page01.png") + " " +
                            shell_quote((dir_ / "pages").string() + "/page02.png") + " " +
                            shell_quote((dir_ / "pages").string() + "/page03.png");
  const CliResult bf = run_cli("rank " + model_flag() + " --matmul bfloat16" + pages);
  ASSERT_EQ(bf.code, 0) << bf.err;
  EXPECT_NE(bf.err.find("with bfloat16 products"), std::string::npos) << bf.err;
  const CliResult f32 = run_cli("rank " + model_flag() + " --matmul float32" + pages);
  ASSERT_EQ(f32.code, 0) << f32.err;
  EXPECT_EQ(f32.err.find("bfloat16 products"), std::string::npos) << f32.err;
  EXPECT_EQ(read_jsonl(bf.out).size(), 3u);
  EXPECT_EQ(read_jsonl(f32.out).size(), 3u);
  const CliResult bad = run_cli("rank " + model_flag() + " --matmul int8" + pages);
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("--matmul"), std::string::npos) << bad.err;
}

TEST_F(RankBatch, RanksPdfPagesAndTopK) {
  const CliResult r =
      run_cli("rank " + model_flag() + " --query 'safety' --top-k 2 --format table --pages " +
              shell_quote((dir_ / "doc.pdf").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("doc.pdf#"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;  // header + 2 rows
}

TEST_F(RankBatch, KeepRatioOneEqualsNoPruningAndPruningChangesTokens) {
  const std::string pages = shell_quote((dir_ / "pages" / "page01.png").string()) + " " +
                            shell_quote((dir_ / "pages" / "page02.png").string());
  const CliResult full =
      run_cli("-v rank " + model_flag() + " --keep-ratio 1.0 -q 'x y' -p " + pages);
  const CliResult half =
      run_cli("-v rank " + model_flag() + " --keep-ratio 0.5 -q 'x y' -p " + pages);
  ASSERT_EQ(full.code, 0) << full.err;
  ASSERT_EQ(half.code, 0) << half.err;
  auto counts = [](const std::string& log) {
    std::smatch m;
    static const std::regex kTokens(R"(visual tokens (\d+) -> (\d+))");
    EXPECT_TRUE(std::regex_search(log, m, kTokens)) << log;
    return std::make_pair(std::stoi(m[1]), std::stoi(m[2]));
  };
  const auto [before_full, after_full] = counts(full.err);
  const auto [before_half, after_half] = counts(half.err);
  EXPECT_EQ(before_full, after_full);
  EXPECT_EQ(before_half, before_full);
  EXPECT_EQ(after_half, before_half / 2);  // two pages with even token counts
}

TEST_F(RankBatch, ScoringDefaultsToTheOneTheModelFolderNames) {
  // A copy of the tiny model whose config.json names similarity as its scoring.
  const fs::path own = model_copy("tiny-similarity", "scoring", "similarity");
  const std::string pages = " -q 'net revenue' -p " + shell_quote((dir_ / "pages").string());
  const CliResult by_model = run_cli("rank --model " + shell_quote(own.string()) + pages);
  const CliResult asked =
      run_cli("rank --model " + shell_quote(own.string()) + " --scoring similarity" + pages);
  const CliResult logits =
      run_cli("rank --model " + shell_quote(own.string()) + " --scoring logits" + pages);
  ASSERT_EQ(by_model.code, 0) << by_model.err;
  ASSERT_EQ(asked.code, 0) << asked.err;
  ASSERT_EQ(logits.code, 0) << logits.err;
  EXPECT_NE(by_model.err.find("similarity scoring"), std::string::npos) << by_model.err;
  EXPECT_EQ(by_model.out, asked.out);
  EXPECT_NE(by_model.out, logits.out);  // --scoring still wins over the model's choice
  EXPECT_EQ(logits.err.find("not meaningful"), std::string::npos) << logits.err;

  // A folder that lists the scorings it was trained for warns when asked for another.
  set_model_key(own, "trained_scorings", json::array({"similarity"}));
  const CliResult warned =
      run_cli("rank --model " + shell_quote(own.string()) + " --scoring logits" + pages);
  const CliResult quiet = run_cli("rank --model " + shell_quote(own.string()) + pages);
  ASSERT_EQ(warned.code, 0) << warned.err;
  ASSERT_EQ(quiet.code, 0) << quiet.err;
  EXPECT_NE(warned.err.find("was trained for similarity scoring only"), std::string::npos)
      << warned.err;
  EXPECT_NE(warned.err.find("its logits rankings are not meaningful"), std::string::npos)
      << warned.err;
  EXPECT_EQ(warned.out, logits.out);  // a warning, not a refusal
  EXPECT_EQ(quiet.err.find("not meaningful"), std::string::npos) << quiet.err;
  set_model_key(own, "trained_scorings", json::array({"logits", "fast"}));
  const CliResult bad_list = run_cli("rank --model " + shell_quote(own.string()) + pages);
  EXPECT_NE(bad_list.code, 0);
  EXPECT_NE(bad_list.err.find("ziprerank.trained_scorings: 'fast' is not one of"),
            std::string::npos)
      << bad_list.err;
  set_model_key(own, "trained_scorings", "similarity");
  EXPECT_NE(
      run_cli("rank --model " + shell_quote(own.string()) + pages).err.find("must be an array"),
      std::string::npos);
  set_model_key(own, "trained_scorings", json::array());

  set_model_key(own, "scoring", "fastest");
  const CliResult bad = run_cli("rank --model " + shell_quote(own.string()) + pages);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("ziprerank.scoring 'fastest' is not one of logits, generate, similarity"),
            std::string::npos)
      << bad.err;
}

TEST_F(RankBatch, KeepRatioDefaultsToTheOneTheModelFolderNames) {
  const fs::path own = model_copy("tiny-keep", "keep_ratio", 1.0);
  const std::string pages = " -q 'net revenue' -p " + shell_quote((dir_ / "pages").string());
  const CliResult by_model = run_cli("rank --model " + shell_quote(own.string()) + pages);
  const CliResult full =
      run_cli("rank --model " + shell_quote(own.string()) + " --keep-ratio 1.0" + pages);
  const CliResult half =
      run_cli("rank --model " + shell_quote(own.string()) + " --keep-ratio 0.5" + pages);
  const CliResult plain = run_cli("rank --model " + shell_quote(model().string()) + pages);
  ASSERT_EQ(by_model.code, 0) << by_model.err;
  ASSERT_EQ(full.code, 0) << full.err;
  ASSERT_EQ(half.code, 0) << half.err;
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_NE(by_model.err.find("keep ratio 1,"), std::string::npos) << by_model.err;
  EXPECT_EQ(by_model.out, full.out);
  EXPECT_NE(by_model.out, half.out);  // --keep-ratio still wins over the model's choice
  EXPECT_EQ(plain.out, half.out);     // the fixture model names 0.5

  // The reference's keys: pruning only where qi_early_enabled is true, at qi_early_keep_ratio
  // (0.25 when absent); a folder with neither prunes nothing, as the reference's evaluation.
  const auto reference_copy = [&](const std::string& name, const json& keys) {
    const fs::path dir = dir_ / name;
    fs::remove_all(dir);
    fs::copy(model(), dir, fs::copy_options::recursive);
    json cfg = json::parse(std::ifstream(dir / "config.json"));
    cfg["ziprerank"].erase("keep_ratio");
    for (const auto& [k, v] : keys.items()) cfg[k] = v;
    std::ofstream(dir / "config.json") << cfg.dump(2);
    return run_cli("rank --model " + shell_quote(dir.string()) + pages);
  };
  const CliResult none = reference_copy("tiny-ref-none", json::object());
  const CliResult off =
      reference_copy("tiny-ref-off", {{"qi_early_enabled", false}, {"qi_early_keep_ratio", 0.5}});
  const CliResult on =
      reference_copy("tiny-ref-on", {{"qi_early_enabled", true}, {"qi_early_keep_ratio", 0.5}});
  const CliResult quarter = reference_copy("tiny-ref-quarter", {{"qi_early_enabled", true}});
  for (const CliResult* r : {&none, &off, &on, &quarter}) ASSERT_EQ(r->code, 0) << r->err;
  EXPECT_EQ(none.out, full.out);
  EXPECT_EQ(off.out, full.out);
  EXPECT_EQ(on.out, half.out);
  EXPECT_NE(quarter.err.find("keep ratio 0.25,"), std::string::npos) << quarter.err;

  set_model_key(own, "keep_ratio", 0.0);
  const CliResult bad = run_cli("rank --model " + shell_quote(own.string()) + pages);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("ziprerank.keep_ratio"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("is not in (0, 1]"), std::string::npos) << bad.err;
}

TEST_F(RankBatch, VisionTileComesFromTheModelFolderOrTheFlag) {
  const fs::path own = model_copy("tiny-tile", "vision_tile", 64);
  const std::string pages = " -q 'net revenue' -p " + shell_quote((dir_ / "pages").string());
  const CliResult by_model = run_cli("rank --model " + shell_quote(own.string()) + pages);
  const CliResult by_flag = run_cli("rank " + model_flag() + " --vision-tile 64" + pages);
  const CliResult whole =
      run_cli("rank --model " + shell_quote(own.string()) + " --vision-tile 0" + pages);
  const CliResult plain = run_cli("rank " + model_flag() + pages);
  for (const CliResult* r : {&by_model, &by_flag, &whole, &plain}) ASSERT_EQ(r->code, 0) << r->err;
  EXPECT_NE(by_model.err.find("vision tiles of 64 px"), std::string::npos) << by_model.err;
  EXPECT_EQ(plain.err.find("vision tiles"), std::string::npos) << plain.err;
  EXPECT_EQ(by_model.out, by_flag.out);
  EXPECT_EQ(whole.out, plain.out);  // --vision-tile 0 reads whole pages whatever the folder says
  EXPECT_NE(by_model.out, plain.out);

  const CliResult bad = run_cli("rank " + model_flag() + " --vision-tile 50" + pages);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("--vision-tile 50 must be 0 (whole images) or a positive multiple of 32"),
            std::string::npos)
      << bad.err;

  // bench compares tiles in one run, one row each.
  const CliResult bench =
      run_cli("--log-level warn bench " + model_flag() +
              " --format jsonl --num-pages 2 --page-size 320x320 --keep-ratios 1.0 --scoring "
              "logits --vision-tiles 0,64 --repeats 1 --warmup 0");
  ASSERT_EQ(bench.code, 0) << bench.err;
  const auto rows = read_jsonl(bench.out);
  ASSERT_EQ(rows.size(), 2u) << bench.out;
  EXPECT_EQ(rows[0]["vision_tile"].get<int>(), 0);
  EXPECT_EQ(rows[1]["vision_tile"].get<int>(), 64);
  EXPECT_EQ(rows[0]["tokens"]["visual_before"], rows[1]["tokens"]["visual_before"]);
}

TEST_F(RankBatch, PruningRecallCountsKeptQueryWordTokens) {
  const fs::path doc = dir_ / "rendered";
  const CliResult render = run_cli(
      "--log-level warn render --seed 3 --out " + shell_quote(doc.string()) + " --document " +
      shell_quote(std::string(ZIPRERANK_TEST_FIXTURES) + "/render/sample_document.json"));
  ASSERT_EQ(render.code, 0) << render.err;
  const json words = json::parse(std::ifstream(doc / "words.json"));
  ASSERT_GE(words["pages"].size(), 2u);
  // The query: three long words from the second page.
  std::vector<std::string> picked;
  for (const auto& w : words["words"]) {
    const std::string t = w["text"].get<std::string>();
    if (w["page"].get<int>() != 1 || t.size() < 6 ||
        !std::all_of(t.begin(), t.end(), [](char c) { return std::isalpha(c); }) ||
        std::find(picked.begin(), picked.end(), t) != picked.end())
      continue;
    picked.push_back(t);
    if (picked.size() == 3) break;
  }
  ASSERT_EQ(picked.size(), 3u);
  json cands = json::array();
  for (const auto& p : words["pages"])
    cands.push_back({{"id", p["file"]}, {"image", "rendered/" + p["file"].get<std::string>()}});
  const std::string second = words["pages"][1]["file"];
  std::ofstream(dir_ / "recall.jsonl")
      << json{{"query_id", "r1"},
              {"query", picked[0] + " " + picked[1] + " " + picked[2]},
              {"candidates", cands},
              {"relevant", {second}}}
             .dump()
      << "\n";
  const CliResult r = run_cli("--log-level warn bench " + model_flag() +
                              " --format jsonl --keep-ratios 1.0,0.5 --pruning-recall " +
                              shell_quote((dir_ / "recall.jsonl").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = read_jsonl(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;
  EXPECT_EQ(rows[0]["pages"].get<int>(), 1);
  EXPECT_GE(rows[0]["word_tokens"].get<int>(), 3);         // each picked word shows at least once
  EXPECT_DOUBLE_EQ(rows[0]["recall"].get<double>(), 1.0);  // keep 1.0 keeps everything
  EXPECT_DOUBLE_EQ(rows[0]["kept_share"].get<double>(), 1.0);
  EXPECT_NEAR(rows[1]["kept_share"].get<double>(), 0.5, 0.01);
  EXPECT_GE(rows[1]["recall"].get<double>(), 0.0);
  EXPECT_LE(rows[1]["recall"].get<double>(), 1.0);

  // Pages without word boxes cannot be measured: one clear error.
  std::ofstream(dir_ / "recall_none.jsonl")
      << json{{"query_id", "r2"},
              {"query", "revenue"},
              {"candidates", {{{"id", "p1"}, {"image", "pages/page01.png"}}}},
              {"relevant", {"p1"}}}
             .dump()
      << "\n";
  const CliResult none = run_cli("bench " + model_flag() + " --pruning-recall " +
                                 shell_quote((dir_ / "recall_none.jsonl").string()));
  EXPECT_NE(none.code, 0);
  EXPECT_NE(none.err.find("no relevant page with word boxes"), std::string::npos) << none.err;
}

TEST_F(RankBatch, SimilarityScoringSortsEveryPageByItsOwnScore) {
  // More pages than a window: a per-page scoring needs no sliding window. The order is the
  // scores' order, and each score is the page's own (the same as when it is ranked alone).
  const std::string pages = shell_quote((dir_ / "pages").string());
  const CliResult r = run_cli("rank " + model_flag() +
                              " --scoring similarity --keep-ratio 1 --window 4 --stride 2 "
                              "--query 'net revenue' --pages " +
                              pages);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 24u);
  for (size_t i = 1; i < lines.size(); ++i)
    EXPECT_GE(lines[i - 1]["score"].get<double>(), lines[i]["score"].get<double>()) << i;
  for (const size_t i : {size_t{0}, size_t{11}, size_t{23}}) {
    const std::string id = lines[i]["id"].get<std::string>();
    const CliResult one =
        run_cli("rank " + model_flag() +
                " --scoring similarity --keep-ratio 1 --query 'net revenue' --pages " +
                shell_quote((dir_ / "pages" / id).string()));
    ASSERT_EQ(one.code, 0) << one.err;
    EXPECT_EQ(read_jsonl(one.out).at(0)["score"], lines[i]["score"]) << id;
  }
}

TEST_F(RankBatch, WindowsThatCannotOverlapAreRefusedBeforeTheModelLoads) {
  for (const std::string ws : {"--window 5", "--window 10", "--window 9 --stride 9"}) {
    const CliResult r = run_cli("rank " + model_flag() + " " + ws + " -q x -p " +
                                shell_quote((dir_ / "pages").string()));
    EXPECT_EQ(r.code, 2) << ws << ": " << r.err;
    EXPECT_NE(r.err.find("must be smaller than --window"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  // Exactly window - stride candidates are one window (the model runs, nothing comes back
  // unscored).
  std::string ten;
  for (int p = 1; p <= 10; ++p) {
    char name[32];
    std::snprintf(name, sizeof(name), "page%02d.png", p);
    ten += " " + shell_quote((dir_ / "pages" / name).string());
  }
  const CliResult r = run_cli("rank " + model_flag() + " -q 'net revenue' -p" + ten);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("1 window(s)"), std::string::npos) << r.err;
  for (const auto& l : read_jsonl(r.out)) EXPECT_FALSE(l["score"].is_null()) << l.dump();
}

TEST_F(RankBatch, BadRankInputIsOneClearError) {
  CliResult r = run_cli("rank " + model_flag() + " -q 'x' -p /nonexistent/page.png");
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  r = run_cli("rank " + model_flag() + " -q '   ' -p " +
              shell_quote((dir_ / "pages" / "page01.png").string()));
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("query is empty"), std::string::npos) << r.err;
  std::ofstream(dir_ / "broken.png") << "not really a png";
  r = run_cli("rank " + model_flag() + " -q 'x' -p " + shell_quote((dir_ / "broken.png").string()));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("broken.png"), std::string::npos) << r.err;
}

// The product paths CPU hosts differ in, so that the cross-run tests below cover each on any
// host: bfloat16 products (libtorch's own, oneDNN's in a libtorch built with it), float32 ones
// with the kernels the BLAS picked for this CPU, and float32 ones on the kernels AVX2-only and
// AMD EPYC hosts run: OpenBLAS's Haswell kernels, whose results depend on the thread count, or,
// in a libtorch that multiplies with MKL (the PyTorch wheel's), MKL's AVX2 code path.
struct ProductPath {
  std::string name, matmul, env, value;
};
std::vector<ProductPath> product_paths() {
  std::vector<ProductPath> paths = {{"float32", "float32", "", ""},
                                    {"bfloat16", "bfloat16", "", ""}};
  if (at::hasMKL()) {
    paths.push_back({"float32-mkl-avx2", "float32", "MKL_ENABLE_INSTRUCTIONS", "AVX2"});
  } else {
    paths.push_back({"float32-haswell", "float32", "OPENBLAS_CORETYPE", "Haswell"});
  }
  return paths;
}

TEST_F(RankBatch, BatchThenEvalRoundTrip) {
  for (const ProductPath& path : product_paths()) {
    SCOPED_TRACE(path.name);
    const ScopedEnv env(path.env, path.value);
    const std::string& mm = path.name;
    const std::string flags = model_flag() + " --matmul " + path.matmul;
    const std::string out = (dir_ / ("run_full_" + mm + ".jsonl")).string();
    fs::remove(out);
    const CliResult r =
        run_cli("batch " + flags + " --input " + shell_quote((dir_ / "queries.jsonl").string()) +
                " --output " + shell_quote(out));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto lines = read_jsonl(slurp(out));
    ASSERT_EQ(lines.size(), 6u);
    for (size_t i = 0; i < lines.size(); ++i) {
      EXPECT_EQ(lines[i]["query_id"], "q" + std::to_string(i));
      EXPECT_TRUE(lines[i].contains("timing_ms"));
      EXPECT_GT(lines[i]["tokens"]["visual_before"].get<int>(),
                lines[i]["tokens"]["visual_after"].get<int>());
    }
    EXPECT_EQ(lines[0]["ranking"].size(), 24u);
    EXPECT_EQ(lines[0]["windows"].get<int>(), 2);  // 24 candidates, window 20, stride 10
    EXPECT_EQ(lines[1]["ranking"].size(), 5u);
    EXPECT_NE(r.err.find("page(s) reused"), std::string::npos) << r.err;

    // Reusing vision features across queries is exact: the same run without the cache.
    const std::string nocache = (dir_ / ("run_nocache_" + mm + ".jsonl")).string();
    fs::remove(nocache);
    const CliResult r2 = run_cli("batch " + flags + " --vision-cache-mb 0 --input " +
                                 shell_quote((dir_ / "queries.jsonl").string()) + " --output " +
                                 shell_quote(nocache));
    ASSERT_EQ(r2.code, 0) << r2.err;
    const auto plain = read_jsonl(slurp(nocache));
    ASSERT_EQ(plain.size(), lines.size());
    for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(plain[i]["ranking"], lines[i]["ranking"]);
  }
}

TEST_F(RankBatch, ResumeAfterSigkillGivesTheSameRun) {
  for (const ProductPath& path : product_paths()) {
    SCOPED_TRACE(path.name);
    const ScopedEnv env(path.env, path.value);
    const std::string& mm = path.name;
    const std::string flags = model_flag() + " --matmul " + path.matmul;
    const std::string q = shell_quote((dir_ / "queries.jsonl").string());
    const std::string full = (dir_ / ("run_ref_" + mm + ".jsonl")).string(),
                      part = (dir_ / ("run_killed_" + mm + ".jsonl")).string();
    fs::remove(full);
    fs::remove(part);
    ASSERT_EQ(run_cli("batch " + flags + " -i " + q + " -o " + shell_quote(full)).code, 0);

    // Start a run, kill it with SIGKILL once at least one query is on disk, then resume.
    const pid_t pid =
        start_cli(" --log-level error batch " + flags + " -i " + q + " -o " + shell_quote(part));
    for (int i = 0; i < 600 && (!fs::exists(part) || fs::file_size(part) == 0); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    // Simulate a torn write on top: half a line at the end.
    std::ofstream(part, std::ios::app) << "{\"query_id\": \"q5\", \"rank";
    const CliResult r =
        run_cli("batch " + flags + " --resume -i " + q + " -o " + shell_quote(part));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto a = read_jsonl(slurp(full)), b = read_jsonl(slurp(part));
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i]["query_id"], b[i]["query_id"]);
      EXPECT_EQ(a[i]["ranking"], b[i]["ranking"]) << "query " << a[i]["query_id"];
    }
  }
}

TEST_F(RankBatch, TwentySigkillsAtRandomPointsThenResumeGiveTheUninterruptedRun) {
  // Each round resumes the run and kills it (SIGKILL) at a random point, while it loads, ranks or
  // writes. The file must stay whole lines throughout, and the last resume must end with exactly
  // the uninterrupted run: the same lines in the same order with the same scores.
  // 30 queries (the 6 five times, own ids), no vision cache: long enough that every round is
  // killed before the end.
  const fs::path in = dir_ / "queries30.jsonl";
  write_repeated_queries(in, 5);
  const std::string q = shell_quote(in.string()) + " --vision-cache-mb 0";
  const std::string ref = (dir_ / "run_kill_ref.jsonl").string(),
                    out = (dir_ / "run_kill_rounds.jsonl").string();
  fs::remove(ref);
  fs::remove(out);
  ASSERT_EQ(run_cli("batch " + model_flag() + " -i " + q + " -o " + shell_quote(ref)).code, 0);
  std::mt19937 rng(20261204);
  std::uniform_int_distribution<int> delay_ms(30, 900);
  int killed = 0;
  for (int round = 0; round < 20; ++round) {
    const pid_t pid = start_cli(" --log-level off batch " + model_flag() + " --resume -i " + q +
                                " -o " + shell_quote(out));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) ++killed;
    // Whatever was written is whole records, or a torn last line the next resume drops.
    const std::string text = slurp(out);
    const size_t whole = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    for (const auto& l : read_jsonl(text.substr(0, whole))) EXPECT_TRUE(l.contains("query_id"));
    if (!WIFSIGNALED(status)) break;  // finished before the kill
  }
  EXPECT_GE(killed, 15);
  const CliResult r =
      run_cli("batch " + model_flag() + " --resume -i " + q + " -o " + shell_quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto a = read_jsonl(slurp(ref)), b = read_jsonl(slurp(out));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["query_id"], b[i]["query_id"]);
    EXPECT_EQ(a[i]["ranking"], b[i]["ranking"]) << a[i]["query_id"];
  }
}

TEST_F(RankBatch, AFullDiskIsOneClearErrorAndKeepsEveryFinishedLine) {
  // A 12 KiB tmpfs holds a few run lines: the batch stops with one error naming the file and
  // the cause, and the file holds only whole lines (the record that did not fit is taken back).
  const fs::path mnt = dir_ / "small_disk";
  fs::create_directories(mnt);
  if (std::system(("mount -t tmpfs -o size=12k tmpfs " + shell_quote(mnt.string()) + " 2>/dev/null")
                      .c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a small tmpfs here (needs root)";
  }
  const fs::path in = dir_ / "queries_many.jsonl";
  write_repeated_queries(in, 20);
  const std::string out = (mnt / "run.jsonl").string();
  const CliResult r = run_cli("batch " + model_flag() + " -i " + shell_quote(in.string()) + " -o " +
                              shell_quote(out));
  const std::string text = slurp(out);
  std::system(("umount " + shell_quote(mnt.string())).c_str());
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const auto lines = read_jsonl(text);
  EXPECT_GT(lines.size(), 0u);
  EXPECT_LT(lines.size(), 120u);
  for (const auto& l : lines) EXPECT_TRUE(l.contains("ranking")) << l.dump();
}

TEST_F(RankBatch, AReadOnlyOutputFolderIsRefusedBeforeTheModelLoads) {
  const fs::path mnt = dir_ / "read_only";
  fs::create_directories(mnt);
  if (std::system(
          ("mount -t tmpfs -o size=64k,ro tmpfs " + shell_quote(mnt.string()) + " 2>/dev/null")
              .c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a read-only tmpfs here (needs root)";
  }
  const CliResult r =
      run_cli("batch " + model_flag() + " -i " + shell_quote((dir_ / "queries.jsonl").string()) +
              " -o " + shell_quote((mnt / "run.jsonl").string()));
  std::system(("umount " + shell_quote(mnt.string())).c_str());
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("cannot be written: Read-only file system"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("model "), std::string::npos) << r.err;  // refused before loading
  const CliResult missing =
      run_cli("batch " + model_flag() + " -i " + shell_quote((dir_ / "queries.jsonl").string()) +
              " -o /nonexistent/folder/run.jsonl");
  EXPECT_EQ(missing.code, 3) << missing.err;
  EXPECT_NE(missing.err.find("the folder '/nonexistent/folder' does not exist"), std::string::npos)
      << missing.err;
}

TEST_F(RankBatch, ShardsConcatenateToTheFullRun) {
  for (const ProductPath& path : product_paths()) {
    SCOPED_TRACE(path.name);
    const ScopedEnv env(path.env, path.value);
    const std::string& mm = path.name;
    const std::string flags = model_flag() + " --matmul " + path.matmul;
    const std::string q = shell_quote((dir_ / "queries.jsonl").string());
    const std::string full = (dir_ / ("run_unsharded_" + mm + ".jsonl")).string();
    fs::remove(full);
    ASSERT_EQ(run_cli("batch " + flags + " -i " + q + " -o " + shell_quote(full)).code, 0);
    std::vector<json> joined;
    for (int k = 1; k <= 4; ++k) {
      const std::string out = (dir_ / ("shard" + std::to_string(k) + "_" + mm + ".jsonl")).string();
      fs::remove(out);
      const CliResult r = run_cli("batch " + flags + " --shard " + std::to_string(k) + "/4 -i " +
                                  q + " -o " + shell_quote(out));
      ASSERT_EQ(r.code, 0) << r.err;
      for (auto& l : read_jsonl(slurp(out))) joined.push_back(l);
    }
    const auto ref = read_jsonl(slurp(full));
    ASSERT_EQ(joined.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(joined[i]["query_id"], ref[i]["query_id"]);
      EXPECT_EQ(joined[i]["ranking"], ref[i]["ranking"]);
    }
  }
  EXPECT_EQ(run_cli("batch " + model_flag() + " --shard 5/4 -i " +
                    shell_quote((dir_ / "queries.jsonl").string()) + " -o x.jsonl")
                .code,
            2);
}

TEST_F(RankBatch, BadQueriesBecomeErrorRecordsAndTheRunGoesOn) {
  const fs::path in = dir_ / "bad.jsonl";
  std::ofstream f(in);
  f << R"({"query_id": "ok", "query": "x", "candidates": [{"id": "a", "image": "pages/page01.png"}]})"
    << "\n"
    << R"({"query_id": "broken", "query": )"
    << "\n"
    << R"({"query_id": "nofield", "candidates": [{"id": "a", "image": "pages/page01.png"}]})"
    << "\n"
    << R"({"query_id": "dup", "query": "x", "candidates": [{"id": "a", "image": "pages/page01.png"}, {"id": "a", "image": "pages/page02.png"}]})"
    << "\n"
    << R"({"query_id": "none", "query": "x", "candidates": []})"
    << "\n"
    << R"({"query_id": "missing", "query": "x", "candidates": [{"id": "a", "image": "pages/nope.png"}]})"
    << "\n"
    << R"({"query_id": "badpdf", "query": "x", "candidates": [{"id": "a", "pdf": "doc.pdf", "page": 9}]})"
    << "\n"
    << R"({"query_id": "empty", "query": "  ", "candidates": [{"id": "a", "image": "pages/page01.png"}]})"
    << "\n"
    << R"({"query_id": "ok", "query": "x", "candidates": [{"id": "a", "image": "pages/page01.png"}]})"
    << "\n";
  f.close();
  const std::string out = (dir_ / "bad_run.jsonl").string();
  fs::remove(out);
  const CliResult r = run_cli("batch " + model_flag() + " -i " + shell_quote(in.string()) + " -o " +
                              shell_quote(out));
  EXPECT_EQ(r.code, 1) << r.err;  // some queries failed
  const auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 9u);
  EXPECT_TRUE(lines[0].contains("ranking"));
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"line-2", "malformed JSON"},
      {"nofield", "missing field 'query'"},
      {"dup", "duplicate candidate id 'a'"},
      {"none", "zero candidates"},
      {"missing", "nope.png"},
      {"badpdf", "page 9 does not exist"},
      {"empty", "empty 'query'"},
      {"ok", "duplicate query_id 'ok'"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& l = lines[i + 1];
    ASSERT_TRUE(l.contains("error")) << l.dump();
    EXPECT_EQ(l["query_id"], expected[i].first);
    EXPECT_NE(l["error"].get<std::string>().find(expected[i].second), std::string::npos)
        << l.dump();
  }
  EXPECT_EQ(lines[2]["query_id"], "nofield");
}

TEST_F(RankBatch, CtrlCStopsAfterTheCurrentQueryAndResumeFinishes) {
  const std::string q = shell_quote((dir_ / "queries.jsonl").string());
  const std::string out = (dir_ / "run_interrupted.jsonl").string();
  fs::remove(out);
  const pid_t pid = start_cli(" --log-level warn batch " + model_flag() + " -i " + q + " -o " +
                              shell_quote(out) + " 2>/dev/null");
  for (int i = 0; i < 600 && (!fs::exists(out) || fs::file_size(out) == 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  const auto partial = read_jsonl(slurp(out));  // every line complete and parseable
  if (partial.size() < 6) {
    EXPECT_EQ(WEXITSTATUS(status), 130);
  }
  const CliResult r =
      run_cli("batch " + model_flag() + " --resume -i " + q + " -o " + shell_quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_jsonl(slurp(out)).size(), 6u);
}

TEST_F(RankBatch, SigtermStopsALongQueryBetweenItsWindows) {
  // A short query, then one of 4,000 candidates (no vision cache: every page is encoded). The
  // first SIGTERM ends the long query at its next window: exit 130 within seconds, the short
  // query's line kept, nothing of the long one written.
  const fs::path in = dir_ / "long.jsonl";
  {
    std::ofstream f(in);
    f << json{{"query_id", "short"},
              {"query", "revenue"},
              {"candidates", {{{"id", "a"}, {"image", "pages/page01.png"}}}}}
             .dump()
      << "\n";
    json cands = json::array();
    for (int i = 0; i < 4000; ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "pages/page%02d.png", i % 24 + 1);
      cands.push_back({{"id", "c" + std::to_string(i)}, {"image", name}});
    }
    f << json{{"query_id", "long"}, {"query", "revenue"}, {"candidates", cands}}.dump() << "\n";
  }
  const std::string out = (dir_ / "long_run.jsonl").string();
  fs::remove(out);
  const pid_t pid = start_cli(
      " --log-level warn batch " + model_flag() + " --vision-cache-mb 0 --max-candidates 5000 -i " +
      shell_quote(in.string()) + " -o " + shell_quote(out) + " 2>/dev/null");
  for (int i = 0; i < 1500 && (!fs::exists(out) || fs::file_size(out) == 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // into the long query
  const auto signalled = std::chrono::steady_clock::now();
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - signalled).count();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_LT(waited, 15.0);
  const auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["query_id"], "short");
  // Resumed, the long query runs again (here refused by a cap: an error record after the kept
  // line).
  const CliResult r = run_cli("batch " + model_flag() + " --max-candidates 10 --resume -i " +
                              shell_quote(in.string()) + " -o " + shell_quote(out));
  EXPECT_EQ(r.code, 1) << r.err;
  const auto after = read_jsonl(slurp(out));
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0], lines[0]);
  EXPECT_EQ(after[1]["query_id"], "long");
  EXPECT_TRUE(after[1].contains("error"));
}

TEST_F(RankBatch, ResumeRefusesARunOfTheOtherFormatAndTrecKeepsFailuresBeside) {
  const fs::path in = dir_ / "fmt.jsonl";
  std::ofstream(in)
      << R"({"query_id": "ok", "query": "x", "candidates": [{"id": "a", "image": "pages/page01.png"}]})"
      << "\n"
      << R"({"query_id": "bad", "query": "x", "candidates": [{"id": "a", "image": "pages/nope.png"}]})"
      << "\n";
  const std::string jsonl = (dir_ / "fmt_run.jsonl").string(),
                    trec = (dir_ / "fmt_run.trec").string();
  fs::remove(jsonl);
  fs::remove(trec);
  ASSERT_EQ(run_cli("batch " + model_flag() + " -i " + shell_quote(in.string()) + " -o " +
                    shell_quote(jsonl))
                .code,
            1);
  const std::string before = slurp(jsonl);
  CliResult r = run_cli("batch " + model_flag() + " --format trec --resume -i " +
                        shell_quote(in.string()) + " -o " + shell_quote(jsonl));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("not a TREC run line"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(jsonl), before);  // nothing appended

  // TREC: the failed query's error record goes beside the run; a resume over the TREC run with
  // --format jsonl is refused the same way.
  r = run_cli("batch " + model_flag() + " --format trec -i " + shell_quote(in.string()) + " -o " +
              shell_quote(trec));
  EXPECT_EQ(r.code, 1) << r.err;
  const auto errors = read_jsonl(slurp(trec + ".errors.jsonl"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["query_id"], "bad");
  EXPECT_NE(errors[0]["error"].get<std::string>().find("nope.png"), std::string::npos);
  EXPECT_EQ(slurp(trec).find("bad"), std::string::npos);
  r = run_cli("batch " + model_flag() + " --resume -i " + shell_quote(in.string()) + " -o " +
              shell_quote(trec));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("not a JSONL run line"), std::string::npos) << r.err;
}

TEST_F(RankBatch, TrecOutputEvaluates) {
  const std::string q = shell_quote((dir_ / "queries.jsonl").string());
  const std::string out = (dir_ / "run.trec").string();
  fs::remove(out);
  CliResult r =
      run_cli("batch " + model_flag() + " --format trec -i " + q + " -o " + shell_quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string text = slurp(out);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 24 + 5 + 5 + 7 + 7 + 9)
      << text;  // one line per candidate
  EXPECT_NE(text.find("q0 Q0 img#"), std::string::npos);
  r = run_cli("eval --format json --run " + shell_quote(out) + " --qrels " + q);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto report = json::parse(r.out);
  EXPECT_FALSE(report.dump().empty());
}

TEST_F(RankBatch, ResumeRetriesFailedQueriesAndKeepsInputOrder) {
  const fs::path in = dir_ / "retry.jsonl";
  const fs::path late = dir_ / "late.png";
  fs::remove(late);
  {
    std::ofstream f(in);
    f << R"({"query_id": "first", "query": "x", "candidates": [{"id": "a", "image": "pages/page01.png"}, {"id": "b", "image": "pages/page02.png"}]})"
      << "\n"
      << R"({"query_id": 7, "query": "y", "candidates": [{"id": "a", "image": "late.png"}, {"id": "b", "image": "pages/page02.png"}]})"
      << "\n"
      << R"({"query_id": "last", "query": "z", "candidates": [{"id": "a", "image": "pages/page03.png"}, {"id": "b", "image": "pages/page02.png"}]})"
      << "\n";
  }
  const std::string out = (dir_ / "retry_run.jsonl").string();
  fs::remove(out);
  // --strict: the query with a missing page fails (without it the page would be skipped).
  const std::string args = "batch " + model_flag() + " --strict -i " + shell_quote(in.string()) +
                           " -o " + shell_quote(out);
  CliResult r = run_cli(args);
  EXPECT_EQ(r.code, 1) << r.err;  // the query with the missing image failed
  auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(lines[1].contains("error"));
  EXPECT_EQ(lines[1]["query_id"], "7");

  fs::copy_file(dir_ / "pages" / "page04.png", late);  // the missing page appears
  r = run_cli(args + " --resume");
  ASSERT_EQ(r.code, 0) << r.err;
  lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 3u) << slurp(out);
  EXPECT_EQ(lines[0]["query_id"], "first");
  EXPECT_EQ(lines[1]["query_id"], "7");
  EXPECT_TRUE(lines[1].contains("ranking")) << lines[1].dump();
  EXPECT_EQ(lines[2]["query_id"], "last");

  r = run_cli(args + " --resume");  // nothing left to do: unchanged
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_jsonl(slurp(out)), lines);
}

namespace {

// A folder of `n` of the fixture's pages with a corrupt page (and a corrupt PDF) among them.
fs::path folder_with_broken_pages(const fs::path& root, const fs::path& pages, int n) {
  const fs::path dir = root / "with_broken";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (int p = 1; p <= n; ++p) {
    char name[32];
    std::snprintf(name, sizeof(name), "page%02d.png", p);
    fs::copy_file(pages / name, dir / name);
  }
  std::ofstream(dir / "page03b.png") << "not really a png";  // sorts among the pages
  std::ofstream(dir / "zz.pdf") << "%PDF-1.4 cut short";
  return dir;
}

}  // namespace

TEST_F(RankBatch, UnreadablePagesAreSkippedWithAWarningUnlessStrict) {
  const fs::path dir = folder_with_broken_pages(dir_, dir_ / "pages", 8);
  // Sliding windows (4 wide, stride 2): the corrupt page is found when a window first reaches
  // it; the others keep unique ranks 1..8 and n - rank scores over the pages that were read.
  const std::string base = "rank " + model_flag() + " --window 4 --stride 2 -q 'net revenue' -p " +
                           shell_quote(dir.string());
  CliResult r = run_cli(base);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 8u) << r.out;
  std::set<std::string> ids;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["rank"].get<size_t>(), i + 1);
    EXPECT_EQ(lines[i]["score"].get<double>(), static_cast<double>(8 - i));
    ids.insert(lines[i]["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 8u);
  EXPECT_FALSE(ids.count("page03b.png") || ids.count("zz.pdf#1"));
  EXPECT_NE(r.err.find("skipped 2 page(s) that cannot be read: zz.pdf, page03b.png"),
            std::string::npos)
      << r.err;

  // --strict keeps the abort, naming the file; nothing is printed.
  r = run_cli(base + " --strict");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("zz.pdf"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  fs::remove(dir / "zz.pdf");
  r = run_cli(base + " --strict");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("page03b.png"), std::string::npos) << r.err;

  // Nothing readable is an error either way.
  r = run_cli("rank " + model_flag() + " -q x -p " + shell_quote((dir / "page03b.png").string()));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("none of the 1 page(s) can be read"), std::string::npos) << r.err;
}

TEST_F(RankBatch, BatchChecksEveryPathOfAQueryBeforeDecodingAndSkipsOrFailsIt) {
  const fs::path dir = folder_with_broken_pages(dir_, dir_ / "pages", 3);
  const fs::path in = dir_ / "unreadable.jsonl";
  std::ofstream(in)
      << R"({"query_id": "mixed", "query": "x", "candidates": [{"id": "a", "image": "with_broken/page01.png"}, {"id": "corrupt", "image": "with_broken/page03b.png"}, {"id": "gone", "image": "with_broken/gone.png"}, {"id": "folder", "image": "with_broken"}, {"id": "b", "image": "with_broken/page02.png"}]})"
      << "\n"
      << R"({"query_id": "allbad", "query": "x", "candidates": [{"id": "corrupt", "image": "with_broken/page03b.png"}]})"
      << "\n";
  const std::string out = (dir_ / "unreadable_run.jsonl").string();
  fs::remove(out);
  CliResult r = run_cli("batch " + model_flag() + " -i " + shell_quote(in.string()) + " -o " +
                        shell_quote(out));
  EXPECT_EQ(r.code, 1) << r.err;  // "allbad" failed
  auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 2u);
  ASSERT_TRUE(lines[0].contains("ranking")) << lines[0].dump();
  std::set<std::string> ranked, skipped;
  for (const auto& p : lines[0]["ranking"]) ranked.insert(p["id"].get<std::string>());
  for (const auto& p : lines[0]["skipped"]) skipped.insert(p["id"].get<std::string>());
  EXPECT_EQ(ranked, (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(skipped, (std::set<std::string>{"corrupt", "gone", "folder"}));
  EXPECT_NE(lines[1]["error"].get<std::string>().find("none of the 1 page(s) can be read"),
            std::string::npos)
      << lines[1].dump();

  // --strict: the query fails with every path that is not a readable file named at once
  // (checked before any page is decoded), and the run goes on.
  r = run_cli("batch " + model_flag() + " --strict --force -i " + shell_quote(in.string()) +
              " -o " + shell_quote(out));
  EXPECT_EQ(r.code, 1) << r.err;
  lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 2u);
  const std::string error = lines[0]["error"].get<std::string>();
  EXPECT_NE(error.find("2 of 5 page(s) cannot be read"), std::string::npos) << error;
  EXPECT_NE(error.find("gone.png"), std::string::npos) << error;
  EXPECT_NE(error.find("is a directory"), std::string::npos) << error;
}

TEST_F(RankBatch, RelevanceInZeroOneSitsBesideTheRawScore) {
  const std::string some = shell_quote((dir_ / "pages" / "page01.png").string()) + " " +
                           shell_quote((dir_ / "pages" / "page02.png").string()) + " " +
                           shell_quote((dir_ / "pages" / "page03.png").string());
  // logits, one window: the softmax of the identifier logits (the scores), summing to 1.
  CliResult r = run_cli("rank " + model_flag() + " --scoring logits -q 'net revenue' -p " + some);
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 3u);
  double sum = 0, z = 0;
  for (const auto& l : lines)
    z += std::exp(l["score"].get<double>() - lines[0]["score"].get<double>());
  for (const auto& l : lines) {
    const double rel = l["relevance"].get<double>();
    EXPECT_NEAR(rel, std::exp(l["score"].get<double>() - lines[0]["score"].get<double>()) / z,
                1e-9);
    sum += rel;
  }
  EXPECT_NEAR(sum, 1.0, 1e-9);
  // similarity: the weighted mean cosine mapped onto [0, 1], in the scores' order.
  r = run_cli("rank " + model_flag() + " --scoring similarity -q 'net revenue' -p " + some);
  ASSERT_EQ(r.code, 0) << r.err;
  lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 3u);
  for (size_t i = 0; i < lines.size(); ++i) {
    const double rel = lines[i]["relevance"].get<double>();
    EXPECT_GE(rel, 0.0);
    EXPECT_LE(rel, 1.0);
    if (i) EXPECT_GE(lines[i - 1]["relevance"].get<double>(), rel);
  }
  // batch JSONL carries it per ranked page too, and a sliding-window ranking stays in [0, 1].
  const std::string out = (dir_ / "relevance_run.jsonl").string();
  fs::remove(out);
  r = run_cli("batch " + model_flag() + " -i " + shell_quote((dir_ / "queries.jsonl").string()) +
              " -o " + shell_quote(out));
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& q : read_jsonl(slurp(out))) {
    for (const auto& p : q["ranking"]) {
      const double rel = p["relevance"].get<double>();
      EXPECT_TRUE(rel >= 0 && rel <= 1) << p.dump();
    }
  }
}

TEST_F(RankBatch, RankWritesTrecAndFilesAndBatchUsesStdinStdoutAndTables) {
  const std::string pages = shell_quote((dir_ / "pages").string());
  // rank --format trec with a run tag; -o writes a file, which a second run refuses to
  // overwrite without --force.
  const std::string out = (dir_ / "rank_out.trec").string();
  fs::remove(out);
  const std::string rank = "rank " + model_flag() +
                           " --top-k 3 --format trec -t mytag --query-id 42 -q 'net revenue' -p " +
                           pages + " -o " + shell_quote(out);
  CliResult r = run_cli(rank);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  std::istringstream trec(slurp(out));
  int n = 0;
  for (std::string qid, q0, doc, rank_no, score, tag;
       trec >> qid >> q0 >> doc >> rank_no >> score >> tag;) {
    ++n;
    EXPECT_EQ(qid, "42");
    EXPECT_EQ(q0, "Q0");
    EXPECT_EQ(rank_no, std::to_string(n));
    EXPECT_EQ(tag, "mytag");
  }
  EXPECT_EQ(n, 3);
  r = run_cli(rank);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_EQ(run_cli(rank + " --force").code, 0);
  EXPECT_EQ(run_cli("rank " + model_flag() + " --format trec -t 'two words' -q x -p " + pages).code,
            2);

  // batch: queries from standard input (page paths relative to the current folder), the run to
  // standard output; as a table too. --resume needs files, and says so before the model loads.
  const std::string queries = slurp(dir_ / "queries.jsonl");
  const std::string cd = "cd " + shell_quote(dir_.string()) + " && ";
  r = run_cli_after(cd, "batch " + model_flag() + " -i - -o -", queries, false);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[5]["query_id"], "q5");
  r = run_cli_after(cd, "batch " + model_flag() + " -i - -o - --format table", queries, false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("query_id", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1 + 24 + 5 + 5 + 7 + 7 + 9) << r.out;
  r = run_cli("batch --model /nonexistent -i - -o x.jsonl --resume", queries);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--resume needs the queries and the run as files"), std::string::npos)
      << r.err;

  // An existing run without --resume or --force is refused; --force overwrites it.
  const std::string run = (dir_ / "forced.trec").string();
  std::ofstream(run) << "stale\n";
  const std::string batch = "batch " + model_flag() + " --format trec -t tagged -i " +
                            shell_quote((dir_ / "queries.jsonl").string()) + " -o " +
                            shell_quote(run);
  r = run_cli(batch);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  r = run_cli(batch + " --force");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string text = slurp(run);
  EXPECT_EQ(text.find("stale"), std::string::npos);
  EXPECT_NE(text.find(" tagged\n"), std::string::npos) << text;
}

TEST_F(RankBatch, PreparingTheNextQueryAheadGivesTheSameRun) {
  // Without a vision cache every query's pages are prepared ahead (PNG and PDF pages alike) while
  // the previous query computes; the run must equal the one that prepares each page in its turn.
  const std::string in = shell_quote((dir_ / "queries.jsonl").string());
  const std::string on = (dir_ / "run_overlap_on.jsonl").string();
  const std::string off = (dir_ / "run_overlap_off.jsonl").string();
  fs::remove(on);
  fs::remove(off);
  const std::string flags = model_flag() + " --vision-cache-mb 0 --input " + in + " --output ";
  const CliResult a = run_cli("-v batch " + flags + shell_quote(on));
  ASSERT_EQ(a.code, 0) << a.err;
  const CliResult b =
      run_cli_after("ZIPRERANK_BATCH_OVERLAP=0", "-v batch " + flags + shell_quote(off), "", false);
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_NE(a.err.find("(overlap on)"), std::string::npos) << a.err;
  EXPECT_EQ(a.err.find(" 0 pages decoded and preprocessed ahead"), std::string::npos) << a.err;
  EXPECT_NE(b.err.find(" 0 pages decoded and preprocessed ahead (overlap off)"), std::string::npos)
      << b.err;
  const auto with = read_jsonl(slurp(on)), without = read_jsonl(slurp(off));
  ASSERT_EQ(with.size(), 6u);
  ASSERT_EQ(with.size(), without.size());
  for (size_t i = 0; i < with.size(); ++i) {
    EXPECT_EQ(with[i]["query_id"], without[i]["query_id"]);
    EXPECT_EQ(with[i]["ranking"], without[i]["ranking"]);
  }
}

TEST_F(RankBatch, ArgumentsAreCheckedBeforeTheModelLoads) {
  // With a model folder that does not exist, each of these must be refused for its own reason:
  // a check made after loading would report the missing model instead.
  const std::string page = shell_quote((dir_ / "pages" / "page01.png").string());
  const std::string three = page + " " + shell_quote((dir_ / "pages" / "page02.png").string()) +
                            " " + shell_quote((dir_ / "pages" / "page03.png").string());
  const std::string existing = shell_quote((dir_ / "queries.jsonl").string());
  const std::string no_model = " --model /nonexistent/model ";
  const std::vector<std::tuple<std::string, int, std::string>> cases = {
      {"rank" + no_model + "-q '  ' -p " + page, 3, "the query is empty"},
      {"rank" + no_model + "--max-candidates 2 -q x -p " + three, 3, "above the cap of 2"},
      {"rank" + no_model + "-q x -p " + page + " -o " + existing, 2, "--force"},
      {"rank" + no_model + "--format trec -t 'a b' -q x -p " + page, 2, "--run-tag"},
      {"batch" + no_model + "--vision-cache-mb -1 -i " + existing + " -o x.jsonl", 2,
       "--vision-cache-mb"},
      {"batch" + no_model + "--resume --force -i " + existing + " -o x.jsonl", 2, "--force"},
      {"batch" + no_model + "--format table --resume -i " + existing + " -o x.txt", 2,
       "--format jsonl or trec"},
  };
  for (const auto& [args, code, message] : cases) {
    const CliResult r = run_cli(args);
    EXPECT_EQ(r.code, code) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(r.err.find("/nonexistent/model"), std::string::npos) << args << "\n" << r.err;
  }
}
