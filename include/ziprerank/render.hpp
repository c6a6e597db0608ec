// Text rendered as page images: the reference's stage-1 passage renderer and a document mode
// that lays text out as realistic multi-page documents and records where every word is drawn
// (see document.hpp).
//
// Fidelity to the reference (Pillow's ImageFont/ImageDraw over FreeType), checked against
// fixtures made with Pillow (tests/fixtures/render/make_passage_fixtures.py):
//   exact:  text measurement (getbbox), word wrap, hyphenation of over-long words, line height,
//           the fill-threshold test and binary font-size search, lines drawn and "..." placement,
//           for both of Pillow's layout engines; glyph positions and the ink blend arithmetic.
//   close:  pixel values. They come from FreeType's hinting and anti-aliasing, so they match
//           byte for byte only with the same FreeType release (2.12 on Debian 12 did); another
//           release may shift edge pixels by a few levels, and tests compare pixels loosely.
//   approximate: raqm's HarfBuzz shaping is reduced to what Latin-script text needs: one glyph
//           per code point, a letter and a following combining mark drawn as the precomposed
//           letter when the font has it, leftover marks and default-ignorable characters (soft
//           hyphen, zero-width space) taking no advance. Ligatures, GPOS mark placement and
//           kerning, and right-to-left reordering are not done; DejaVuSansMono needs none of
//           them for Latin, Greek or Cyrillic, but complex scripts may measure differently.
//   different: where Pillow falls back to its built-in bitmap font when the font file is
//           missing, this renderer reports the missing file (InputError) instead.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "ziprerank/image.hpp"

namespace ziprerank {

/// Which of Pillow's text layout engines the passage renderer reproduces. The reference measures
/// and draws with Pillow's ImageFont, whose glyph advances depend on the engine it picked:
enum class TextLayout {
  /// libraqm (HarfBuzz): unhinted advances in 1/64 px, rounded per glyph. Pillow uses it whenever
  /// libraqm is available (Debian's python3-pil; pip wheels when FriBiDi is installed).
  kRaqm,
  /// Pillow's basic layout: hinted (whole-pixel) advances plus 'kern' table kerning.
  kBasic,
};

/// The reference renderer's settings (stage-1 training: 280x280, DejaVuSansMono, fill canvas).
struct PassageRenderOptions {
  int size = 280;  ///< square canvas side in pixels
  int padding = 20;
  int line_spacing = 4;
  int font_size = 12;           ///< starting size; kept when the text already fills the canvas
  bool fill_canvas = true;      ///< search sizes min_font..max_font for the largest that fits
  double fill_threshold = 0.7;  ///< keep font_size when lines x line height / usable height >= this
  int min_font = 6;
  int max_font = 48;
  std::string font_path;  ///< empty: DejaVuSansMono from the system fonts
  TextLayout layout = TextLayout::kRaqm;
};

/// The default passage font (Debian package fonts-dejavu-core).
inline constexpr const char* kDefaultPassageFont =
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

/// What the renderer decided for one passage, before any pixel is drawn.
struct PassageLayout {
  int font_size = 0;               ///< the size the text is drawn at
  int line_height = 0;             ///< height of getbbox("Ay") + line_spacing
  std::vector<std::string> lines;  ///< every wrapped line (UTF-8), drawn or not
  int drawn_lines = 0;             ///< leading lines that fit on the canvas
  bool ellipsis = false;           ///< "..." drawn below them because text was cut off
};

/// Wraps, hyphenates and picks the font size exactly as the reference does. Whitespace-only or
/// empty text gives no lines (and, with fill_canvas, the largest font size, as the reference's
/// search ends there). Throws InputError for a missing font or impossible options.
PassageLayout layout_passage(const std::string& text, const PassageRenderOptions& options = {});

/// Renders one passage: white canvas, black text, greedy word wrap with hyphenation of words too
/// wide for a line, "..." when the text does not fit. Deterministic.
Image render_passage(const std::string& text, const PassageRenderOptions& options = {});

/// Draws a layout computed by layout_passage (same options) onto a fresh canvas.
Image draw_passage(const PassageLayout& layout, const PassageRenderOptions& options = {});

/// Pillow's ImageFont.truetype(font_path, font_size).getbbox(text): {left, top, right, bottom}.
std::array<int, 4> passage_text_bbox(const std::string& text, int font_size,
                                     const PassageRenderOptions& options = {});

/// Writes an RGB image as PNG; throws InputError naming `path` when it cannot be written.
void save_png(const Image& image, const std::string& path);

}  // namespace ziprerank
