// The two ways of scoring a window that do not read identifier logits: per-page similarity
// (no language model) and greedy generation of the ranking (the reference's slow baseline).
// Private to the pipeline module; detail::Stages::score_window calls them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/stages.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

/// Positions of `scores` from the highest down; ties keep their order.
std::vector<int> stable_order_desc(const std::vector<double>& scores);

/// Per-page similarity scores of a window, on the visual tokens query-aware pruning keeps (all of
/// them at keep 1.0): what the language model would see.
WindowScores similarity_window(const Qwen3VLModel& model, const Tokenizer& tokenizer,
                               const std::string& query,
                               const std::vector<const VisionFeatures*>& pages,
                               const RerankOptions& options, TokenCounts& tokens);

/// Greedy decoding from `input` for at most `max_tokens` tokens, stopping at an end token, with
/// the repetition penalty and minimum length generation_config.json asks of greedy decoding
/// (transformers' generate with do_sample=False). `in_sequence`: the prompt's token ids.
std::vector<int64_t> greedy_generate(const Qwen3VLModel& model, const GenerationSettings& gen,
                                     const TextInput& input, std::vector<int64_t> in_sequence,
                                     int max_tokens);

}  // namespace ziprerank
