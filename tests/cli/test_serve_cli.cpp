// End-to-end: `ziprerank serve` started as a user would, on a free loopback port with the tiny
// model, driven by a real HTTP client.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "cli_runner.hpp"
#include "pages_fixture.hpp"

using namespace ziprerank::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Server {
  pid_t pid = -1;
  int port = 0;
  fs::path log;
  std::string err() const { return slurp(log); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
};

// Waits up to `seconds` for the child to end; its exit code, or -1 (still running or killed).
int wait_exit(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

std::string base64(const std::string& bytes) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v =
        (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint8_t(bytes[i]) << 16;
    out += {a[v >> 18], a[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], '='};
  }
  return out;
}

// One value of a /metrics text, 0 if the line is absent.
double metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, name.size() + 1, name + " ") == 0)
      return std::stod(line.substr(name.size()));
  }
  return 0;
}

class ServeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("zr_serve_" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "root");
    const CliResult r =
        run_cli("--log-level warn init --seed 5 --out " + shell_quote((dir_ / "tiny").string()));
    ASSERT_EQ(r.code, 0) << r.err;
    write_pages(dir_ / "root" / "pages", 8);
    write_pdf(dir_ / "root" / "doc.pdf", {"Annual report 2021", "Net revenue by year", "Safety"});
    write_pages(dir_ / "outside", 1);
    fs::create_symlink(dir_ / "outside" / "page01.png", dir_ / "root" / "escape.png");
    // Products in float32 as the rank it is compared with (auto could choose apart in two
    // processes measuring at once).
    main_ = start("--matmul float32 --max-candidates 100 --max-body-bytes 400000");
  }
  static void TearDownTestSuite() {
    if (main_.pid > 0) {
      ::kill(main_.pid, SIGKILL);
      wait_exit(main_.pid, 10);
    }
    fs::remove_all(dir_);
  }

  // Starts `serve` on a free port with the tiny model and waits until /health answers 200.
  static Server start(const std::string& args) {
    static int counter = 0;
    Server s;
    s.log = dir_ / ("serve" + std::to_string(counter++) + ".log");
    // TMPDIR inside the suite's folder: a server killed here leaves its data-URI files there.
    const std::string cmd = "TMPDIR=" + shell_quote(dir_.string()) + " exec " +
                            shell_quote(ZIPRERANK_BINARY) + " serve --model " +
                            shell_quote((dir_ / "tiny").string()) + " --pages-root " +
                            shell_quote((dir_ / "root").string()) + " --port 0 --threads 1 " +
                            args + " 2> " + shell_quote(s.log.string());
    s.pid = ::fork();
    if (s.pid == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const std::regex listening(R"(listening on http://127\.0\.0\.1:(\d+))");
    for (int i = 0; i < 1500 && s.port == 0; ++i) {
      std::smatch m;
      const std::string err = s.err();
      if (std::regex_search(err, m, listening))
        s.port = std::stoi(m[1]);
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_NE(s.port, 0) << s.err();
    for (int i = 0; i < 1500 && s.port; ++i) {
      auto c = s.client();
      if (auto res = c.Get("/health"); res && res->status == 200) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "the server did not become ready: " << s.err();
    return s;
  }

  static std::string page(int i) {
    char name[32];
    std::snprintf(name, sizeof(name), "pages/page%02d.png", i);
    return name;
  }
  // A request for `n` documents cycling over the 8 pages (slow enough to watch at n ~ 60).
  static json request(const std::string& query, int n) {
    json docs = json::array();
    for (int i = 0; i < n; ++i) docs.push_back(page(i % 8 + 1));
    return {{"query", query}, {"documents", docs}};
  }
  static httplib::Result post(const Server& s, const std::string& body) {
    return s.client().Post("/v1/rerank", body, "application/json");
  }
  // Polls /metrics until `name` reaches `value` (10 s at most).
  static bool wait_metric(const Server& s, const std::string& name, double value) {
    for (int i = 0; i < 1000; ++i) {
      if (auto m = s.client().Get("/metrics"); m && metric(m->body, name) >= value) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  static void expect_error(const httplib::Result& res, int status, const std::string& message) {
    ASSERT_TRUE(res) << "no answer";
    EXPECT_EQ(res->status, status) << res->body;
    const json body = json::parse(res->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << res->body;
    EXPECT_EQ(body["error"]["status"], status) << res->body;
    EXPECT_NE(body["error"]["message"].get<std::string>().find(message), std::string::npos)
        << res->body;
  }

  static fs::path dir_;
  static Server main_;
};
fs::path ServeCli::dir_;
Server ServeCli::main_;

}  // namespace

TEST_F(ServeCli, ScoresAndOrderEqualRank) {
  // Images by path and by data URI, and PDF pages, against rank on the same files.
  const std::string png = slurp(dir_ / "root" / page(3));
  json docs = {page(1), page(2), {{"image", "data:image/png;base64," + base64(png)}}, page(4)};
  for (int p = 1; p <= 3; ++p) docs.push_back({{"pdf", "doc.pdf"}, {"page", p}});
  const auto res = post(main_, json{{"query", "net revenue by year"}, {"documents", docs}}.dump());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json answer = json::parse(res->body);

  std::string pages;
  for (int i = 1; i <= 4; ++i) pages += " " + shell_quote((dir_ / "root" / page(i)).string());
  const CliResult rank =
      run_cli("--log-level warn rank --threads 1 --matmul float32 --model " +
              shell_quote((dir_ / "tiny").string()) + " --query 'net revenue by year' --pages" +
              pages + " " + shell_quote((dir_ / "root" / "doc.pdf").string()));
  ASSERT_EQ(rank.code, 0) << rank.err;
  const auto lines = read_jsonl(rank.out);
  // rank's candidates in order: the four images, then the PDF's pages.
  const std::vector<std::string> ids = {"page01.png", "page02.png", "page03.png", "page04.png",
                                        "doc.pdf#1",  "doc.pdf#2",  "doc.pdf#3"};
  ASSERT_EQ(lines.size(), ids.size());
  ASSERT_EQ(answer["results"].size(), ids.size());
  for (size_t k = 0; k < lines.size(); ++k) {
    const json& r = answer["results"][k];
    EXPECT_EQ(ids[r["index"].get<size_t>()], lines[k]["id"].get<std::string>()) << k;
    EXPECT_EQ(r["relevance_score"].get<double>(), lines[k]["score"].get<double>()) << k;
    EXPECT_EQ(r["relevance"].get<double>(), lines[k]["relevance"].get<double>()) << k;
  }
  EXPECT_EQ(answer["usage"]["documents"], 7);
  EXPECT_GT(answer["usage"]["input_tokens"].get<int>(), 0);
  EXPECT_GE(answer["timing_ms"]["total"].get<double>(), answer["timing_ms"]["llm"].get<double>());

  // top_n and return_documents; the same pages again come from the vision cache.
  const auto again = post(main_, json{{"query", "net revenue by year"},
                                      {"documents", docs},
                                      {"top_n", 2},
                                      {"return_documents", true}}
                                     .dump());
  ASSERT_TRUE(again);
  ASSERT_EQ(again->status, 200) << again->body;
  const json top = json::parse(again->body);
  ASSERT_EQ(top["results"].size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(top["results"][k]["index"], answer["results"][k]["index"]);
    EXPECT_EQ(top["results"][k]["relevance_score"], answer["results"][k]["relevance_score"]);
    EXPECT_EQ(top["results"][k]["document"], docs[top["results"][k]["index"].get<size_t>()]);
  }
  EXPECT_EQ(top["usage"]["vision_cache_hits"], 7) << top["usage"];
  EXPECT_EQ(top["usage"]["pages_encoded"], 0) << top["usage"];
}

TEST_F(ServeCli, EightConcurrentRequestsAreAllAnsweredAsAlone) {
  std::vector<std::string> bodies;
  for (int i = 0; i < 8; ++i) {
    json r = request("which page shows figure " + std::to_string(i), 3 + i % 4);
    r["documents"].push_back(json{{"pdf", "doc.pdf"}, {"page", i % 3 + 1}});
    bodies.push_back(r.dump());
  }
  std::vector<json> alone;
  for (const std::string& b : bodies) {
    const auto res = post(main_, b);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    alone.push_back(json::parse(res->body)["results"]);
  }
  std::vector<std::future<httplib::Result>> pending;
  for (const std::string& b : bodies)
    pending.push_back(std::async(std::launch::async, [&b] { return post(main_, b); }));
  for (size_t i = 0; i < pending.size(); ++i) {
    const auto res = pending[i].get();
    ASSERT_TRUE(res) << i;
    ASSERT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(json::parse(res->body)["results"], alone[i]) << i;
  }
}

TEST_F(ServeCli, RefusesBadRequestsWithStatusAndMessage) {
  expect_error(post(main_, "{\"query\": "), 400, "not valid JSON");
  expect_error(post(main_, R"({"documents": ["pages/page01.png"]})"), 400, "missing field 'query'");
  expect_error(post(main_, R"({"query": "q", "documents": [{"pdf": "doc.pdf"}]})"), 400,
               "without \"page\"");
  expect_error(post(main_, R"({"query": "q", "documents": ["pages/nope.png"]})"), 400,
               "does not exist");
  expect_error(post(main_, R"({"query": "q", "documents": [{"pdf": "doc.pdf", "page": 9}]})"), 400,
               "page 9 does not exist");
  expect_error(
      post(main_, json{{"query", "q"}, {"documents", {"data:image/png;base64,Zm9vYmFy"}}}.dump()),
      400, "documents[0] (data URI)");
  expect_error(post(main_, R"({"query": "q", "documents": ["../outside/page01.png"]})"), 403,
               "outside the pages root");
  expect_error(post(main_, R"({"query": "q", "documents": ["escape.png"]})"), 403,
               "outside the pages root");
  expect_error(
      post(main_,
           json{{"query", "q"}, {"documents", {(dir_ / "tiny" / "config.json").string()}}}.dump()),
      403, "outside the pages root");
  expect_error(post(main_, request("q", 101).dump()), 413, "--max-candidates of 100");
  const std::string big =
      json{{"query", std::string(500000, 'x')}, {"documents", {page(1)}}}.dump();
  expect_error(post(main_, big), 413, "--max-body-bytes of 400000");
  expect_error(main_.client().Get("/v2/rerank"), 404, "no such endpoint: GET /v2/rerank");
  expect_error(main_.client().Get("/v1/rerank"), 404, "POST /v1/rerank");
  // The server is still fine.
  const auto ok = post(main_, request("q", 2).dump());
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST_F(ServeCli, HealthAndPrometheusMetrics) {
  const auto health = main_.client().Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
  ASSERT_TRUE(post(main_, request("metrics", 3).dump()));
  ASSERT_TRUE(post(main_, "not json"));
  const auto m = main_.client().Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_NE(m->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  // Every line a comment or `name{labels} number`; every sample's family declared by TYPE.
  const std::regex sample(R"(([a-z_]+)(\{[a-z]+="[^"]*"\})? (-?[0-9.e+]+|\+Inf))");
  std::set<std::string> typed;
  std::map<std::string, double> values;
  std::istringstream in(m->body);
  std::vector<double> buckets;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      typed.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) continue;
    std::smatch s;
    ASSERT_TRUE(std::regex_match(line, s, sample)) << line;
    std::string family = s[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!typed.count(family) && family.size() > std::strlen(suffix) &&
          family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        family.resize(family.size() - std::strlen(suffix));
    }
    EXPECT_TRUE(typed.count(family)) << line;
    values[std::string(s[1]) + std::string(s[2])] = std::stod(s[3]);
    if (s[1] == "ziprerank_request_duration_seconds_bucket") buckets.push_back(std::stod(s[3]));
  }
  EXPECT_GE(values["ziprerank_requests_total{endpoint=\"rerank\"}"], 2);
  EXPECT_GE(values["ziprerank_responses_total{status=\"200\"}"], 1);
  EXPECT_GE(values["ziprerank_errors_total{status=\"400\"}"], 1);
  EXPECT_EQ(values["ziprerank_model_ready"], 1);
  EXPECT_EQ(values["ziprerank_queue_depth"], 0);
  EXPECT_GE(values["ziprerank_pages_encoded_total"], 3);
  EXPECT_TRUE(values.count("ziprerank_vision_cache_hits_total"));
  ASSERT_FALSE(buckets.empty());
  for (size_t i = 1; i < buckets.size(); ++i) EXPECT_LE(buckets[i - 1], buckets[i]);
  EXPECT_EQ(buckets.back(), values["ziprerank_request_duration_seconds_count"]);
  EXPECT_GE(values["ziprerank_request_duration_seconds_count"], 2);
}

TEST_F(ServeCli, AFullQueueAnswers503AtOnce) {
  Server s = start("--max-queue 1 --vision-cache-mb 0");
  auto first = std::async(std::launch::async, [&] { return post(s, request("slow", 60).dump()); });
  ASSERT_TRUE(wait_metric(s, "ziprerank_requests_in_flight", 1)) << s.err();
  auto second = std::async(std::launch::async, [&] { return post(s, request("next", 2).dump()); });
  ASSERT_TRUE(wait_metric(s, "ziprerank_queue_depth", 1)) << s.err();
  const auto t0 = std::chrono::steady_clock::now();
  const auto third = post(s, request("third", 2).dump());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5);
  expect_error(third, 503, "busy");
  EXPECT_EQ(third->get_header_value("Retry-After"), "1");
  for (auto* f : {&first, &second}) {
    const auto res = f->get();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
  }
  ::kill(s.pid, SIGKILL);
  wait_exit(s.pid, 10);
  // --max-queue 0: one request at a time, answered when the worker is free.
  Server one = start("--max-queue 0");
  const auto alone = post(one, request("alone", 1).dump());
  ASSERT_TRUE(alone);
  EXPECT_EQ(alone->status, 200) << alone->body;
  ::kill(one.pid, SIGKILL);
  wait_exit(one.pid, 10);
}

TEST_F(ServeCli, ARequestOverTheTimeoutIsStoppedWith504) {
  // Nothing waits before it, so only the stop between windows can answer 504 (unstopped, the
  // ~100 windows of 4 pages would end in 200 seconds later).
  Server s = start("--timeout 0.3 --vision-cache-mb 0 --window 4 --stride 2");
  expect_error(post(s, request("slow", 200).dump()), 504, "--timeout of 0.3 s");
  const auto health = s.client().Get("/health");  // and the server goes on
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  ::kill(s.pid, SIGKILL);
  wait_exit(s.pid, 10);
}

TEST_F(ServeCli, SigtermFinishesTheRequestInFlightAndExitsZero) {
  Server s = start("--vision-cache-mb 0");
  const std::string body = request("slow", 40).dump();
  auto slow = std::async(std::launch::async, [&] { return post(s, body); });
  ASSERT_TRUE(wait_metric(s, "ziprerank_requests_in_flight", 1)) << s.err();
  ASSERT_EQ(::kill(s.pid, SIGTERM), 0);
  const auto res = slow.get();
  ASSERT_TRUE(res) << s.err();
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["results"].size(), 40u);
  EXPECT_EQ(wait_exit(s.pid, 20), 0) << s.err();
  EXPECT_NE(s.err().find("server stopped"), std::string::npos) << s.err();
  // Nothing listens any more.
  EXPECT_FALSE(s.client().Get("/health"));
}

TEST_F(ServeCli, AnAddressInUseAndAMissingModelAreRefusedBeforeServing) {
  const CliResult taken = run_cli_limited("serve --model " + shell_quote((dir_ / "tiny").string()) +
                                          " --port " + std::to_string(main_.port));
  EXPECT_EQ(taken.code, 3) << taken.err;
  EXPECT_NE(taken.err.find("cannot listen on 127.0.0.1:" + std::to_string(main_.port)),
            std::string::npos)
      << taken.err;
  const CliResult missing =
      run_cli_limited("serve --port 0 --model " + shell_quote((dir_ / "nope").string()));
  EXPECT_EQ(missing.code, 3) << missing.err;
  EXPECT_EQ(missing.err.find("listening"), std::string::npos) << missing.err;
}
