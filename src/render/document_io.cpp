// Document mode's files: the document JSON read (title, sections of paragraphs, lists and
// tables, every error naming its place) and the layout JSON written beside the page images
// (style, pages, sections and every word's box: the words.json sidecar).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "render/document_internal.hpp"
#include "render/font.hpp"
#include "ziprerank/document.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace {

using nlohmann::json;
using render::family_name;

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
