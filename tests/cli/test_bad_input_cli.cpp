// End-to-end: input a user got wrong (bytes that are not UTF-8, FIFOs, symlink loops, a run file
// that is its own input, page numbers past 32 bits, NaN weights, repeated ids) gives one clear
// error with the documented exit code or error record, never a hang or an "internal error".
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "pages_fixture.hpp"

using namespace ziprerank::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Overwrites the first element of a float32 tensor in a model folder's model.safetensors.
void poke_float(const fs::path& folder, const std::string& tensor, float value) {
  const fs::path file = folder / "model.safetensors";
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const json h = json::parse(header);
  ASSERT_EQ(h.at(tensor).at("dtype"), "F32");
  const uint64_t at = 8 + n + h.at(tensor).at("data_offsets")[0].get<uint64_t>();
  f.seekp(static_cast<std::streamoff>(at));
  f.write(reinterpret_cast<const char*>(&value), 4);
  ASSERT_TRUE(f.good());
}

class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("zr_bad_input_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const CliResult r =
        run_cli("--log-level warn init --seed 3 --out " + shell_quote(model().string()));
    ASSERT_EQ(r.code, 0) << r.err;
    write_pages(dir_ / "pages", 3);
    write_pdf(dir_ / "doc.pdf", {"First page", "Second page"});
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path model() { return dir_ / "tiny"; }
  static std::string model_flag() { return "--model " + shell_quote(model().string()); }
  static std::string q(const fs::path& p) { return shell_quote(p.string()); }
  // A batch input of these lines, written raw (so that a line may hold any byte).
  static fs::path write_input(const std::string& name, const std::vector<std::string>& lines) {
    const fs::path p = dir_ / name;
    std::ofstream f(p, std::ios::binary);
    for (const auto& l : lines) f << l << "\n";
    return p;
  }
  static std::string batch(const fs::path& in, const fs::path& out, const std::string& extra = "") {
    return "--log-level warn batch " + model_flag() + " -i " + q(in) + " -o " + q(out) + extra;
  }
  static fs::path dir_;
};
fs::path BadInput::dir_;

const std::string kPage1 = R"({"id": "p1", "image": "pages/page01.png"})";
const std::string kPage2 = R"({"id": "p2", "image": "pages/page02.png"})";

std::string query_line(const std::string& id, const std::string& query,
                       const std::string& candidates) {
  return R"({"query_id": ")" + id + R"(", "query": ")" + query + R"(", "candidates": [)" +
         candidates + "]}";
}

}  // namespace

// Case 1: a stray byte in a batch query (or id) is that query's error record; the run goes on,
// and --resume gives the same file rather than ending with "internal error" and nothing written.
TEST_F(BadInput, BatchLineThatIsNotUtf8IsOneErrorRecord) {
  const fs::path in =
      write_input("utf8.jsonl", {query_line("a", "net \xff revenue", kPage1),
                                 query_line("b", "net revenue", kPage1 + ", " + kPage2),
                                 R"({"query_id": "c", "query": "x", "candidates": [{"id": "p)"
                                 "\xe9"
                                 R"(", "image": "pages/page01.png"}]})"});
  const fs::path out = dir_ / "utf8_run.jsonl";
  CliResult r = run_cli_limited(batch(in, out));
  EXPECT_EQ(r.code, 1) << r.err;  // some queries failed, none crashed the run
  EXPECT_FALSE(has(r.err, "internal error")) << r.err;
  const auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 3u) << slurp(out);
  EXPECT_EQ(lines[0]["query_id"], "a");
  EXPECT_TRUE(has(lines[0].value("error", ""), "'query' is not valid UTF-8 at byte 5 (0xFF)"))
      << lines[0].dump();
  EXPECT_EQ(lines[1]["query_id"], "b");
  EXPECT_TRUE(lines[1].contains("ranking")) << lines[1].dump();
  EXPECT_EQ(lines[2]["query_id"], "c");
  EXPECT_TRUE(has(lines[2].value("error", ""), "'candidates[0].id' is not valid UTF-8 at byte 2"))
      << lines[2].dump();

  r = run_cli_limited(batch(in, out, " --resume"));  // retries the two, fails them the same way
  EXPECT_EQ(r.code, 1) << r.err;
  const auto again = read_jsonl(slurp(out));
  ASSERT_EQ(again.size(), 3u);
  EXPECT_EQ(again[0], lines[0]);
  EXPECT_EQ(again[1]["query_id"], "b");
  EXPECT_EQ(again[2], lines[2]);
}

TEST_F(BadInput, RankQueryThatIsNotUtf8IsAnInputError) {
  const CliResult r = run_cli_limited("rank " + model_flag() + " -q " +
                                      shell_quote("caf\xe9 menu") + " -p " + q(dir_ / "pages"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "the query is not valid UTF-8 at byte 4 (0xE9)")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// A file name is any bytes: its id is written with U+FFFD rather than ending the run.
TEST_F(BadInput, PageFileNameThatIsNotUtf8StillGivesJsonLines) {
  const fs::path folder = dir_ / "latin1";
  fs::create_directories(folder);
  fs::copy_file(dir_ / "pages" / "page01.png", folder / "caf\xe9.png",
                fs::copy_options::overwrite_existing);
  const CliResult r =
      run_cli_limited("--log-level warn rank " + model_flag() + " -q menu -p " + q(folder));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["id"], "caf\xef\xbf\xbd.png");
}

// Case 2: a FIFO, a socket-like or device path, or a folder where a file belongs is refused by
// name; nothing waits for a writer.
TEST_F(BadInput, FifoAndFolderInputsAreRefusedNotWaitedFor) {
  const fs::path fifo_png = dir_ / "fifo.png";
  const fs::path fifo_pdf = dir_ / "fifo.pdf";
  const fs::path fifo_run = dir_ / "fifo_run.jsonl";
  for (const fs::path& p : {fifo_png, fifo_pdf, fifo_run}) {
    fs::remove(p);
    ASSERT_EQ(::mkfifo(p.c_str(), 0644), 0) << p;
  }
  CliResult r = run_cli_limited("rank " + model_flag() + " -q x -p " + q(fifo_png));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "fifo.png: is a FIFO (named pipe), not a regular file")) << r.err;
  r = run_cli_limited("rank " + model_flag() + " -q x -p " + q(fifo_pdf));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "fifo.pdf: is a FIFO (named pipe), not a regular file")) << r.err;
  r = run_cli_limited("rank " + model_flag() + " -q x -p /dev/zero");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "/dev/zero: is a device, not a regular file")) << r.err;

  fs::create_directories(dir_ / "somedir");
  const fs::path in = write_input(
      "fifo.jsonl", {query_line("img", "x", R"({"id": "a", "image": "fifo.png"})"),
                     query_line("pdf", "x", R"({"id": "a", "pdf": "fifo.pdf", "page": 1})"),
                     query_line("dir", "x", R"({"id": "a", "image": "somedir"})"),
                     query_line("ok", "x", kPage1)});
  const fs::path out = dir_ / "fifo_out.jsonl";
  fs::remove(out);
  r = run_cli_limited(batch(in, out));
  EXPECT_EQ(r.code, 1) << r.err;
  const auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 4u) << slurp(out);
  EXPECT_TRUE(has(lines[0].value("error", ""), "fifo.png: is a FIFO")) << lines[0].dump();
  EXPECT_TRUE(has(lines[1].value("error", ""), "fifo.pdf: is a FIFO")) << lines[1].dump();
  EXPECT_TRUE(has(lines[2].value("error", ""), "somedir: is a directory, not an image file"))
      << lines[2].dump();
  EXPECT_TRUE(lines[3].contains("ranking")) << lines[3].dump();

  // eval: a named FIFO is refused; an anonymous pipe (a shell's `cat run |`) is still read.
  const fs::path run = dir_ / "eval_run.jsonl", qrels = dir_ / "eval_qrels.jsonl";
  std::ofstream(run) << R"({"query_id": "q", "ranking": [{"id": "a", "score": 1}]})"
                     << "\n";
  std::ofstream(qrels) << R"({"query_id": "q", "relevant": ["a"]})"
                       << "\n";
  r = run_cli_limited("eval --run " + q(fifo_run) + " --qrels " + q(qrels));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "fifo_run.jsonl' is a FIFO (named pipe)")) << r.err;
  r = run_cli_limited("eval --run " + q(run) + " --qrels " + q(fifo_run));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "fifo_run.jsonl' is a FIFO (named pipe)")) << r.err;
  r = run_cli_limited("eval --run " + q(dir_ / "pages") + " --qrels " + q(qrels));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "is a directory, not a run file")) << r.err;
  r = run_cli_limited("eval --run /dev/stdin --qrels " + q(qrels), "cat " + q(run) + " |");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "micro")) << r.out;
}

// A symlink loop: an input error naming it (not "internal error"); inside a folder, the entry is
// skipped with a warning and the folder's other pages are ranked.
TEST_F(BadInput, SymlinkLoopIsAnInputErrorAndAFolderSkipsIt) {
  const fs::path folder = dir_ / "loops";
  fs::remove_all(folder);
  fs::create_directories(folder);
  fs::create_symlink(folder / "b.png", folder / "a.png");
  fs::create_symlink(folder / "a.png", folder / "b.png");
  fs::copy_file(dir_ / "pages" / "page02.png", folder / "good.png");
  CliResult r = run_cli_limited("rank " + model_flag() + " -q x -p " + q(folder / "a.png"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "a.png: is a loop of symbolic links")) << r.err;
  EXPECT_FALSE(has(r.err, "internal error")) << r.err;

  r = run_cli_limited("rank " + model_flag() + " -q x -p " + q(folder));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = read_jsonl(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0]["id"], "good.png");
  EXPECT_TRUE(has(r.err, "skipping " + (folder / "a.png").string() + ": is a loop")) << r.err;
}

// Case 3: -o naming the input (the same path, a symlink, a hard link) is a usage error before
// the model loads or anything is written.
TEST_F(BadInput, OutputThatIsTheInputIsRefusedBeforeWriting) {
  const fs::path in = write_input("self.jsonl", {query_line("a", "x", kPage1)});
  const std::string before = slurp(in);
  fs::remove(dir_ / "self_link.jsonl");
  fs::remove(dir_ / "self_hard.jsonl");
  fs::create_symlink(in, dir_ / "self_link.jsonl");
  fs::create_hard_link(in, dir_ / "self_hard.jsonl");
  for (const fs::path& out : {in, dir_ / "self_link.jsonl", dir_ / "self_hard.jsonl",
                              dir_ / "pages" / ".." / "self.jsonl"}) {
    for (const std::string extra : {"", " --resume --format trec"}) {
      // A model that does not exist: the refusal must come first.
      const CliResult r =
          run_cli_limited("batch --model /nonexistent/model -i " + q(in) + " -o " + q(out) + extra);
      EXPECT_EQ(r.code, 2) << out << extra << ": " << r.err;
      EXPECT_TRUE(has(r.err, "is the input file")) << r.err;
      EXPECT_EQ(slurp(in), before);
    }
  }
}

// Case 4: a PDF page number must be a whole number that fits; it is never wrapped to 32 bits.
TEST_F(BadInput, PdfPageNumberMustBeAWholeNumberThatFits) {
  const auto pdf = [](const std::string& page) {
    return R"({"id": "d", "pdf": "doc.pdf", "page": )" + page + "}";
  };
  const std::vector<std::string> bad = {
      "4294967297", "1099511627776",        "0",         "-1", "2.5", "\"2\"",
      "1e+300",     "18446744073709551615", "2147483648"};
  std::vector<std::string> lines;
  for (size_t i = 0; i < bad.size(); ++i)
    lines.push_back(query_line("bad" + std::to_string(i), "x", pdf(bad[i])));
  lines.push_back(query_line("two", "x", pdf("2")));
  lines.push_back(query_line("two-float", "x", pdf("2.0")));
  const fs::path out = dir_ / "pages_run.jsonl";
  fs::remove(out);
  const CliResult r = run_cli_limited(batch(write_input("pages.jsonl", lines), out));
  EXPECT_EQ(r.code, 1) << r.err;
  const auto got = read_jsonl(slurp(out));
  ASSERT_EQ(got.size(), bad.size() + 2) << slurp(out);
  for (size_t i = 0; i < bad.size(); ++i) {
    EXPECT_TRUE(has(got[i].value("error", ""),
                    "'page' must be a whole number from 1 to 2147483647 (got " + bad[i] + ")"))
        << got[i].dump();
  }
  EXPECT_TRUE(got[bad.size()].contains("ranking")) << got[bad.size()].dump();
  EXPECT_TRUE(got[bad.size() + 1].contains("ranking")) << got[bad.size() + 1].dump();
}

// Case 5: NaN/Inf weights: inspect names the tensors and fails; rank and batch refuse the
// non-finite scores instead of printing null scores with exit 0.
TEST_F(BadInput, NonFiniteWeightsAreNamedByInspectAndRefusedByRank) {
  const fs::path broken = dir_ / "nan_model";
  fs::remove_all(broken);
  fs::copy(model(), broken, fs::copy_options::recursive);
  poke_float(broken, "model.language_model.norm.weight", std::numeric_limits<float>::quiet_NaN());
  poke_float(broken, "model.visual.merger.norm.bias", std::numeric_limits<float>::infinity());
  const std::string flag = " --model " + q(broken);

  CliResult r = run_cli_limited("--log-level warn inspect" + flag);
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_TRUE(has(r.out, "verdict      INVALID")) << r.out;
  EXPECT_TRUE(has(r.out,
                  "tensor 'model.language_model.norm.weight' holds non-finite values (1 "
                  "NaN, 0 Inf of 64)"))
      << r.out;
  EXPECT_TRUE(has(r.out,
                  "tensor 'model.visual.merger.norm.bias' holds non-finite values (0 NaN, "
                  "1 Inf of 64)"))
      << r.out;
  r = run_cli_limited("--log-level warn inspect --format json" + flag);
  EXPECT_EQ(r.code, 3);
  const json report = json::parse(r.out.substr(0, r.out.rfind("peak RSS")));
  ASSERT_EQ(report["non_finite_tensors"].size(), 2u) << report.dump();
  EXPECT_FALSE(report["valid"].get<bool>());
  r = run_cli_limited("--log-level warn inspect" + std::string(" --model ") + q(model()));
  EXPECT_EQ(r.code, 0) << r.out;  // the untouched model is still fine
  EXPECT_TRUE(has(r.out, "every weight is finite")) << r.out;

  const std::string msg =
      "the model produced non-finite scores (NaN/Inf): check the weights with `ziprerank inspect`";
  for (const std::string scoring : {"logits", "similarity"}) {
    r = run_cli_limited("--log-level warn rank" + flag + " --scoring " + scoring + " -q x -p " +
                        q(dir_ / "pages"));
    EXPECT_EQ(r.code, 3) << scoring << ": " << r.out << r.err;
    EXPECT_TRUE(has(r.err, msg)) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // Several windows: the scores are ranks then, the logits still tell.
  r = run_cli_limited("--log-level warn rank" + flag + " --window 2 --stride 1 -q x -p " +
                      q(dir_ / "pages"));
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_TRUE(has(r.err, msg)) << r.err;

  const fs::path out = dir_ / "nan_run.jsonl";
  fs::remove(out);
  r = run_cli_limited("--log-level warn batch" + flag + " -i " +
                      q(write_input("nan.jsonl", {query_line("a", "x", kPage1)})) + " -o " +
                      q(out));
  EXPECT_EQ(r.code, 1) << r.err;
  const auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(has(lines[0].value("error", ""), msg)) << lines[0].dump();
}

// Case 6: one file given twice in a rank call is refused; files of one name in two folders are
// told apart by the shortest differing end of their paths, and each line carries its path. A
// repeated batch query_id is an error record of its own, the same after --resume.
TEST_F(BadInput, RepeatedPageIdsInRankAreAnInputError) {
  const fs::path other = dir_ / "other";
  fs::create_directories(other);
  fs::copy_file(dir_ / "pages" / "page03.png", other / "page01.png",
                fs::copy_options::overwrite_existing);
  CliResult r =
      run_cli_limited("rank " + model_flag() + " -q x -p " + q(dir_ / "pages") + " " + q(other));
  ASSERT_EQ(r.code, 0) << r.err;
  std::set<std::string> ids;
  std::map<std::string, std::string> paths;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    ids.insert(j["id"].get<std::string>());
    paths[j["id"].get<std::string>()] = j["path"].get<std::string>();
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_TRUE(ids.count("pages/page01.png") && ids.count("other/page01.png")) << r.out;
  EXPECT_TRUE(ids.count("page02.png")) << r.out;  // no clash: the file name alone
  EXPECT_EQ(fs::path(paths["other/page01.png"]), other / "page01.png");
  const fs::path page = dir_ / "pages" / "page02.png";
  r = run_cli_limited("rank " + model_flag() + " -q x -p " + q(page) + " " + q(page));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "page 'page02.png' is given twice")) << r.err;
  r = run_cli_limited("rank " + model_flag() + " -q x -p " + q(dir_ / "doc.pdf") + " " +
                      q(dir_ / "pages" / ".." / "doc.pdf"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(has(r.err, "page 'doc.pdf#1' is given twice")) << r.err;
}

TEST_F(BadInput, RepeatedQueryIdIsAnErrorRecordThatResumeKeeps) {
  const fs::path late = dir_ / "late.png";
  fs::remove(late);
  const fs::path in = write_input(
      "dup.jsonl",
      {query_line("a", "x", R"({"id": "l", "image": "late.png"})"),  // fails first
       query_line("b", "y", kPage1), query_line("a", "z", kPage2), query_line("c", "w", kPage1)});
  const fs::path out = dir_ / "dup_run.jsonl";
  fs::remove(out);
  CliResult r = run_cli_limited(batch(in, out));
  EXPECT_EQ(r.code, 1) << r.err;
  auto lines = read_jsonl(slurp(out));
  ASSERT_EQ(lines.size(), 4u) << slurp(out);
  EXPECT_TRUE(has(lines[0].value("error", ""), "late.png")) << lines[0].dump();
  EXPECT_TRUE(lines[1].contains("ranking"));
  EXPECT_EQ(lines[2]["query_id"], "a");
  EXPECT_TRUE(has(lines[2].value("error", ""), "duplicate query_id 'a' (first on line 1)"))
      << lines[2].dump();
  EXPECT_TRUE(lines[3].contains("ranking"));

  fs::copy_file(dir_ / "pages" / "page03.png", late);  // the first 'a' can run now
  for (int round = 0; round < 2; ++round) {
    r = run_cli_limited(batch(in, out, " --resume"));
    EXPECT_EQ(r.code, 1) << r.err;  // the repeated id still fails, on its own line
    lines = read_jsonl(slurp(out));
    ASSERT_EQ(lines.size(), 4u) << slurp(out);
    EXPECT_EQ(lines[0]["query_id"], "a");
    EXPECT_TRUE(lines[0].contains("ranking")) << lines[0].dump();
    EXPECT_EQ(lines[1]["query_id"], "b");
    EXPECT_EQ(lines[2]["query_id"], "a");
    EXPECT_TRUE(has(lines[2].value("error", ""), "duplicate query_id 'a'")) << lines[2].dump();
    EXPECT_EQ(lines[3]["query_id"], "c");
  }
}
