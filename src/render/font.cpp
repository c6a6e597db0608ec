#include "render/font.hpp"

#include <ft2build.h>

#include "core/utf8.hpp"
#include FT_FREETYPE_H
#include FT_GLYPH_H
#include FT_ADVANCES_H

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "text/unicode_tables.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank::render {

namespace {

// Pillow's PIXEL(): a 26.6 value rounded to the nearest whole pixel (halves go up).
int pixel_round(int64_t v) {
  const int64_t shifted = v + 32;
  return static_cast<int>(shifted >= 0 ? shifted / 64 : -((-shifted + 63) / 64));
}

// HarfBuzz replaces default-ignorable characters with an invisible, zero-advance glyph unless
// asked to keep them; raqm does not ask. (The table follows HarfBuzz's is_default_ignorable.)
bool is_default_ignorable(char32_t c) {
  if (c < 0x10000) {
    return c == 0x00AD || c == 0x034F || c == 0x061C || (c >= 0x17B4 && c <= 0x17B5) ||
           (c >= 0x180B && c <= 0x180E) || (c >= 0x200B && c <= 0x200F) ||
           (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x206F) ||
           (c >= 0xFE00 && c <= 0xFE0F) || c == 0xFEFF || (c >= 0xFFF0 && c <= 0xFFF8);
  }
  return (c >= 0x1D173 && c <= 0x1D17A) || (c >= 0xE0000 && c <= 0xE0FFF);
}

bool is_combining_mark(char32_t c) {
  namespace u = detail::unicode;
  const u::ClassRun* end = u::kClassRuns + u::kClassRunCount;
  const u::ClassRun* it =
      std::upper_bound(u::kClassRuns, end, static_cast<uint32_t>(c),
                       [](uint32_t v, const u::ClassRun& run) { return v < run.first; });
  return it != u::kClassRuns && (it - 1)->cls == u::kMark;
}

char32_t compose(char32_t first, char32_t second) {
  namespace u = detail::unicode;
  const u::CompositionPair* end = u::kCompositionPairs + u::kCompositionPairCount;
  const u::CompositionPair* it =
      std::lower_bound(u::kCompositionPairs, end, std::make_pair(first, second),
                       [](const u::CompositionPair& p, const std::pair<char32_t, char32_t>& key) {
                         return p.first != key.first ? p.first < key.first : p.second < key.second;
                       });
  return it != end && it->first == first && it->second == second ? it->composite : 0;
}

std::string ft_error_text(FT_Error error) {
  const char* s = FT_Error_String(error);
  return s ? std::string(s) : "FreeType error " + std::to_string(error);
}

}  // namespace

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::vector<std::u32string> split_words(std::u32string_view text) {
  std::vector<std::u32string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_python_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_python_space(text[i])) ++i;
    if (i > start) words.emplace_back(text.substr(start, i - start));
  }
  return words;
}

std::string font_package_for(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  if (path.find("/dejavu/") != std::string::npos || name.rfind("DejaVu", 0) == 0) {
    return "fonts-dejavu-core";
  }
  if (path.find("/liberation2/") != std::string::npos) return "fonts-liberation2";
  if (path.find("/noto/") != std::string::npos) return "fonts-noto-core";
  if (path.find("/lm/") != std::string::npos || name.rfind("lm", 0) == 0) return "fonts-lmodern";
  return "";
}

struct Font::FaceHolder {
  FT_Face face = nullptr;
  ~FaceHolder() {
    if (face) FT_Done_Face(face);
  }
};

Font::Font(void* library, const std::string& path, int pixel_size, TextLayout layout)
    : face_(std::make_unique<FaceHolder>()), path_(path), pixel_size_(pixel_size), layout_(layout) {
  FT_Error error = FT_New_Face(static_cast<FT_Library>(library), path.c_str(), 0, &face_->face);
  if (error) {
    face_->face = nullptr;
    throw InputError("cannot open font " + path + ": " + ft_error_text(error));
  }
  // Pillow's truetype(path, size) requests a nominal size of `size` pixels, square.
  error = FT_Set_Pixel_Sizes(face_->face, 0, static_cast<FT_UInt>(pixel_size));
  if (error) {
    throw InputError("font " + path + " cannot be used at " + std::to_string(pixel_size) +
                     " px: " + ft_error_text(error));
  }
  ascender_ = pixel_round(face_->face->size->metrics.ascender);
  descender_ = pixel_round(face_->face->size->metrics.descender);
  kerning_ = layout == TextLayout::kBasic && FT_HAS_KERNING(face_->face);
}

Font::~Font() = default;

bool Font::has_glyph(char32_t c) { return FT_Get_Char_Index(face_->face, c) != 0; }

const Font::Glyph& Font::glyph(char32_t c) {
  auto it = glyphs_.find(c);
  if (it != glyphs_.end()) return it->second;
  FT_Face face = face_->face;
  Glyph g;
  const bool hidden = layout_ == TextLayout::kRaqm && is_default_ignorable(c);
  g.index = FT_Get_Char_Index(face, hidden ? U' ' : c);
  FT_Error error = FT_Load_Glyph(face, g.index, FT_LOAD_DEFAULT);
  if (error) {
    char code[16];
    std::snprintf(code, sizeof(code), "U+%04X", static_cast<unsigned>(c));
    throw InputError("font " + path_ + ": cannot load the glyph for " + code + ": " +
                     ft_error_text(error));
  }
  FT_Glyph outline = nullptr;
  if (FT_Get_Glyph(face->glyph, &outline) == 0) {
    FT_BBox box;
    FT_Glyph_Get_CBox(outline, FT_GLYPH_BBOX_PIXELS, &box);
    g.cbox_x0 = static_cast<int>(box.xMin);
    g.cbox_y0 = static_cast<int>(box.yMin);
    g.cbox_x1 = static_cast<int>(box.xMax);
    g.cbox_y1 = static_cast<int>(box.yMax);
    FT_Done_Glyph(outline);
  }
  if (layout_ == TextLayout::kBasic) {
    g.advance = static_cast<int32_t>(face->glyph->metrics.horiAdvance);
  } else if (hidden || is_combining_mark(c)) {
    g.advance = 0;
  } else {
    // HarfBuzz's FreeType callbacks: unhinted 16.16 advances rounded to 26.6.
    FT_Fixed v = 0;
    FT_Get_Advance(face, g.index, FT_LOAD_DEFAULT | FT_LOAD_NO_HINTING, &v);
    v = std::labs(v);
    g.advance = static_cast<int32_t>((v + (1 << 9)) >> 10);
  }
  return glyphs_.emplace(c, std::move(g)).first->second;
}

const Font::Glyph& Font::rendered_glyph(char32_t c) {
  const Glyph& cached = glyph(c);
  if (cached.rendered) return cached;
  Glyph& g = glyphs_.find(c)->second;
  FT_Face face = face_->face;
  FT_Error error = FT_Load_Glyph(face, g.index, FT_LOAD_DEFAULT | FT_LOAD_RENDER);
  if (error) {
    throw InputError("font " + path_ + ": cannot render a glyph: " + ft_error_text(error));
  }
  const FT_GlyphSlot slot = face->glyph;
  const FT_Bitmap& bm = slot->bitmap;
  g.bitmap_left = slot->bitmap_left;
  g.bitmap_top = slot->bitmap_top;
  g.bitmap_width = static_cast<int>(bm.width);
  g.bitmap_rows = static_cast<int>(bm.rows);
  g.bitmap.assign(static_cast<size_t>(g.bitmap_width) * g.bitmap_rows, 0);
  for (int row = 0; row < g.bitmap_rows; ++row) {
    const unsigned char* src = bm.buffer + static_cast<ptrdiff_t>(row) * bm.pitch;
    uint8_t* dst = g.bitmap.data() + static_cast<size_t>(row) * g.bitmap_width;
    for (int col = 0; col < g.bitmap_width; ++col) {
      switch (bm.pixel_mode) {
        case FT_PIXEL_MODE_MONO:
          dst[col] = ((src[col >> 3] >> (7 - (col & 7))) & 1) ? 255 : 0;
          break;
        case FT_PIXEL_MODE_GRAY:
          dst[col] = src[col];
          break;
        default:
          dst[col] = 0;  // colour bitmaps are not drawn (Pillow needs an RGBA target for them)
      }
    }
  }
  g.rendered = true;
  return g;
}

void Font::layout(std::u32string_view text, std::vector<const Glyph*>& glyphs,
                  std::vector<int64_t>& pens, int64_t& end, std::u32string* codes) {
  glyphs.clear();
  pens.clear();
  glyphs.reserve(text.size());
  std::u32string used;
  if (layout_ == TextLayout::kRaqm) {
    // HarfBuzz draws a base letter and a following combining mark as one precomposed glyph when
    // the font has it; marks left over take no advance.
    char32_t base = 0;
    for (char32_t c : text) {
      if (base != 0 && is_combining_mark(c)) {
        const char32_t composed = compose(base, c);
        if (composed != 0 && has_glyph(composed)) {
          base = composed;
          glyphs.back() = &glyph(composed);
          used.back() = composed;
          continue;
        }
      }
      base = c;
      glyphs.push_back(&glyph(c));
      used.push_back(c);
    }
  } else {
    for (char32_t c : text) glyphs.push_back(&glyph(c));
    used = text;
  }
  if (codes) *codes = std::move(used);
  // Pillow's basic layout adds the kerning of each pair to the first glyph's advance, in whole
  // pixels added to a 26.6 value (Pillow's own arithmetic, kept for fidelity).
  std::vector<int64_t> advances(glyphs.size());
  for (size_t i = 0; i < glyphs.size(); ++i) advances[i] = glyphs[i]->advance;
  if (kerning_) {
    for (size_t i = 1; i < glyphs.size(); ++i) {
      if (glyphs[i - 1]->index == 0 || glyphs[i]->index == 0) continue;
      FT_Vector delta;
      if (FT_Get_Kerning(face_->face, glyphs[i - 1]->index, glyphs[i]->index, FT_KERNING_DEFAULT,
                         &delta) == 0) {
        advances[i - 1] += pixel_round(delta.x);
      }
    }
  }
  int64_t pen = 0;
  for (size_t i = 0; i < glyphs.size(); ++i) {
    pens.push_back(pen);
    pen += advances[i];
  }
  end = pen;
}

int64_t Font::advance_26_6(std::u32string_view text) {
  std::vector<const Glyph*> glyphs;
  std::vector<int64_t> pens;
  int64_t end = 0;
  layout(text, glyphs, pens, end);
  return end;
}

TextBox Font::bbox(std::u32string_view text) {
  if (text.empty()) return {};
  std::vector<const Glyph*> glyphs;
  std::vector<int64_t> pens;
  int64_t end = 0;
  layout(text, glyphs, pens, end);
  int x_min = 0, x_max = 0, y_min = 0, y_max = 0;
  for (size_t i = 0; i < glyphs.size(); ++i) {
    const int px = pixel_round(pens[i]);
    const int64_t next = i + 1 < glyphs.size() ? pens[i + 1] : end;
    x_max = std::max(x_max, pixel_round(next));
    const Glyph& g = *glyphs[i];
    x_max = std::max(x_max, g.cbox_x1 + px);
    x_min = std::min(x_min, g.cbox_x0 + px);
    y_max = std::max(y_max, g.cbox_y1);
    y_min = std::min(y_min, g.cbox_y0);
  }
  return {x_min, ascender_ - y_max, x_max, ascender_ - y_min};
}

TextBox Font::draw(Image& image, int x, int y, std::u32string_view text, Rgb color) {
  TextBox ink{0, 0, 0, 0};
  const TextBox box = bbox(text);
  if (box.empty()) return ink;
  std::vector<const Glyph*> glyphs;
  std::vector<int64_t> pens;
  int64_t end = 0;
  std::u32string codes;
  layout(text, glyphs, pens, end, &codes);
  for (size_t i = 0; i < glyphs.size(); ++i) {
    glyphs[i] = &rendered_glyph(codes[i]);
  }
  // Pillow renders the string into a mask the size of its box, with the pen moved so that the
  // leftmost and topmost glyph images start inside it, then pastes the mask at the box corner.
  int render_x_min = 0, render_y_max = 0;
  for (size_t i = 0; i < glyphs.size(); ++i) {
    const int px = pixel_round(pens[i]);
    render_y_max = std::max(render_y_max, glyphs[i]->bitmap_top);
    render_x_min = std::min(render_x_min, glyphs[i]->bitmap_left + px);
  }
  const int mw = box.width(), mh = box.height();
  mask_.assign(static_cast<size_t>(mw) * mh, 0);
  for (size_t i = 0; i < glyphs.size(); ++i) {
    const Glyph& g = *glyphs[i];
    const int xx = pixel_round(pens[i]) - render_x_min + g.bitmap_left;
    const int yy = render_y_max - g.bitmap_top;
    const int c0 = std::max(0, -xx), c1 = std::min(g.bitmap_width, mw - xx);
    for (int row = 0; row < g.bitmap_rows; ++row) {
      const int my = yy + row;
      if (my < 0 || my >= mh) continue;
      const uint8_t* src = g.bitmap.data() + static_cast<size_t>(row) * g.bitmap_width;
      uint8_t* dst = mask_.data() + static_cast<size_t>(my) * mw + xx;
      for (int col = c0; col < c1; ++col) dst[col] = std::max(dst[col], src[col]);
    }
  }
  const int ox = x + box.left, oy = y + box.top;
  const uint8_t ink_rgb[3] = {color.r, color.g, color.b};
  int ix0 = image.width, iy0 = image.height, ix1 = -1, iy1 = -1;
  for (int my = 0; my < mh; ++my) {
    const int iy = oy + my;
    if (iy < 0 || iy >= image.height) continue;
    for (int mx = 0; mx < mw; ++mx) {
      const int ix = ox + mx;
      const unsigned m = mask_[static_cast<size_t>(my) * mw + mx];
      if (m == 0 || ix < 0 || ix >= image.width) continue;
      uint8_t* px = image.rgb.data() + (static_cast<size_t>(iy) * image.width + ix) * 3;
      for (int ch = 0; ch < 3; ++ch) {
        // Pillow's BLEND: (in*(255-m) + ink*m)/255 rounded with its DIV255 trick.
        const unsigned t = px[ch] * (255 - m) + ink_rgb[ch] * m + 128;
        px[ch] = static_cast<uint8_t>(((t >> 8) + t) >> 8);
      }
      ix0 = std::min(ix0, ix), ix1 = std::max(ix1, ix);
      iy0 = std::min(iy0, iy), iy1 = std::max(iy1, iy);
    }
  }
  if (ix1 >= 0) ink = {ix0, iy0, ix1 + 1, iy1 + 1};
  return ink;
}

FontCache& FontCache::local() {
  thread_local FontCache cache;
  return cache;
}

FontCache::FontCache() {
  FT_Library lib = nullptr;
  if (FT_Init_FreeType(&lib) != 0) throw InternalError("FreeType could not be initialised");
  library_ = lib;
}

FontCache::~FontCache() {
  fonts_.clear();  // faces before the library that owns them
  if (library_) FT_Done_FreeType(static_cast<FT_Library>(library_));
}

Font& FontCache::get(const std::string& path, int pixel_size, TextLayout layout) {
  std::string key = path;
  key += '\0';
  key += std::to_string(pixel_size);
  key += layout == TextLayout::kRaqm ? 'r' : 'b';
  auto it = fonts_.find(key);
  if (it != fonts_.end()) return *it->second;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    const std::string package = font_package_for(path);
    throw InputError("font file not found: " + path +
                     (package.empty() ? "" : " (install the Debian package " + package + ")"));
  }
  if (pixel_size <= 0 || pixel_size > 4096) {
    throw InputError("font size must be between 1 and 4096 pixels, got " +
                     std::to_string(pixel_size));
  }
  auto font = std::make_unique<Font>(library_, path, pixel_size, layout);
  return *fonts_.emplace(std::move(key), std::move(font)).first->second;
}

}  // namespace ziprerank::render
