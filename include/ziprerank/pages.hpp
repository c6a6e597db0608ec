// Candidate pages given on the command line or in a batch file: image files, folders of images,
// and PDF files (each page rendered so that its longest side is 1024 pixels).
#pragma once

#include <string>
#include <vector>

#include "ziprerank/image.hpp"

namespace ziprerank {

struct PageRef {
  std::string id;    ///< shown in results: the file name, or "file.pdf#7" for a PDF page
  std::string path;  ///< image or PDF file
  int pdf_page = 0;  ///< 1-based page of a PDF; 0 for an image file
};

/// Expands paths into pages: a folder contributes its image and PDF files (sorted by name), a PDF
/// every page. Throws InputError for a missing path or a folder with no pages.
std::vector<PageRef> expand_page_inputs(const std::vector<std::string>& paths);

/// Number of pages of a PDF file; throws InputError when it cannot be opened.
int pdf_page_count(const std::string& path);

/// Renders one PDF page (1-based) with its longest side at `longest_side` pixels.
Image render_pdf_page(const std::string& path, int page, int longest_side = 1024);

/// Decodes the page an entry points at.
Image load_page(const PageRef& page);

/// True for file names ziprerank reads as images (by extension).
bool is_image_file(const std::string& path);

}  // namespace ziprerank
