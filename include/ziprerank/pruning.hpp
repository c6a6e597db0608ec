// Query-aware visual token pruning (QI-Early) and assembly of the language-model input.
//
// Each page's merged visual tokens are scored by their best cosine similarity to the text token
// embeddings that precede the first image (the instruction, chat tokens and the query; or the
// query's tokens alone where the model's config says `qi_early_text_mode: query_only`); the top
// k = max(1, round-half-even(ratio x N)) tokens are kept in their original order and keep their
// original (t, h, w) M-RoPE positions. DeepStack features are pruned with the same indices.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "ziprerank/model.hpp"
#include "ziprerank/prompt.hpp"

namespace ziprerank {

/// Number of tokens kept out of n at a keep ratio.
int64_t kept_token_count(int64_t n, double keep_ratio);

/// Indices (ascending) of the visual tokens kept for each image. `text_embeds` [T, D];
/// `image_embeds` [N_i, D] per image. Selection runs without gradient.
std::vector<at::Tensor> select_visual_tokens(const at::Tensor& text_embeds,
                                             const std::vector<at::Tensor>& image_embeds,
                                             double keep_ratio);

/// The language-model input of one sequence plus bookkeeping.
struct AssembledSequence {
  TextInput input;            ///< batch of 1
  int64_t visual_before = 0;  ///< visual tokens before pruning
  int64_t visual_after = 0;   ///< visual tokens fed to the language model
  std::vector<int64_t> kept_per_image;
};

/// Rows of the prompt the visual tokens are compared with: [begin, end), clipped at the first
/// image; vision markers and pads inside are skipped.
struct PruningText {
  int64_t begin = 0;
  int64_t end = -1;  ///< -1: up to the first image
};

/// The span the model's config asks for (`qi_early_text_mode`): everything before the first
/// image, or the query's own tokens.
PruningText pruning_text(const ModelConfig& config, const PromptTokens& prompt);

/// The rows of `ids` whose embeddings pruning compares with: those of `span` before the first
/// image or video pad, without vision markers.
std::vector<int64_t> pruning_text_rows(const ModelConfig& config, const std::vector<int64_t>& ids,
                                       const PruningText& span);

/// The embeddings ([T, D], float) of the prompt rows pruning compares visual tokens with, as the
/// model's config asks (pruning_text, pruning_text_rows).
at::Tensor pruning_text_embeds(const Qwen3VLModel& model, const PromptTokens& prompt);

/// Builds embeddings, positions, visual mask and DeepStack rows for `ids` (image pads expanded,
/// one run per image, in order) with the given vision features. keep_ratio >= 1 keeps every token.
AssembledSequence assemble_sequence(const Qwen3VLModel& model, const std::vector<int64_t>& ids,
                                    const std::vector<ImageGrid>& grids,
                                    const VisionFeatures& vision, double keep_ratio,
                                    const PruningText& text = {});

}  // namespace ziprerank
