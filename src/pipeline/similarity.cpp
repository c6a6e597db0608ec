#include "ziprerank/similarity.hpp"

#include <cctype>

#include "core/utf8.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace {

bool ascii_punct(unsigned char c) { return c < 0x80 && !std::isalnum(c); }

std::string strip_punct(const std::string& word) {
  size_t b = 0, e = word.size();
  while (b < e && ascii_punct(static_cast<unsigned char>(word[b]))) ++b;
  while (e > b && ascii_punct(static_cast<unsigned char>(word[e - 1]))) --e;
  return word.substr(b, e - b);
}

}  // namespace

std::vector<int64_t> word_pieces(const Tokenizer& tokenizer, const std::string& word) {
  const std::string core = strip_punct(word);
  std::vector<int64_t> ids;
  if (core.empty()) return ids;
  ids = tokenizer.encode(" " + core);
  const std::string lower = detail::ascii_lower(core);
  if (lower != core) {
    for (int64_t id : tokenizer.encode(" " + lower)) ids.push_back(id);
  }
  return ids;
}

std::vector<SimilarityWord> similarity_words(const Tokenizer& tokenizer, const std::string& query) {
  std::vector<SimilarityWord> out;
  size_t i = 0;
  while (i < query.size()) {
    while (i < query.size() && std::isspace(static_cast<unsigned char>(query[i]))) ++i;
    size_t j = i;
    while (j < query.size() && !std::isspace(static_cast<unsigned char>(query[j]))) ++j;
    if (j > i) {
      SimilarityWord w;
      w.text = strip_punct(query.substr(i, j - i));
      w.pieces = word_pieces(tokenizer, w.text);
      w.weight = static_cast<double>(detail::utf8_to_u32(w.text).size());
      if (!w.pieces.empty()) out.push_back(std::move(w));
    }
    i = j;
  }
  if (out.empty()) throw InputError("the query has no words to match (only spaces or punctuation)");
  return out;
}

SimilarityQuery similarity_query(const std::vector<SimilarityWord>& words,
                                 const std::function<at::Tensor(const at::Tensor&)>& embed) {
  if (words.empty()) throw InternalError("similarity_query: no words");
  std::vector<at::Tensor> dirs;
  std::vector<float> weights;
  for (const SimilarityWord& w : words) {
    at::Tensor e = embed(at::tensor(w.pieces, at::kLong)).to(at::kFloat);
    e = e / e.norm(2, {1}, true).clamp_min(1e-12);
    dirs.push_back(e.mean(0));
    weights.push_back(static_cast<float>(w.weight));
  }
  SimilarityQuery q;
  q.directions = at::stack(dirs);
  q.weights = at::tensor(weights, at::kFloat).to(q.directions.device());
  return q;
}

double similarity_score(const SimilarityQuery& query, const at::Tensor& visual) {
  if (visual.dim() != 2 || visual.size(1) != query.directions.size(1)) {
    throw InputError(
        "similarity scoring: visual tokens " +
        std::string(visual.dim() == 2 ? std::to_string(visual.size(1)) + " wide" : "not a matrix") +
        ", text embeddings " + std::to_string(query.directions.size(1)) + " wide");
  }
  if (visual.size(0) == 0) return 0.0;
  at::Tensor v = visual.to(query.directions.device(), at::kFloat);
  v = v / v.norm(2, {1}, true).clamp_min(1e-12);
  // [tokens, words]: each token's mean cosine with each word's pieces; best token per word.
  const at::Tensor best = std::get<0>(at::mm(v, query.directions.t()).max(0));
  return (best * query.weights).sum().item<double>();
}

}  // namespace ziprerank
