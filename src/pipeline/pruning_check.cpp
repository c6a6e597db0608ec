#include "ziprerank/pruning_check.hpp"

#include <ATen/ATen.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/utf8.hpp"
#include "pipeline/stages.hpp"
#include "render/word_boxes.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/image.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"

namespace ziprerank {

namespace {

// Case-folded, without leading and trailing punctuation.
std::string fold_word(const std::string& w) {
  size_t b = 0, e = w.size();
  while (b < e && !std::isalnum(static_cast<unsigned char>(w[b]))) ++b;
  while (e > b && !std::isalnum(static_cast<unsigned char>(w[e - 1]))) --e;
  return detail::ascii_lower(w.substr(b, e - b));
}

}  // namespace

PruningRecallReport measure_pruning_recall(const Reranker& reranker,
                                           const std::string& queries_path,
                                           const std::vector<double>& keep_ratios, int64_t limit,
                                           size_t min_word_length) {
  if (keep_ratios.empty()) throw UsageError("give at least one keep ratio");
  for (double r : keep_ratios) {
    if (!(r > 0 && r <= 1)) throw UsageError("keep ratios must be in (0, 1]");
  }
  std::ifstream in(queries_path, std::ios::binary);
  if (!in) throw InputError("cannot open '" + queries_path + "'");
  const std::string base_dir = std::filesystem::absolute(queries_path).parent_path().string();
  const detail::Stages stages(reranker);
  const Qwen3VLModel& model = stages.model();
  const RerankOptions defaults;  // the page as ranking reads it: the model's own vision tile
  const int tile = stages.vision_tile(defaults);
  const ModelConfig& c = model.config();
  const int64_t merge = c.vision.spatial_merge_size;
  PageWordIndex words_index;
  c10::InferenceMode guard;

  PruningRecallReport report;
  std::vector<int64_t> kept_words(keep_ratios.size(), 0), kept_all(keep_ratios.size(), 0);
  std::vector<double> page_recall_sum(keep_ratios.size(), 0);
  int64_t all_tokens = 0;
  size_t row = 0;
  for (std::string line; std::getline(in, line);) {
    ++row;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (limit > 0 && report.queries >= limit) break;
    const BatchQuery q =
        parse_batch_query(line, base_dir, queries_path + ":" + std::to_string(row));
    ++report.queries;
    std::set<std::string> query_words;
    {
      std::istringstream words(q.query);
      for (std::string w; words >> w;) {
        const std::string f = fold_word(w);
        if (f.size() >= min_word_length) query_words.insert(f);
      }
    }
    for (const PageRef& page : q.candidates) {
      if (std::find(q.relevant.begin(), q.relevant.end(), page.id) == q.relevant.end()) continue;
      const std::vector<PlacedWord>* words =
          page.pdf_page == 0 ? words_index.find(page.path) : nullptr;
      if (!words || query_words.empty()) {
        ++report.skipped;
        continue;
      }
      const Image image = load_image(page.path);
      const PreprocessedImage pre = stages.prepare(image, defaults);
      StageTiming timing;
      const auto encoded = stages.encode({pre}, timing, tile, /*deepstack=*/false);
      const at::Tensor visual = encoded.at(0)->features.embeds.to(at::kFloat);
      std::set<int64_t> cells;
      for (const PlacedWord& w : *words) {
        if (!query_words.count(fold_word(w.text))) continue;
        const int64_t cell =
            merged_cell_of(w, image.width, image.height, pre.grid_thw, c.vision.patch_size, merge);
        if (cell >= 0 && cell < visual.size(0)) cells.insert(cell);
      }
      if (cells.empty()) {
        ++report.skipped;
        continue;
      }
      const PromptTokens prompt =
          build_ranking_prompt(stages.tokenizer(), c, q.query, {visual.size(0)});
      const at::Tensor text = pruning_text_embeds(model, prompt);
      ++report.pages;
      report.word_tokens += static_cast<int64_t>(cells.size());
      all_tokens += visual.size(0);
      for (size_t k = 0; k < keep_ratios.size(); ++k) {
        const at::Tensor kept = select_visual_tokens(text, {visual}, keep_ratios[k]).at(0).cpu();
        const auto* kp = kept.data_ptr<int64_t>();
        int64_t hit = 0;
        for (int64_t i = 0; i < kept.numel(); ++i) hit += cells.count(kp[i]) ? 1 : 0;
        kept_words[k] += hit;
        kept_all[k] += kept.numel();
        page_recall_sum[k] += static_cast<double>(hit) / static_cast<double>(cells.size());
      }
    }
  }
  for (size_t k = 0; k < keep_ratios.size(); ++k) {
    PruningRecall r;
    r.keep_ratio = keep_ratios[k];
    if (report.pages > 0) {
      r.recall = static_cast<double>(kept_words[k]) / static_cast<double>(report.word_tokens);
      r.kept_share = static_cast<double>(kept_all[k]) / static_cast<double>(all_tokens);
      r.page_recall = page_recall_sum[k] / static_cast<double>(report.pages);
    }
    report.rows.push_back(r);
  }
  return report;
}

}  // namespace ziprerank
