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

#include "render/font.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace {

using nlohmann::json;
using render::Font;
using render::FontCache;
using render::Rgb;

// ---------------------------------------------------------------------------------------------
// Parsing

std::string line_col(const std::string& text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

std::string get_string(const json& obj, const char* key, const std::string& where, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) throw InputError(where + ": missing required string '" + key + "'");
    return {};
  }
  if (!it->is_string()) {
    throw InputError(where + "." + key + ": expected a string, got " + it->type_name());
  }
  return it->get<std::string>();
}

std::vector<std::string> get_strings(const json& value, const std::string& where) {
  if (!value.is_array()) throw InputError(where + ": expected an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < value.size(); ++i) {
    const json& v = value[i];
    if (v.is_string()) {
      out.push_back(v.get<std::string>());
    } else if (v.is_number()) {
      out.push_back(v.dump());  // tables often hold bare numbers
    } else if (v.is_null()) {
      out.emplace_back();
    } else {
      throw InputError(where + "[" + std::to_string(i) + "]: expected a string, got " +
                       v.type_name());
    }
  }
  return out;
}

DocumentBlock parse_block(const json& b, const std::string& where) {
  DocumentBlock block;
  if (b.is_string()) {
    block.text = b.get<std::string>();
    return block;
  }
  if (!b.is_object()) throw InputError(where + ": expected a string or an object");
  const std::string type = get_string(b, "type", where, false);
  if (type.empty() || type == "paragraph") {
    block.kind = DocumentBlock::Kind::kParagraph;
    block.text = get_string(b, "text", where, true);
  } else if (type == "list") {
    block.kind = DocumentBlock::Kind::kList;
    auto it = b.find("ordered");
    if (it != b.end() && !it->is_null()) {
      if (!it->is_boolean()) throw InputError(where + ".ordered: expected true or false");
      block.ordered = it->get<bool>();
    }
    if (!b.contains("items")) throw InputError(where + ": a list needs 'items'");
    block.items = get_strings(b["items"], where + ".items");
  } else if (type == "table") {
    block.kind = DocumentBlock::Kind::kTable;
    block.caption = get_string(b, "caption", where, false);
    if (b.contains("header") && !b["header"].is_null()) {
      block.header = get_strings(b["header"], where + ".header");
    }
    if (!b.contains("rows") || !b["rows"].is_array()) {
      throw InputError(where + ": a table needs 'rows', an array of arrays of strings");
    }
    const json& rows = b["rows"];
    for (size_t r = 0; r < rows.size(); ++r) {
      block.rows.push_back(get_strings(rows[r], where + ".rows[" + std::to_string(r) + "]"));
    }
    if (block.rows.empty() && block.header.empty())
      throw InputError(where + ": the table is empty");
  } else {
    throw InputError(where + ".type: unknown block type '" + type +
                     "' (expected paragraph, list or table)");
  }
  return block;
}

// ---------------------------------------------------------------------------------------------
// Seeded choices. SplitMix64 with our own range mapping, so a seed gives the same style with
// any standard library (std::uniform_int_distribution is implementation-defined).

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed ^ 0x5A17D0C5EEDULL) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  int range(int lo, int hi) {  // inclusive
    return lo + static_cast<int>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  double unit() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }
  bool chance(double p) { return unit() < p; }

 private:
  uint64_t state_;
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

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

bool face_installed(const FaceSpec& f) { return file_exists(f.regular) && file_exists(f.bold); }

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

void Layout::table(const DocumentBlock& b, int section) {
  ++tables_;
  size_t ncols = b.header.size();
  for (const auto& r : b.rows) ncols = std::max(ncols, r.size());
  if (ncols == 0) return;
  const int avail = column_width();

  // Column widths: natural (unwrapped) widths when they fit, else the widest single word of each
  // column plus a share of the rest. When even the widest words do not fit, the table is set in
  // a smaller size first, as typesetters do, and only then are words broken.
  TextStyle cell, head;
  int pad_x = 0, pad_y = 0, sum_nat = 0, sum_min = 0;
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
  std::vector<int> widths(ncols);
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
  int total = 0;
  for (int w : widths) total += w;
  total = std::min(total, avail);

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

void validate(const DocumentStyle& s) {
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

const char* page_size_name(PageSize p) { return p == PageSize::kA4 ? "a4" : "letter"; }

}  // namespace

Document parse_document(const std::string& json_text, const std::string& origin) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::parse_error& e) {
    throw InputError(origin + ": not valid JSON at " + line_col(json_text, e.byte) + ": " +
                     e.what());
  }
  if (!j.is_object()) throw InputError(origin + ": the document must be a JSON object");
  Document doc;
  doc.title = get_string(j, "title", origin, false);
  doc.subtitle = get_string(j, "subtitle", origin, false);
  doc.author = get_string(j, "author", origin, false);
  doc.header = get_string(j, "header", origin, false);
  auto it = j.find("sections");
  if (it == j.end() || !it->is_array() || it->empty()) {
    throw InputError(origin + ": 'sections' must be a non-empty array");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const json& s = (*it)[i];
    const std::string where = origin + ": sections[" + std::to_string(i) + "]";
    if (!s.is_object()) throw InputError(where + ": expected an object");
    DocumentSection sec;
    sec.heading = get_string(s, "heading", where, true);
    if (render::split_words(render::utf8_to_u32(sec.heading)).empty()) {
      throw InputError(where + ".heading: the heading is empty");
    }
    auto lv = s.find("level");
    if (lv != s.end() && !lv->is_null()) {
      if (!lv->is_number_integer() || (lv->get<int>() != 1 && lv->get<int>() != 2)) {
        throw InputError(where + ".level: expected 1 or 2");
      }
      sec.level = lv->get<int>();
    }
    auto blocks = s.find("blocks");
    if (blocks != s.end() && !blocks->is_null()) {
      if (!blocks->is_array()) throw InputError(where + ".blocks: expected an array");
      for (size_t k = 0; k < blocks->size(); ++k) {
        sec.blocks.push_back(
            parse_block((*blocks)[k], where + ".blocks[" + std::to_string(k) + "]"));
      }
    }
    doc.sections.push_back(std::move(sec));
  }
  return doc;
}

Document load_document(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open document " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError("cannot read document " + path);
  return parse_document(ss.str(), path);
}

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

const char* word_role_name(WordRole role) {
  switch (role) {
    case WordRole::kTitle:
      return "title";
    case WordRole::kSubtitle:
      return "subtitle";
    case WordRole::kAuthor:
      return "author";
    case WordRole::kHeading:
      return "heading";
    case WordRole::kBody:
      return "body";
    case WordRole::kListMarker:
      return "list_marker";
    case WordRole::kListItem:
      return "list_item";
    case WordRole::kTableHeader:
      return "table_header";
    case WordRole::kTableCell:
      return "table_cell";
    case WordRole::kCaption:
      return "caption";
    case WordRole::kRunningHeader:
      return "running_header";
    case WordRole::kPageNumber:
      return "page_number";
    case WordRole::kContentsTitle:
      return "contents_title";
    case WordRole::kContentsEntry:
      return "contents_entry";
  }
  return "?";
}

RenderedDocument render_document(const Document& document, const DocumentStyle& style) {
  if (document.sections.empty()) throw InputError("the document has no sections");
  validate(style);
  Layout layout(document, style);
  return layout.run();
}

std::string document_layout_json(const RenderedDocument& r) {
  const DocumentStyle& s = r.style;
  json style = {
      {"seed", s.seed},
      {"page_size", page_size_name(s.page_size)},
      {"page_width", s.page_width},
      {"page_height", s.page_height},
      {"family", family_name(s.family)},
      {"font", s.font_name},
      {"font_files",
       {std::filesystem::path(s.regular_font).filename().string(),
        std::filesystem::path(s.bold_font).filename().string(),
        std::filesystem::path(s.italic_font).filename().string()}},
      {"body_size", s.body_size},
      {"line_spacing", s.line_spacing},
      {"columns", s.columns},
      {"margins", {s.margin_top, s.margin_right, s.margin_bottom, s.margin_left}},
      {"justify", s.justify},
      {"numbered_headings", s.number_headings},
      {"contents_page", s.contents_page},
  };
  json pages = json::array();
  for (size_t p = 0; p < r.pages.size(); ++p) {
    char name[32];
    std::snprintf(name, sizeof(name), "page_%03zu.png", p);
    pages.push_back({{"index", p},
                     {"file", name},
                     {"label", r.page_labels[p]},
                     {"width", r.pages[p].width},
                     {"height", r.pages[p].height}});
  }
  json sections = json::array();
  for (const SectionPlacement& sp : r.sections) {
    sections.push_back({{"index", sp.section},
                        {"heading", sp.heading},
                        {"level", sp.level},
                        {"page", sp.page},
                        {"y", sp.y}});
  }
  json words = json::array();
  for (const WordBox& w : r.words) {
    words.push_back({{"page", w.page},
                     {"text", w.text},
                     {"box", {w.x0, w.y0, w.x1, w.y1}},
                     {"role", word_role_name(w.role)},
                     {"section", w.section}});
  }
  json out = {{"style", style},
              {"pages", pages},
              {"contents_pages", r.contents_pages},
              {"sections", sections},
              {"words", words}};
  return out.dump(1) + "\n";
}

}  // namespace ziprerank
