// The stage-1 passage renderer of the reference (DocumentRenderer, fill-canvas path): wrapping,
// hyphenation, font-size search, line placement and "..." truncation follow it decision for
// decision; measuring and drawing go through render::Font, which reproduces Pillow's numbers.
#include <string>
#include <vector>

#include "render/font.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/render.hpp"

namespace ziprerank {

namespace {

using render::Font;
using render::FontCache;

void validate(const PassageRenderOptions& o) {
  auto fail = [](const std::string& what) { throw InputError("passage rendering: " + what); };
  if (o.size < 1 || o.size > 16384)
    fail("canvas size must be 1..16384, got " + std::to_string(o.size));
  if (o.padding < 0) fail("padding must not be negative");
  if (o.size <= 2 * o.padding) {
    fail("canvas size " + std::to_string(o.size) + " leaves no room inside padding " +
         std::to_string(o.padding));
  }
  if (o.line_spacing < 0) fail("line spacing must not be negative");
  if (o.font_size < 1 || o.min_font < 1 || o.max_font < 1) fail("font sizes must be positive");
  if (o.font_size > 1024 || o.max_font > 1024) fail("font sizes above 1024 px are not supported");
}

std::string font_path(const PassageRenderOptions& o) {
  return o.font_path.empty() ? std::string(kDefaultPassageFont) : o.font_path;
}

// A word wider than the line is cut into the longest prefixes that fit with a trailing "-"; the
// last piece keeps no hyphen. A piece is at least one character even when that overflows.
std::vector<std::u32string> split_long_word(const std::u32string& word, int limit, Font& font) {
  std::vector<std::u32string> pieces;
  const int dash_width = font.width(U"-");
  size_t start = 0;
  std::u32string trial;
  while (start < word.size()) {
    const size_t remaining = word.size() - start;
    size_t taken = 0;
    std::u32string piece;
    for (size_t n = 1; n <= remaining; ++n) {
      trial.assign(word, start, n);
      if (n < remaining) trial.push_back(U'-');
      if (font.width(trial) > limit) break;
      taken = n;
      piece = trial;
    }
    if (taken == 0) {
      piece.assign(1, word[start]);
      if (remaining > 1 && limit > dash_width) piece.push_back(U'-');
      taken = 1;
    }
    pieces.push_back(std::move(piece));
    start += taken;
  }
  if (!pieces.empty() && !pieces.back().empty() && pieces.back().back() == U'-') {
    pieces.back().pop_back();
  }
  return pieces;
}

// Greedy fill: a token joins the current line when the joined line still fits; a line never
// starts empty-handed, so an over-wide single token still takes a line of its own. Pieces of a
// hyphenated word join without a space.
std::vector<std::u32string> wrap(const std::u32string& text, int limit, Font& font) {
  if (limit <= 0) {
    if (text.empty()) return {};
    return {text};
  }
  struct Token {
    std::u32string text;
    bool glued;
  };
  std::vector<Token> tokens;
  for (auto& word : render::split_words(text)) {
    if (font.width(word) <= limit) {
      tokens.push_back({std::move(word), false});
    } else {
      auto pieces = split_long_word(word, limit, font);
      for (size_t k = 0; k < pieces.size(); ++k) tokens.push_back({std::move(pieces[k]), k > 0});
    }
  }
  std::vector<std::u32string> lines;
  std::u32string line, trial;
  for (const Token& token : tokens) {
    bool glued = token.glued;
    while (true) {
      if (line.empty()) {
        line = token.text;
        break;
      }
      trial = line;
      if (!glued) trial.push_back(U' ');
      trial += token.text;
      if (font.width(trial) <= limit) {
        line.swap(trial);
        break;
      }
      lines.push_back(std::move(line));
      line.clear();
      glued = false;
    }
  }
  if (!line.empty()) lines.push_back(std::move(line));
  return lines;
}

int line_height(Font& font, int spacing) { return font.bbox(U"Ay").height() + spacing; }

}  // namespace

PassageLayout layout_passage(const std::string& text, const PassageRenderOptions& options) {
  validate(options);
  const std::string path = font_path(options);
  FontCache& cache = FontCache::local();
  const std::u32string u = render::utf8_to_u32(text);
  const int usable = options.size - 2 * options.padding;

  int best_size = options.font_size;
  Font* best_font = &cache.get(path, best_size, options.layout);
  std::vector<std::u32string> best_lines = wrap(u, usable, *best_font);

  if (options.fill_canvas) {
    const int lh = line_height(*best_font, options.line_spacing);
    const double ratio = static_cast<double>(best_lines.size()) * lh / usable;
    if (!(ratio >= options.fill_threshold)) {
      // Largest size whose wrapped text fits the usable height; the search assumes that fitting
      // is monotone in the size, as the reference does, and keeps the start size if none fits.
      int lo = options.min_font, hi = options.max_font;
      while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2;
        Font& font = cache.get(path, mid, options.layout);
        auto lines = wrap(u, usable, font);
        const int64_t height =
            static_cast<int64_t>(lines.size()) * line_height(font, options.line_spacing);
        if (height <= usable) {
          best_size = mid;
          best_font = &font;
          best_lines = std::move(lines);
          lo = mid + 1;
        } else {
          hi = mid - 1;
        }
      }
    }
  }

  PassageLayout layout;
  layout.font_size = best_size;
  layout.line_height = line_height(*best_font, options.line_spacing);
  layout.lines.reserve(best_lines.size());
  for (const auto& line : best_lines) layout.lines.push_back(render::u32_to_utf8(line));

  const int n = static_cast<int>(best_lines.size());
  const int lh = layout.line_height;
  if (options.fill_canvas) {
    const int bottom = options.size - options.padding;
    int y = options.padding;
    for (int i = 0; i < n; ++i) {
      if (y + lh > bottom) {
        layout.ellipsis = y + lh / 2 <= bottom;
        break;
      }
      ++layout.drawn_lines;
      y += lh;
    }
  } else {
    const int max_lines = lh > 0 ? usable / lh : n;
    layout.drawn_lines = std::min(n, max_lines);
    layout.ellipsis = n > max_lines;
  }
  return layout;
}

Image draw_passage(const PassageLayout& layout, const PassageRenderOptions& options) {
  validate(options);
  Image image;
  image.width = options.size;
  image.height = options.size;
  image.rgb.assign(static_cast<size_t>(options.size) * options.size * 3, 255);
  if (layout.font_size <= 0) return image;
  Font& font = FontCache::local().get(font_path(options), layout.font_size, options.layout);
  const render::Rgb black{0, 0, 0};
  int y = options.padding;
  const int drawn = std::min<int>(layout.drawn_lines, static_cast<int>(layout.lines.size()));
  for (int i = 0; i < drawn; ++i) {
    font.draw(image, options.padding, y, render::utf8_to_u32(layout.lines[i]), black);
    y += layout.line_height;
  }
  if (layout.ellipsis) font.draw(image, options.padding, y, U"...", black);
  return image;
}

Image render_passage(const std::string& text, const PassageRenderOptions& options) {
  return draw_passage(layout_passage(text, options), options);
}

std::array<int, 4> passage_text_bbox(const std::string& text, int font_size,
                                     const PassageRenderOptions& options) {
  Font& font = FontCache::local().get(font_path(options), font_size, options.layout);
  const render::TextBox b = font.bbox(render::utf8_to_u32(text));
  return {b.left, b.top, b.right, b.bottom};
}

}  // namespace ziprerank
