#include "train/grounding.hpp"

#include <algorithm>
#include <map>

#include "ziprerank/errors.hpp"
#include "ziprerank/similarity.hpp"

namespace ziprerank::train {

const std::vector<int64_t>& WordPieces::get(const std::string& word) {
  auto it = cache_.find(word);
  if (it != cache_.end()) return it->second;
  return cache_.emplace(word, word_pieces(*tokenizer_, word)).first->second;
}

void add_grounding_targets(const std::vector<PlacedWord>& words, int image_width, int image_height,
                           const std::array<int64_t, 3>& grid_thw, int64_t patch_size,
                           int64_t merge_size, int64_t token_offset, WordPieces& pieces,
                           GroundingTargets* targets) {
  const MergedGrid grid(image_width, image_height, grid_thw, patch_size, merge_size);
  std::map<int64_t, std::vector<int64_t>> by_token;
  for (const PlacedWord& w : words) {
    const int64_t cell = grid.cell_of(w);
    if (cell < 0) continue;
    const std::vector<int64_t>& ids = pieces.get(w.text);
    if (ids.empty()) continue;
    auto& dst = by_token[token_offset + cell];
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  for (auto& [token, ids] : by_token) {
    targets->token_index.push_back(token);
    targets->pieces.push_back(std::move(ids));
  }
}

std::vector<int64_t> words_on_grid(const std::vector<PlacedWord>& words, int image_width,
                                   int image_height, const std::array<int64_t, 3>& grid_thw,
                                   int64_t patch_size, int64_t merge_size,
                                   const Tokenizer& tokenizer, int64_t pad_id) {
  const MergedGrid grid(image_width, image_height, grid_thw, patch_size, merge_size);
  std::vector<int64_t> ids(static_cast<size_t>(grid.size()), pad_id);
  std::vector<char> used(ids.size(), 0);
  for (const PlacedWord& w : words) {
    int64_t at = grid.cell_of(w);
    if (at < 0) continue;
    for (int64_t id : tokenizer.encode(" " + w.text)) {
      while (at < grid.size() && used[static_cast<size_t>(at)]) ++at;
      if (at >= grid.size()) break;
      ids[static_cast<size_t>(at)] = id;
      used[static_cast<size_t>(at)] = 1;
    }
  }
  return ids;
}

at::Tensor grounding_loss(const at::Tensor& visual, const at::Tensor& embeddings,
                          const GroundingTargets& targets, double scale) {
  if (targets.size() == 0) return {};
  const auto dev = visual.device();
  const int64_t m = static_cast<int64_t>(targets.size());
  const int64_t vocab = embeddings.size(0);
  std::vector<float> weights(static_cast<size_t>(m * vocab), 0.0f);
  for (int64_t i = 0; i < m; ++i) {
    const auto& ids = targets.pieces[static_cast<size_t>(i)];
    const float w = 1.0f / static_cast<float>(ids.size());
    for (int64_t id : ids) {
      if (id < 0 || id >= vocab) throw InternalError("grounding target id outside the vocabulary");
      weights[static_cast<size_t>(i * vocab + id)] += w;
    }
  }
  const at::Tensor target = at::from_blob(weights.data(), {m, vocab}, at::kFloat).clone().to(dev);
  const at::Tensor index = at::tensor(targets.token_index, at::kLong).to(dev);
  const at::Tensor v = visual.index_select(0, index).to(at::kFloat);
  const at::Tensor v_n = v / v.norm(2, {1}, true).clamp_min(1e-6);
  const at::Tensor e = embeddings.detach().to(at::kFloat);
  const at::Tensor e_n = e / e.norm(2, {1}, true).clamp_min(1e-6);
  const at::Tensor logp = at::log_softmax(at::mm(v_n, e_n.t()) * scale, 1);
  return -(target * logp).sum() / static_cast<double>(m);
}

}  // namespace ziprerank::train
