// libFuzzer target: PDF candidate pages (poppler). Counting and rendering pages must only ever
// fail with an InputError, and a rendered page is a consistent RGB buffer.
//
// poppler is not instrumented: ASan sees its crashes and heap misuse through its interceptors,
// but libFuzzer gets coverage only from ziprerank's own code, so this target leans on its seeds.
#include <poppler-document.h>
#include <poppler-global.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/pages.hpp"

namespace {

// The pipeline renders at 1024; a smaller page keeps an input under a millisecond while
// poppler parses and draws the same content.
constexpr int kLongestSide = 96;

void quiet(const std::string&, void*) {}

// poppler-cpp builds its GlobalParams (font and encoding tables) when the first document opens
// and frees them when the last one closes: about 1.5 ms of each input under ASan. One document
// kept open for the whole run keeps them, so inputs run ~10x faster; parsing and rendering are
// unchanged.
const char kKeepAlivePdf[] =
    "%PDF-1.1\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
    "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >> endobj\n"
    "trailer << /Root 1 0 R >>\n%%EOF\n";

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  poppler::set_debug_error_function(quiet, nullptr);  // corrupt files make poppler chatty
  static std::vector<char> bytes(kKeepAlivePdf, kKeepAlivePdf + sizeof(kKeepAlivePdf) - 1);
  static std::unique_ptr<poppler::document> keep(poppler::document::load_from_data(&bytes));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ziprerank::fuzz::ScratchFile file(".pdf");
  const std::string& path = file.write(data, size);
  int pages = 0;
  try {
    pages = ziprerank::pdf_page_count(path);
  } catch (const ziprerank::InputError&) {
    return 0;
  }
  FUZZ_CHECK(pages > 0);
  // The first and the last page (a batch names pages by number), and one past the end.
  std::vector<int> to_render = {1};
  if (pages > 1) to_render.push_back(pages);
  if (pages < std::numeric_limits<int>::max()) to_render.push_back(pages + 1);
  for (int page : to_render) {
    try {
      const ziprerank::Image img = ziprerank::render_pdf_page(path, page, kLongestSide);
      FUZZ_CHECK(page <= pages);
      FUZZ_CHECK(img.width > 0 && img.height > 0);
      FUZZ_CHECK(img.rgb.size() == static_cast<size_t>(img.num_pixels()) * 3);
    } catch (const ziprerank::InputError&) {
    }
  }
  return 0;
}
