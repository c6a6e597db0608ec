#include "ziprerank/bench.hpp"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>

#include "pipeline/stages.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/runtime.hpp"

namespace ziprerank {

Stat summarize(std::vector<double> v) {
  Stat s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.min = v.front();
  s.max = v.back();
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(n);
  for (double x : v) s.stdev += (x - s.mean) * (x - s.mean);
  s.stdev = n > 1 ? std::sqrt(s.stdev / static_cast<double>(n - 1)) : 0.0;
  return s;
}

std::vector<Image> synthetic_pages(int count, int width, int height, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Image> out;
  for (int p = 0; p < count; ++p) {
    cv::Mat m(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
    const int margin = width / 12;
    int y = margin;
    std::uniform_int_distribution<int> word(8, 60), gap(4, 10);
    const double fs = height / 1400.0;
    cv::putText(m, "Section " + std::to_string(p + 1), {margin, y + 20}, cv::FONT_HERSHEY_DUPLEX,
                1.4 * fs * 1.5, {0, 0, 0}, 2);
    y += 60;
    while (y < height - margin) {
      const int kind = static_cast<int>(rng() % 10);
      if (kind == 0 && y + 200 < height - margin) {  // a ruled table
        for (int r = 0; r <= 5; ++r)
          cv::line(m, {margin, y + 30 * r}, {width - margin, y + 30 * r}, {0, 0, 0}, 1);
        for (int c = 0; c <= 4; ++c) {
          const int x = margin + c * (width - 2 * margin) / 4;
          cv::line(m, {x, y}, {x, y + 150}, {0, 0, 0}, 1);
        }
        y += 180;
      } else if (kind == 1 && y + 220 < height - margin) {  // a figure
        cv::rectangle(m, {margin + 40, y}, {width - margin - 40, y + 180}, {90, 120, 200},
                      cv::FILLED);
        y += 210;
      } else {  // a line of words
        int x = margin;
        while (x < width - margin - 20) {
          const int w = std::min(word(rng), width - margin - x);
          cv::rectangle(m, {x, y}, {x + w, y + 9}, {30, 30, 30}, cv::FILLED);
          x += w + gap(rng);
        }
        y += 18;
      }
    }
    Image img;
    img.width = width;
    img.height = height;
    cv::Mat rgb;
    cv::cvtColor(m, rgb, cv::COLOR_BGR2RGB);
    img.rgb.assign(rgb.data, rgb.data + rgb.total() * 3);
    out.push_back(std::move(img));
  }
  return out;
}

double measure_product_gflops(int64_t m, int64_t k, int64_t n, c10::ScalarType dtype, int repeats) {
  c10::InferenceMode guard;
  const at::Tensor a = at::randn({m, k}).to(dtype), w = at::randn({n, k}).to(dtype);
  double best = 0;
  for (int rep = 0; rep <= repeats; ++rep) {  // the first is a warm-up
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor c = at::linear(a, w);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0 && s > 0) best = std::max(best, 2.0 * m * k * n / s / 1e9);
  }
  return best;
}

namespace {

// Fills each row's FLOPs (from the pages' patch grids, the row's vision tile and the tokens the
// language model saw) and the product rates measured now at the stages' sizes.
void count_work(const Reranker& reranker, const std::vector<PageRef>& pages,
                const std::vector<Image>& images, std::vector<BenchRow>& rows) {
  const detail::Stages stages(reranker);
  const ModelConfig& c = stages.model().config();
  const ModelOptions& mo = stages.model().options();
  std::vector<ImageGrid> grids;
  const RerankOptions ro;
  const size_t n = pages.empty() ? images.size() : pages.size();
  for (size_t i = 0; i < n; ++i) {
    const PreprocessedImage p = stages.prepare(pages.empty() ? images[i] : load_page(pages[i]), ro);
    grids.push_back(ImageGrid{p.grid_thw[0], p.grid_thw[1], p.grid_thw[2]});
  }
  // Products run in bfloat16 for a bfloat16 model or with bfloat16 products, else in the
  // model's dtype.
  const c10::ScalarType dtype =
      mo.bf16_products && mo.dtype == c10::kFloat ? c10::kBFloat16 : mo.dtype;
  constexpr int64_t kMaxRows = 2048;  // enough rows for a product's full rate
  int64_t patches = 0;
  for (const ImageGrid& g : grids) patches += g.num_patches();
  double vision_rate = 0;
  std::map<int64_t, double> llm_rates;
  const bool measure = mo.device.is_cpu();
  if (measure && patches > 0) {
    // Pages are encoded `workers` at a time, each on one thread: the tower can reach `workers`
    // times a one-thread product.
    const int workers = static_cast<int>(std::min(stages.page_workers(), grids.size()));
    const int blas = openblas_threads(), torch_threads = at::get_num_threads();
    if (workers > 1) {
      if (blas > 0) set_openblas_threads(1);
      at::set_num_threads(1);
    }
    vision_rate = std::max(1, workers) * measure_product_gflops(std::min(patches, kMaxRows),
                                                                c.vision.hidden_size,
                                                                c.vision.intermediate_size, dtype);
    if (workers > 1) {
      if (blas > 0) set_openblas_threads(blas);
      at::set_num_threads(torch_threads);
    }
  }
  const int64_t unit = static_cast<int64_t>(c.vision.patch_size) * c.vision.spatial_merge_size;
  for (BenchRow& row : rows) {
    const int tile_px = row.config.vision_tile.value_or(0);
    const int64_t tile = tile_px > 0 ? tile_px / unit : 0;
    row.vision_flops = vision_flops(c.vision, grids, tile);
    row.vision_product_gflops = vision_rate;
    row.llm_flops = TextFlops{};
    if (row.config.scoring == Scoring::kSimilarity || row.windows < 1) continue;
    // Windows of one run differ little in length: each counted at the mean.
    const int64_t len = row.input_tokens / row.windows;
    const int64_t per_window = std::max<int64_t>(1, (row.pages + row.windows - 1) / row.windows);
    TextFlops w;
    if (row.config.scoring == Scoring::kLogits) {
      w = text_flops(c.text, len, 0, 1, std::min<int64_t>(per_window, c.text.vocab_size));
    } else {
      const int64_t steps = row.generated / row.windows;
      w = text_flops(c.text, len, 0, 1, c.text.vocab_size);
      for (int64_t s = 0; s < steps; ++s) w += text_flops(c.text, 1, len + s, 1, c.text.vocab_size);
    }
    for (int k = 0; k < row.windows; ++k) row.llm_flops += w;
    const int64_t m = std::min(len, kMaxRows);
    if (measure && m > 0 && !llm_rates.count(m))
      llm_rates[m] = measure_product_gflops(m, c.text.hidden_size, c.text.intermediate_size, dtype);
    row.llm_product_gflops = measure && m > 0 ? llm_rates[m] : 0;
  }
}

}  // namespace

std::vector<BenchRow> run_bench(const Reranker& reranker, const std::string& query,
                                const std::vector<PageRef>& pages, const std::vector<Image>& images,
                                const BenchOptions& o) {
  if (o.repeats < 1) throw UsageError("--repeats must be at least 1");
  if (o.warmup < 0) throw UsageError("--warmup must be >= 0");
  // Repeats are interleaved across configurations (round-robin) so that load from other processes
  // on a shared machine affects every configuration alike and the ratios stay meaningful.
  struct Samples {
    std::vector<double> dec, pre, vis, pru, llm, tot;
  };
  const detail::Stages stages(reranker);
  std::vector<BenchRow> rows(o.configs.size());
  std::vector<Samples> samples(o.configs.size());
  auto run_once = [&](const BenchConfig& cfg) {
    RerankOptions ro;
    ro.scoring = cfg.scoring;
    ro.keep_ratio = cfg.keep_ratio;
    ro.vision_tile = cfg.vision_tile;
    ro.window = o.window;
    ro.stride = std::max(1, o.window / 2);
    if (!pages.empty()) return reranker.rerank_pages(query, pages, ro);
    const auto t0 = std::chrono::steady_clock::now();
    StageTiming t;
    // On the page workers, as rerank_pages() prepares page files.
    const std::vector<PreprocessedImage> prepared = stages.prepare_all(images, ro, &t);
    std::vector<std::string> ids;
    for (size_t i = 0; i < images.size(); ++i) ids.push_back("page" + std::to_string(i + 1));
    const double prep =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    RerankResult r = stages.rerank(query, ids, prepared, ro);
    r.timing.preprocess += t.preprocess;
    r.timing.total += prep;
    return r;
  };
  for (int it = 0; it < o.warmup + o.repeats; ++it) {
    for (size_t c = 0; c < o.configs.size(); ++c) {
      const RerankResult r = run_once(o.configs[c]);
      if (it < o.warmup) continue;
      Samples& s = samples[c];
      s.dec.push_back(r.timing.decode);
      s.pre.push_back(r.timing.preprocess);
      s.vis.push_back(r.timing.vision);
      s.pru.push_back(r.timing.prune);
      s.llm.push_back(r.timing.llm);
      s.tot.push_back(r.timing.total);
      BenchRow& row = rows[c];
      row.config = o.configs[c];
      row.config.vision_tile = row.config.vision_tile.value_or(stages.model().vision_tile());
      row.input_tokens = r.tokens.input;
      row.visual_before = r.tokens.visual_before;
      row.visual_after = r.tokens.visual_after;
      row.generated = r.tokens.generated;
      row.pages = static_cast<int>(r.ranking.size());
      row.windows = r.windows;
    }
    spdlog::info("bench: round {}/{} done{}", it + 1, o.warmup + o.repeats,
                 it < o.warmup ? " (warm-up)" : "");
  }
  count_work(reranker, pages, images, rows);
  for (size_t c = 0; c < rows.size(); ++c) {
    const Samples& s = samples[c];
    rows[c].decode = summarize(s.dec);
    rows[c].preprocess = summarize(s.pre);
    rows[c].vision = summarize(s.vis);
    rows[c].prune = summarize(s.pru);
    rows[c].llm = summarize(s.llm);
    rows[c].total = summarize(s.tot);
  }
  return rows;
}

std::string format_bench_table(const std::vector<BenchRow>& rows) {
  std::ostringstream o;
  char line[512];
  std::snprintf(line, sizeof(line),
                "%-10s %5s %5s %6s %9s %9s %9s %9s %9s %11s %12s %12s %10s %8s\n", "scoring",
                "keep", "tile", "pages", "decode", "preproc", "vision", "prune", "llm", "total",
                "(spread)", "vis.tokens", "gen.tokens", "speedup");
  o << line;
  const double base = rows.empty() ? 0 : rows.front().total.median;
  for (const auto& r : rows) {
    const int tile = r.config.vision_tile.value_or(0);  // settled by run_bench
    char tokens[32], spread[32];
    std::snprintf(tokens, sizeof(tokens), "%lld->%lld", static_cast<long long>(r.visual_before),
                  static_cast<long long>(r.visual_after));
    std::snprintf(spread, sizeof(spread), "%.0f-%.0f", r.total.min, r.total.max);
    std::snprintf(
        line, sizeof(line),
        "%-10s %5.2f %5d %6d %9.1f %9.1f %9.1f %9.1f %9.1f %11.1f %12s %12s %10lld %7.2fx\n",
        scoring_name(r.config.scoring).c_str(), r.config.keep_ratio, tile, r.pages, r.decode.median,
        r.preprocess.median, r.vision.median, r.prune.median, r.llm.median, r.total.median, spread,
        tokens, static_cast<long long>(r.generated),
        r.total.median > 0 ? base / r.total.median : 0.0);
    o << line;
  }
  // Work and rate per stage beside the product rate measured at the stage's sizes.
  std::snprintf(line, sizeof(line), "\n%-10s %5s %5s %9s %9s %9s %6s %9s %9s %9s %6s\n", "scoring",
                "keep", "tile", "vis.GFLOP", "vis.GF/s", "prod.GF/s", "share", "llm.GFLOP",
                "llm.GF/s", "prod.GF/s", "share");
  o << line;
  const auto share = [](double achieved, double peak) { return peak > 0 ? achieved / peak : 0.0; };
  for (const auto& r : rows) {
    const int tile = r.config.vision_tile.value_or(0);
    std::snprintf(
        line, sizeof(line), "%-10s %5.2f %5d %9.1f %9.1f %9.1f %5.0f%% %9.1f %9.1f %9.1f %5.0f%%\n",
        scoring_name(r.config.scoring).c_str(), r.config.keep_ratio, tile,
        r.vision_flops.total() / 1e9, r.vision_gflops(), r.vision_product_gflops,
        100 * share(r.vision_gflops(), r.vision_product_gflops), r.llm_flops.total() / 1e9,
        r.llm_gflops(), r.llm_product_gflops, 100 * share(r.llm_gflops(), r.llm_product_gflops));
    o << line;
  }
  if (!rows.empty()) {
    const VisionFlops& v = rows.front().vision_flops;
    const TextFlops& t = rows.front().llm_flops;
    const auto pct = [](double part, double all) { return all > 0 ? 100 * part / all : 0.0; };
    std::snprintf(line, sizeof(line),
                  "first row's work: vision patch embed %.0f%%, QKV+proj %.0f%%, attention %.0f%%, "
                  "MLP %.0f%%, mergers %.0f%%; LLM QKV+O %.0f%%, attention %.0f%%, MLP %.0f%%, "
                  "lm_head %.1f%%\n",
                  pct(v.patch_embed, v.total()), pct(v.qkv_proj, v.total()),
                  pct(v.attention, v.total()), pct(v.mlp, v.total()), pct(v.mergers, v.total()),
                  pct(t.qkv_o, t.total()), pct(t.attention, t.total()), pct(t.mlp, t.total()),
                  pct(t.lm_head, t.total()));
    o << line;
  }
  o << "GFLOP = work of one repeat counted from the model's shapes and the tokens each stage saw "
       "(multiply-add = 2);\nGF/s = GFLOP / median ms; prod.GF/s = a matrix product at the "
       "stage's sizes and dtype, measured in this process; share = GF/s / prod.GF/s\n";
  o << "times are medians in ms over the repeats after warm-up, repeats interleaved across rows;\n"
       "tile = vision tile in pixels (0 = whole pages); spread = min-max of total; model loading "
       "is excluded; speedup = first row's total / this "
       "row's total\n(same run, same machine); gen.tokens = tokens decoded in generate mode\n";
  return o.str();
}

std::string format_bench_jsonl(const std::vector<BenchRow>& rows) {
  std::ostringstream o;
  auto stat = [](const Stat& s) {
    return nlohmann::json{
        {"median", s.median}, {"min", s.min}, {"max", s.max}, {"mean", s.mean}, {"stdev", s.stdev}};
  };
  for (const auto& r : rows) {
    nlohmann::json j = {{"scoring", scoring_name(r.config.scoring)},
                        {"keep_ratio", r.config.keep_ratio},
                        {"vision_tile", r.config.vision_tile.value_or(0)},
                        {"pages", r.pages},
                        {"timing_ms",
                         {{"decode", stat(r.decode)},
                          {"preprocess", stat(r.preprocess)},
                          {"vision", stat(r.vision)},
                          {"prune", stat(r.prune)},
                          {"llm", stat(r.llm)},
                          {"total", stat(r.total)}}},
                        {"gflop",
                         {{"vision",
                           {{"total", r.vision_flops.total() / 1e9},
                            {"patch_embed", r.vision_flops.patch_embed / 1e9},
                            {"qkv_proj", r.vision_flops.qkv_proj / 1e9},
                            {"attention", r.vision_flops.attention / 1e9},
                            {"mlp", r.vision_flops.mlp / 1e9},
                            {"mergers", r.vision_flops.mergers / 1e9}}},
                          {"llm",
                           {{"total", r.llm_flops.total() / 1e9},
                            {"qkv_o", r.llm_flops.qkv_o / 1e9},
                            {"attention", r.llm_flops.attention / 1e9},
                            {"mlp", r.llm_flops.mlp / 1e9},
                            {"lm_head", r.llm_flops.lm_head / 1e9}}}}},
                        {"gflops",
                         {{"vision", r.vision_gflops()},
                          {"vision_product", r.vision_product_gflops},
                          {"llm", r.llm_gflops()},
                          {"llm_product", r.llm_product_gflops}}},
                        {"windows", r.windows},
                        {"tokens",
                         {{"input", r.input_tokens},
                          {"visual_before", r.visual_before},
                          {"visual_after", r.visual_after},
                          {"generated", r.generated}}}};
    o << j.dump() << "\n";
  }
  return o.str();
}

}  // namespace ziprerank
