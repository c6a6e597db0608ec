// Document mode: a small flow layout engine (title block, contents, columns, headings,
// paragraphs, lists, tables, running headers, page numbers) over render::Font. Layout produces
// drawing operations first, so the contents page can print page numbers that are only known once
// the body has been laid out; the pages are rasterised at the end and every drawn word's ink box
// is recorded.
#include "ziprerank/document.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "render/document_internal.hpp"
#include "render/font.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace {

using nlohmann::json;
using render::family_name;
using render::file_exists;
using render::Font;
using render::FontCache;
using render::Rgb;

// ---------------------------------------------------------------------------------------------
// Layout

int px_round(int64_t v26) { return static_cast<int>((v26 + 32) >> 6); }
int px_ceil(int64_t v26) { return static_cast<int>((v26 + 63) >> 6); }

struct TextOp {
  int page;
  int x, y;  // "la" anchor: left edge of the pen, top of the ascender
  std::u32string text;
  Font* font;
  Rgb color;
  WordRole role;
  int section;
  bool record;
};

struct RuleOp {
  int page;
  int x0, y0, x1, y1;
  Rgb color;
};

struct Word {
  std::u32string text;
  int64_t advance;  // 26.6
};

struct Line {
  std::vector<Word> words;
  int64_t natural = 0;  // words plus single spaces, 26.6
  bool last = false;    // last line of its paragraph: never justified
};

// A text style: a font, its line pitch and where the ascender-anchored text sits in the line.
struct TextStyle {
  Font* font = nullptr;
  int pitch = 0;
  int offset = 0;  // from line top to the draw anchor
  Rgb color{0, 0, 0};
  int64_t space = 0;
};

TextStyle make_style(Font& font, double spacing, Rgb color) {
  TextStyle s;
  s.font = &font;
  const int content = font.ascender() - font.descender();
  s.pitch = std::max(content, static_cast<int>(std::lround(font.pixel_size() * spacing)));
  s.offset = (s.pitch - content) / 2;
  s.color = color;
  s.space = font.advance_26_6(U" ");
  return s;
}

// Breaks a word wider than `width` into the longest prefixes that fit with a hyphen (at least
// one character each). Advances add up glyph by glyph, so prefix widths are running sums.
std::vector<Word> break_word(const std::u32string& word, Font& font, int64_t width) {
  std::vector<Word> pieces;
  const int64_t dash = font.advance_26_6(U"-");
  size_t start = 0;
  while (start < word.size()) {
    int64_t run = 0;
    size_t n = 0;
    while (start + n < word.size()) {
      const int64_t a = font.advance_26_6(std::u32string_view(&word[start + n], 1));
      const bool last = start + n + 1 == word.size();
      if (n > 0 && run + a + (last ? 0 : dash) > width) break;
      run += a;
      ++n;
    }
    const bool more = start + n < word.size();
    std::u32string piece = word.substr(start, n);
    if (more) piece.push_back(U'-');
    pieces.push_back({piece, run + (more ? dash : 0)});
    start += n;
  }
  return pieces;
}

std::vector<Line> wrap_text(const std::string& text, const TextStyle& style, int first_width,
                            int width) {
  std::vector<Line> lines;
  Line line;
  int64_t limit = static_cast<int64_t>(first_width) * 64;
  for (const auto& raw : render::split_words(render::utf8_to_u32(text))) {
    std::vector<Word> pieces;
    const int64_t adv = style.font->advance_26_6(raw);
    // Pieces must also fit an indented first line.
    const int64_t narrowest = static_cast<int64_t>(std::min(first_width, width)) * 64;
    if (adv <= narrowest) {
      pieces.push_back({raw, adv});
    } else {
      pieces = break_word(raw, *style.font, narrowest);
    }
    for (auto& w : pieces) {
      const int64_t added = line.words.empty() ? w.advance : line.natural + style.space + w.advance;
      if (!line.words.empty() && added > limit) {
        lines.push_back(std::move(line));
        line = Line();
        limit = static_cast<int64_t>(width) * 64;
        line.natural = w.advance;
      } else {
        line.natural = added;
      }
      line.words.push_back(std::move(w));
    }
  }
  if (!line.words.empty()) lines.push_back(std::move(line));
  if (!lines.empty()) lines.back().last = true;
  return lines;
}

enum class Align { kLeft, kCenter, kRight, kJustify };

class Layout {
 public:
  Layout(const Document& doc, const DocumentStyle& style) : doc_(doc), s_(style) {}

  RenderedDocument run();

 private:
  // Column flow.
  int content_left() const { return s_.margin_left; }
  int content_width() const { return s_.page_width - s_.margin_left - s_.margin_right; }
  int column_width() const {
    return (content_width() - (s_.columns - 1) * s_.column_gap) / s_.columns;
  }
  int column_x() const { return content_left() + col_ * (column_width() + s_.column_gap); }
  int bottom() const { return s_.page_height - s_.margin_bottom; }
  bool at_column_top() const { return y_ == top_; }
  void next_column() {
    if (col_ + 1 < s_.columns) {
      ++col_;
    } else {
      ++page_;
      col_ = 0;
      top_ = s_.margin_top;
    }
    y_ = top_;
  }
  // Moves on when `height` does not fit below the cursor (unless already at a column top, where
  // nothing would be gained).
  void ensure(int height) {
    if (y_ + height > bottom() && !at_column_top()) next_column();
  }
  void gap(int height) {
    if (!at_column_top()) y_ += height;
  }

  TextStyle scaled(const std::string& path, double scale, double spacing, Rgb color) {
    const int size = std::max(6, static_cast<int>(std::lround(s_.body_size * scale)));
    return make_style(FontCache::local().get(path, size), spacing, color);
  }
  void emit_line(const Line& line, const TextStyle& st, int x, int width, int line_top, Align align,
                 WordRole role, int section, int page);
  void place_lines(const std::vector<Line>& lines, const TextStyle& st, int indent, Align align,
                   WordRole role, int section);

  void title_block();
  void body();
  void heading(const DocumentSection& sec, int index, const std::string& number);
  void paragraph(const DocumentBlock& b, int section, bool first_in_section);
  void list(const DocumentBlock& b, int section);
  void table(const DocumentBlock& b, int section);
  struct TableGeometry {
    TextStyle cell, head;  ///< the styles of body and header cells
    int pad_x = 0, pad_y = 0;
    std::vector<int> widths;  ///< per column
    int total = 0;            ///< the table's width
  };
  TableGeometry table_geometry(const DocumentBlock& b, size_t ncols, int avail);
  int contents_layout(bool emit);
  void page_furniture(int pages);
  RenderedDocument rasterise(int pages);

  const Document& doc_;
  const DocumentStyle& s_;
  std::vector<TextOp> texts_;
  std::vector<RuleOp> rules_;
  std::vector<SectionPlacement> placed_;
  std::vector<std::string> numbers_;  // printed heading numbers per section ("" when unnumbered)
  int page_ = 0, col_ = 0, y_ = 0, top_ = 0;
  int tables_ = 0;
  int contents_first_ = 0, contents_pages_ = 0;

  TextStyle body_, title_, subtitle_, author_, h1_, h2_, small_, caption_, contents_,
      contents_bold_;
  int para_gap_ = 0;
  std::u32string bullet_;
};

void Layout::emit_line(const Line& line, const TextStyle& st, int x, int width, int line_top,
                       Align align, WordRole role, int section, int page) {
  const int n = static_cast<int>(line.words.size());
  if (n == 0) return;
  const int64_t box = static_cast<int64_t>(width) * 64;
  int64_t pen = static_cast<int64_t>(x) * 64;
  int64_t extra = 0;
  if (align == Align::kCenter) pen += std::max<int64_t>(0, (box - line.natural) / 2);
  if (align == Align::kRight) pen += std::max<int64_t>(0, box - line.natural);
  if (align == Align::kJustify && !line.last && n > 1)
    extra = std::max<int64_t>(0, box - line.natural);
  for (int k = 0; k < n; ++k) {
    const Word& w = line.words[k];
    texts_.push_back({page, px_round(pen), line_top + st.offset, w.text, st.font, st.color, role,
                      section, true});
    pen += w.advance + st.space;
    // Spread the slack over the gaps, the remainder going to the first ones.
    if (extra > 0 && k < n - 1) pen += extra / (n - 1) + (k < extra % (n - 1) ? 1 : 0);
  }
}

void Layout::place_lines(const std::vector<Line>& lines, const TextStyle& st, int indent,
                         Align align, WordRole role, int section) {
  for (size_t i = 0; i < lines.size(); ++i) {
    ensure(st.pitch);
    const int in = i == 0 ? indent : 0;
    emit_line(lines[i], st, column_x() + in, column_width() - in, y_, align, role, section, page_);
    y_ += st.pitch;
  }
}

void Layout::title_block() {
  const int width = content_width();
  const Align align = s_.center_title ? Align::kCenter : Align::kLeft;
  y_ = s_.margin_top;
  auto block = [&](const std::string& text, const TextStyle& st, WordRole role) {
    for (const Line& line : wrap_text(text, st, width, width)) {
      emit_line(line, st, content_left(), width, y_, align, role, -1, 0);
      y_ += st.pitch;
    }
  };
  if (!doc_.title.empty()) block(doc_.title, title_, WordRole::kTitle);
  if (!doc_.subtitle.empty()) {
    y_ += title_.pitch / 4;
    block(doc_.subtitle, subtitle_, WordRole::kSubtitle);
  }
  if (!doc_.author.empty()) {
    y_ += body_.pitch / 2;
    block(doc_.author, author_, WordRole::kAuthor);
  }
  if (y_ > s_.margin_top) {
    y_ += body_.pitch;
    rules_.push_back({0, content_left(), y_, content_left() + width, y_ + 1, {90, 90, 90}});
    y_ += body_.pitch + 1;
  }
}

// Lays out the contents list from the current cursor (full width). Returns the number of pages
// it used. With emit == false nothing is recorded: page numbers are not known yet, but they sit
// in a reserved right-hand column, so the line breaks do not depend on them.
int Layout::contents_layout(bool emit) {
  const int left = content_left(), width = content_width();
  int page = contents_first_, y = y_;
  auto fit = [&](int h) {
    if (y + h > bottom()) {
      ++page;
      y = s_.margin_top;
    }
  };
  fit(h1_.pitch * 2);
  if (emit) {
    texts_.push_back({page, left, y + h1_.offset, U"Contents", h1_.font, h1_.color,
                      WordRole::kContentsTitle, -1, true});
  }
  y += h1_.pitch + h1_.pitch / 2;
  int number_col = 0;
  for (size_t i = 0; i < doc_.sections.size(); ++i) {
    if (numbers_[i].empty()) continue;
    const TextStyle& st = doc_.sections[i].level == 1 ? contents_bold_ : contents_;
    number_col =
        std::max(number_col, px_round(st.font->advance_26_6(render::utf8_to_u32(numbers_[i]))) +
                                 px_round(st.space * 2));
  }
  const int page_col = px_round(contents_.font->advance_26_6(U"0000")) + body_.font->pixel_size();
  for (size_t i = 0; i < doc_.sections.size(); ++i) {
    const DocumentSection& sec = doc_.sections[i];
    const TextStyle& st = sec.level == 1 ? contents_bold_ : contents_;
    const int indent = sec.level == 1 ? 0 : body_.font->pixel_size() * 3 / 2;
    const int text_x = left + indent + number_col;
    const int text_w = std::max(40, width - indent - number_col - page_col);
    const auto lines = wrap_text(sec.heading, st, text_w, text_w);
    if (sec.level == 1 && i > 0) y += st.pitch / 3;
    for (size_t k = 0; k < lines.size(); ++k) {
      fit(st.pitch);
      if (emit) {
        const int top = y;
        if (k == 0 && !numbers_[i].empty()) {
          const std::u32string num = render::utf8_to_u32(numbers_[i]);
          texts_.push_back({page, left + indent, top + st.offset, num, st.font, st.color,
                            WordRole::kContentsEntry, static_cast<int>(i), true});
        }
        emit_line(lines[k], st, text_x, text_w, top, Align::kLeft, WordRole::kContentsEntry,
                  static_cast<int>(i), page);
        if (k + 1 == lines.size()) {
          const std::string& label = std::to_string(placed_[i].page + 1);
          const std::u32string num = render::utf8_to_u32(label);
          const int num_w = px_round(contents_.font->advance_26_6(num));
          const int num_x = left + width - num_w;
          texts_.push_back({page, num_x, top + contents_.offset, num, contents_.font,
                            contents_.color, WordRole::kContentsEntry, static_cast<int>(i), true});
          if (s_.contents_leaders) {
            const int start =
                text_x + px_round(lines[k].natural) + contents_.font->pixel_size() / 2;
            const int end = num_x - contents_.font->pixel_size() / 2;
            const int64_t dot = contents_.font->advance_26_6(U" .");
            int count =
                dot > 0 ? static_cast<int>((static_cast<int64_t>(end - start) * 64) / dot) : 0;
            if (count > 1) {
              std::u32string dots;
              for (int d = 0; d < count; ++d) dots += U" .";
              texts_.push_back({page,
                                end - px_round(dot * count),
                                top + contents_.offset,
                                dots,
                                contents_.font,
                                {110, 110, 110},
                                WordRole::kContentsEntry,
                                static_cast<int>(i),
                                false});
            }
          }
        }
      }
      y += st.pitch;
    }
  }
  return page - contents_first_ + 1;
}

void Layout::heading(const DocumentSection& sec, int index, const std::string& number) {
  const TextStyle& st = sec.level == 1 ? h1_ : h2_;
  const int indent = 0;
  std::string printed = number.empty() ? sec.heading : number + " " + sec.heading;
  auto lines = wrap_text(printed, st, column_width() - indent, column_width() - indent);
  const int height = static_cast<int>(lines.size()) * st.pitch;
  gap(sec.level == 1 ? body_.pitch : body_.pitch * 2 / 3);
  // Keep the heading with at least two lines of what follows.
  ensure(height + body_.pitch / 3 + 2 * body_.pitch);
  placed_[index] = {index, printed, sec.level, page_, y_};
  for (const Line& line : lines) {
    emit_line(line, st, column_x(), column_width(), y_, Align::kLeft, WordRole::kHeading, index,
              page_);
    y_ += st.pitch;
  }
  y_ += body_.pitch / 3;
}

void Layout::paragraph(const DocumentBlock& b, int section, bool first_in_section) {
  const int indent =
      s_.indent_paragraphs && !first_in_section ? body_.font->pixel_size() * 3 / 2 : 0;
  const auto lines = wrap_text(b.text, body_, column_width() - indent, column_width());
  if (lines.empty()) return;
  if (!first_in_section) gap(para_gap_);
  place_lines(lines, body_, indent, s_.justify ? Align::kJustify : Align::kLeft, WordRole::kBody,
              section);
}

void Layout::list(const DocumentBlock& b, int section) {
  gap(para_gap_ > 0 ? para_gap_ : body_.pitch / 3);
  int marker_w = 0;
  std::vector<std::u32string> markers;
  for (size_t i = 0; i < b.items.size(); ++i) {
    markers.push_back(b.ordered ? render::utf8_to_u32(std::to_string(i + 1) + ".") : bullet_);
    marker_w = std::max(marker_w, px_round(body_.font->advance_26_6(markers.back())));
  }
  const int indent = body_.font->pixel_size();
  const int hang = indent + marker_w + body_.font->pixel_size() * 2 / 3;
  const int text_w = std::max(40, column_width() - hang);
  for (size_t i = 0; i < b.items.size(); ++i) {
    const auto lines = wrap_text(b.items[i], body_, text_w, text_w);
    if (lines.empty()) continue;
    if (i > 0) gap(body_.pitch / 4);
    for (size_t k = 0; k < lines.size(); ++k) {
      ensure(body_.pitch);
      if (k == 0) {
        const int mw = px_round(body_.font->advance_26_6(markers[i]));
        // Numbers right-aligned on their dot, bullets at the indent.
        const int mx = column_x() + indent + (b.ordered ? marker_w - mw : 0);
        texts_.push_back({page_, mx, y_ + body_.offset, markers[i], body_.font, body_.color,
                          WordRole::kListMarker, section, true});
      }
      emit_line(lines[k], body_, column_x() + hang, text_w, y_, Align::kLeft, WordRole::kListItem,
                section, page_);
      y_ += body_.pitch;
    }
  }
}

bool looks_numeric(const std::string& s) {
  bool digit = false;
  for (unsigned char c : s) {
    if (std::isdigit(c)) {
      digit = true;
    } else if (!std::strchr(" ,.%$+-()/:", c)) {
      return false;
    }
  }
  return digit;
}

// Column widths: natural (unwrapped) widths when they fit, else the widest single word of each
// column plus a share of the rest. When even the widest words do not fit, the table is set in
// a smaller size first, as typesetters do, and only then are words broken.
Layout::TableGeometry Layout::table_geometry(const DocumentBlock& b, size_t ncols, int avail) {
  TableGeometry g;
  TextStyle &cell = g.cell, &head = g.head;
  int &pad_x = g.pad_x, &pad_y = g.pad_y;
  int sum_nat = 0, sum_min = 0;
  std::vector<int> natural, minimum;
  const double base = s_.columns == 2 ? 0.85 : 0.9;
  for (double scale : {base, base - 0.08, base - 0.16}) {
    cell = scaled(s_.regular_font, scale, 1.2, {0, 0, 0});
    head = scaled(s_.bold_font, scale, 1.2, {0, 0, 0});
    pad_x = std::max(3, cell.font->pixel_size() / 2);
    pad_y = std::max(2, cell.font->pixel_size() / 4);
    natural.assign(ncols, 2 * pad_x + 4);
    minimum.assign(ncols, 2 * pad_x + 4);
    auto measure = [&](const std::string& text, size_t c, const TextStyle& st) {
      int64_t total = 0;
      for (const auto& w : render::split_words(render::utf8_to_u32(text))) {
        const int64_t a = st.font->advance_26_6(w);
        minimum[c] = std::max(minimum[c], std::min(px_ceil(a) + 2 * pad_x, avail / 2));
        total += a + (total > 0 ? st.space : 0);
      }
      natural[c] = std::max(natural[c], px_ceil(total) + 2 * pad_x);
    };
    for (size_t c = 0; c < b.header.size(); ++c) measure(b.header[c], c, head);
    for (const auto& r : b.rows) {
      for (size_t c = 0; c < r.size(); ++c) measure(r[c], c, cell);
    }
    sum_nat = sum_min = 0;
    for (size_t c = 0; c < ncols; ++c) sum_nat += natural[c], sum_min += minimum[c];
    if (sum_min <= avail) break;
  }
  std::vector<int>& widths = g.widths;
  widths.assign(ncols, 0);
  if (sum_nat <= avail) {
    widths = natural;
  } else if (sum_min <= avail) {
    const int spare = avail - sum_min;
    int64_t want = 0;
    for (size_t c = 0; c < ncols; ++c) want += natural[c] - minimum[c];
    for (size_t c = 0; c < ncols; ++c) {
      widths[c] = minimum[c] +
                  static_cast<int>(want > 0 ? spare * int64_t{natural[c] - minimum[c]} / want : 0);
    }
  } else {
    for (size_t c = 0; c < ncols; ++c) {
      widths[c] = std::max(2 * pad_x + 4, static_cast<int>(int64_t{avail} * minimum[c] / sum_min));
    }
  }
  for (int w : widths) g.total += w;
  g.total = std::min(g.total, avail);
  return g;
}

void Layout::table(const DocumentBlock& b, int section) {
  ++tables_;
  size_t ncols = b.header.size();
  for (const auto& r : b.rows) ncols = std::max(ncols, r.size());
  if (ncols == 0) return;
  const int avail = column_width();

  const TableGeometry g = table_geometry(b, ncols, avail);
  const TextStyle &cell = g.cell, &head = g.head;
  const int pad_x = g.pad_x, pad_y = g.pad_y, total = g.total;
  const std::vector<int>& widths = g.widths;

  struct Row {
    std::vector<std::vector<Line>> cells;
    std::vector<bool> right;
    int height = 0;
    bool header = false;
  };
  const int max_row = bottom() - s_.margin_top - 4 * cell.pitch;
  auto make_row = [&](const std::vector<std::string>& cells, bool header) {
    Row row;
    row.header = header;
    const TextStyle& st = header ? head : cell;
    int lines = 1;
    for (size_t c = 0; c < ncols; ++c) {
      const std::string text = c < cells.size() ? cells[c] : std::string();
      const int w = std::max(8, widths[c] - 2 * pad_x);
      auto wrapped = wrap_text(text, st, w, w);
      // A cell taller than a page column is cut: it could never be placed.
      const int max_lines = std::max(1, max_row / st.pitch);
      if (static_cast<int>(wrapped.size()) > max_lines) wrapped.resize(max_lines);
      lines = std::max(lines, static_cast<int>(wrapped.size()));
      row.cells.push_back(std::move(wrapped));
      row.right.push_back(!header && looks_numeric(text));
    }
    row.height = lines * st.pitch + 2 * pad_y;
    return row;
  };
  std::vector<Row> rows;
  const bool has_header = !b.header.empty();
  if (has_header) rows.push_back(make_row(b.header, true));
  for (const auto& r : b.rows) rows.push_back(make_row(r, false));

  const Rgb rule{0, 0, 0};
  const int thick = s_.grid_tables ? 1 : 2;
  gap(para_gap_ > 0 ? para_gap_ : body_.pitch / 2);

  // Caption above the table, as reports usually set it.
  std::vector<Line> caption;
  if (!b.caption.empty()) {
    caption =
        wrap_text("Table " + std::to_string(tables_) + ": " + b.caption, caption_, avail, avail);
  }
  const int caption_h = static_cast<int>(caption.size()) * caption_.pitch;
  const int first_rows_h = rows[0].height + (rows.size() > 1 && has_header ? rows[1].height : 0);
  ensure(caption_h + first_rows_h + 2 * thick + caption_.pitch / 3);
  for (const Line& line : caption) {
    emit_line(line, caption_, column_x(), avail, y_, Align::kLeft, WordRole::kCaption, section,
              page_);
    y_ += caption_.pitch;
  }
  if (!caption.empty()) y_ += caption_.pitch / 3;

  auto table_x = [&]() { return column_x() + (s_.grid_tables ? 0 : (avail - total) / 2); };
  int segment_top = 0;
  auto open_segment = [&]() {
    segment_top = y_;
    rules_.push_back({page_, table_x(), y_, table_x() + total, y_ + thick, rule});
    y_ += thick;
  };
  auto close_segment = [&]() {
    rules_.push_back({page_, table_x(), y_, table_x() + total, y_ + thick, rule});
    if (s_.grid_tables) {
      int x = table_x();
      for (size_t c = 0; c <= ncols; ++c) {
        const int xx = std::min(x, table_x() + total - 1);
        rules_.push_back({page_, xx, segment_top, xx + 1, y_ + thick, rule});
        if (c < ncols) x += widths[c];
      }
    }
    y_ += thick;
  };
  auto draw_row = [&](const Row& row, bool rule_below) {
    const TextStyle& st = row.header ? head : cell;
    int x = table_x();
    for (size_t c = 0; c < ncols; ++c) {
      int top = y_ + pad_y;
      for (const Line& line : row.cells[c]) {
        emit_line(line, st, x + pad_x, widths[c] - 2 * pad_x, top,
                  row.right[c] ? Align::kRight : Align::kLeft,
                  row.header ? WordRole::kTableHeader : WordRole::kTableCell, section, page_);
        top += st.pitch;
      }
      x += widths[c];
    }
    y_ += row.height;
    if (rule_below) {
      rules_.push_back({page_, table_x(), y_, table_x() + total, y_ + 1, rule});
      y_ += 1;
    }
  };

  open_segment();
  for (size_t r = 0; r < rows.size(); ++r) {
    const Row& row = rows[r];
    const bool last = r + 1 == rows.size();
    const bool rule_below = !last && (s_.grid_tables || row.header);
    if (y_ + row.height + 1 + thick > bottom() && y_ > segment_top + thick) {
      close_segment();
      next_column();
      open_segment();
      if (has_header && !row.header) draw_row(rows[0], true);  // repeat the header
    }
    draw_row(row, rule_below);
  }
  close_segment();
}

void Layout::body() {
  for (size_t i = 0; i < doc_.sections.size(); ++i) {
    const DocumentSection& sec = doc_.sections[i];
    heading(sec, static_cast<int>(i), numbers_[i]);
    bool first = true;
    for (const DocumentBlock& b : sec.blocks) {
      switch (b.kind) {
        case DocumentBlock::Kind::kParagraph:
          paragraph(b, static_cast<int>(i), first);
          break;
        case DocumentBlock::Kind::kList:
          list(b, static_cast<int>(i));
          break;
        case DocumentBlock::Kind::kTable:
          table(b, static_cast<int>(i));
          break;
      }
      first = false;
    }
  }
}

void Layout::page_furniture(int pages) {
  std::string header = s_.header_text;
  if (header.empty()) header = doc_.header.empty() ? doc_.title : doc_.header;
  const Rgb grey{85, 85, 85};
  for (int p = 0; p < pages; ++p) {
    // The first page carries the title instead of a running header and, when there is a title,
    // no page number (as a title page).
    if (p > 0 && s_.running_header && !header.empty()) {
      auto lines = wrap_text(header, small_, content_width(), content_width());
      if (!lines.empty()) {
        const int rule_y = s_.margin_top - small_.pitch / 2;
        const int top = rule_y - small_.pitch - 2;
        emit_line(lines[0], small_, content_left(), content_width(), top,
                  s_.center_title ? Align::kCenter : Align::kLeft, WordRole::kRunningHeader, -1, p);
        rules_.push_back(
            {p, content_left(), rule_y, content_left() + content_width(), rule_y + 1, grey});
      }
    }
    if (p == 0 && !doc_.title.empty()) continue;
    std::string label = std::to_string(p + 1);
    if (s_.page_numbers == PageNumberStyle::kPageN) label = "Page " + label;
    if (s_.page_numbers == PageNumberStyle::kDashed) label = "\u2013 " + label + " \u2013";
    auto lines = wrap_text(label, small_, content_width(), content_width());
    const int top = s_.page_height - s_.margin_bottom + (s_.margin_bottom - small_.pitch) / 2;
    emit_line(lines[0], small_, content_left(), content_width(), top, Align::kCenter,
              WordRole::kPageNumber, -1, p);
  }
}

RenderedDocument Layout::rasterise(int pages) {
  RenderedDocument out;
  out.style = s_;
  out.pages.resize(pages);
  for (Image& im : out.pages) {
    im.width = s_.page_width;
    im.height = s_.page_height;
    im.rgb.assign(static_cast<size_t>(im.width) * im.height * 3, 255);
  }
  for (int p = 0; p < pages; ++p) out.page_labels.push_back(std::to_string(p + 1));
  for (const RuleOp& r : rules_) {
    Image& im = out.pages[r.page];
    for (int y = std::max(0, r.y0); y < std::min(im.height, r.y1); ++y) {
      for (int x = std::max(0, r.x0); x < std::min(im.width, r.x1); ++x) {
        uint8_t* px = &im.rgb[(static_cast<size_t>(y) * im.width + x) * 3];
        px[0] = r.color.r, px[1] = r.color.g, px[2] = r.color.b;
      }
    }
  }
  for (const TextOp& t : texts_) {
    const render::TextBox ink = t.font->draw(out.pages[t.page], t.x, t.y, t.text, t.color);
    if (!t.record || ink.empty()) continue;
    out.words.push_back({t.page, render::u32_to_utf8(t.text), ink.left, ink.top, ink.right,
                         ink.bottom, t.role, t.section});
  }
  out.sections = placed_;
  for (int p = 0; p < contents_pages_; ++p) out.contents_pages.push_back(contents_first_ + p);
  return out;
}

RenderedDocument Layout::run() {
  const std::string italic = file_exists(s_.italic_font) ? s_.italic_font : s_.regular_font;
  const Rgb black{0, 0, 0};
  const Rgb head{s_.heading_color[0], s_.heading_color[1], s_.heading_color[2]};
  const double ls = s_.line_spacing;
  body_ = scaled(s_.regular_font, 1.0, ls, black);
  title_ = scaled(s_.bold_font, 2.0, 1.15, head);
  subtitle_ = scaled(italic, 1.3, 1.2, black);
  author_ = scaled(s_.regular_font, 1.1, 1.2, black);
  h1_ = scaled(s_.bold_font, 1.4, 1.2, head);
  h2_ = scaled(s_.bold_font, 1.15, 1.2, head);
  small_ = scaled(italic, 0.85, 1.2, {85, 85, 85});
  caption_ = scaled(italic, 0.9, 1.2, black);
  contents_ = scaled(s_.regular_font, 1.0, ls, black);
  contents_bold_ = scaled(s_.bold_font, 1.0, ls, black);
  para_gap_ = s_.indent_paragraphs ? 0 : body_.pitch / 2;
  bullet_ = render::utf8_to_u32(s_.bullet);
  for (char32_t c : bullet_) {
    if (!body_.font->has_glyph(c)) {
      bullet_ = body_.font->has_glyph(U'\u2013') ? U"\u2013" : U"-";
      break;
    }
  }

  // Heading numbers: "1", "2", ... for sections, "1.1", "1.2", ... for subsections.
  numbers_.assign(doc_.sections.size(), "");
  int n1 = 0, n2 = 0;
  for (size_t i = 0; i < doc_.sections.size(); ++i) {
    if (doc_.sections[i].level == 1) {
      ++n1, n2 = 0;
      if (s_.number_headings) numbers_[i] = std::to_string(n1);
    } else {
      ++n2;
      if (s_.number_headings)
        numbers_[i] = std::to_string(std::max(n1, 1)) + "." + std::to_string(n2);
    }
  }
  placed_.assign(doc_.sections.size(), {});

  title_block();
  const int after_title = y_;
  if (s_.contents_page) {
    contents_first_ = 0;
    contents_pages_ = contents_layout(false);
    page_ = contents_first_ + contents_pages_;
    col_ = 0;
    top_ = y_ = s_.margin_top;
  } else {
    page_ = 0;
    col_ = 0;
    top_ = y_ = after_title;
  }
  body();
  const int pages = std::max(page_ + 1, contents_first_ + contents_pages_);
  if (s_.contents_page) {
    y_ = after_title;
    const int used = contents_layout(true);
    if (used != contents_pages_) throw InternalError("contents page count changed between passes");
  }
  page_furniture(pages);
  return rasterise(pages);
}

}  // namespace

RenderedDocument render_document(const Document& document, const DocumentStyle& style) {
  if (document.sections.empty()) throw InputError("the document has no sections");
  render::validate_style(style);
  Layout layout(document, style);
  return layout.run();
}

}  // namespace ziprerank
