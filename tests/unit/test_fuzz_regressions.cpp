// Inputs the libFuzzer targets (fuzz/) found crashing, run through the same parsers in the normal
// build: each must end in a clean InputError or be accepted, never crash or throw anything else.
//
// Every file under fuzz/crashes/<target>/ is replayed by the test of that target (the folder name
// is the fuzz target's, e.g. fuzz/crashes/qrels/ for fuzz_qrels). Inputs whose crash is in code
// not yet fixed live in fuzz/crashes/<target>/open/ and are listed, not run (see fuzz/README.md).
// The named tests below pin each fixed bug with a small, readable input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/json_util.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/config.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/image.hpp"
#include "ziprerank/metrics.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/run_io.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;
using ziprerank::InputError;

// The crash inputs in the source tree (tests/fixtures is in it, an absolute path from the build).
fs::path crashes_dir() {
  return fs::path(ZIPRERANK_TEST_FIXTURES).parent_path().parent_path() / "fuzz" / "crashes";
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A file in the temp folder for the parsers that only take a path; removed on destruction.
class TempFile {
 public:
  TempFile(const std::string& bytes, const std::string& suffix) {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("ziprerank_fuzz_regression_" + std::to_string(::getpid()) +
                                         "_" + std::to_string(counter++) + suffix);
    std::ofstream(path_, std::ios::binary) << bytes;
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

// --- what each fuzz target does with an input, minus its libFuzzer harness ----------------------

void eval_report(const ziprerank::Run& run, const ziprerank::Qrels& qrels) {
  ziprerank::EvalOptions options;
  options.metrics.cutoffs = {1, 3, 10};
  ziprerank::EvalReport report;
  try {
    report = ziprerank::evaluate(run, qrels, options);
  } catch (const InputError&) {  // e.g. nothing judged relevant: a user error, not a crash
    return;
  }
  ziprerank::format_eval_table(report);
  ziprerank::format_eval_json(report);
}

void replay_safetensors(const std::string& bytes) {
  ziprerank::parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                      "fuzz");
}

void replay_config(const std::string& text) {
  try {
    const auto c = ziprerank::parse_model_config(text, "fuzz");
    ziprerank::parse_model_config(ziprerank::model_config_to_json(c), "fuzz-roundtrip");
  } catch (const InputError&) {
  }
  ziprerank::parse_preprocessor_config(text, "fuzz");
}

void replay_preprocessor_config(const std::string& text) {
  const auto c = ziprerank::parse_preprocessor_config(text, "fuzz");
  ziprerank::parse_preprocessor_config(ziprerank::preprocessor_config_to_json(c), "fuzz-roundtrip");
}

void replay_tokenizer(const std::string& text) {
  const auto tok = ziprerank::parse_bpe_tokenizer(text, "fuzz");
  for (const std::string& s : {std::string("Hello world! caf\xC3\xA9 12345 \xFF\xFE"), text}) {
    tok->decode(tok->encode(s));
  }
}

void replay_batch_record(const std::string& line) {
  ziprerank::parse_batch_query(line, "/data", "queries.jsonl:1");
}

void replay_run(const std::string& text) {
  const ziprerank::Run run = ziprerank::parse_run(text, "run");
  ziprerank::Qrels qrels;
  for (const auto& q : run.queries) {
    ziprerank::QrelsEntry e;
    e.query_id = q.query_id;
    if (!q.ids.empty()) e.relevant.push_back(q.ids.front());
    qrels.queries.push_back(e);
  }
  eval_report(run, qrels);
}

void replay_qrels(const std::string& text) {
  const ziprerank::Qrels qrels = ziprerank::parse_qrels(text, "qrels");
  ziprerank::Run run;
  for (const auto& q : qrels.queries) {
    ziprerank::RunEntry e;
    e.query_id = q.query_id;
    std::set<std::string> seen;
    for (const auto& id : q.relevant) {
      if (seen.insert(id).second) e.ids.push_back(id);
    }
    e.scores.assign(e.ids.size(), 0.0);
    run.queries.push_back(e);
  }
  eval_report(run, qrels);
}

void replay_image(const std::string& bytes) {
  try {
    ziprerank::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "fuzz");
  } catch (const InputError&) {
  }
  const TempFile file(bytes, ".img");
  ziprerank::load_image(file.path());
}

void replay_pdf(const std::string& bytes) {
  const TempFile file(bytes, ".pdf");
  const int pages = ziprerank::pdf_page_count(file.path());
  for (int page : {1, pages}) ziprerank::render_pdf_page(file.path(), page, 96);
}

void replay_sentencepiece(const std::string& bytes) {
  const TempFile file(bytes, ".model");
  const auto tok = ziprerank::load_sentencepiece_tokenizer(file.path());
  tok->decode(tok->encode("Hello world"));
}

// Runs `replay` on every input of fuzz/crashes/<target>/ (not its open/ folder).
void replay_all(const std::string& target, const std::function<void(const std::string&)>& replay) {
  const fs::path dir = crashes_dir() / target;
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no crash inputs for " << target;
  std::vector<fs::path> inputs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) inputs.push_back(e.path());
  }
  std::sort(inputs.begin(), inputs.end());
  for (const fs::path& p : inputs) {
    SCOPED_TRACE(p.string());
    try {
      replay(read_bytes(p));
    } catch (const InputError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not an InputError: " << e.what();
    }
  }
  if (fs::is_directory(dir / "open")) {
    for (const auto& e : fs::directory_iterator(dir / "open")) {
      std::cout << "[ open     ] " << e.path().string()
                << " (crashes in code this suite does not own; not run)\n";
    }
  }
}

}  // namespace

// --- every recorded crash input ------------------------------------------------------------------

TEST(FuzzRegressions, SafetensorsInputs) { replay_all("safetensors", replay_safetensors); }
TEST(FuzzRegressions, ConfigInputs) { replay_all("config", replay_config); }
TEST(FuzzRegressions, PreprocessorConfigInputs) {
  replay_all("preprocessor_config", replay_preprocessor_config);
}
TEST(FuzzRegressions, TokenizerInputs) { replay_all("tokenizer", replay_tokenizer); }
TEST(FuzzRegressions, BatchRecordInputs) { replay_all("batch_record", replay_batch_record); }
TEST(FuzzRegressions, RunInputs) { replay_all("run", replay_run); }
TEST(FuzzRegressions, QrelsInputs) { replay_all("qrels", replay_qrels); }
TEST(FuzzRegressions, ImageInputs) { replay_all("image", replay_image); }
TEST(FuzzRegressions, PdfInputs) { replay_all("pdf", replay_pdf); }
TEST(FuzzRegressions, SentencePieceInputs) {
  std::string why;
  if (!ziprerank::sentencepiece_available(&why)) GTEST_SKIP() << why;
  replay_all("sentencepiece", replay_sentencepiece);
}

// --- the bugs behind them, one small input each
// ---------------------------------------------------

// fuzz_preprocessor_config: a number too large for the integer key was converted with
// static_cast (undefined behaviour, any value); now it is refused by name.
TEST(FuzzRegressions, PreprocessorIntegerKeyOutOfRangeIsInputError) {
  for (const char* text : {R"({"max_pixels": 1e300})", R"({"min_pixels": 31922337203685477580736})",
                           R"({"merge_size": 4294967298})", R"({"patch_size": -1e10})"}) {
    SCOPED_TRACE(text);
    try {
      ziprerank::parse_preprocessor_config(text, "preprocessor_config.json");
      ADD_FAILURE() << "accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    }
  }
}

// Before the fix, 4294967312 (2^32 + 16) silently became patch_size 16.
TEST(FuzzRegressions, IntegerKeysNeverWrapAround) {
  EXPECT_THROW(ziprerank::parse_preprocessor_config(R"({"patch_size": 4294967312})", "p"),
               InputError);
  EXPECT_THROW(ziprerank::parse_preprocessor_config(R"({"patch_size": 16.5})", "p"), InputError);
  // An integral value written as a float still reads.
  EXPECT_EQ(ziprerank::parse_preprocessor_config(R"({"patch_size": 16.0})", "p").patch_size, 16);
}

// 1e999 parses as infinity, which dump() writes as null: refused instead of read.
TEST(FuzzRegressions, NonFiniteNumbersAreInputErrors) {
  EXPECT_THROW(ziprerank::parse_preprocessor_config(R"({"rescale_factor": 1e999})", "p"),
               InputError);
  EXPECT_THROW(ziprerank::parse_preprocessor_config(R"({"image_mean": [0.5, -1e999, 0.5]})", "p"),
               InputError);
}

// config.json: sums and products in validate() overflowed int (undefined behaviour).
TEST(FuzzRegressions, ConfigValidationDoesNotOverflow) {
  const std::string fixture = ziprerank::detail::read_text_file(
      std::string(ZIPRERANK_TEST_FIXTURES) + "/config/qwen3_vl_8b_config.json");
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto j = nlohmann::json::parse(fixture);
    edit(j);
    return j.dump();
  };
  for (const std::string& text : {
           with([](nlohmann::json& j) {
             j["text_config"]["rope_scaling"]["mrope_section"] = {2147483647, 2147483647, 2};
           }),
           with([](nlohmann::json& j) {
             j["text_config"]["rope_scaling"]["mrope_section"] = {2147483647, 1, -2147483584};
           }),
           with([](nlohmann::json& j) {
             j["vision_config"]["num_position_embeddings"] = 2147483647;
           }),
           with(
               [](nlohmann::json& j) { j["vision_config"]["deepstack_visual_indexes"] = {1e300}; }),
       }) {
    EXPECT_THROW(ziprerank::parse_model_config(text, "config.json"), InputError);
  }
}

// tokenizer.json: one id near 2^31 made the loader allocate tables for 2 billion ids (64 GB).
TEST(FuzzRegressions, TokenizerHugeIdIsInputError) {
  const std::string pre = R"("pre_tokenizer": {"type": "Sequence", "pretokenizers": []})";
  for (const std::string& text : {
           R"({"model": {"vocab": {"a": 2000000000}, "merges": []}, )" + pre + "}",
           R"({"model": {"vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 2000000000,
               "content": "x"}], )" +
               pre + "}",
       }) {
    try {
      ziprerank::parse_bpe_tokenizer(text, "tokenizer.json");
      ADD_FAILURE() << "accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("far beyond"), std::string::npos) << e.what();
    }
  }
}

// TREC qrels/run ids are bytes: invalid UTF-8 made format_eval_json throw json::type_error.
TEST(FuzzRegressions, EvalJsonReportTakesInvalidUtf8Ids) {
  // q\xE9 is missing from the run, so the report's warnings name it.
  const auto qrels = ziprerank::parse_qrels("q1 0 d 1\nq\xE9 0 d\xFF 1\n", "qrels.trec");
  const auto run = ziprerank::parse_run("q1 Q0 d 1 1.0 tag\n", "run.trec");
  const auto report = ziprerank::evaluate(run, qrels, ziprerank::EvalOptions{});
  std::string json;
  ASSERT_NO_THROW(json = ziprerank::format_eval_json(report));
  EXPECT_NE(json.find("\xEF\xBF\xBD"), std::string::npos) << json;  // U+FFFD
}

// tokenizer.model: SentencePiece throws (darts_clone "zero-length key") for a model with an empty
// piece; the exception crossed the shim's C interface and surfaced as an internal error.
TEST(FuzzRegressions, SentencePieceEmptyPieceIsInputError) {
  std::string why;
  if (!ziprerank::sentencepiece_available(&why)) GTEST_SKIP() << why;
  const fs::path model = crashes_dir() / "sentencepiece" / "empty_piece_darts_exception.model";
  const TempFile file(read_bytes(model), ".model");
  try {
    ziprerank::load_sentencepiece_tokenizer(file.path());
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("malformed model"), std::string::npos) << e.what();
  }
}
