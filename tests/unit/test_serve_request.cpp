// The rerank server's request parsing and checks (no model), and its loading state over a real
// socket with a loader that waits.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "ziprerank/errors.hpp"
#include "ziprerank/serve.hpp"

using namespace ziprerank;
using namespace ziprerank::serve;
namespace fs = std::filesystem;

namespace {

// The status an HttpError carries, and its message, from running `fn`; {0, ""} if none.
template <typename F>
std::pair<int, std::string> refusal(F&& fn) {
  try {
    fn();
  } catch (const HttpError& e) {
    return {e.status(), e.what()};
  }
  return {0, ""};
}

std::pair<int, std::string> parse_refusal(const std::string& body, RequestLimits limits = {}) {
  return refusal([&] { parse_rerank_request(body, limits); });
}

}  // namespace

TEST(ServeBase64, DecodesRfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> cases = {{"", ""},
                                                                  {"Zg==", "f"},
                                                                  {"Zm8=", "fo"},
                                                                  {"Zm9v", "foo"},
                                                                  {"Zm9vYg==", "foob"},
                                                                  {"Zm9vYmE=", "fooba"},
                                                                  {"Zm9vYmFy", "foobar"},
                                                                  {"Zm9vYg", "foob"}};
  for (const auto& [in, out] : cases) {
    const auto got = base64_decode(in);
    EXPECT_EQ(std::string(got.begin(), got.end()), out) << in;
  }
  EXPECT_EQ(refusal([] { base64_decode("Zm9v!mFy"); }).first, 400);
  EXPECT_EQ(refusal([] { base64_decode("Zg="); }).first, 400);   // padding, length not x4
  EXPECT_EQ(refusal([] { base64_decode("Z"); }).first, 400);     // a lone sextet
  EXPECT_EQ(refusal([] { base64_decode("Zh=="); }).first, 400);  // bits after the byte
  EXPECT_EQ(refusal([] { base64_decode("Zm9v\nYmFy"); }).first, 400);
}

TEST(ServeDataUri, ReadsTypeAndBytes) {
  std::string type;
  const auto bytes = decode_data_uri("data:image/PNG;base64,Zm9v", &type);
  EXPECT_EQ(type, "image/png");
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "foo");
  EXPECT_EQ(refusal([] { decode_data_uri("data:image/png,Zm9v"); }).first, 400);  // not base64
  EXPECT_EQ(refusal([] { decode_data_uri("data:image/png;base64"); }).first, 400);
  EXPECT_EQ(refusal([] { decode_data_uri("http://x/y.png"); }).first, 400);
}

TEST(ServeRequest, ParsesTheRerankShape) {
  const RerankRequest r = parse_rerank_request(
      R"({"query": "net revenue", "documents": ["a.png", {"image": "b/c.png"},
          {"pdf": "d.pdf", "page": 3}, "data:image/png;base64,Zm9v",
          {"pdf": "data:application/pdf;base64,Zm9v", "page": 1}],
          "top_n": 2, "return_documents": true, "model": "ignored"})",
      {});
  EXPECT_EQ(r.query, "net revenue");
  ASSERT_EQ(r.documents.size(), 5u);
  EXPECT_EQ(r.documents[0].path, "a.png");
  EXPECT_FALSE(r.documents[0].pdf);
  EXPECT_EQ(r.documents[1].path, "b/c.png");
  EXPECT_TRUE(r.documents[2].pdf);
  EXPECT_EQ(r.documents[2].page, 3);
  EXPECT_EQ(r.documents[2].path, "d.pdf");
  EXPECT_TRUE(r.documents[3].path.empty());
  EXPECT_EQ(r.documents[3].data.size(), 3u);
  EXPECT_TRUE(r.documents[4].pdf);
  EXPECT_EQ(r.documents[4].data.size(), 3u);
  EXPECT_EQ(r.top_n, 2);
  EXPECT_TRUE(r.return_documents);
  EXPECT_EQ(r.raw_documents.size(), 5u);
  const RerankRequest plain = parse_rerank_request(R"({"query": "q", "documents": ["a.png"]})", {});
  EXPECT_EQ(plain.top_n, 0);
  EXPECT_FALSE(plain.return_documents);
}

TEST(ServeRequest, RefusesBadFieldsWith400NamingThem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"query\": ", "not valid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"documents": ["a.png"]})", "missing field 'query'"},
      {R"({"query": 5, "documents": ["a.png"]})", "'query' is an integer"},
      {R"({"query": "  ", "documents": ["a.png"]})", "'query' is empty"},
      {R"({"query": "q"})", "missing field 'documents'"},
      {R"({"query": "q", "documents": "a.png"})", "'documents' is a string"},
      {R"({"query": "q", "documents": []})", "'documents' is empty"},
      {R"({"query": "q", "documents": [3]})", "documents[0] is an integer"},
      {R"({"query": "q", "documents": ["a.png", {"text": "x"}]})", "documents[1] has an unknown"},
      {R"({"query": "q", "documents": [{"pdf": "d.pdf"}]})", "without \"page\""},
      {R"({"query": "q", "documents": [{"pdf": "d.pdf", "page": 0}]})", "documents[0].page"},
      {R"({"query": "q", "documents": [{"image": "a.png", "page": 2}]})", "no \"pdf\""},
      {R"({"query": "q", "documents": [{"image": "a", "pdf": "b", "page": 1}]})", "exactly one"},
      {R"({"query": "q", "documents": ["data:image/png;base64,@@@@"]})", "documents[0]"},
      {R"({"query": "q", "documents": ["data:text/plain;base64,Zm9v"]})", "type 'text/plain'"},
      {R"({"query": "q", "documents": ["data:application/pdf;base64,Zm9v"]})", "is a PDF"},
      {R"({"query": "q", "documents": ["a.png"], "top_n": 0})", "'top_n'"},
      {R"({"query": "q", "documents": ["a.png"], "top_n": 1.5})", "'top_n'"},
      {R"({"query": "q", "documents": ["a.png"], "return_documents": "yes"})",
       "'return_documents'"},
      {R"({"query": "q", "documents": ["a.png"], "topn": 3})", "unknown field 'topn'"},
  };
  for (const auto& [body, message] : cases) {
    const auto [status, what] = parse_refusal(body);
    EXPECT_EQ(status, 400) << body;
    EXPECT_NE(what.find(message), std::string::npos) << body << " -> " << what;
  }
}

TEST(ServeRequest, RefusesAboveTheCapsWith413) {
  RequestLimits limits;
  limits.max_candidates = 2;
  limits.max_body_bytes = 100;
  auto [status, what] = parse_refusal(R"({"query": "q", "documents": ["a", "b", "c"]})", limits);
  EXPECT_EQ(status, 413);
  EXPECT_NE(what.find("--max-candidates of 2"), std::string::npos) << what;
  std::tie(status, what) =
      parse_refusal(R"({"query": ")" + std::string(200, 'x') + R"(", "documents": ["a"]})", limits);
  EXPECT_EQ(status, 413);
  EXPECT_NE(what.find("--max-body-bytes of 100"), std::string::npos) << what;
  EXPECT_EQ(parse_refusal(R"({"query": "q", "documents": ["a", "b"]})", limits).first, 0);
}

TEST(ServeRoot, KeepsPathsInsideTheRootAfterLinksAndDots) {
  const fs::path dir = fs::temp_directory_path() / ("zr_serve_root_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "root" / "sub");
  fs::create_directories(dir / "outside");
  std::ofstream(dir / "root" / "sub" / "a.png") << "x";
  std::ofstream(dir / "outside" / "secret.png") << "x";
  fs::create_symlink(dir / "outside" / "secret.png", dir / "root" / "link.png");
  fs::create_symlink(dir / "outside", dir / "root" / "linkdir");
  fs::create_symlink(dir / "root" / "sub" / "a.png", dir / "root" / "inner.png");
  fs::create_directories(dir / "root2");  // shares the root's name as a prefix
  std::ofstream(dir / "root2" / "b.png") << "x";
  const std::string root = (dir / "root").string();
  const std::string a = fs::canonical(dir / "root" / "sub" / "a.png").string();

  EXPECT_EQ(resolve_under_root(root, "sub/a.png"), a);
  EXPECT_EQ(resolve_under_root(root, "./sub/../sub/a.png"), a);
  EXPECT_EQ(resolve_under_root(root, a), a);            // absolute, inside
  EXPECT_EQ(resolve_under_root(root, "inner.png"), a);  // a link that stays inside
  for (const std::string& p :
       {std::string("../outside/secret.png"), std::string("link.png"),
        std::string("linkdir/secret.png"), std::string("sub/../../outside/secret.png"),
        (dir / "outside" / "secret.png").string(), std::string("../root2/b.png"),
        std::string("/etc/passwd")}) {
    const auto [status, what] = refusal([&] { resolve_under_root(root, p); });
    EXPECT_EQ(status, 403) << p;
    EXPECT_NE(what.find("outside the pages root"), std::string::npos) << what;
  }
  EXPECT_EQ(refusal([&] { resolve_under_root(root, "sub/missing.png"); }).first, 400);
  EXPECT_EQ(refusal([&] { resolve_under_root(root, "sub"); }).first, 400);
  const auto [status, what] = refusal([&] { resolve_under_root("", "sub/a.png"); });
  EXPECT_EQ(status, 403);
  EXPECT_NE(what.find("--pages-root"), std::string::npos) << what;
  fs::remove_all(dir);
}

// /health and /v1/rerank answer 503 while the model loads; a load that fails ends run() with
// its error.
TEST(ServeServer, NotReadyUntilLoadedAndALoadErrorEndsTheRun) {
  ServeOptions o;
  o.port = 0;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  RerankServer server(o, [released]() -> std::unique_ptr<Reranker> {
    released.wait();
    throw InputError("no model here");
  });
  std::exception_ptr error;
  std::thread runner([&] {
    try {
      server.run();
    } catch (...) {
      error = std::current_exception();
    }
  });
  for (int i = 0; i < 500 && server.bound_port() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_NE(server.bound_port(), 0);
  httplib::Client client("127.0.0.1", server.bound_port());
  auto health = client.Get("/health");
  for (int i = 0; i < 100 && !health; ++i) {  // the loop may not listen yet
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    health = client.Get("/health");
  }
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_NE(health->body.find("loading"), std::string::npos) << health->body;
  const auto rerank =
      client.Post("/v1/rerank", R"({"query": "q", "documents": ["a.png"]})", "application/json");
  ASSERT_TRUE(rerank);
  EXPECT_EQ(rerank->status, 503);
  EXPECT_NE(rerank->body.find("still loading"), std::string::npos) << rerank->body;
  release.set_value();
  runner.join();
  ASSERT_TRUE(error);
  try {
    std::rethrow_exception(error);
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no model here"), std::string::npos);
  }
}
