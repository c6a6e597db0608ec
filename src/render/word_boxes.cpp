#include "render/word_boxes.hpp"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/json_util.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

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

int64_t merged_cell_of(const PlacedWord& word, int image_width, int image_height,
                       const std::array<int64_t, 3>& grid_thw, int64_t patch_size,
                       int64_t merge_size) {
  return MergedGrid(image_width, image_height, grid_thw, patch_size, merge_size).cell_of(word);
}

}  // namespace ziprerank
