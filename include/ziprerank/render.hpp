// Text rendered as page images: the reference's stage-1 passage renderer and a document mode
// that lays text out as realistic multi-page documents and records where every word is drawn.
#pragma once

#include <string>
#include <vector>

#include "ziprerank/image.hpp"

namespace ziprerank {

/// The reference renderer's settings (stage-1 training: 280x280, DejaVuSansMono, fill canvas).
struct PassageRenderOptions {
  int size = 280;               ///< square canvas side in pixels
  int padding = 20;
  int line_spacing = 4;
  int font_size = 12;           ///< starting size; kept when the text already fills the canvas
  bool fill_canvas = true;      ///< search sizes min_font..max_font for the largest that fits
  double fill_threshold = 0.7;  ///< keep font_size when lines x line height / usable height >= this
  int min_font = 6;
  int max_font = 48;
  std::string font_path;        ///< empty: DejaVuSansMono from the system fonts
};

/// Renders one passage: white canvas, black text, greedy word wrap with hyphenation of words too
/// wide for a line, "..." when the text does not fit. Deterministic.
Image render_passage(const std::string& text, const PassageRenderOptions& options = {});

}  // namespace ziprerank
