// Document mode: lays text out as realistic multi-page documents (title, numbered headings,
// paragraphs in one or two columns, lists, ruled tables, running headers, page numbers, an
// optional contents page) in fonts from Debian packages, and records where every word is drawn.
// The look is chosen from a seed, so the same document, style request and seed give identical
// pages and word boxes.
//
// Input JSON (UTF-8):
//
//   {
//     "title": "Annual Water Quality Report",        optional; drawn large on the first page
//     "subtitle": "Fiscal year 2023",                  optional
//     "author": "City Utilities Department",           optional
//     "header": "Water Quality Report 2023",           optional running header (default: title)
//     "sections": [                                    required, at least one
//       {
//         "heading": "Sources of supply",              required
//         "level": 1,                                  optional: 1 (section) or 2 (subsection)
//         "blocks": [                                  optional
//           "A bare string is a paragraph.",
//           {"type": "paragraph", "text": "..."},
//           {"type": "list", "ordered": false, "items": ["...", "..."]},
//           {"type": "table", "caption": "...", "header": ["Col A", "Col B"],
//            "rows": [["1", "2"], ["3", "4"]]}
//         ]
//       }
//     ]
//   }
//
// Unknown keys are ignored; a wrong type, a missing heading or an unknown block type is an
// InputError naming the JSON path (e.g. "sections[2].blocks[0].items").
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ziprerank/image.hpp"

namespace ziprerank {

struct DocumentBlock {
  enum class Kind { kParagraph, kList, kTable };
  Kind kind = Kind::kParagraph;
  std::string text;                            ///< paragraph
  bool ordered = false;                        ///< list: numbered instead of bulleted
  std::vector<std::string> items;              ///< list
  std::string caption;                         ///< table (optional)
  std::vector<std::string> header;             ///< table (optional)
  std::vector<std::vector<std::string>> rows;  ///< table
};

struct DocumentSection {
  std::string heading;
  int level = 1;  ///< 1 = section, 2 = subsection
  std::vector<DocumentBlock> blocks;
};

struct Document {
  std::string title, subtitle, author, header;
  std::vector<DocumentSection> sections;
};

/// Parses the JSON above; errors name `origin` and the JSON path.
Document parse_document(const std::string& json_text, const std::string& origin);
Document load_document(const std::string& path);

enum class PageSize { kA4, kLetter };
enum class FontFamily { kSerif, kSans, kMono, kLatex };
enum class PageNumberStyle { kPlain, kPageN, kDashed };

/// Everything that decides the look of the pages. choose_document_style fills it from a seed;
/// callers may then edit it (font files must exist).
struct DocumentStyle {
  uint64_t seed = 0;
  PageSize page_size = PageSize::kA4;
  int page_width = 724;  ///< A4 is 724 x 1024, Letter 791 x 1024 (longest side 1024 px)
  int page_height = 1024;
  FontFamily family = FontFamily::kSerif;
  std::string font_name;  ///< e.g. "Liberation Serif"
  std::string regular_font, bold_font, italic_font;
  int body_size = 14;         ///< pixels
  double line_spacing = 1.3;  ///< line pitch / body size
  int columns = 1;            ///< 1 or 2
  int column_gap = 28;
  int margin_top = 90, margin_bottom = 90, margin_left = 80, margin_right = 80;
  bool justify = true;
  bool indent_paragraphs = false;  ///< first-line indent instead of space between paragraphs
  bool number_headings = true;
  bool contents_page = false;
  bool running_header = true;
  std::string header_text;  ///< empty: the document's header or title
  PageNumberStyle page_numbers = PageNumberStyle::kPlain;
  bool grid_tables = false;  ///< every cell ruled, instead of top/header/bottom rules only
  bool center_title = true;
  bool contents_leaders = true;   ///< dot leaders between contents entries and page numbers
  std::string bullet = "\u2022";  ///< list bullet (falls back to a dash when the font lacks it)
  std::array<uint8_t, 3> heading_color{0, 0, 0};
};

/// Constraints for choose_document_style; unset fields are drawn from the seed.
struct DocumentStyleRequest {
  std::optional<PageSize> page_size;
  std::optional<int> columns;
  std::optional<FontFamily> family;
  std::optional<bool> contents_page;
  std::optional<std::string> header_text;
};

/// A deterministic style for `seed`. Throws InputError when the requested family has no font
/// installed (naming the Debian packages to install) or a request is out of range.
DocumentStyle choose_document_style(uint64_t seed, const DocumentStyleRequest& request = {});

enum class WordRole {
  kTitle,
  kSubtitle,
  kAuthor,
  kHeading,
  kBody,
  kListMarker,
  kListItem,
  kTableHeader,
  kTableCell,
  kCaption,
  kRunningHeader,
  kPageNumber,
  kContentsTitle,
  kContentsEntry,
};
const char* word_role_name(WordRole role);

/// One drawn word: the tight box of its ink, right/bottom exclusive, in page pixels.
struct WordBox {
  int page = 0;
  std::string text;
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  WordRole role = WordRole::kBody;
  int section = -1;  ///< index into Document::sections, or -1 (title, headers, page numbers)
};

struct SectionPlacement {
  int section = 0;
  std::string heading;  ///< as printed, with its number when headings are numbered
  int level = 1;
  int page = 0;  ///< page index where the heading is drawn
  int y = 0;     ///< top of the heading on that page
};

struct RenderedDocument {
  DocumentStyle style;
  std::vector<Image> pages;
  std::vector<std::string> page_labels;  ///< printed page numbers ("1", "2", ...)
  std::vector<WordBox> words;
  std::vector<SectionPlacement> sections;
  std::vector<int> contents_pages;  ///< indices of the pages holding the contents list
};

/// Lays out and draws the document. Deterministic for a given (document, style).
RenderedDocument render_document(const Document& document, const DocumentStyle& style);

/// The JSON sidecar: pages (file names as "page_NNN.png"), style, sections and word boxes.
std::string document_layout_json(const RenderedDocument& rendered);

}  // namespace ziprerank
