// A program that embeds libziprerank: ranks the page images (or PDF pages) of a folder for one
// query with the default model, and prints the ranking best first.
//
//   rank_folder "which page shows the revenue by year?" pages/ [model-folder]
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <string>

#include "ziprerank/errors.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/runtime.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s QUERY FOLDER [MODEL]\n", argv[0]);
    return 2;
  }
  try {
    spdlog::set_default_logger(spdlog::stderr_color_mt("rank_folder"));  // results alone on stdout
    spdlog::set_level(spdlog::level::warn);
    ziprerank::use_native_blas_kernels(argv);  // OpenBLAS's best kernels for this CPU
    const int workers = ziprerank::configure_threads(0);
    const std::string model = argc > 3 ? argv[3] : ziprerank::default_model_dir();
    auto reranker = ziprerank::Reranker::load(model, ziprerank::ModelOptions{});
    reranker->set_encode_workers(workers);

    // Scoring, keep ratio and vision tile as the model folder says (what `rank` does by default).
    const ziprerank::RerankOptions options =
        reranker->resolve(ziprerank::RerankOptions{}, ziprerank::RankingChoice{});
    const auto pages = ziprerank::expand_page_inputs({argv[2]});
    const ziprerank::RerankResult result = reranker->rerank_pages(argv[1], pages, options);
    for (size_t i = 0; i < result.ranking.size(); ++i) {
      std::printf("%zu\t%s\t%.6f\n", i + 1, result.ranking[i].id.c_str(), result.ranking[i].score);
    }
    return 0;
  } catch (const ziprerank::Error& e) {
    std::fprintf(stderr, "rank_folder: %s\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank_folder: internal error: %s\n", e.what());
    return 4;
  }
}
