// Writes the seed images of fuzz/corpus/image: one small image per format and pixel layout the
// decoder handles. Usage: make_image_seeds <folder>
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

namespace {

cv::Mat pattern(int rows, int cols, int type) {
  cv::Mat m(rows, cols, type);
  const int ch = m.channels();
  const bool wide = m.depth() == CV_16U;
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      for (int c = 0; c < ch; ++c) {
        const int v = (x * 37 + y * 11 + c * 90) % 256;
        if (wide) {
          m.ptr<uint16_t>(y)[x * ch + c] = static_cast<uint16_t>(v * 257 - c);
        } else {
          m.ptr<uint8_t>(y)[x * ch + c] = static_cast<uint8_t>(v);
        }
      }
    }
  }
  return m;
}

bool write(const std::string& dir, const std::string& name, const cv::Mat& m,
           const std::vector<int>& params = {}) {
  const std::string path = dir + "/" + name;
  if (!cv::imwrite(path, m, params)) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <folder>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = true;
  ok &= write(dir, "gray8.png", pattern(5, 7, CV_8UC1));
  ok &= write(dir, "gray16.png", pattern(4, 3, CV_16UC1));
  ok &= write(dir, "rgb8.png", pattern(6, 5, CV_8UC3));
  ok &= write(dir, "rgb16.png", pattern(3, 4, CV_16UC3));
  ok &= write(dir, "rgba8.png", pattern(4, 6, CV_8UC4));
  ok &= write(dir, "rgb8_filtered.png", pattern(9, 9, CV_8UC3), {cv::IMWRITE_PNG_STRATEGY, 1});
  ok &= write(dir, "baseline.jpg", pattern(8, 16, CV_8UC3), {cv::IMWRITE_JPEG_QUALITY, 50});
  ok &= write(dir, "gray.jpg", pattern(9, 8, CV_8UC1), {cv::IMWRITE_JPEG_QUALITY, 50});
  ok &= write(dir, "progressive.jpg", pattern(16, 8, CV_8UC3),
              {cv::IMWRITE_JPEG_QUALITY, 40, cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  ok &= write(dir, "restarts.jpg", pattern(17, 13, CV_8UC3),
              {cv::IMWRITE_JPEG_QUALITY, 30, cv::IMWRITE_JPEG_RST_INTERVAL, 1});
  ok &= write(dir, "lossy.webp", pattern(8, 8, CV_8UC3), {cv::IMWRITE_WEBP_QUALITY, 30});
  ok &= write(dir, "lossless.webp", pattern(5, 6, CV_8UC3), {cv::IMWRITE_WEBP_QUALITY, 101});
  ok &= write(dir, "alpha_lossless.webp", pattern(4, 4, CV_8UC4), {cv::IMWRITE_WEBP_QUALITY, 101});
  ok &= write(dir, "rgb24.bmp", pattern(3, 5, CV_8UC3));
  ok &= write(dir, "gray8.bmp", pattern(4, 4, CV_8UC1));
  ok &= write(dir, "rgba32.bmp", pattern(2, 3, CV_8UC4));
  return ok ? 0 : 1;
}
