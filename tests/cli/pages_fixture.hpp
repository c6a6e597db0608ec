// Generated candidate pages for end-to-end tests: distinct images and a hand-written PDF.
#pragma once

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace ziprerank::test {

/// Writes `n` PNG pages (page01.png ...) with different stripes and text into `dir`.
inline std::vector<std::string> write_pages(const std::filesystem::path& dir, int n, int w = 160,
                                            int h = 200) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) {
    cv::Mat img(h, w, CV_8UC3, cv::Scalar(255, 255, 255));
    for (int y = 10 + 7 * i % 40; y < h - 10; y += 12 + i % 5) {
      cv::line(img, {10, y}, {w - 10 - 3 * i % 30, y}, cv::Scalar(20 * i % 255, 0, 0), 2);
    }
    cv::putText(img, "page " + std::to_string(i + 1), {12, 30}, cv::FONT_HERSHEY_SIMPLEX, 0.6,
                {0, 0, 0}, 2);
    char name[32];
    std::snprintf(name, sizeof(name), "page%02d.png", i + 1);
    const auto p = (dir / name).string();
    cv::imwrite(p, img);
    paths.push_back(p);
  }
  return paths;
}

/// Writes a minimal valid PDF with one line of Helvetica text per page (US Letter).
inline void write_pdf(const std::filesystem::path& path,
                      const std::vector<std::string>& page_texts) {
  std::vector<std::string> objs;  // object bodies, numbered from 1
  const int n = static_cast<int>(page_texts.size());
  // 1: catalog, 2: pages, 3: font, then (page, content) pairs.
  std::string kids;
  for (int i = 0; i < n; ++i) kids += std::to_string(4 + 2 * i) + " 0 R ";
  objs.push_back("<< /Type /Catalog /Pages 2 0 R >>");
  objs.push_back("<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(n) + " >>");
  objs.push_back("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
  for (int i = 0; i < n; ++i) {
    const std::string stream = "BT /F1 28 Tf 72 700 Td (" + page_texts[i] + ") Tj ET";
    objs.push_back(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> "
        ">> "
        "/Contents " +
        std::to_string(5 + 2 * i) + " 0 R >>");
    objs.push_back("<< /Length " + std::to_string(stream.size()) + " >>\nstream\n" + stream +
                   "\nendstream");
  }
  std::ostringstream out;
  out << "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objs.size(); ++i) {
    offsets.push_back(static_cast<size_t>(out.tellp()));
    out << (i + 1) << " 0 obj\n" << objs[i] << "\nendobj\n";
  }
  const size_t xref = static_cast<size_t>(out.tellp());
  out << "xref\n0 " << objs.size() + 1 << "\n0000000000 65535 f \n";
  for (size_t off : offsets) {
    char line[32];
    std::snprintf(line, sizeof(line), "%010zu 00000 n \n", off);
    out << line;
  }
  out << "trailer\n<< /Size " << objs.size() + 1 << " /Root 1 0 R >>\nstartxref\n"
      << xref << "\n%%EOF\n";
  std::ofstream(path, std::ios::binary) << out.str();
}

}  // namespace ziprerank::test
