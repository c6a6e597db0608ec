// `ziprerank bench`: per-stage latency of reranking one window, across scoring modes and keep
// ratios, with warm-up and repeats. Model loading is excluded; every repeat runs the whole
// pipeline for the window (decode, preprocess, vision, pruning, language model).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ziprerank/flops.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/reranker.hpp"

namespace ziprerank {

struct BenchConfig {
  Scoring scoring = Scoring::kLogits;
  double keep_ratio = 1.0;
  /// As RerankOptions::vision_tile (unset = the model's own); a BenchRow's is settled.
  std::optional<int> vision_tile;
};

struct BenchOptions {
  std::vector<BenchConfig> configs;
  int warmup = 1;
  int repeats = 5;
  int window = 20;
};

struct Stat {
  double median = 0, min = 0, max = 0, mean = 0, stdev = 0;
};
Stat summarize(std::vector<double> values);

struct BenchRow {
  BenchConfig config;
  Stat decode, preprocess, vision, prune, llm, total;
  int64_t input_tokens = 0, visual_before = 0, visual_after = 0, generated = 0;
  int pages = 0, windows = 0;
  /// Work of one repeat, counted from the model's shapes and the tokens each stage saw.
  VisionFlops vision_flops;
  TextFlops llm_flops;
  /// Matrix-product rate (GFLOP/s) this process measured at each stage's sizes and dtype, with
  /// the threads inference uses: the stage's achievable rate, beside which its achieved one
  /// (flops / median time) is reported.
  double vision_product_gflops = 0, llm_product_gflops = 0;
  double vision_gflops() const {
    return vision.median > 0 ? vision_flops.total() / vision.median / 1e6 : 0;
  }
  double llm_gflops() const { return llm.median > 0 ? llm_flops.total() / llm.median / 1e6 : 0; }
};

/// GFLOP/s of the best of `repeats` [m, k] x [k, n] products as the linear layers run them
/// (activations by a transposed [n, k] weight) in `dtype`, on the threads set now.
double measure_product_gflops(int64_t m, int64_t k, int64_t n, c10::ScalarType dtype,
                              int repeats = 5);

/// Synthetic document-like pages (text lines, a table, a figure) of the given size, for when no
/// real pages are given. Deterministic for a seed.
std::vector<Image> synthetic_pages(int count, int width, int height, uint64_t seed);

/// Runs every configuration on the same pages (decoded from `pages`, or `images` when non-empty).
std::vector<BenchRow> run_bench(const Reranker& reranker, const std::string& query,
                                const std::vector<PageRef>& pages, const std::vector<Image>& images,
                                const BenchOptions& options);

std::string format_bench_table(const std::vector<BenchRow>& rows);
std::string format_bench_jsonl(const std::vector<BenchRow>& rows);

}  // namespace ziprerank
