#include "pipeline/window_scoring.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/similarity.hpp"

namespace ziprerank {

std::vector<int> stable_order_desc(const std::vector<double>& scores) {
  std::vector<int> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  return order;
}

WindowScores similarity_window(const Qwen3VLModel& model, const Tokenizer& tokenizer,
                               const std::string& query,
                               const std::vector<const VisionFeatures*>& pages,
                               const RerankOptions& options, TokenCounts& tokens) {
  const ModelConfig& c = model.config();
  const SimilarityQuery q =
      similarity_query(similarity_words(tokenizer, query),
                       [&model](const at::Tensor& ids) { return model.embed(ids); });
  // Pages are scored on the visual tokens query-aware pruning keeps (all of them at keep 1.0),
  // what the language model would see.
  std::vector<at::Tensor> kept_idx;
  if (options.keep_ratio < 1.0) {
    std::vector<int64_t> counts;
    for (const VisionFeatures* page : pages) counts.push_back(page->embeds.size(0));
    const at::Tensor text =
        pruning_text_embeds(model, build_ranking_prompt(tokenizer, c, query, counts));
    std::vector<at::Tensor> embeds;
    for (const VisionFeatures* page : pages)
      embeds.push_back(page->embeds.to(text.device(), at::kFloat));
    kept_idx = select_visual_tokens(text, embeds, options.keep_ratio);
  }
  WindowScores out;
  for (size_t i = 0; i < pages.size(); ++i) {
    const at::Tensor& all = pages[i]->embeds;
    const at::Tensor kept =
        kept_idx.empty() ? all : all.index_select(0, kept_idx[i].to(all.device()));
    out.logits.push_back(similarity_score(q, kept));
    tokens.visual_before += all.size(0);
    tokens.visual_after += kept.size(0);
  }
  out.order = stable_order_desc(out.logits);
  return out;
}

std::vector<int64_t> greedy_generate(const Qwen3VLModel& model, const GenerationSettings& gen,
                                     const TextInput& input, std::vector<int64_t> in_sequence,
                                     int max_tokens) {
  const ModelConfig& c = model.config();
  std::vector<int64_t> stops = gen.eos_token_ids;
  stops.push_back(c.eos_token_id);
  stops.push_back(c.pad_token_id);
  const auto is_stop = [&](int64_t t) {
    return std::find(stops.begin(), stops.end(), t) != stops.end();
  };
  KVCache cache;
  at::Tensor hidden = model.forward(input, &cache);
  int64_t next_pos = input.position_ids.max().item<int64_t>() + 1;
  std::vector<int64_t> generated;
  const auto dev = hidden.device();
  for (int step = 0; step < max_tokens; ++step) {
    at::Tensor logits =
        model.logits(hidden.select(1, hidden.size(1) - 1)).to(at::kFloat).reshape({-1});
    if (gen.repetition_penalty != 1.0) {
      std::sort(in_sequence.begin(), in_sequence.end());
      in_sequence.erase(std::unique(in_sequence.begin(), in_sequence.end()), in_sequence.end());
      const at::Tensor idx = at::tensor(in_sequence, at::kLong).to(logits.device());
      const at::Tensor seen = logits.index_select(0, idx);
      logits.index_copy_(
          0, idx,
          at::where(seen < 0, seen * gen.repetition_penalty, seen / gen.repetition_penalty));
    }
    if (step < gen.min_new_tokens) {
      for (int64_t t : stops)
        if (t >= 0 && t < logits.size(0)) logits[t] = -INFINITY;
    }
    const int64_t tok = logits.argmax(-1).item<int64_t>();
    if (is_stop(tok)) break;
    generated.push_back(tok);
    in_sequence.push_back(tok);
    TextInput step_in;
    step_in.embeds =
        model.embed(at::full({1, 1}, tok, at::TensorOptions().dtype(at::kLong).device(dev)));
    step_in.position_ids =
        at::full({3, 1, 1}, next_pos++, at::TensorOptions().dtype(at::kLong).device(dev));
    hidden = model.forward(step_in, &cache);
  }
  return generated;
}

}  // namespace ziprerank
