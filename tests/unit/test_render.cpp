// Passage renderer against fixtures made with Pillow (tests/fixtures/render/
// make_passage_fixtures.py re-states the reference algorithm on Pillow), and document mode
// properties: word boxes on ink, contents page consistent with section pages, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ziprerank/document.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/render.hpp"

namespace ziprerank {
namespace {

const std::string kFixtures = std::string(ZIPRERANK_TEST_FIXTURES) + "/render";

bool have_font(const std::string& path) { return std::filesystem::exists(path); }

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

const nlohmann::json& fixtures() {
  static const nlohmann::json j = load_json(kFixtures + "/passage_fixtures.json");
  return j;
}

TextLayout engine(const std::string& name) {
  return name == "basic" ? TextLayout::kBasic : TextLayout::kRaqm;
}

// Box of pixels darker than white in any channel: {x0, y0, x1, y1}, or all -1 when blank.
std::array<int, 4> ink_box(const Image& im) {
  int x0 = im.width, y0 = im.height, x1 = -1, y1 = -1;
  for (int y = 0; y < im.height; ++y) {
    for (int x = 0; x < im.width; ++x) {
      const uint8_t* p = &im.rgb[(static_cast<size_t>(y) * im.width + x) * 3];
      if (p[0] != 255 || p[1] != 255 || p[2] != 255) {
        x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
      }
    }
  }
  if (x1 < 0) return {-1, -1, -1, -1};
  return {x0, y0, x1 + 1, y1 + 1};
}

class PassageFixtures : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!have_font(kDefaultPassageFont)) GTEST_SKIP() << "fonts-dejavu-core is not installed";
  }
};

TEST_P(PassageFixtures, MeasurementMatchesPillowGetbbox) {
  PassageRenderOptions options;
  options.layout = engine(GetParam());
  int checked = 0;
  for (const auto& row : fixtures()["measure"][GetParam()]) {
    const int size = row[0].get<int>();
    const std::string text = row[1].get<std::string>();
    const auto expected = row[2].get<std::vector<int>>();
    const auto got = passage_text_bbox(text, size, options);
    ASSERT_EQ(std::vector<int>(got.begin(), got.end()), expected)
        << "size " << size << " text \"" << text << "\"";
    ++checked;
  }
  EXPECT_GT(checked, 500);
}

TEST_P(PassageFixtures, LayoutMatchesReference) {
  for (const auto& c : fixtures()["layouts"][GetParam()]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    PassageRenderOptions options;
    options.layout = engine(GetParam());
    options.fill_canvas = c["fill_canvas"].get<bool>();
    if (c.contains("canvas")) options.size = c["canvas"].get<int>();
    const PassageLayout layout = layout_passage(c["text"].get<std::string>(), options);
    EXPECT_EQ(layout.font_size, c["font_size"].get<int>());
    EXPECT_EQ(layout.line_height, c["line_height"].get<int>());
    EXPECT_EQ(layout.lines, c["lines"].get<std::vector<std::string>>());
    EXPECT_EQ(layout.drawn_lines, c["drawn_lines"].get<int>());
    EXPECT_EQ(layout.ellipsis, c["ellipsis"].get<bool>());

    // Pixels are compared loosely: anti-aliasing may differ with another FreeType build.
    const Image image = draw_passage(layout, options);
    ASSERT_EQ(image.width, options.size);
    ASSERT_EQ(image.height, options.size);
    const auto box = ink_box(image);
    if (c["ink_bbox"].is_null()) {
      EXPECT_EQ(box[0], -1);
    } else {
      const auto expected = c["ink_bbox"].get<std::vector<int>>();
      for (int k = 0; k < 4; ++k) EXPECT_NEAR(box[k], expected[k], 1) << "ink box side " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, PassageFixtures, ::testing::Values("raqm", "basic"));

TEST(Passage, PixelsCloseToPillow) {
  if (!have_font(kDefaultPassageFont)) GTEST_SKIP() << "fonts-dejavu-core is not installed";
  int compared = 0;
  for (const auto& c : fixtures()["layouts"]["raqm"]) {
    if (!c.contains("png")) continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    const cv::Mat bgr = cv::imread(kFixtures + "/" + c["png"].get<std::string>(), cv::IMREAD_COLOR);
    ASSERT_FALSE(bgr.empty());
    const Image ours = render_passage(c["text"].get<std::string>());
    ASSERT_EQ(bgr.cols, ours.width);
    ASSERT_EQ(bgr.rows, ours.height);
    double total = 0;
    for (int y = 0; y < bgr.rows; ++y) {
      for (int x = 0; x < bgr.cols; ++x) {
        const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
        const uint8_t* q = &ours.rgb[(static_cast<size_t>(y) * ours.width + x) * 3];
        total += std::abs(p[2] - q[0]) + std::abs(p[1] - q[1]) + std::abs(p[0] - q[2]);
      }
    }
    EXPECT_LT(total / (3.0 * bgr.rows * bgr.cols), 2.0);
    ++compared;
  }
  EXPECT_GE(compared, 3);
}

TEST(Passage, LongWordIsHyphenatedIntoFittingPieces) {
  if (!have_font(kDefaultPassageFont)) GTEST_SKIP() << "fonts-dejavu-core is not installed";
  const std::string word(300, 'x');
  PassageRenderOptions options;
  options.fill_canvas = false;
  const PassageLayout layout = layout_passage(word, options);
  ASSERT_GT(layout.lines.size(), 5u);
  std::string joined;
  for (size_t i = 0; i < layout.lines.size(); ++i) {
    const std::string& line = layout.lines[i];
    const auto box = passage_text_bbox(line, layout.font_size, options);
    EXPECT_LE(box[2] - box[0], options.size - 2 * options.padding) << line;
    if (i + 1 < layout.lines.size()) {
      ASSERT_EQ(line.back(), '-');
      joined += line.substr(0, line.size() - 1);
      // The longest prefix: one more character would not fit.
      const std::string longer = line.substr(0, line.size() - 1) + "x-";
      const auto wider = passage_text_bbox(longer, layout.font_size, options);
      EXPECT_GT(wider[2] - wider[0], options.size - 2 * options.padding);
    } else {
      EXPECT_NE(line.back(), '-');
      joined += line;
    }
  }
  EXPECT_EQ(joined, word);
}

TEST(Passage, EmptyAndWhitespaceTextGiveBlankCanvas) {
  if (!have_font(kDefaultPassageFont)) GTEST_SKIP() << "fonts-dejavu-core is not installed";
  for (const std::string text : {"", "   ", "\t\n\r ", "\xC2\xA0\xE3\x80\x80"}) {
    const PassageLayout layout = layout_passage(text);
    EXPECT_TRUE(layout.lines.empty());
    EXPECT_EQ(layout.font_size, 48);  // the reference's search ends at the largest size
    const Image image = render_passage(text);
    EXPECT_TRUE(
        std::all_of(image.rgb.begin(), image.rgb.end(), [](uint8_t v) { return v == 255; }));
  }
}

TEST(Passage, DeterministicAndOptionsChecked) {
  if (!have_font(kDefaultPassageFont)) GTEST_SKIP() << "fonts-dejavu-core is not installed";
  const std::string text = "Determinism: the same text renders to the same bytes every time.";
  EXPECT_EQ(render_passage(text).rgb, render_passage(text).rgb);
  PassageRenderOptions bad;
  bad.size = 40;
  EXPECT_THROW(render_passage(text, bad), InputError);
  PassageRenderOptions missing;
  missing.font_path = "/nonexistent/DejaVuSansMono.ttf";
  try {
    render_passage(text, missing);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fonts-dejavu-core"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Document mode

const Document& sample_document() {
  static const Document doc = load_document(kFixtures + "/sample_document.json");
  return doc;
}

bool any_document_font() {
  return have_font("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf") ||
         have_font("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf");
}

// Darkest channel value inside a word box.
int darkest(const Image& im, const WordBox& w) {
  int best = 255;
  for (int y = w.y0; y < w.y1; ++y) {
    for (int x = w.x0; x < w.x1; ++x) {
      const uint8_t* p = &im.rgb[(static_cast<size_t>(y) * im.width + x) * 3];
      best = std::min({best, int{p[0]}, int{p[1]}, int{p[2]}});
    }
  }
  return best;
}

TEST(Document, WordBoxesLieInsidePagesOnInk) {
  if (!any_document_font()) GTEST_SKIP() << "no document fonts installed";
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const RenderedDocument r = render_document(sample_document(), choose_document_style(seed));
    ASSERT_GE(r.pages.size(), 2u);
    ASSERT_EQ(r.page_labels.size(), r.pages.size());
    ASSERT_GT(r.words.size(), 500u);
    std::set<int> pages_with_words;
    for (const WordBox& w : r.words) {
      ASSERT_GE(w.page, 0);
      ASSERT_LT(w.page, static_cast<int>(r.pages.size()));
      const Image& im = r.pages[w.page];
      ASSERT_TRUE(w.x0 >= 0 && w.y0 >= 0 && w.x1 <= im.width && w.y1 <= im.height)
          << w.text << " [" << w.x0 << "," << w.y0 << "," << w.x1 << "," << w.y1 << "]";
      ASSERT_LT(w.x0, w.x1);
      ASSERT_LT(w.y0, w.y1);
      EXPECT_LT(darkest(im, w), 160) << w.text << " on page " << w.page;
      EXPECT_FALSE(w.text.empty());
      pages_with_words.insert(w.page);
    }
    EXPECT_EQ(pages_with_words.size(), r.pages.size());
    // Every word of the input is drawn, whole or as hyphenated pieces.
    std::multiset<std::string> drawn;
    std::vector<std::string> pieces;
    for (const WordBox& w : r.words) {
      drawn.insert(w.text);
      if (w.text.size() > 1 && w.text.back() == '-') pieces.push_back(w.text);
    }
    auto check = [&](const std::string& text) {
      std::istringstream in(text);
      std::string word;
      while (in >> word) {
        bool found = drawn.count(word) > 0;
        for (const std::string& p : pieces) {
          found |= word.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0;
        }
        EXPECT_TRUE(found) << word;
      }
    };
    for (const DocumentSection& sec : sample_document().sections) {
      check(sec.heading);
      for (const DocumentBlock& b : sec.blocks) {
        check(b.text);
        for (const auto& item : b.items) check(item);
        for (const auto& row : b.rows) {
          for (const auto& cell : row) check(cell);
        }
      }
    }
  }
}

TEST(Document, SectionPagesMatchContentsPage) {
  if (!any_document_font()) GTEST_SKIP() << "no document fonts installed";
  for (uint64_t seed : {3, 11, 12}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    DocumentStyleRequest request;
    request.contents_page = true;
    if (seed == 12) request.columns = 2;
    const RenderedDocument r =
        render_document(sample_document(), choose_document_style(seed, request));
    ASSERT_EQ(r.contents_pages, std::vector<int>{0});
    ASSERT_EQ(r.sections.size(), sample_document().sections.size());
    for (size_t i = 0; i < r.sections.size(); ++i) {
      const SectionPlacement& sp = r.sections[i];
      EXPECT_GT(sp.page, 0) << "the body starts after the contents page";
      std::vector<const WordBox*> heading, entry;
      for (const WordBox& w : r.words) {
        if (w.section != static_cast<int>(i)) continue;
        if (w.role == WordRole::kHeading) heading.push_back(&w);
        if (w.role == WordRole::kContentsEntry) entry.push_back(&w);
      }
      ASSERT_FALSE(heading.empty());
      ASSERT_FALSE(entry.empty());
      for (const WordBox* w : heading) EXPECT_EQ(w->page, sp.page) << w->text;
      for (const WordBox* w : entry) EXPECT_EQ(w->page, 0);
      // The rightmost entry word is the printed page number of the section's first page.
      const WordBox* number =
          *std::max_element(entry.begin(), entry.end(),
                            [](const WordBox* a, const WordBox* b) { return a->x1 < b->x1; });
      EXPECT_EQ(number->text, r.page_labels[sp.page]) << sp.heading;
      // The contents entry repeats the heading's words.
      std::set<std::string> entry_words;
      for (const WordBox* w : entry) entry_words.insert(w->text);
      for (const WordBox* w : heading) EXPECT_TRUE(entry_words.count(w->text)) << w->text;
    }
  }
}

// Many sections: the contents run over several pages; long tables split across columns and
// pages (repeating their header); an unbreakable word wider than a column is hyphenated.
Document stress_document() {
  Document doc;
  doc.title = "Stress test";
  for (int i = 0; i < 70; ++i) {
    DocumentSection sec;
    sec.heading = "Section number " + std::to_string(i) + " about topic " + std::to_string(i * 7);
    sec.level = i % 3 == 2 ? 2 : 1;
    DocumentBlock para;
    para.text = "Short paragraph " + std::to_string(i) + " with a few ordinary words in it.";
    sec.blocks.push_back(para);
    if (i == 5) {
      DocumentBlock word;
      word.text = "Before " + std::string(400, 'w') + " after.";
      sec.blocks.push_back(word);
    }
    if (i == 9) {
      DocumentBlock table;
      table.kind = DocumentBlock::Kind::kTable;
      table.caption = "A long table";
      table.header = {"Year", "Station", "Reading", "Remark"};
      for (int r = 0; r < 120; ++r) {
        table.rows.push_back({std::to_string(1900 + r), "Station " + std::to_string(r % 13),
                              std::to_string(r * 3.25), r % 4 ? "" : "recalibrated after flood"});
      }
      sec.blocks.push_back(table);
    }
    doc.sections.push_back(sec);
  }
  return doc;
}

TEST(Document, LongContentsAndTablesStayConsistent) {
  if (!any_document_font()) GTEST_SKIP() << "no document fonts installed";
  const Document doc = stress_document();
  for (int columns : {1, 2}) {
    SCOPED_TRACE("columns " + std::to_string(columns));
    DocumentStyleRequest request;
    request.contents_page = true;
    request.columns = columns;
    const RenderedDocument r = render_document(doc, choose_document_style(21, request));
    ASSERT_GE(r.contents_pages.size(), 2u);
    for (size_t k = 0; k < r.contents_pages.size(); ++k) EXPECT_EQ(r.contents_pages[k], int(k));
    const int first_body = static_cast<int>(r.contents_pages.size());
    EXPECT_EQ(r.sections.front().page, first_body);
    for (size_t i = 1; i < r.sections.size(); ++i) {
      EXPECT_GE(r.sections[i].page, r.sections[i - 1].page) << "sections keep their order";
    }
    std::vector<std::string> last_entry(doc.sections.size());
    std::vector<int> last_x(doc.sections.size(), -1);
    int table_headers = 0;
    for (const WordBox& w : r.words) {
      const Image& im = r.pages[w.page];
      ASSERT_TRUE(w.x0 >= 0 && w.y0 >= 0 && w.x1 <= im.width && w.y1 <= im.height) << w.text;
      if (w.role == WordRole::kContentsEntry && w.x1 > last_x[w.section]) {
        last_x[w.section] = w.x1;
        last_entry[w.section] = w.text;
      }
      if (w.role == WordRole::kTableHeader && w.text == "Station") ++table_headers;
      if (w.role == WordRole::kBody) {
        EXPECT_GE(w.page, first_body);
      }
    }
    for (size_t i = 0; i < doc.sections.size(); ++i) {
      EXPECT_EQ(last_entry[i], r.page_labels[r.sections[i].page]) << doc.sections[i].heading;
    }
    EXPECT_GE(table_headers, 2) << "a table split over columns repeats its header";
  }
}

TEST(Document, TwoColumnsUseBothHalves) {
  if (!any_document_font()) GTEST_SKIP() << "no document fonts installed";
  DocumentStyleRequest request;
  request.columns = 2;
  const RenderedDocument r = render_document(sample_document(), choose_document_style(5, request));
  const int mid = r.style.page_width / 2;
  int left = 0, right = 0, straddle = 0;
  for (const WordBox& w : r.words) {
    if (w.role != WordRole::kBody) continue;
    if (w.x1 <= mid) ++left;
    if (w.x0 >= mid) ++right;
    if (w.x0 < mid && w.x1 > mid) ++straddle;
  }
  EXPECT_GT(left, 100);
  EXPECT_GT(right, 100);
  EXPECT_EQ(straddle, 0) << "body text crosses the column gap";
}

TEST(Document, SameSeedSameBytesAndStyleRequestsHonoured) {
  if (!any_document_font()) GTEST_SKIP() << "no document fonts installed";
  const DocumentStyle a = choose_document_style(42);
  const RenderedDocument r1 = render_document(sample_document(), a);
  const RenderedDocument r2 = render_document(sample_document(), choose_document_style(42));
  ASSERT_EQ(r1.pages.size(), r2.pages.size());
  for (size_t p = 0; p < r1.pages.size(); ++p) EXPECT_EQ(r1.pages[p].rgb, r2.pages[p].rgb);
  EXPECT_EQ(document_layout_json(r1), document_layout_json(r2));

  std::set<std::string> looks;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    const DocumentStyle s = choose_document_style(seed);
    looks.insert(s.font_name + std::to_string(s.columns) + std::to_string(s.body_size));
  }
  EXPECT_GT(looks.size(), 4u) << "seeds should vary the look";

  DocumentStyleRequest request;
  request.page_size = PageSize::kLetter;
  request.columns = 1;
  request.header_text = "Custom header";
  const DocumentStyle letter = choose_document_style(42, request);
  EXPECT_EQ(letter.page_width, 791);
  EXPECT_EQ(letter.page_height, 1024);
  EXPECT_EQ(letter.columns, 1);
  EXPECT_EQ(letter.font_name, a.font_name) << "forcing one property keeps the others";
  request.page_size = PageSize::kA4;
  EXPECT_EQ(choose_document_style(42, request).page_width, 724);
  if (have_font("/usr/share/texmf/fonts/opentype/public/lm/lmroman10-regular.otf")) {
    DocumentStyleRequest latex;
    latex.family = FontFamily::kLatex;
    EXPECT_EQ(choose_document_style(7, latex).font_name.rfind("Latin Modern", 0), 0u);
  }
}

TEST(Document, SidecarJsonListsEveryWord) {
  if (!any_document_font()) GTEST_SKIP() << "no document fonts installed";
  const RenderedDocument r = render_document(sample_document(), choose_document_style(9));
  const auto j = nlohmann::json::parse(document_layout_json(r));
  EXPECT_EQ(j["words"].size(), r.words.size());
  EXPECT_EQ(j["pages"].size(), r.pages.size());
  EXPECT_EQ(j["pages"][0]["file"], "page_000.png");
  EXPECT_EQ(j["sections"].size(), r.sections.size());
  EXPECT_EQ(j["words"][0]["box"].size(), 4u);
}

TEST(Document, ParseErrorsNameThePlace) {
  try {
    parse_document("{\n  \"sections\": [\n    {\"heading\": \"A\",}\n  ]\n}", "doc.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  try {
    parse_document(R"({"sections": [{"heading": "A", "blocks": [{"type": "figure"}]}]})", "d.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sections[0].blocks[0].type"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(parse_document(R"({"sections": []})", "d.json"), InputError);
  EXPECT_THROW(parse_document(R"({"sections": [{"blocks": []}]})", "d.json"), InputError);
  EXPECT_THROW(parse_document(R"({"sections": [{"heading": "A", "level": 3}]})", "d.json"),
               InputError);
  const Document d = parse_document(
      R"({"sections": [{"heading": "A", "blocks": ["para", {"type": "table", "rows": [[1, "x"]]}]}]})",
      "d.json");
  ASSERT_EQ(d.sections[0].blocks.size(), 2u);
  EXPECT_EQ(d.sections[0].blocks[1].rows[0][0], "1");
}

}  // namespace
}  // namespace ziprerank
