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

/// A page left out of a ranking because it could not be read, and why.
struct SkippedPage {
  std::string id;      ///< the page's id (as PageRef::id)
  std::string reason;  ///< the error that made it unreadable
};

/// Expands paths into pages: a folder contributes its image and PDF files (sorted by name), a PDF
/// every page. Throws InputError for a missing path or a folder with no pages. With `skipped`, a
/// PDF that cannot be opened (corrupt, password-protected) is left out and recorded there (id =
/// its file name) instead of throwing.
std::vector<PageRef> expand_page_inputs(const std::vector<std::string>& paths,
                                        std::vector<SkippedPage>* skipped = nullptr);

/// Why a page's file cannot be read ("" when it can): missing, not a regular file (a folder, a
/// FIFO, a symlink loop), or not readable by this process. Opens nothing.
std::string page_file_problem(const std::string& path);

/// Checks every page's file (page_file_problem) before any is decoded and returns the readable
/// pages in order. Without `skipped`, any unreadable file is an InputError naming each one; with
/// it, they are left out, recorded there and logged as warnings. None readable is an InputError
/// either way.
std::vector<PageRef> check_page_files(const std::vector<PageRef>& pages,
                                      std::vector<SkippedPage>* skipped);

/// Number of pages of a PDF file; throws InputError when it cannot be opened.
int pdf_page_count(const std::string& path);

/// Renders one PDF page (1-based) with its longest side at `longest_side` pixels.
Image render_pdf_page(const std::string& path, int page, int longest_side = 1024);

/// Decodes the page an entry points at.
Image load_page(const PageRef& page);

/// True for file names ziprerank reads as images (by extension).
bool is_image_file(const std::string& path);

}  // namespace ziprerank
