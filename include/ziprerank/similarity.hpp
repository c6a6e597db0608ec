#pragma once
// Similarity scoring: ranking pages by how well their merged visual tokens match the query's
// words in the text-embedding space, with no language-model pass. This is how a model whose
// vision tower was trained to read (each merged visual token pointing at the embeddings of the
// words drawn under it) ranks pages; `--scoring similarity` selects it.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

/// The token ids that stand for one written word: its pieces as they follow a space (how a word
/// after "Search Query: " is tokenised), then those of its lower-case form when that differs.
/// Leading and trailing ASCII punctuation is dropped first; empty when nothing remains. A reading
/// tower is trained towards exactly these pieces for each word on a page, so query words are
/// matched through the same rule.
std::vector<int64_t> word_pieces(const Tokenizer& tokenizer, const std::string& word);

/// One query word as similarity scoring matches it.
struct SimilarityWord {
  std::string text;             ///< the word without its leading and trailing punctuation
  std::vector<int64_t> pieces;  ///< word_pieces(text)
  double weight = 0;            ///< its length in characters (code points)
};

/// The query split at white space into words; words with no piece (punctuation only) are left
/// out. Throws InputError when no word remains.
std::vector<SimilarityWord> similarity_words(const Tokenizer& tokenizer, const std::string& query);

/// The query in the form pages are scored against.
struct SimilarityQuery {
  at::Tensor directions;  ///< [words, hidden] float: the mean of each word's unit piece embeddings
  at::Tensor weights;     ///< [words] float
};

/// `embed` maps a 1-D tensor of token ids to their input embeddings ([n, hidden]).
SimilarityQuery similarity_query(const std::vector<SimilarityWord>& words,
                                 const std::function<at::Tensor(const at::Tensor&)>& embed);

/// A page's score: the weighted sum over the query's words of the word's best match among the
/// page's visual tokens (`visual`: [tokens, hidden]), where a token matches a word by the mean
/// cosine between the token and the word's pieces. All of a word's pieces must meet in one
/// token to score fully, and a long word (rarer, more telling) weighs more than a short one.
double similarity_score(const SimilarityQuery& query, const at::Tensor& visual);

}  // namespace ziprerank
