// The rerank server: HTTP on cpp-httplib, one model worker answering queued requests in turn.
//
// Threads: httplib's pool reads each request, parses and checks it (refusals answered at once)
// and queues it; the model worker loads the model, then takes the queue in order and ranks each
// request through Reranker::rerank_pages (the model is used by this thread alone). The handler
// thread waits for its answer. stop() closes the listening socket; httplib then lets every
// handler finish, and the worker empties the queue before run() returns.
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "pipeline/stages.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/serve.hpp"

namespace ziprerank::serve {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::vector<double>& latency_buckets() {
  static const std::vector<double> b = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,  5,     10,   30,  60,   120};
  return b;
}

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string error_body(int status, const std::string& message) {
  return json{{"error", {{"status", status}, {"message", message}}}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

// Counters behind /metrics.
class Metrics {
 public:
  void request(const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++requests_[endpoint];
  }
  void response(int status) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++responses_[status];
  }
  void latency(double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto& b = latency_buckets();
    if (buckets_.empty()) buckets_.assign(b.size(), 0);
    for (size_t i = 0; i < b.size(); ++i)
      if (seconds <= b[i]) ++buckets_[i];
    ++latency_count_;
    latency_sum_ += seconds;
  }
  void pages(size_t encoded, size_t cache_hits) {
    std::lock_guard<std::mutex> lock(mutex_);
    pages_encoded_ += encoded;
    cache_hits_ += cache_hits;
  }
  std::string text(size_t queue_depth, int in_flight, bool ready) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::ostringstream o;
    o << "# HELP ziprerank_requests_total HTTP requests received, by endpoint.\n"
      << "# TYPE ziprerank_requests_total counter\n";
    for (const auto& [endpoint, n] : requests_)
      o << "ziprerank_requests_total{endpoint=\"" << endpoint << "\"} " << n << "\n";
    o << "# HELP ziprerank_responses_total HTTP responses sent, by status code.\n"
      << "# TYPE ziprerank_responses_total counter\n";
    for (const auto& [status, n] : responses_)
      o << "ziprerank_responses_total{status=\"" << status << "\"} " << n << "\n";
    o << "# HELP ziprerank_errors_total Responses with status 400 or above, by status code.\n"
      << "# TYPE ziprerank_errors_total counter\n";
    for (const auto& [status, n] : responses_)
      if (status >= 400) o << "ziprerank_errors_total{status=\"" << status << "\"} " << n << "\n";
    o << "# HELP ziprerank_request_duration_seconds Time from receiving a rerank request to its "
         "answer, queueing included.\n"
      << "# TYPE ziprerank_request_duration_seconds histogram\n";
    const auto& b = latency_buckets();
    for (size_t i = 0; i < b.size(); ++i) {
      o << "ziprerank_request_duration_seconds_bucket{le=\"" << b[i] << "\"} "
        << (buckets_.empty() ? 0 : buckets_[i]) << "\n";
    }
    o << "ziprerank_request_duration_seconds_bucket{le=\"+Inf\"} " << latency_count_ << "\n"
      << "ziprerank_request_duration_seconds_sum " << latency_sum_ << "\n"
      << "ziprerank_request_duration_seconds_count " << latency_count_ << "\n";
    o << "# HELP ziprerank_queue_depth Rerank requests waiting for the model.\n"
      << "# TYPE ziprerank_queue_depth gauge\n"
      << "ziprerank_queue_depth " << queue_depth << "\n"
      << "# HELP ziprerank_requests_in_flight Rerank requests being ranked now.\n"
      << "# TYPE ziprerank_requests_in_flight gauge\n"
      << "ziprerank_requests_in_flight " << in_flight << "\n"
      << "# HELP ziprerank_model_ready 1 once the model is loaded.\n"
      << "# TYPE ziprerank_model_ready gauge\n"
      << "ziprerank_model_ready " << (ready ? 1 : 0) << "\n"
      << "# HELP ziprerank_pages_encoded_total Pages read and run through the vision tower.\n"
      << "# TYPE ziprerank_pages_encoded_total counter\n"
      << "ziprerank_pages_encoded_total " << pages_encoded_ << "\n"
      << "# HELP ziprerank_vision_cache_hits_total Pages whose vision features came from the "
         "cache.\n"
      << "# TYPE ziprerank_vision_cache_hits_total counter\n"
      << "ziprerank_vision_cache_hits_total " << cache_hits_ << "\n";
    return o.str();
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, uint64_t> requests_;
  std::map<int, uint64_t> responses_;
  std::vector<uint64_t> buckets_;
  uint64_t latency_count_ = 0;
  double latency_sum_ = 0;
  uint64_t pages_encoded_ = 0, cache_hits_ = 0;
};

// Data-URI documents as files named by content, so a page sent again is the same file (same
// vision-cache key). Used by the model worker alone.
class DataStore {
 public:
  DataStore(size_t max_bytes) : max_bytes_(max_bytes) {}
  ~DataStore() {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // The file holding `bytes` (written if new); `ext` is ".pdf" or ".img".
  std::string put(const std::vector<uint8_t>& bytes, const std::string& ext) {
    if (dir_.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "ziprerank-serve-XXXXXX").string();
      if (!::mkdtemp(tmpl.data()))
        throw InternalError("cannot create a folder for data-URI documents in " +
                            fs::temp_directory_path().string());
      dir_ = tmpl;
    }
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (uint8_t c : bytes) h = (h ^ c) * 1099511628211ull;
    char name[64];
    for (int k = 0;; ++k) {
      std::snprintf(name, sizeof(name), "%016llx-%zu-%d", static_cast<unsigned long long>(h),
                    bytes.size(), k);
      const std::string path = (fs::path(dir_) / (name + ext)).string();
      auto it = files_.find(path);
      if (it == files_.end()) {
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(bytes.data()),
                  static_cast<std::streamsize>(bytes.size()));
        if (!out.flush()) throw InternalError("cannot write a data-URI document to " + path);
        files_[path] = {bytes.size(), ++clock_};
        total_ += bytes.size();
        return path;
      }
      if (same_content(path, bytes)) {  // a hash collision takes the next name
        it->second.second = ++clock_;
        return path;
      }
    }
  }
  // Drops the least recently used files beyond the cap (not those of the request just done).
  void trim(uint64_t keep_since) {
    while (total_ > max_bytes_) {
      auto oldest = files_.end();
      for (auto it = files_.begin(); it != files_.end(); ++it)
        if (oldest == files_.end() || it->second.second < oldest->second.second) oldest = it;
      if (oldest == files_.end() || oldest->second.second >= keep_since) return;
      std::error_code ec;
      fs::remove(oldest->first, ec);
      total_ -= oldest->second.first;
      files_.erase(oldest);
    }
  }
  uint64_t clock() const { return clock_; }

 private:
  static bool same_content(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> have((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
    return have == bytes;
  }
  size_t max_bytes_, total_ = 0;
  uint64_t clock_ = 0;
  std::string dir_;
  std::unordered_map<std::string, std::pair<size_t, uint64_t>> files_;  // size, last use
};

struct Answer {
  int status = 200;
  std::string body;
};

struct Job {
  RerankRequest request;
  std::vector<std::string> paths;  ///< resolved file of each document; empty for data URIs
  Clock::time_point received;
  std::promise<Answer> answer;
};

}  // namespace

struct RerankServer::Impl {
  ServeOptions options;
  Loader load;
  httplib::Server http;
  Metrics metrics;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Job>> queue;
  bool worker_done = false;  ///< the worker leaves once the queue is empty
  std::atomic<bool> ready{false};
  std::atomic<int> in_flight{0};
  std::atomic<bool> stop_requested{false};
  std::exception_ptr load_error;

  std::unique_ptr<Reranker> reranker;
  RerankOptions rerank;  ///< settled once the model is loaded
  DataStore store;

  Impl(ServeOptions o, Loader l)
      : options(std::move(o)), load(std::move(l)), store(options.data_store_bytes) {}

  // Every response is counted here, before httplib writes it (its logger runs after the client
  // may already have the answer and asked /metrics).
  void reply(httplib::Response& res, int status, const std::string& body) {
    metrics.response(status);
    res.status = status;
    res.set_content(body, "application/json");
  }

  void handle_rerank(const httplib::Request& req, httplib::Response& res) {
    const auto received = Clock::now();
    metrics.request("rerank");
    Answer a;
    try {
      a = answer_rerank(req, received);
    } catch (const HttpError& e) {
      a = {e.status(), error_body(e.status(), e.what())};
    } catch (const std::exception& e) {
      spdlog::error("rerank request: {}", e.what());
      a = {500, error_body(500, std::string("internal error: ") + e.what())};
    }
    if (a.status == 503) res.set_header("Retry-After", "1");
    reply(res, a.status, a.body);
    const double seconds = seconds_since(received);
    metrics.latency(seconds);
    spdlog::info("POST /v1/rerank from {} -> {} in {:.0f} ms", req.remote_addr, a.status,
                 1000 * seconds);
  }

  Answer answer_rerank(const httplib::Request& req, Clock::time_point received) {
    if (!ready.load()) throw HttpError(503, "the model is still loading; retry shortly");
    auto job = std::make_shared<Job>();
    job->request = parse_rerank_request(req.body, options.limits);
    job->received = received;
    for (const RequestDocument& d : job->request.documents) {
      job->paths.push_back(d.data.empty() ? resolve_under_root(options.pages_root, d.path) : "");
    }
    std::future<Answer> answer = job->answer.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex);
      // Room for --max-queue waiting beside the one being ranked (a job not yet taken by an
      // idle worker counts as that one).
      const size_t held = queue.size() + static_cast<size_t>(in_flight.load());
      if (held >= static_cast<size_t>(options.max_queue) + 1) {
        throw HttpError(503, "the server is busy: " + std::to_string(queue.size()) +
                                 " request(s) already wait (--max-queue " +
                                 std::to_string(options.max_queue) + "); retry later");
      }
      queue.push_back(job);
    }
    wake.notify_one();
    return answer.get();
  }

  // The model worker: loads the model, then answers queued requests in order until told to
  // finish and the queue is empty.
  void work() {
    try {
      reranker = load();
      settle_options();
      reranker->set_vision_cache(options.vision_cache_bytes);
      ready.store(true);
      spdlog::info("model loaded: ready for requests");
    } catch (...) {
      load_error = std::current_exception();
      stop_requested.store(true);  // run()'s stopper closes the socket
      return;                      // requests cannot be queued before ready; nothing waits
    }
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return !queue.empty() || worker_done; });
        if (queue.empty()) return;
        job = queue.front();
        queue.pop_front();
        in_flight.store(1);
      }
      Answer a;
      try {
        a = rank(*job);
      } catch (const HttpError& e) {
        a = {e.status(), error_body(e.status(), e.what())};
      } catch (const std::exception& e) {
        spdlog::error("rerank request: {}", e.what());
        a = {500, error_body(500, std::string("internal error: ") + e.what())};
      }
      in_flight.store(0);
      job->answer.set_value(std::move(a));
    }
  }

  void settle_options() {
    rerank = reranker->resolve(options.rerank, options.choice);
    // The request cap was applied while parsing (413); the library's must not be lower.
    rerank.max_candidates = std::max(rerank.max_candidates, options.limits.max_candidates);
    spdlog::info("{}, window {} stride {}", Reranker::describe(rerank), rerank.window,
                 rerank.stride);
  }

  Answer rank(Job& job) {
    const auto started = Clock::now();
    const double queued_ms = 1000 * std::chrono::duration<double>(started - job.received).count();
    const auto deadline = job.received + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options.timeout_s));
    const auto timed_out = [&] {
      return HttpError(504, "the request took longer than the server's --timeout of " +
                                json(options.timeout_s).dump() + " s and was stopped");
    };
    if (options.timeout_s > 0 && Clock::now() >= deadline) throw timed_out();
    const RerankRequest& r = job.request;
    std::vector<PageRef> pages;
    std::vector<std::pair<std::string, std::string>> data_names;  // file, how the client knows it
    const uint64_t request_start = store.clock() + 1;
    for (size_t i = 0; i < r.documents.size(); ++i) {
      const RequestDocument& d = r.documents[i];
      PageRef p;
      p.id = std::to_string(i);
      p.pdf_page = d.pdf ? d.page : 0;
      if (!d.data.empty()) {
        p.path = store.put(d.data, d.pdf ? ".pdf" : ".img");
        data_names.emplace_back(p.path, "documents[" + std::to_string(i) + "] (data URI)");
      } else {
        p.path = job.paths[i];
      }
      pages.push_back(std::move(p));
    }
    RerankOptions o = rerank;
    if (options.timeout_s > 0) o.should_stop = [deadline] { return Clock::now() >= deadline; };
    const VisionCache* cache = detail::Stages(*reranker).vision_cache();
    const size_t hits0 = cache ? cache->hits() : 0, misses0 = cache ? cache->misses() : 0;
    RerankResult result;
    try {
      result = reranker->rerank_pages(r.query, pages, o);
      check_finite_scores(result, o.scoring);
    } catch (const Interrupted&) {
      store.trim(request_start);
      throw timed_out();
    } catch (const InputError& e) {
      store.trim(request_start);
      std::string message = e.what();
      for (const auto& [file, name] : data_names) {
        for (size_t at; (at = message.find(file)) != std::string::npos;)
          message.replace(at, file.size(), name);
      }
      throw HttpError(400, message);
    }
    store.trim(request_start);
    const size_t hits = cache ? cache->hits() - hits0 : 0;
    const size_t encoded = cache ? cache->misses() - misses0 : pages.size();
    metrics.pages(encoded, hits);

    const size_t shown = r.top_n > 0
                             ? std::min<size_t>(static_cast<size_t>(r.top_n), result.ranking.size())
                             : result.ranking.size();
    json results = json::array();
    for (size_t k = 0; k < shown; ++k) {
      const size_t index = std::stoul(result.ranking[k].id);
      json item = {{"index", index},
                   {"relevance_score", result.ranking[k].score},
                   {"relevance", result.ranking[k].relevance}};
      if (r.return_documents) item["document"] = r.raw_documents[index];
      results.push_back(std::move(item));
    }
    const StageTiming& t = result.timing;
    json body = {{"results", std::move(results)},
                 {"usage",
                  {{"documents", r.documents.size()},
                   {"windows", result.windows},
                   {"input_tokens", result.tokens.input},
                   {"visual_tokens_before_pruning", result.tokens.visual_before},
                   {"visual_tokens_after_pruning", result.tokens.visual_after},
                   {"pages_encoded", encoded},
                   {"vision_cache_hits", hits}}},
                 {"timing_ms",
                  {{"queue", queued_ms},
                   {"decode", t.decode},
                   {"preprocess", t.preprocess},
                   {"vision", t.vision},
                   {"prune", t.prune},
                   {"llm", t.llm},
                   {"total", 1000 * seconds_since(job.received)}}}};
    return {200, body.dump(-1, ' ', false, json::error_handler_t::replace)};
  }

  void routes() {
    http.Post("/v1/rerank", [this](const httplib::Request& req, httplib::Response& res) {
      handle_rerank(req, res);
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      metrics.request("health");
      if (ready.load()) {
        reply(res, 200, json{{"status", "ok"}, {"model", reranker->folder().name}}.dump());
      } else {
        reply(res, 503, json{{"status", "loading"}}.dump());
      }
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      metrics.request("metrics");
      metrics.response(200);
      size_t depth = 0;
      {
        std::lock_guard<std::mutex> lock(mutex);
        depth = queue.size();
      }
      res.status = 200;
      res.set_content(metrics.text(depth, in_flight.load(), ready.load()),
                      "text/plain; version=0.0.4");
    });
    // Refusals httplib makes itself (unknown route, body above the cap) get a message too.
    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          std::string message;
          if (res.status == 404) {
            metrics.request("other");
            message = "no such endpoint: " + req.method + " " + req.path +
                      " (endpoints: POST /v1/rerank, GET /health, GET /metrics)";
          } else if (res.status == 413) {
            metrics.request("rerank");
            message = "request body is above the server's --max-body-bytes of " +
                      std::to_string(options.limits.max_body_bytes);
          } else {
            message = "HTTP " + std::to_string(res.status);
          }
          reply(res, res.status, error_body(res.status, message));
          return httplib::Server::HandlerResponse::Handled;
        }));
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      spdlog::debug("{} {} -> {}", req.method, req.path, res.status);
    });
    http.set_exception_handler(
        [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          reply(res, 500, error_body(500, "internal error: " + what));
        });
    // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second server on the
    // same port starts without error and takes half of the connections.
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    http.set_payload_max_length(options.limits.max_body_bytes);
    http.set_keep_alive_timeout(2);
    const size_t threads = options.http_threads > 0
                               ? static_cast<size_t>(options.http_threads)
                               : std::min<size_t>(256, static_cast<size_t>(options.max_queue) + 4);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  }
};

RerankServer::RerankServer(ServeOptions options, Loader load)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(load))) {
  const ServeOptions& o = impl_->options;
  if (o.max_queue < 0) throw UsageError("--max-queue must be >= 0");
  if (!(o.timeout_s >= 0)) throw UsageError("--timeout must be >= 0 seconds");
  if (o.limits.max_candidates < 1) throw UsageError("--max-candidates must be positive");
  if (o.limits.max_body_bytes < 64) throw UsageError("--max-body-bytes must be at least 64");
  if (o.port < 0 || o.port > 65535) throw UsageError("--port must be in [0, 65535]");
  if (!o.pages_root.empty() && !fs::is_directory(o.pages_root))
    throw InputError("--pages-root '" + o.pages_root + "' is not a folder");
  impl_->routes();
}

RerankServer::~RerankServer() = default;

void RerankServer::stop() {
  impl_->stop_requested.store(true);
  impl_->http.stop();
}

void RerankServer::run() {
  Impl& s = *impl_;
  int port = s.options.port;
  if (port == 0) {
    port = s.http.bind_to_any_port(s.options.host);
    if (port < 0) port = 0;
  } else if (!s.http.bind_to_port(s.options.host, port)) {
    port = 0;
  }
  if (port == 0) {
    throw InputError("cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
                     " (address in use, or not an address of this machine?)");
  }
  bound_port_.store(port);
  spdlog::info("listening on http://{}:{} (pages root: {})", s.options.host, port,
               s.options.pages_root.empty() ? "none, data URIs only" : s.options.pages_root);
  std::thread worker([&s] { s.work(); });
  // httplib's stop() does nothing before its loop runs: a stop asked for at any time is passed
  // on until the loop has ended.
  std::atomic<bool> listening_done{false};
  std::thread stopper([&s, &listening_done] {
    while (!listening_done.load()) {
      if (s.stop_requested.load()) s.http.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  s.http.listen_after_bind();
  listening_done.store(true);
  stopper.join();
  // httplib has let every handler finish; the worker leaves once the queue is empty.
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.worker_done = true;
  }
  s.wake.notify_all();
  worker.join();
  if (s.load_error) std::rethrow_exception(s.load_error);
  spdlog::info("server stopped");
}

namespace {
std::atomic<int> g_signals{0};
extern "C" void on_serve_signal(int) {
  if (g_signals.fetch_add(1) >= 1) ::_exit(static_cast<int>(ExitCode::kInterrupted));
}
}  // namespace

void run_until_signal(RerankServer& server) {
  struct sigaction sa = {};
  sa.sa_handler = on_serve_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int = {}, old_term = {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done.load()) {
      if (g_signals.load() > 0) {
        spdlog::info("stopping: finishing the requests in progress (a second signal ends now)");
        server.stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  try {
    server.run();
  } catch (...) {
    done.store(true);
    watcher.join();
    throw;
  }
  done.store(true);
  watcher.join();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
}

}  // namespace ziprerank::serve
