#include "train/grounding.hpp"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/json_util.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/similarity.hpp"

namespace ziprerank::train {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<PlacedWord> passage_words(const std::string& text,
                                      const PassageRenderOptions& options) {
  const PassageLayout layout = layout_passage(text, options);
  std::vector<PlacedWord> out;
  if (layout.font_size <= 0) return out;
  // draw_passage puts line i's origin at (padding, padding + i * line_height); a word's ink ends
  // where the ink of the line up to and including it ends.
  const auto ay = passage_text_bbox("Ay", layout.font_size, options);
  const double mid_y = 0.5 * (ay[1] + ay[3]);
  const int drawn = std::min<int>(layout.drawn_lines, static_cast<int>(layout.lines.size()));
  for (int i = 0; i < drawn; ++i) {
    const std::string& line = layout.lines[i];
    const double y = options.padding + static_cast<double>(i) * layout.line_height + mid_y;
    size_t pos = 0;
    while (pos < line.size()) {
      const size_t start = line.find_first_not_of(' ', pos);
      if (start == std::string::npos) break;
      size_t end = line.find(' ', start);
      if (end == std::string::npos) end = line.size();
      const auto prefix = passage_text_bbox(line.substr(0, end), layout.font_size, options);
      const auto word =
          passage_text_bbox(line.substr(start, end - start), layout.font_size, options);
      const double right = options.padding + prefix[2];
      const double left = right - (word[2] - word[0]);
      out.push_back({line.substr(start, end - start), 0.5 * (left + right), y});
      pos = end;
    }
  }
  return out;
}

const std::vector<PlacedWord>* PageWordIndex::find(const std::string& image_path) {
  const fs::path p(image_path);
  const std::string folder = p.parent_path().string();
  auto it = folders_.find(folder);
  if (it == folders_.end()) {
    std::unordered_map<std::string, std::vector<PlacedWord>> pages;
    const fs::path sidecar = p.parent_path() / "words.json";
    if (fs::exists(sidecar)) {
      const std::string origin = sidecar.string();
      const json doc = detail::parse_json(detail::read_text_file(origin), origin);
      try {
        std::vector<std::string> files;
        for (const json& page : doc.at("pages"))
          files.push_back(page.at("file").get<std::string>());
        for (const json& w : doc.at("words")) {
          const auto page = w.at("page").get<int64_t>();
          if (page < 0 || page >= static_cast<int64_t>(files.size())) {
            throw InputError(origin + ": a word on page " + std::to_string(page) +
                             ", which the file does not list");
          }
          const json& box = w.at("box");
          const double cx = 0.5 * (box.at(0).get<double>() + box.at(2).get<double>());
          const double cy = 0.5 * (box.at(1).get<double>() + box.at(3).get<double>());
          pages[files[static_cast<size_t>(page)]].push_back(
              {w.at("text").get<std::string>(), cx, cy});
        }
      } catch (const json::exception& e) {
        throw InputError(origin + ": not a word-box sidecar (" + e.what() + ")");
      }
    }
    it = folders_.emplace(folder, std::move(pages)).first;
  }
  const auto page = it->second.find(p.filename().string());
  return page == it->second.end() ? nullptr : &page->second;
}

const std::vector<int64_t>& WordPieces::get(const std::string& word) {
  auto it = cache_.find(word);
  if (it != cache_.end()) return it->second;
  return cache_.emplace(word, word_pieces(*tokenizer_, word)).first->second;
}

namespace {

// Where word centres fall on an image's grid of merged visual tokens: `words` are in the pixels of
// the decoded image, which preprocessing resized to grid_thw x patch_size (the resize does not
// keep the aspect ratio exactly, hence one scale per axis).
class MergedGrid {
 public:
  MergedGrid(int image_width, int image_height, const std::array<int64_t, 3>& grid_thw,
             int64_t patch_size, int64_t merge_size)
      : rows_(grid_thw[1] / merge_size),
        cols_(grid_thw[2] / merge_size),
        cell_(static_cast<double>(patch_size * merge_size)),
        valid_(image_width > 0 && image_height > 0),
        sx_(valid_ ? static_cast<double>(grid_thw[2] * patch_size) / image_width : 0),
        sy_(valid_ ? static_cast<double>(grid_thw[1] * patch_size) / image_height : 0) {}

  int64_t size() const { return rows_ * cols_; }

  /// Row-major index of the merged token holding the word's centre, or -1 when none does.
  int64_t cell_of(const PlacedWord& w) const {
    if (!valid_) return -1;
    const auto col = static_cast<int64_t>(w.cx * sx_ / cell_);
    const auto row = static_cast<int64_t>(w.cy * sy_ / cell_);
    if (col < 0 || col >= cols_ || row < 0 || row >= rows_) return -1;
    return row * cols_ + col;
  }

 private:
  int64_t rows_, cols_;
  double cell_;
  bool valid_;
  double sx_, sy_;
};

}  // namespace

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

int64_t merged_cell_of(const PlacedWord& word, int image_width, int image_height,
                       const std::array<int64_t, 3>& grid_thw, int64_t patch_size,
                       int64_t merge_size) {
  return MergedGrid(image_width, image_height, grid_thw, patch_size, merge_size).cell_of(word);
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
