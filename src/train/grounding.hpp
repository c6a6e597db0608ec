// Word grounding for training: where each word of a rendered page or passage sits, which merged
// visual tokens show it, and a loss that pulls those tokens toward the text embeddings of the
// words they show. Query-aware pruning ranks visual tokens by cosine similarity with the query's
// text embeddings; a model trained from scratch only gets visual tokens living in that space when
// it is taught so, and the renderer knows where every word is drawn. Private to the library.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "render/word_boxes.hpp"
#include "ziprerank/render.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank::train {

// Word boxes live with the renderer that draws them (render/word_boxes.hpp).
using ziprerank::merged_cell_of;
using ziprerank::PageWordIndex;
using ziprerank::passage_words;
using ziprerank::PlacedWord;

/// Token ids a word is taught as (ziprerank::word_pieces, the rule similarity scoring matches
/// query words by), cached per word.
class WordPieces {
 public:
  explicit WordPieces(std::shared_ptr<const Tokenizer> tokenizer)
      : tokenizer_(std::move(tokenizer)) {}
  const std::vector<int64_t>& get(const std::string& word);

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

/// Which merged visual tokens show which words: for each such token its index among all visual
/// tokens of the sample and the piece ids of the words whose box centre falls inside it.
struct GroundingTargets {
  std::vector<int64_t> token_index;
  std::vector<std::vector<int64_t>> pieces;
  size_t size() const { return token_index.size(); }
};

/// Adds the targets of one image: `words` are in the pixels of the decoded image
/// (`image_width` x `image_height`), which preprocessing resized to grid_thw x patch_size; the
/// image's merged tokens start at `token_offset` and run row by row over the merged grid.
void add_grounding_targets(const std::vector<PlacedWord>& words, int image_width, int image_height,
                           const std::array<int64_t, 3>& grid_thw, int64_t patch_size,
                           int64_t merge_size, int64_t token_offset, WordPieces& pieces,
                           GroundingTargets* targets);

/// The text a page shows, laid on its grid of merged visual tokens (row by row, `pad_id`
/// elsewhere): each word's pieces (as they follow a space) start at the cell of the word's centre,
/// or the next free cell after it, and run on to the right. Stands in for perfectly read visual
/// tokens (`--text-candidates` in stage 2). `words` are in the pixels of the decoded image.
std::vector<int64_t> words_on_grid(const std::vector<PlacedWord>& words, int image_width,
                                   int image_height, const std::array<int64_t, 3>& grid_thw,
                                   int64_t patch_size, int64_t merge_size,
                                   const Tokenizer& tokenizer, int64_t pad_id);

/// Mean over the targeted tokens of the cross-entropy between a uniform distribution over the
/// token's pieces and softmax(scale * cos(visual token, embedding row)) over the vocabulary.
/// `visual` [N, D] (with gradient), `embeddings` [V, D] (taken as constants). Undefined tensor
/// when there are no targets.
at::Tensor grounding_loss(const at::Tensor& visual, const at::Tensor& embeddings,
                          const GroundingTargets& targets, double scale = 20.0);

}  // namespace ziprerank::train
