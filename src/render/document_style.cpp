// Document mode's looks: the installed font faces, and the style a seed draws (page size,
// columns, fonts, sizes, margins, colours), checked before any layout.
#include <algorithm>
#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "core/splitmix64.hpp"
#include "render/document_internal.hpp"
#include "render/font.hpp"
#include "ziprerank/document.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace render {

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

const char* family_name(FontFamily f) {
  switch (f) {
    case FontFamily::kSerif:
      return "serif";
    case FontFamily::kSans:
      return "sans";
    case FontFamily::kMono:
      return "mono";
    case FontFamily::kLatex:
      return "latex";
  }
  return "?";
}

}  // namespace render

namespace {

using render::family_name;
using render::file_exists;

// ---------------------------------------------------------------------------------------------
// Seeded choices, drawn from the project's SplitMix64 with the modulo range mapping documents
// were first drawn with, so a seed keeps its look.

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed ^ 0x5A17D0C5EEDULL) {}
  uint64_t next() { return gen_.next(); }
  int range(int lo, int hi) {  // inclusive
    return lo + static_cast<int>(gen_.modulo(static_cast<uint64_t>(hi - lo + 1)));
  }
  double unit() { return gen_.unit(); }
  bool chance(double p) { return unit() < p; }

 private:
  detail::SplitMix64 gen_;
};

struct FaceSpec {
  const char* name;
  FontFamily family;
  const char* regular;
  const char* bold;
  const char* italic;  // optional: regular is used when missing
};

#define ZR_LIB "/usr/share/fonts/truetype/liberation2/"
#define ZR_NOTO "/usr/share/fonts/truetype/noto/"
#define ZR_DJV "/usr/share/fonts/truetype/dejavu/"
#define ZR_LM "/usr/share/texmf/fonts/opentype/public/lm/"
const FaceSpec kFaces[] = {
    {"Liberation Serif", FontFamily::kSerif, ZR_LIB "LiberationSerif-Regular.ttf",
     ZR_LIB "LiberationSerif-Bold.ttf", ZR_LIB "LiberationSerif-Italic.ttf"},
    {"Noto Serif", FontFamily::kSerif, ZR_NOTO "NotoSerif-Regular.ttf",
     ZR_NOTO "NotoSerif-Bold.ttf", ZR_NOTO "NotoSerif-Italic.ttf"},
    {"DejaVu Serif", FontFamily::kSerif, ZR_DJV "DejaVuSerif.ttf", ZR_DJV "DejaVuSerif-Bold.ttf",
     ZR_DJV "DejaVuSerif-Italic.ttf"},
    {"Liberation Sans", FontFamily::kSans, ZR_LIB "LiberationSans-Regular.ttf",
     ZR_LIB "LiberationSans-Bold.ttf", ZR_LIB "LiberationSans-Italic.ttf"},
    {"Noto Sans", FontFamily::kSans, ZR_NOTO "NotoSans-Regular.ttf", ZR_NOTO "NotoSans-Bold.ttf",
     ZR_NOTO "NotoSans-Italic.ttf"},
    {"DejaVu Sans", FontFamily::kSans, ZR_DJV "DejaVuSans.ttf", ZR_DJV "DejaVuSans-Bold.ttf",
     ZR_DJV "DejaVuSans-Oblique.ttf"},
    {"DejaVu Sans Mono", FontFamily::kMono, ZR_DJV "DejaVuSansMono.ttf",
     ZR_DJV "DejaVuSansMono-Bold.ttf", ZR_DJV "DejaVuSansMono-Oblique.ttf"},
    {"Liberation Mono", FontFamily::kMono, ZR_LIB "LiberationMono-Regular.ttf",
     ZR_LIB "LiberationMono-Bold.ttf", ZR_LIB "LiberationMono-Italic.ttf"},
    {"Latin Modern Roman", FontFamily::kLatex, ZR_LM "lmroman10-regular.otf",
     ZR_LM "lmroman10-bold.otf", ZR_LM "lmroman10-italic.otf"},
    {"Latin Modern Sans", FontFamily::kLatex, ZR_LM "lmsans10-regular.otf",
     ZR_LM "lmsans10-bold.otf", ZR_LM "lmsans10-oblique.otf"},
};
#undef ZR_LIB
#undef ZR_NOTO
#undef ZR_DJV
#undef ZR_LM

bool face_installed(const FaceSpec& f) { return file_exists(f.regular) && file_exists(f.bold); }

const char* family_packages(FontFamily f) {
  switch (f) {
    case FontFamily::kSerif:
    case FontFamily::kSans:
      return "fonts-liberation2, fonts-noto-core or fonts-dejavu-core";
    case FontFamily::kMono:
      return "fonts-dejavu-core or fonts-liberation2";
    case FontFamily::kLatex:
      return "fonts-lmodern";
  }
  return "";
}

}  // namespace

namespace render {

void validate_style(const DocumentStyle& s) {
  auto fail = [](const std::string& m) { throw InputError("document style: " + m); };
  if (s.page_width < 200 || s.page_height < 200 || s.page_width > 8192 || s.page_height > 8192) {
    fail("page size must be 200..8192 pixels per side");
  }
  if (s.columns < 1 || s.columns > 2) fail("columns must be 1 or 2");
  if (s.body_size < 6 || s.body_size > 72) fail("body size must be 6..72 pixels");
  if (s.line_spacing < 1.0 || s.line_spacing > 3.0) fail("line spacing must be 1..3");
  if (s.margin_top < 40 || s.margin_bottom < 40 || s.margin_left < 10 || s.margin_right < 10) {
    fail("margins are too small for the running header and page numbers");
  }
  const int content_w = s.page_width - s.margin_left - s.margin_right;
  if ((content_w - (s.columns - 1) * s.column_gap) / s.columns < 12 * s.body_size) {
    fail("the text column is too narrow for the font size");
  }
  if (s.page_height - s.margin_top - s.margin_bottom < 20 * s.body_size) {
    fail("the page is too short for the font size");
  }
  for (const std::string* path : {&s.regular_font, &s.bold_font}) {
    if (!file_exists(*path)) {
      const std::string package = render::font_package_for(*path);
      throw InputError("font file not found: " + *path +
                       (package.empty() ? "" : " (install the Debian package " + package + ")"));
    }
  }
}

}  // namespace render

DocumentStyle choose_document_style(uint64_t seed, const DocumentStyleRequest& request) {
  Rng rng(seed);
  DocumentStyle s;
  s.seed = seed;
  // Every draw happens whatever the request, so forcing one property leaves the others as the
  // seed alone would pick them.
  const double family_draw = rng.unit();
  const uint64_t face_draw = rng.next();
  const bool letter = rng.chance(0.4);
  const bool two_columns = rng.chance(0.35);
  const int size_draw = rng.range(0, 3);
  const int spacing_draw = rng.range(0, 5);
  const int margin_v = rng.range(70, 105);
  const int margin_h = rng.range(60, 105);
  const int gap = rng.range(20, 34);
  const double justify_draw = rng.unit();
  const double indent_draw = rng.unit();
  const bool numbered = rng.chance(0.7);
  const bool contents = rng.chance(0.35);
  const bool header = rng.chance(0.75);
  const int page_number_style = rng.range(0, 2);
  const bool grid = rng.chance(0.4);
  const bool centered = rng.chance(0.7);
  const bool leaders = rng.chance(0.6);
  const int bullet_draw = rng.range(0, 2);
  const int colour_draw = rng.range(0, 9);

  std::vector<FontFamily> families;
  if (request.family) {
    families.push_back(*request.family);
  } else {
    // Weighted by how common each look is in reports and papers.
    const std::pair<FontFamily, double> weights[] = {{FontFamily::kSerif, 0.35},
                                                     {FontFamily::kSans, 0.35},
                                                     {FontFamily::kLatex, 0.2},
                                                     {FontFamily::kMono, 0.1}};
    double total = 0;
    for (const auto& [f, w] : weights) {
      for (const FaceSpec& face : kFaces) {
        if (face.family == f && face_installed(face)) {
          total += w;
          break;
        }
      }
    }
    double pick = family_draw * total;
    for (const auto& [f, w] : weights) {
      bool installed = false;
      for (const FaceSpec& face : kFaces) installed |= face.family == f && face_installed(face);
      if (!installed) continue;
      if (pick < w || families.empty()) {
        families.assign(1, f);
        if (pick < w) break;
      }
      pick -= w;
    }
    if (families.empty()) {
      throw InputError(
          "no document fonts are installed (install fonts-dejavu-core, "
          "fonts-liberation2, fonts-noto-core or fonts-lmodern)");
    }
  }
  s.family = families[0];
  std::vector<const FaceSpec*> faces;
  for (const FaceSpec& face : kFaces) {
    if (face.family == s.family && face_installed(face)) faces.push_back(&face);
  }
  if (faces.empty()) {
    throw InputError(std::string("no font of the ") + family_name(s.family) +
                     " family is installed (install " + family_packages(s.family) + ")");
  }
  const FaceSpec& face = *faces[face_draw % faces.size()];
  s.font_name = face.name;
  s.regular_font = face.regular;
  s.bold_font = face.bold;
  s.italic_font = face.italic;

  s.page_size = request.page_size.value_or(letter ? PageSize::kLetter : PageSize::kA4);
  // Longest side 1024 px: A4 is 210 x 297 mm, Letter 8.5 x 11 in.
  s.page_height = 1024;
  s.page_width = s.page_size == PageSize::kA4 ? 724 : 791;
  s.columns = request.columns.value_or(two_columns ? 2 : 1);
  if (s.columns < 1 || s.columns > 2) throw InputError("columns must be 1 or 2");
  const bool mono = s.family == FontFamily::kMono;
  s.body_size = (mono ? 12 : 13) + size_draw - (s.columns == 2 ? 1 : 0);
  s.line_spacing = 1.2 + 0.05 * spacing_draw;
  s.margin_top = margin_v;
  s.margin_bottom = margin_v;
  s.margin_left = s.margin_right = s.columns == 2 ? std::min(margin_h, 80) : margin_h;
  s.column_gap = gap;
  const bool bookish = s.family == FontFamily::kSerif || s.family == FontFamily::kLatex;
  s.justify = justify_draw < (bookish ? 0.75 : mono ? 0.1 : 0.4) || s.columns == 2;
  s.indent_paragraphs = indent_draw < (s.family == FontFamily::kLatex ? 0.8 : 0.25);
  s.number_headings = numbered;
  s.contents_page = request.contents_page.value_or(contents);
  s.running_header = header;
  s.header_text = request.header_text.value_or("");
  s.page_numbers = static_cast<PageNumberStyle>(page_number_style);
  s.grid_tables = grid;
  s.center_title = centered;
  s.contents_leaders = leaders;
  s.bullet = bullet_draw == 0 ? "\u2022" : bullet_draw == 1 ? "\u2013" : "\u25aa";
  static const std::array<uint8_t, 3> kColours[] = {
      {31, 56, 100}, {120, 30, 30}, {30, 80, 50}, {60, 60, 60}};
  s.heading_color = colour_draw < 6 ? std::array<uint8_t, 3>{0, 0, 0} : kColours[colour_draw - 6];
  return s;
}

}  // namespace ziprerank
