// The rerank server: a model loaded once behind HTTP. POST /v1/rerank takes the request shape
// retrieval frameworks send to rerank APIs ({"query", "documents", "top_n", "return_documents"}),
// documents being page images (files under the server's pages root, or base64 data URIs) or PDF
// pages; GET /health says whether the model is loaded; GET /metrics is Prometheus text. One
// worker ranks the requests in turn through Reranker::rerank_pages, the entry point `rank` uses,
// so scores and order equal rank's on the same pages.
//
// The request parsing and checks are pure functions (parse_rerank_request, resolve_under_root,
// decode_data_uri) that throw HttpError with the status to answer; RerankServer wires them to
// sockets.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "ziprerank/reranker.hpp"

namespace ziprerank::serve {

/// A request the server refuses, with the HTTP status to answer and one message for the client.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

/// One document of a rerank request, as sent: an image file (a path relative to the pages root,
/// or absolute inside it), a data URI (base64 image or PDF bytes, already decoded), or a page of
/// a PDF given either way.
struct RequestDocument {
  std::string path;           ///< as sent; empty for data
  std::vector<uint8_t> data;  ///< decoded bytes of a data URI
  bool pdf = false;
  int page = 0;  ///< 1-based PDF page; 0 for an image
};

struct RerankRequest {
  std::string query;
  std::vector<RequestDocument> documents;
  nlohmann::json raw_documents;  ///< the documents as sent, echoed with return_documents
  int top_n = 0;                 ///< 0 = every document
  bool return_documents = false;
};

/// Caps applied while parsing a request (413 above them).
struct RequestLimits {
  int max_candidates = 2000;
  size_t max_body_bytes = 64u << 20;
};

/// Parses and checks a POST /v1/rerank body. Throws HttpError 400 (not JSON, a missing or
/// mistyped field, a bad data URI, a negative top_n) or 413 (body or documents above the caps),
/// each naming the field.
RerankRequest parse_rerank_request(const std::string& body, const RequestLimits& limits);

/// Decodes a data URI `data:<type>;base64,<payload>`; returns the bytes and sets `media_type`.
/// Throws HttpError 400 for anything else (including invalid base64).
std::vector<uint8_t> decode_data_uri(const std::string& uri, std::string* media_type = nullptr);

/// Standard base64 (RFC 4648, padding optional, no whitespace); throws HttpError 400.
std::vector<uint8_t> base64_decode(const std::string& text);

/// The file `path` names under `root` (relative paths are taken from the root), with symbolic
/// links and ".." resolved. Throws HttpError 403 when it leaves the root (or when `root` is
/// empty: the server reads no files then) and 400 when it is no regular file.
std::string resolve_under_root(const std::string& root, const std::string& path);

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         ///< 0 = any free port (the log line and bound_port() say which)
  std::string pages_root;  ///< empty: file documents are refused, data URIs only
  int max_queue = 16;      ///< requests waiting beyond the one in progress; more get 503
  double timeout_s = 60;   ///< per request, waiting included; 0 = none
  RequestLimits limits;
  size_t vision_cache_bytes = size_t{1024} << 20;
  /// Data-URI documents are kept as files (by content) so that repeats hit the vision cache;
  /// beyond this many bytes the least recently used go.
  size_t data_store_bytes = size_t{256} << 20;
  /// Ranking settings (window, stride, caps); the scoring, keep ratio and vision tile are
  /// settled by Reranker::resolve from `choice` once the model is loaded, as rank settles them.
  RerankOptions rerank;
  RankingChoice choice;
  int http_threads = 0;  ///< 0 = max_queue + 4 (capped at 256)
};

/// Latency histogram bucket bounds of /metrics, in seconds.
const std::vector<double>& latency_buckets();

class RerankServer {
 public:
  using Loader = std::function<std::unique_ptr<Reranker>()>;
  /// `load` runs on the model worker once the socket listens; /health answers 503 until it
  /// returns.
  RerankServer(ServeOptions options, Loader load);
  ~RerankServer();
  RerankServer(const RerankServer&) = delete;
  RerankServer& operator=(const RerankServer&) = delete;

  /// Binds, loads the model, serves until stop(); then answers every request already accepted
  /// and returns. Throws InputError when the address cannot be bound and rethrows a failed
  /// model load.
  void run();
  /// Stops accepting (callable from any thread, also before run() binds).
  void stop();
  /// The port bound (after run() has bound; 0 before).
  int bound_port() const { return bound_port_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<int> bound_port_{0};
};

/// Runs `server` until SIGINT or SIGTERM: the first stops accepting and lets the requests in
/// progress finish (then returns normally); a second ends the process at once (exit 130).
/// Blocks those signals in every thread started afterwards, so call it before loading anything
/// that starts threads.
void run_until_signal(RerankServer& server);

}  // namespace ziprerank::serve
