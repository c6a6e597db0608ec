#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "ziprerank/errors.hpp"
#include "ziprerank/render.hpp"

namespace ziprerank {

void save_png(const Image& image, const std::string& path) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    throw InputError("cannot write " + path + ": the image is empty or malformed");
  }
  // OpenCV wants BGR; wrap the RGB bytes without copying, then swap into a new buffer.
  const cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.rgb.data()));
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", bgr, bytes)) throw InputError("cannot encode " + path + " as PNG");
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw InputError("cannot write " + path);
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool closed = std::fclose(f) == 0;
  if (written != bytes.size() || !closed)
    throw InputError("cannot write " + path + " (disk full?)");
}

}  // namespace ziprerank
