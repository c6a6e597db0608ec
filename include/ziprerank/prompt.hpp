// The listwise ranking prompt and its token sequence, exactly as the reference pipeline builds
// them: one user turn holding the instruction text followed by the candidate images, then the
// assistant turn opened with "[" so that the next token is a candidate's identifier letter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ziprerank/config.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

/// Largest window: identifiers run A..Z.
constexpr int kMaxWindow = 26;

/// Identifier of the i-th candidate (0-based): "A", "B", ...
std::string identifier(int index);

/// The instruction text for `n` candidates (RankGPT wording of the reference).
std::string ranking_prompt_text(const std::string& query, int n);

/// Id of a string that must be a single token (exact vocabulary entry or a one-token encoding).
int64_t single_token_id(const Tokenizer& tokenizer, const std::string& text);

struct PromptTokens {
  std::vector<int64_t> ids;             ///< full sequence, image pads expanded, ends with "["
  std::vector<int64_t> image_starts;    ///< index of each image's first pad token
  std::vector<int64_t> identifier_ids;  ///< token id of each candidate's letter
  int64_t query_begin = 0;              ///< the query's own tokens are ids[query_begin, query_end)
  int64_t query_end = 0;
};

/// Builds the token sequence for `query` and images with the given visual token counts.
/// Throws InputError for an empty query or more than kMaxWindow images.
PromptTokens build_ranking_prompt(const Tokenizer& tokenizer, const ModelConfig& config,
                                  const std::string& query,
                                  const std::vector<int64_t>& tokens_per_image);

/// Parses a generated ranking such as "A] > [C] > [B]" (the text after the opening "[") into
/// candidate indices, as the reference does: letters A..T in order of appearance (without any,
/// runs of decimal digits as 1-based positions, Unicode digits too, as Python's \d), duplicates
/// and out-of-range ones dropped, missing candidates appended in their original order.
std::vector<int> parse_generated_ranking(const std::string& text, int n);

}  // namespace ziprerank
