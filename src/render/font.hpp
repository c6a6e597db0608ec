// FreeType text measurement and drawing that reproduce what Pillow's ImageFont.getbbox and
// ImageDraw.text compute, shared by the passage and document renderers.
//
// Pillow places glyphs at pen positions kept in 26.6 fixed point and rounded per glyph to whole
// pixels; a string's box is the union of the pen line (0 to the rounded pen end) and each glyph's
// hinted control box rounded outwards. The advances come from the layout engine: raqm (HarfBuzz
// over FreeType, unhinted advances) or Pillow's basic layout (hinted advances plus 'kern' table
// kerning). Glyph images are FreeType's anti-aliased renderings of the hinted outlines, combined
// per string by taking the maximum coverage and blended onto the canvas with Pillow's rounding.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/utf8.hpp"
#include "ziprerank/image.hpp"
#include "ziprerank/render.hpp"

namespace ziprerank::render {

using detail::u32_to_utf8;  // core/utf8.hpp
using detail::utf8_to_u32;

/// Python's str.isspace() (bidirectional class WS, B or S, or category Zs).
bool is_python_space(char32_t c);

/// Python's str.split() with no argument: runs of whitespace separate words, none are empty.
std::vector<std::u32string> split_words(std::u32string_view text);

/// A box in whole pixels, right/bottom exclusive, as Pillow reports them.
struct TextBox {
  int left = 0, top = 0, right = 0, bottom = 0;
  int width() const { return right - left; }
  int height() const { return bottom - top; }
  bool empty() const { return right <= left || bottom <= top; }
};

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

/// One face at one pixel size. Glyph metrics and bitmaps are cached; not thread-safe (each thread
/// gets its own fonts from FontCache::local()).
class Font {
 public:
  Font(void* library, const std::string& path, int pixel_size, TextLayout layout);
  ~Font();
  Font(const Font&) = delete;
  Font& operator=(const Font&) = delete;

  int pixel_size() const { return pixel_size_; }
  const std::string& path() const { return path_; }
  /// Rounded ascender/descender of the sized face (descender is negative).
  int ascender() const { return ascender_; }
  int descender() const { return descender_; }
  bool has_glyph(char32_t c);

  /// Pillow's getbbox(text) with the default "la" anchor (left, ascender).
  TextBox bbox(std::u32string_view text);
  /// getbbox width (right - left), the quantity the reference's wrapping compares.
  int width(std::u32string_view text) {
    const TextBox b = bbox(text);
    return b.right - b.left;
  }
  /// Pen advance of the whole string in 26.6 fixed point (Pillow's getlength x 64).
  int64_t advance_26_6(std::u32string_view text);

  /// Draws `text` with its "la" anchor at (x, y), as ImageDraw.text((x, y), text, fill=color)
  /// does on an RGB image. Returns the box of the glyph images actually placed on the canvas
  /// (clipped to it; empty when nothing was drawn).
  TextBox draw(Image& image, int x, int y, std::u32string_view text, Rgb color);

 private:
  struct Glyph {
    uint32_t index = 0;
    int32_t advance = 0;  // 26.6, as the layout engine positions the next glyph
    int cbox_x0 = 0, cbox_y0 = 0, cbox_x1 = 0, cbox_y1 = 0;  // pixels, y up
    bool rendered = false;
    int bitmap_left = 0, bitmap_top = 0, bitmap_width = 0, bitmap_rows = 0;
    std::vector<uint8_t> bitmap;  // bitmap_rows x bitmap_width coverage
  };
  const Glyph& glyph(char32_t c);
  const Glyph& rendered_glyph(char32_t c);
  /// The glyphs drawn for `text` (raqm composes base + combining mark where the font has the
  /// precomposed letter; `codes` receives the code point of each glyph) and the pen position in
  /// 26.6 before each, including kerning in the basic layout.
  void layout(std::u32string_view text, std::vector<const Glyph*>& glyphs,
              std::vector<int64_t>& pens, int64_t& end, std::u32string* codes = nullptr);

  struct FaceHolder;
  std::unique_ptr<FaceHolder> face_;
  std::string path_;
  int pixel_size_ = 0;
  TextLayout layout_ = TextLayout::kRaqm;
  int ascender_ = 0, descender_ = 0;
  bool kerning_ = false;
  std::unordered_map<char32_t, Glyph> glyphs_;
  std::vector<uint8_t> mask_;  // scratch for draw()
};

/// Per-thread cache of loaded fonts keyed by (path, size, layout).
class FontCache {
 public:
  static FontCache& local();
  /// Throws InputError naming the path (and the Debian package when it is a known default) when
  /// the font file is missing or FreeType cannot open it.
  Font& get(const std::string& path, int pixel_size, TextLayout layout = TextLayout::kRaqm);
  ~FontCache();

 private:
  FontCache();
  void* library_ = nullptr;
  std::unordered_map<std::string, std::unique_ptr<Font>> fonts_;
};

/// The Debian package that ships a default font path, or "" when unknown.
std::string font_package_for(const std::string& path);

}  // namespace ziprerank::render
