// `ziprerank serve`: flags to ServeOptions; the server itself is the library's.
#include "cli/commands_serve.hpp"

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>

#include "ziprerank/errors.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/serve.hpp"

namespace ziprerank::cli {

namespace {

struct ServeArgs {
  CommonOptions common;
  serve::ServeOptions server;
  std::string scoring;             ///< empty: the model's own
  double keep_ratio = -1;          ///< < 0: the model's own
  std::optional<int> vision_tile;  ///< unset: the model's own
  int window = 20;
  int stride = 10;
  int max_query_tokens = RerankOptions{}.max_query_tokens;
  int vision_cache_mb = 1024;
  int data_store_mb = 256;
  int64_t max_body_bytes = 64 << 20;
};

int run_serve(const ServeArgs& a) {
  serve::ServeOptions o = a.server;
  if (!a.scoring.empty()) o.choice.scoring = parse_scoring(a.scoring);
  if (a.keep_ratio >= 0) o.choice.keep_ratio = a.keep_ratio;
  o.choice.vision_tile = a.vision_tile;
  o.rerank.window = a.window;
  o.rerank.stride = a.stride;
  o.rerank.max_query_tokens = a.max_query_tokens;
  o.rerank.max_candidates = o.limits.max_candidates;
  o.rerank.validate();  // window and stride before anything listens
  if (a.vision_cache_mb < 0) throw UsageError("--vision-cache-mb must be >= 0");
  if (a.data_store_mb < 0) throw UsageError("--data-store-mb must be >= 0");
  if (a.max_body_bytes < 64) throw UsageError("--max-body-bytes must be at least 64");
  o.vision_cache_bytes = static_cast<size_t>(a.vision_cache_mb) << 20;
  o.data_store_bytes = static_cast<size_t>(a.data_store_mb) << 20;
  o.limits.max_body_bytes = static_cast<size_t>(a.max_body_bytes);
  // The folder is named (and a wrong one refused) before the socket opens; the model loads on
  // the server's worker, which is the thread that uses it.
  const std::string dir = resolve_model(a.common);
  open_model_folder(dir);  // its config files, checked before the socket opens
  ModelOptions mo;
  mo.device = parse_device(a.common.device);
  mo.dtype = parse_dtype(a.common.dtype, mo.device);
  const CommonOptions common = a.common;
  {
    ModelOptions chosen = mo;  // the products the worker will choose, to run again before listening
    chosen.bf16_products = parse_matmul(common.matmul, mo.device, mo.dtype);
    if (libtorch_threads_pay(dir, chosen)) rerun_with_passive_openmp();
  }
  serve::RerankServer server(o, [dir, mo, common]() mutable {
    const int workers = configure_threads(common.threads);
    mo.bf16_products = parse_matmul(common.matmul, mo.device, mo.dtype);
    give_threads_to_libtorch_products(libtorch_threads_pay(dir, mo));
    auto reranker = Reranker::load(dir, mo);
    reranker->set_encode_workers(workers);
    return reranker;
  });
  serve::run_until_signal(server);
  return 0;
}

}  // namespace

void register_serve_command(CLI::App& app, Handler& handler) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve POST /v1/rerank over HTTP with the model loaded once (also GET /health, /metrics)");
  add_model_options(cmd, a->common);
  cmd->add_option("--host", a->server.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", a->server.port, "Port to listen on (0 = any free port, logged)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--pages-root", a->server.pages_root,
                  "Folder whose image and PDF files requests may name (relative to it); without "
                  "it, documents are data URIs only")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--max-queue", a->server.max_queue,
                  "Requests that may wait beside the one being ranked; more get 503 at once")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--timeout", a->server.timeout_s,
                  "Seconds a request may take, waiting included, before it is stopped with 504 "
                  "(0 = no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", a->max_body_bytes,
                  "Largest request body accepted (413 above)")
      ->capture_default_str();
  cmd->add_option("--max-candidates", a->server.limits.max_candidates,
                  "Most documents in one request (413 above)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-query-tokens", a->max_query_tokens,
                  "Refuse a query longer than this many tokens (400)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--vision-cache-mb", a->vision_cache_mb,
                  "Memory for reusing pages' vision features across requests (exact; 0 = off)")
      ->capture_default_str();
  cmd->add_option("--data-store-mb", a->data_store_mb,
                  "Disk for data-URI documents kept by content so that repeats hit the vision "
                  "cache")
      ->capture_default_str();
  cmd->add_option("--keep-ratio", a->keep_ratio,
                  "Fraction of each page's visual tokens kept (default: the model's own, as rank)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--scoring", a->scoring,
                  "logits, generate or similarity (default: the model's own, as rank)")
      ->check(CLI::IsMember(scoring_names()));
  cmd->add_option("--vision-tile", a->vision_tile,
                  "Vision tile side in pixels, 0 = whole pages (default: the model's own)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--window", a->window, "Candidates per forward pass (sliding window)")
      ->check(CLI::Range(1, kMaxWindow))
      ->capture_default_str();
  cmd->add_option("--stride", a->stride, "Sliding-window stride (smaller than --window)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([a, &handler] { handler = [a] { return run_serve(*a); }; });
}

}  // namespace ziprerank::cli
