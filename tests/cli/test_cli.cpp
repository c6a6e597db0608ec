#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_runner.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/tokenizer.hpp"

using namespace ziprerank;
using namespace ziprerank::test;
namespace fs = std::filesystem;

namespace {

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("zr_cli_models_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const CliResult r =
        run_cli("--log-level warn init --seed 3 --out " + shell_quote(model().string()));
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path model() { return dir_ / "tiny"; }
  static fs::path dir_;
};
fs::path Cli::dir_;

int count_lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST_F(Cli, HelpListsEveryCommand) {
  const CliResult r = run_cli("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* cmd :
       {"rank", "batch", "eval", "render", "train", "bench", "inspect", "tokenize", "init"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
  }
}

TEST_F(Cli, EverySubcommandHasHelp) {
  for (const char* cmd :
       {"rank", "batch", "eval", "render", "train", "bench", "inspect", "tokenize", "init"}) {
    const CliResult r = run_cli(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find("--help"), std::string::npos) << cmd;
  }
  const CliResult rank = run_cli("rank --help");
  for (const char* flag :
       {"--query", "--pages", "--keep-ratio", "--scoring", "--window", "--model", "--device"}) {
    EXPECT_NE(rank.out.find(flag), std::string::npos) << flag;
  }
}

TEST_F(Cli, BadUsageExitsWithUsageCodeAndOneErrorLine) {
  CliResult r = run_cli("inspect --no-such-flag");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run_cli("");
  EXPECT_EQ(r.code, 2);
  r = run_cli("rank --query q --pages x --keep-ratio 1.5");
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_cli("--log-level loud inspect --model " + shell_quote(model().string()));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("unknown log level"), std::string::npos) << r.err;
  // A mistyped command stays an error beside --help; a negative --top-k is refused.
  r = run_cli("rnak --help");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.err.find("unknown command 'rnak'"), std::string::npos) << r.err;
  EXPECT_EQ(run_cli("--log-level warn rank --help").code, 0);
  r = run_cli("rank --top-k -1 --query q --pages x");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--top-k"), std::string::npos) << r.err;
  // ZIPRERANK_MODEL naming no folder is an error that names the variable, not a silent default.
  ::setenv("ZIPRERANK_MODEL", "/nonexistent/model", 1);
  r = run_cli("inspect");
  ::unsetenv("ZIPRERANK_MODEL");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("ZIPRERANK_MODEL names '/nonexistent/model'"), std::string::npos) << r.err;
}

TEST_F(Cli, InitThenInspectIsValid) {
  const CliResult r = run_cli("inspect --model " + shell_quote(model().string()));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("verdict      OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RANDOMLY INITIALISED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vision.blocks"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("byte-level BPE"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak RSS"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.find("error") == std::string::npos) << r.err;

  const CliResult j = run_cli("inspect --format json --model " + shell_quote(model().string()));
  ASSERT_EQ(j.code, 0) << j.err;
  const auto report = nlohmann::json::parse(j.out.substr(0, j.out.rfind("peak RSS")));
  EXPECT_TRUE(report["valid"].get<bool>());
  EXPECT_EQ(report["dtypes"]["F32"].get<int>(),
            static_cast<int>(WeightStore::open(model().string())->names().size()));
  EXPECT_GT(report["parameters_total"].get<int64_t>(), 100000);
}

TEST_F(Cli, InitRefusesToOverwriteWithoutForce) {
  const CliResult r = run_cli("init --out " + shell_quote(model().string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
}

TEST_F(Cli, InspectReportsMissingAndMisShapedTensors) {
  const fs::path broken = dir_ / "broken";
  fs::create_directories(broken);
  for (const char* f : {"config.json", "preprocessor_config.json", "tokenizer.json"}) {
    fs::copy_file(model() / f, broken / f, fs::copy_options::overwrite_existing);
  }
  auto store = WeightStore::open(model().string());
  SafetensorsWriter w;
  std::vector<float> wrong(7, 0.f);
  for (const auto& name : store->names()) {
    if (name == "model.language_model.norm.weight") continue;  // dropped
    const TensorInfo& ti = store->info(name);
    if (name == "model.visual.pos_embed.weight") {
      w.add(name, DType::kF32, {7}, wrong.data(), 28);  // wrong shape
      continue;
    }
    w.add(name, ti.dtype, ti.shape, store->file_of(name).data(ti), ti.nbytes());
  }
  w.write((broken / "model.safetensors").string());
  const CliResult r = run_cli("inspect --model " + shell_quote(broken.string()));
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_NE(r.out.find("INVALID"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("missing tensor 'model.language_model.norm.weight'"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("'model.visual.pos_embed.weight' has shape [7]"), std::string::npos)
      << r.out;
}

TEST_F(Cli, InspectErrorsAreOneClearLine) {
  CliResult r = run_cli("inspect --model /nonexistent/model");
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;

  const fs::path bad = dir_ / "badtype";
  fs::create_directories(bad);
  std::ofstream(bad / "config.json") << R"({"model_type": "llava"})";
  r = run_cli("inspect --model " + shell_quote(bad.string()));
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("unsupported model_type 'llava'"), std::string::npos) << r.err;

  const fs::path trunc = dir_ / "truncated";
  fs::create_directories(trunc);
  for (const char* f : {"config.json", "preprocessor_config.json", "tokenizer.json"}) {
    fs::copy_file(model() / f, trunc / f, fs::copy_options::overwrite_existing);
  }
  fs::copy_file(model() / "model.safetensors", trunc / "model.safetensors",
                fs::copy_options::overwrite_existing);
  fs::resize_file(trunc / "model.safetensors", fs::file_size(trunc / "model.safetensors") / 2);
  r = run_cli("inspect --model " + shell_quote(trunc.string()));
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST_F(Cli, TokenizeWritesOneArrayPerLine) {
  const CliResult r = run_cli("tokenize --model " + shell_quote(model().string()),
                              "\"[A]\"\n\"<|im_start|>user\\nhi\"\n");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string l1, l2;
  std::getline(lines, l1);
  std::getline(lines, l2);
  // The init tokenizer is byte-level with no merges: one id per byte, GPT-2 byte order.
  EXPECT_EQ(nlohmann::json::parse(l1), nlohmann::json::parse("[58, 32, 60]"));
  auto ids = nlohmann::json::parse(l2);
  ASSERT_EQ(ids.size(), 8u);          // <|im_start|> u s e r \n h i
  EXPECT_EQ(ids[0].get<int>(), 257);  // <|im_start|> follows the 256 bytes and <|endoftext|>
  EXPECT_EQ(ids[5].get<int>(), 198);  // "\n" is byte 10 -> id 198 in GPT-2 byte order
}

TEST_F(Cli, TokenizeRejectsNonStringLines) {
  const CliResult r =
      run_cli("tokenize --model " + shell_quote(model().string()), "\"ok\"\n{\"a\": 1}\n");
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("stdin line 2"), std::string::npos) << r.err;
}

// The shipped default model (models/ziprerank-small) and the README's first command: with no
// --model, rank and batch use it, with the scoring its config names, and the sample document's
// example queries get their page first (what the README promises). Guards the model folder, the
// default-model lookup and the reading path (preprocessing, vision tower, similarity scoring).
TEST(ShippedModel, IsTheDefaultAndRanksTheSampleQueriesRightPageFirst) {
  const fs::path root = fs::path(ZIPRERANK_TEST_FIXTURES).parent_path().parent_path();
  const fs::path model = root / "models" / "ziprerank-small";
  ASSERT_TRUE(fs::exists(model / "config.json")) << model;
  // Its SentencePiece tokenizer cannot load in a sanitizer build (see sentencepiece_available).
  std::string why;
  if (!ziprerank::sentencepiece_available(&why)) GTEST_SKIP() << why;
  EXPECT_LE(fs::file_size(model / "model.safetensors"), 25u * 1024 * 1024);
  const CliResult inspect = run_cli("inspect --model " + shell_quote(model.string()));
  ASSERT_EQ(inspect.code, 0) << inspect.out << inspect.err;

  const fs::path dir = fs::temp_directory_path() / ("zr_shipped_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path queries = root / "data" / "samples" / "queries.jsonl";
  const fs::path run = dir / "run.jsonl";
  const CliResult batch = run_cli("batch --threads 2 -i " + shell_quote(queries.string()) + " -o " +
                                  shell_quote(run.string()));
  ASSERT_EQ(batch.code, 0) << batch.err;
  EXPECT_NE(batch.err.find("model ziprerank-small"), std::string::npos) << batch.err;
  EXPECT_NE(batch.err.find("similarity scoring"), std::string::npos) << batch.err;
  EXPECT_EQ(batch.err.find("RANDOMLY INITIALISED"), std::string::npos) << batch.err;
  const CliResult eval = run_cli("eval --format json --k 1 --run " + shell_quote(run.string()) +
                                 " --qrels " + shell_quote(queries.string()));
  ASSERT_EQ(eval.code, 0) << eval.err;
  const nlohmann::json metrics = nlohmann::json::parse(eval.out);
  EXPECT_EQ(metrics["micro"]["queries"].get<int>(), 7);
  EXPECT_DOUBLE_EQ(metrics["micro"]["values"]["R@1"].get<double>(), 1.0) << eval.out;

  // The same pages as a PDF, through the rank command.
  const CliResult pdf =
      run_cli("rank --threads 2 --top-k 1 -q 'Full Faith and Credit in each State' -p " +
              shell_quote((root / "data" / "samples" / "constitution.pdf").string()));
  ASSERT_EQ(pdf.code, 0) << pdf.err;
  EXPECT_NE(pdf.out.find("constitution.pdf#4"), std::string::npos) << pdf.out;
  fs::remove_all(dir);
}

TEST(CliRuntime, OpenBlasRunsTheKernelsThisCpuHas) {
  // This test process keeps the kernels OpenBLAS chose at load; the program restarts itself with
  // better ones when that choice was a fallback (a CPU OpenBLAS does not know).
  const std::string here = openblas_core_name();
  if (here.empty()) GTEST_SKIP() << "OpenBLAS is not the BLAS of this build";
  const bool user = std::getenv("OPENBLAS_CORETYPE") != nullptr;
  const auto kernels = [](const std::string& err) {
    const std::string key = "(OpenBLAS kernels: ";
    const auto at = err.find(key);
    if (at == std::string::npos) return std::string();
    return err.substr(at + key.size(), err.find(')', at) - at - key.size());
  };
  const std::string args = "-v inspect --model " +
                           shell_quote((fs::temp_directory_path() / "zr_no_such_model").string());
  const bool avx2 = cpu_has_avx2_fma(), avx512 = cpu_has_avx512_skylakex();

  const ScopedEnv no_core("OPENBLAS_CORETYPE", std::nullopt);
  CliResult r = run_cli(args);
  const std::string got = kernels(r.err);
  ASSERT_FALSE(got.empty()) << r.err;
  EXPECT_EQ(better_openblas_coretype(got, avx2, avx512), "") << r.err;
  if (!user) {
    const std::string wanted = better_openblas_coretype(here, avx2, avx512);
    if (!wanted.empty()) {
      EXPECT_EQ(got, wanted) << r.err;
      EXPECT_NE(r.err.find("had chosen its " + here + " kernels"), std::string::npos) << r.err;
    } else {
      EXPECT_EQ(got, here) << r.err;
      EXPECT_EQ(r.err.find("switched to"), std::string::npos) << r.err;
    }
  }

  // A choice made with OPENBLAS_CORETYPE is kept.
  const ScopedEnv prescott("OPENBLAS_CORETYPE", "Prescott");
  r = run_cli(args);
  EXPECT_EQ(kernels(r.err), "Prescott") << r.err;
  EXPECT_EQ(r.err.find("switched to"), std::string::npos) << r.err;
}

TEST_F(Cli, OutputIsDashOEverywhereAndRequiredFlagsComeFirstInHelp) {
  // init and render write folders with -o/--output; --out, the former spelling (the fixture
  // above uses it), still works but is not offered in --help.
  const fs::path out = dir_ / "by_dash_o";
  CliResult r = run_cli("--log-level warn init --seed 4 -o " + shell_quote(out.string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "config.json"));
  r = run_cli("init --seed 4");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--output is required"), std::string::npos) << r.err;
  r = run_cli("render --text 'hello world' --output " + shell_quote((dir_ / "rendered").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "rendered" / "passage.png"));
  for (const char* cmd : {"init", "render"}) {
    const CliResult help = run_cli(std::string(cmd) + " --help");
    EXPECT_NE(help.out.find("-o,--output"), std::string::npos) << cmd << help.out;
    EXPECT_EQ(help.out.find("--out "), std::string::npos) << cmd << help.out;
  }
  // Required flags are listed before the optional ones; one --format vocabulary.
  const CliResult rank = run_cli("rank --help"), batch = run_cli("batch --help");
  EXPECT_LT(rank.out.find("--query"), rank.out.find("--model")) << rank.out;
  EXPECT_LT(rank.out.find("--pages"), rank.out.find("--keep-ratio")) << rank.out;
  EXPECT_LT(batch.out.find("--input"), batch.out.find("--model")) << batch.out;
  EXPECT_LT(batch.out.find("--output"), batch.out.find("--window")) << batch.out;
  for (const char* word : {"trec", "table", "--force", "--strict", "--run-tag"}) {
    EXPECT_NE(rank.out.find(word), std::string::npos) << word;
    EXPECT_NE(batch.out.find(word), std::string::npos) << word;
  }
}

TEST_F(Cli, WideModelWithBfloat16ProductsRunsAgainWithSleepingOpenMpThreads) {
  // A model as wide as the published ones (hidden size 1024) with bfloat16 products: libtorch's
  // pool takes the threads, which needs OpenMP's passive wait policy; the program runs itself
  // again with it set, once, and ranks exactly as a run started with it.
  nlohmann::json config = nlohmann::json::parse(slurp(model() / "config.json"));
  config["text_config"]["hidden_size"] = 1024;
  config["vision_config"]["out_hidden_size"] = 1024;
  config.erase("ziprerank");
  const fs::path wide = dir_ / "wide";
  {
    std::ofstream out(dir_ / "wide_config.json");
    out << config.dump(2);
  }
  CliResult r = run_cli("--log-level warn init --seed 6 --config " +
                        shell_quote((dir_ / "wide_config.json").string()) + " --out " +
                        shell_quote(wide.string()));
  ASSERT_EQ(r.code, 0) << r.err;
  const fs::path page = fs::path(ZIPRERANK_TEST_FIXTURES) / "train" / "pages" / "memo_0.png";
  const std::string args = "-v rank --model " + shell_quote(wide.string()) +
                           " --matmul bfloat16 --threads 2 -q 'quarterly revenue' -p " +
                           shell_quote(page.string()) + " -p " +
                           shell_quote((page.parent_path() / "memo_1.png").string());
  const auto count = [](const std::string& s, const std::string& what) {
    int n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  };
  const ScopedEnv no_policy("OMP_WAIT_POLICY", std::nullopt);
  const CliResult again = run_cli(args);
  CliResult passive;
  {
    const ScopedEnv passive_policy("OMP_WAIT_POLICY", "passive");
    passive = run_cli(args);
  }
  ASSERT_EQ(again.code, 0) << again.err;
  ASSERT_EQ(passive.code, 0) << passive.err;
  // In a libtorch built with MKL (the wheel's) its pool does every product: there is no second
  // pool to put to sleep, and an OpenBLAS that OpenCV loads does nothing.
  if (openblas_threads() == 0) {
    EXPECT_EQ(count(again.err, "running again"), 0) << again.err;
    EXPECT_EQ(again.out, passive.out);
    GTEST_SKIP() << "OpenBLAS does not multiply in this build";
  }
  EXPECT_EQ(count(again.err, "running again with OMP_WAIT_POLICY=PASSIVE"), 1) << again.err;
  EXPECT_EQ(count(passive.err, "running again"), 0) << passive.err;
  EXPECT_NE(again.err.find("libtorch intra-op 2 for the bfloat16 products"), std::string::npos)
      << again.err;
  EXPECT_EQ(again.out, passive.out);
  // The embedded-size model keeps libtorch's one thread and does not run again.
  r = run_cli("-v rank --model " + shell_quote(model().string()) +
              " --matmul bfloat16 --threads 2 -q 'quarterly revenue' -p " +
              shell_quote(page.string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count(r.err, "running again"), 0) << r.err;
}
