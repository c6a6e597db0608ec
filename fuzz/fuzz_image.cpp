// libFuzzer target: image decoding (PNG, JPEG, WebP, BMP) from bytes and from a file. Decoding
// must only ever fail with an InputError; the two entry points agree; a decoded image is a
// consistent RGB buffer within the pixel limit.
//
// The codecs live in OpenCV's (uninstrumented) libraries: ASan sees their crashes and heap
// misuse through its interceptors, but libFuzzer gets coverage only from ziprerank's own code.
#include <cstddef>
#include <cstdint>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <string>

#include "fuzz_util.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/image.hpp"

namespace {

// Lower than the CLI's 50 M so that one input costs milliseconds; the limit check itself is the
// same code whatever the limit.
constexpr int64_t kMaxPixels = 4'000'000;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cv::setNumThreads(0);  // decode in the fuzzing thread
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ziprerank::fuzz::ScratchFile file(".img");
  ziprerank::Image from_bytes, from_file;
  bool bytes_ok = false, file_ok = false;
  try {
    from_bytes = ziprerank::decode_image(data, size, "fuzz", kMaxPixels);
    bytes_ok = true;
  } catch (const ziprerank::InputError&) {
  }
  try {
    from_file = ziprerank::load_image(file.write(data, size), kMaxPixels);
    file_ok = true;
  } catch (const ziprerank::InputError&) {
  }
  FUZZ_CHECK(bytes_ok == file_ok);
  if (!bytes_ok) return 0;
  FUZZ_CHECK(from_bytes.width > 0 && from_bytes.height > 0);
  FUZZ_CHECK(from_bytes.num_pixels() <= kMaxPixels);
  FUZZ_CHECK(from_bytes.rgb.size() == static_cast<size_t>(from_bytes.num_pixels()) * 3);
  FUZZ_CHECK(from_bytes.width == from_file.width && from_bytes.height == from_file.height);
  FUZZ_CHECK(from_bytes.rgb == from_file.rgb);
  return 0;
}
