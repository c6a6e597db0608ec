#include "ziprerank/pages.hpp"

#include <poppler-document.h>
#include <poppler-image.h>
#include <poppler-page-renderer.h>
#include <poppler-page.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <system_error>

#include "core/utf8.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace fs = std::filesystem;

namespace {

std::string lower_ext(const std::string& path) {
  return detail::ascii_lower(fs::path(path).extension().string());
}

bool is_pdf(const std::string& path) { return lower_ext(path) == ".pdf"; }

// poppler keeps state shared between documents: one thread in it at a time (batch renders the
// next query's pages while the current query's are read).
std::mutex& poppler_mutex() {
  static std::mutex m;
  return m;
}

std::unique_ptr<poppler::document> open_pdf(const std::string& path) {
  std::error_code ec;
  if (fs::status(path, ec).type() == fs::file_type::not_found)
    throw InputError("PDF '" + path + "' does not exist");
  // Before poppler opens it: opening a FIFO for reading waits for a writer that never comes.
  require_regular_file(path, "PDF");
  std::unique_ptr<poppler::document> doc(poppler::document::load_from_file(path));
  if (!doc) throw InputError("cannot open PDF '" + path + "' (corrupt or not a PDF?)");
  if (doc->is_locked()) throw InputError("PDF '" + path + "' is password-protected");
  return doc;
}

// Natural order so that page2.png sorts before page10.png.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && std::isdigit(static_cast<unsigned char>(a[i2]))) ++i2;
      while (j2 < b.size() && std::isdigit(static_cast<unsigned char>(b[j2]))) ++j2;
      const std::string na = a.substr(i, i2 - i), nb = b.substr(j, j2 - j);
      const std::string ta = na.substr(std::min(na.find_first_not_of('0'), na.size()));
      const std::string tb = nb.substr(std::min(nb.find_first_not_of('0'), nb.size()));
      if (ta.size() != tb.size()) return ta.size() < tb.size();
      if (ta != tb) return ta < tb;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

void add_file(const fs::path& p, const std::string& id_prefix, std::vector<PageRef>& out,
              std::vector<SkippedPage>* skipped) {
  const std::string path = p.string();
  const std::string name = id_prefix + p.filename().string();
  if (is_pdf(path)) {
    int n = 0;
    try {
      n = pdf_page_count(path);
    } catch (const InputError& e) {
      if (!skipped) throw;
      skipped->push_back(SkippedPage{name, e.what()});
      return;
    }
    for (int k = 1; k <= n; ++k) out.push_back(PageRef{name + "#" + std::to_string(k), path, k});
  } else {
    out.push_back(PageRef{name, path, 0});
  }
}

}  // namespace

bool is_image_file(const std::string& path) {
  static const char* kExt[] = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"};
  const std::string e = lower_ext(path);
  return std::any_of(std::begin(kExt), std::end(kExt), [&](const char* x) { return e == x; });
}

int pdf_page_count(const std::string& path) {
  const std::lock_guard<std::mutex> lock(poppler_mutex());
  const int n = open_pdf(path)->pages();
  if (n <= 0) throw InputError("PDF '" + path + "' has no pages");
  return n;
}

std::string page_file_problem(const std::string& path) {
  try {
    require_regular_file(path, is_pdf(path) ? "PDF" : "image");
  } catch (const InputError& e) {
    return e.what();
  }
  if (::access(path.c_str(), R_OK) != 0)
    return path + ": cannot read it (" + std::strerror(errno) + ")";
  return "";
}

std::vector<PageRef> check_page_files(const std::vector<PageRef>& pages,
                                      std::vector<SkippedPage>* skipped) {
  std::map<std::string, std::string> problem_of;  // by path: a PDF's pages share one file
  std::vector<PageRef> readable;
  std::vector<std::string> problems;
  for (const PageRef& p : pages) {
    auto it = problem_of.find(p.path);
    if (it == problem_of.end()) it = problem_of.emplace(p.path, page_file_problem(p.path)).first;
    if (it->second.empty()) {
      readable.push_back(p);
      continue;
    }
    problems.push_back("'" + p.id + "': " + it->second);
    if (skipped) {
      skipped->push_back(SkippedPage{p.id, it->second});
      spdlog::warn("skipping page '{}', which cannot be read: {}", p.id, it->second);
    }
  }
  if (problems.empty()) return readable;
  std::string listed;
  for (size_t i = 0; i < problems.size() && i < 5; ++i) listed += (i ? "; " : "") + problems[i];
  if (problems.size() > 5) listed += "; and " + std::to_string(problems.size() - 5) + " more";
  if (readable.empty()) {
    throw InputError("none of the " + std::to_string(pages.size()) +
                     " page(s) can be read: " + listed);
  }
  if (!skipped) {
    throw InputError(std::to_string(problems.size()) + " of " + std::to_string(pages.size()) +
                     " page(s) cannot be read: " + listed);
  }
  return readable;
}

std::vector<PageRef> expand_page_inputs(const std::vector<std::string>& paths,
                                        std::vector<SkippedPage>* skipped) {
  std::vector<PageRef> out;
  std::vector<std::string> from;  // the path each page of `out` came from
  for (const auto& raw : paths) {
    const fs::path p(raw);
    std::error_code ec;
    const fs::file_status st = fs::status(p, ec);  // never throws (a symlink loop, a bad folder)
    if (st.type() == fs::file_type::not_found) throw InputError("'" + raw + "' does not exist");
    if (st.type() == fs::file_type::directory) {
      std::vector<fs::path> files;
      fs::directory_iterator it(p, ec), end;
      if (ec) throw InputError("cannot list folder '" + raw + "' (" + ec.message() + ")");
      for (; it != end; it.increment(ec)) {
        if (ec) throw InputError("cannot list folder '" + raw + "' (" + ec.message() + ")");
        const fs::path& f = it->path();
        if (!is_image_file(f.string()) && !is_pdf(f.string())) continue;
        // An entry that is not a readable regular file (a symlink loop, a FIFO, a folder named
        // x.png) is skipped with the reason: one bad entry must not sink the whole folder.
        try {
          require_regular_file(f.string(), is_pdf(f.string()) ? "PDF" : "image");
        } catch (const InputError& e) {
          spdlog::warn("skipping {}", e.what());
          continue;
        }
        files.push_back(f);
      }
      std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
        return natural_less(a.filename().string(), b.filename().string());
      });
      if (files.empty()) throw InputError("folder '" + raw + "' holds no images or PDFs");
      for (const auto& f : files) {
        add_file(f, "", out, skipped);
        from.resize(out.size(), f.string());
      }
    } else if (is_image_file(raw) || is_pdf(raw)) {
      require_regular_file(raw, is_pdf(raw) ? "PDF" : "image");
      add_file(p, "", out, skipped);
      from.resize(out.size(), raw);
    } else if (ec || st.type() != fs::file_type::regular) {
      require_regular_file(raw, "image");  // says what it is instead (a loop, a FIFO, ...)
      throw InputError("'" + raw + "' is not a regular file");
    } else {
      throw InputError("'" + raw +
                       "' is neither an image (png, jpg, webp, bmp, tif), a PDF nor a folder");
    }
  }
  // The same file given twice is a mistake; files of one name in different folders are told
  // apart by the shortest end of their paths that differs ("a/1.png", "b/1.png").
  std::map<std::string, size_t> first;
  std::map<std::string, std::vector<size_t>> by_id;
  for (size_t i = 0; i < out.size(); ++i) {
    const auto [it, fresh] = first.emplace(out[i].id, i);
    by_id[out[i].id].push_back(i);
    if (fresh) continue;
    const std::string& a = from[it->second];
    const std::string& b = from[i];
    std::error_code ec;
    if (a == b || fs::equivalent(a, b, ec)) {
      throw InputError("page '" + out[i].id + "' is given twice ('" + a + "' and '" + b +
                       "'); give each page once");
    }
  }
  for (const auto& [id, members] : by_id) {
    if (members.size() < 2) continue;
    // Path components of each member's file, absolute, last first.
    std::vector<std::vector<std::string>> parts;
    size_t longest = 0;
    for (size_t i : members) {
      std::vector<std::string> c;
      for (const auto& part : fs::absolute(out[i].path).lexically_normal()) c.push_back(part);
      std::reverse(c.begin(), c.end());
      longest = std::max(longest, c.size());
      parts.push_back(std::move(c));
    }
    for (size_t k = 2; k <= longest; ++k) {
      std::set<std::string> seen;
      std::vector<std::string> ids;
      for (size_t m = 0; m < members.size(); ++m) {
        std::string suffix;
        for (size_t j = std::min(k, parts[m].size()); j-- > 0;)
          suffix += (suffix.empty() || suffix == "/" ? "" : "/") + parts[m][j];
        const PageRef& ref = out[members[m]];
        const std::string name = fs::path(ref.path).filename().string();
        ids.push_back(suffix + ref.id.substr(std::min(name.size(), ref.id.size())));
        seen.insert(ids.back());
      }
      if (seen.size() == members.size() || k == longest) {
        for (size_t m = 0; m < members.size(); ++m) out[members[m]].id = ids[m];
        break;
      }
    }
  }
  return out;
}

Image render_pdf_page(const std::string& path, int page_number, int longest_side) {
  const std::lock_guard<std::mutex> lock(poppler_mutex());
  auto doc = open_pdf(path);
  if (page_number < 1 || page_number > doc->pages()) {
    throw InputError("PDF '" + path + "' has " + std::to_string(doc->pages()) + " pages; page " +
                     std::to_string(page_number) + " does not exist");
  }
  std::unique_ptr<poppler::page> page(doc->create_page(page_number - 1));
  if (!page)
    throw InputError("cannot read page " + std::to_string(page_number) + " of PDF '" + path + "'");
  const poppler::rectf rect = page->page_rect(poppler::media_box);
  const double longest_pt = std::max(rect.width(), rect.height());
  if (!(longest_pt > 0))
    throw InputError("page " + std::to_string(page_number) + " of '" + path + "' has no size");
  const double dpi = 72.0 * longest_side / longest_pt;
  poppler::page_renderer renderer;
  renderer.set_render_hint(poppler::page_renderer::antialiasing, true);
  renderer.set_render_hint(poppler::page_renderer::text_antialiasing, true);
  renderer.set_image_format(poppler::image::format_rgb24);
  const poppler::image img = renderer.render_page(page.get(), dpi, dpi);
  if (!img.is_valid() || img.width() <= 0 || img.height() <= 0) {
    throw InputError("cannot render page " + std::to_string(page_number) + " of PDF '" + path +
                     "'");
  }
  Image out;
  out.width = img.width();
  out.height = img.height();
  out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
  const char* data = img.const_data();
  const int stride = img.bytes_per_row();
  for (int y = 0; y < out.height; ++y) {
    const auto* row = reinterpret_cast<const uint8_t*>(data + static_cast<size_t>(y) * stride);
    std::copy(row, row + out.width * 3, out.rgb.begin() + static_cast<size_t>(y) * out.width * 3);
  }
  return out;
}

Image load_page(const PageRef& page) {
  if (page.pdf_page > 0) return render_pdf_page(page.path, page.pdf_page);
  return load_image(page.path);
}

}  // namespace ziprerank
