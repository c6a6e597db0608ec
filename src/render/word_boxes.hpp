// Word boxes: where each word of a rendered page or passage is drawn (the `words.json` sidecar
// that `ziprerank render --document` writes, or the passage layout), and which merged visual
// token of a page's grid holds a word. Used to teach and to measure reading (train's grounding
// loss, bench's pruning recall). Private to the library.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "ziprerank/render.hpp"

namespace ziprerank {

/// A drawn word and the centre of its box, in the pixels of the image it is drawn on.
struct PlacedWord {
  std::string text;
  double cx = 0, cy = 0;
};

/// The words of a stage-1 passage as render_passage draws them (lines that fit; no "...").
std::vector<PlacedWord> passage_words(const std::string& text, const PassageRenderOptions& options);

/// Word boxes of rendered document pages, read from the `words.json` sidecar that
/// the document mode of `ziprerank render` (and so scripts/make_stage2_data.py) writes beside the
/// page images. Each sidecar is read once.
class PageWordIndex {
 public:
  /// The words on the page image at `image_path`, or nullptr when no sidecar describes it.
  /// Throws InputError for a sidecar that is not valid JSON or lacks its fields.
  const std::vector<PlacedWord>* find(const std::string& image_path);

 private:
  // folder -> (page file name -> words)
  std::map<std::string, std::unordered_map<std::string, std::vector<PlacedWord>>> folders_;
};

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

/// Row-major index of the merged visual token that holds the centre of `word` (in the pixels of
/// the decoded `image_width` x `image_height` image), or -1 when it falls outside the grid.
int64_t merged_cell_of(const PlacedWord& word, int image_width, int image_height,
                       const std::array<int64_t, 3>& grid_thw, int64_t patch_size,
                       int64_t merge_size);

}  // namespace ziprerank
