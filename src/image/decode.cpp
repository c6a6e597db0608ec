// Image decoding with OpenCV (four-component JPEGs with libjpeg, as PIL), normalised to PIL's
// convert("RGB") semantics.
//
// OpenCV 4.6 has no API that reads only an image's dimensions, and cv::imdecode allocates the
// full canvas named in the header before decoding. The container headers are therefore parsed
// here first, so the pixel cap is enforced from a few bytes and a forged header cannot make the
// decoder allocate gigabytes.
#include <cstddef>
#include <cstdio>
// jpeglib.h uses size_t and FILE without including their headers.
#include <jpeglib.h>

#include <algorithm>
#include <csetjmp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <system_error>

#include "ziprerank/errors.hpp"
#include "ziprerank/image.hpp"

namespace ziprerank {
namespace {

// cv::imdecode takes an int-sized buffer; no real page image comes close to this.
constexpr size_t kMaxFileBytes = size_t{1} << 30;

enum class Format { kPng, kJpeg, kWebp, kBmp };

const char* format_name(Format f) {
  switch (f) {
    case Format::kPng:
      return "PNG";
    case Format::kJpeg:
      return "JPEG";
    case Format::kWebp:
      return "WebP";
    case Format::kBmp:
      return "BMP";
  }
  return "?";
}

struct HeaderInfo {
  Format format = Format::kPng;
  int64_t width = 0;
  int64_t height = 0;
  int components = 0;  ///< JPEG only: colour components in the frame (4: CMYK or YCCK)
};

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
uint32_t le24(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16);
}
uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw InputError(origin + ": " + what);
}

[[noreturn]] void truncated(const std::string& origin, Format f) {
  fail(origin, std::string("truncated ") + format_name(f) + " data (the file ends early)");
}

HeaderInfo sniff_png(const uint8_t* d, size_t n, const std::string& origin) {
  // Signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4).
  if (n < 24) truncated(origin, Format::kPng);
  if (be32(d + 8) != 13 || std::memcmp(d + 12, "IHDR", 4) != 0) {
    fail(origin, "corrupt PNG: the first chunk is not IHDR");
  }
  return {Format::kPng, be32(d + 16), be32(d + 20)};
}

// Walks the chunk list to IEND, so a cut-off file gets a clear message (libpng would only
// report "incomplete input" after starting to decode).
void check_png_complete(const uint8_t* d, size_t n, const std::string& origin) {
  size_t pos = 8;
  while (true) {
    if (pos + 8 > n) truncated(origin, Format::kPng);
    const uint64_t len = be32(d + pos);
    const bool end = std::memcmp(d + pos + 4, "IEND", 4) == 0;
    if (pos + 12 + len > n) truncated(origin, Format::kPng);
    if (end) return;
    pos += 12 + len;
  }
}

bool is_jpeg_sof(uint8_t m) {
  // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
  return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

// Walks the marker segments. Without `to_scan_end` it stops at the first frame header (the
// dimensions); with it, it goes on to the first scan and requires an end-of-image marker after
// it: libjpeg pads a cut-off stream with gray and OpenCV returns that as a valid image, whereas
// PIL refuses a truncated JPEG.
HeaderInfo sniff_jpeg(const uint8_t* d, size_t n, const std::string& origin, bool to_scan_end) {
  HeaderInfo info{Format::kJpeg, 0, 0};
  bool have_size = false;
  size_t pos = 2;
  while (true) {
    if (pos >= n) truncated(origin, Format::kJpeg);
    if (d[pos] != 0xFF) fail(origin, "corrupt JPEG: expected a marker");
    while (pos < n && d[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= n) truncated(origin, Format::kJpeg);
    const uint8_t marker = d[pos++];
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) continue;
    if (marker == 0xD9) fail(origin, "corrupt JPEG: no image data before the end marker");
    if (pos + 2 > n) truncated(origin, Format::kJpeg);
    const size_t len = be16(d + pos);
    if (len < 2) fail(origin, "corrupt JPEG: bad segment length");
    if (pos + len > n) truncated(origin, Format::kJpeg);
    if (is_jpeg_sof(marker) && !have_size) {
      if (len < 7) fail(origin, "corrupt JPEG: short frame header");
      info.height = be16(d + pos + 3);
      info.width = be16(d + pos + 5);
      info.components = len >= 8 ? d[pos + 7] : 0;
      if (info.height == 0) {
        fail(origin, "unsupported JPEG: the height is defined after the first scan (DNL)");
      }
      have_size = true;
      if (!to_scan_end) return info;
    }
    if (marker == 0xDA) {
      if (!have_size) fail(origin, "corrupt JPEG: scan before the frame header");
      const uint8_t* rest = d + pos + len;
      const size_t rest_len = n - (pos + len);
      // Entropy-coded data escapes 0xFF as FF 00, so FF D9 only appears as the real marker.
      for (size_t i = 0; i + 1 < rest_len; ++i) {
        if (rest[i] == 0xFF && rest[i + 1] == 0xD9) return info;
      }
      truncated(origin, Format::kJpeg);
    }
    pos += len;
  }
}

HeaderInfo sniff_webp(const uint8_t* d, size_t n, const std::string& origin) {
  if (n < 30) truncated(origin, Format::kWebp);
  const uint64_t riff_end = uint64_t{le32(d + 4)} + 8;
  if (riff_end > n) truncated(origin, Format::kWebp);
  const uint8_t* c = d + 12;
  const uint8_t* payload = c + 8;
  if (std::memcmp(c, "VP8 ", 4) == 0) {
    // 3-byte frame tag, start code 9D 01 2A, then 14-bit width and height (2 scale bits each).
    if (payload[3] != 0x9D || payload[4] != 0x01 || payload[5] != 0x2A) {
      fail(origin, "corrupt WebP: bad VP8 start code");
    }
    return {Format::kWebp, le16(payload + 6) & 0x3FFF, le16(payload + 8) & 0x3FFF};
  }
  if (std::memcmp(c, "VP8L", 4) == 0) {
    if (payload[0] != 0x2F) fail(origin, "corrupt WebP: bad VP8L signature");
    const uint32_t bits = le32(payload + 1);
    return {Format::kWebp, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1};
  }
  if (std::memcmp(c, "VP8X", 4) == 0) {
    if (payload[0] & 0x02) fail(origin, "unsupported WebP: animated images are not supported");
    return {Format::kWebp, int64_t{le24(payload + 4)} + 1, int64_t{le24(payload + 7)} + 1};
  }
  fail(origin, "corrupt WebP: unknown first chunk");
}

HeaderInfo sniff_bmp(const uint8_t* d, size_t n, const std::string& origin) {
  if (n < 26) truncated(origin, Format::kBmp);
  const uint32_t dib_size = le32(d + 14);
  if (dib_size == 12) return {Format::kBmp, le16(d + 18), le16(d + 20)};
  if (dib_size < 40) fail(origin, "corrupt BMP: unknown header size " + std::to_string(dib_size));
  const int64_t w = static_cast<int32_t>(le32(d + 18));
  const int64_t h = static_cast<int32_t>(le32(d + 22));  // negative = stored top-down
  if (w <= 0 || h == 0) fail(origin, "corrupt BMP: bad dimensions");
  return {Format::kBmp, w, h < 0 ? -h : h};
}

HeaderInfo sniff(const uint8_t* d, size_t n, const std::string& origin) {
  static const uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (n >= 8 && std::memcmp(d, kPngSig, 8) == 0) return sniff_png(d, n, origin);
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
    return sniff_jpeg(d, n, origin, false);
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) {
    return sniff_webp(d, n, origin);
  }
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return sniff_bmp(d, n, origin);
  fail(origin, "not a supported image (expected PNG, JPEG, WebP or BMP data)");
}

// PIL keeps the high byte of 16-bit colour samples but clips a 16-bit gray image (it opens
// that as mode "I", whose conversion to 8 bits saturates).
cv::Mat to_8bit(const cv::Mat& m) {
  if (m.depth() == CV_8U) return m;
  if (m.depth() != CV_16U) return cv::Mat();
  const bool clip = m.channels() == 1;
  cv::Mat out(m.size(), CV_MAKETYPE(CV_8U, m.channels()));
  for (int y = 0; y < m.rows; ++y) {
    const uint16_t* s = m.ptr<uint16_t>(y);
    uint8_t* o = out.ptr<uint8_t>(y);
    for (int i = 0; i < m.cols * m.channels(); ++i) {
      o[i] = static_cast<uint8_t>(clip ? std::min<uint16_t>(s[i], 255) : s[i] >> 8);
    }
  }
  return out;
}

// A four-component JPEG as PIL opens it: libjpeg's CMYK samples (YCCK converted), read as
// "CMYK;I" (inverted, the Adobe convention PIL assumes for every CMYK JPEG), then
// convert("RGB") with PIL's integer formula: nk = 255 - k, r = nk - round(c * nk / 255), where
// round(x / 255) is MULDIV255's ((x + 128) + ((x + 128) >> 8)) >> 8. (OpenCV converts CMYK itself,
// truncating instead of rounding: up to 3 levels off PIL.)
struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_jump(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  err->base.format_message(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_no_warning(j_common_ptr, int) {}

// Fills `image` and returns true, or returns false with libjpeg's message in `error`. Only
// trivially destructible locals live between setjmp and a possible longjmp.
bool decode_cmyk_jpeg(const uint8_t* data, size_t size, Image& image, std::vector<uint8_t>& row,
                      std::string& error) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = jpeg_error_jump;
  err.base.emit_message = jpeg_no_warning;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    error = err.message;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_CMYK;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 4) {
    jpeg_destroy_decompress(&cinfo);
    error = "unexpected component count";
    return false;
  }
  image.width = static_cast<int>(cinfo.output_width);
  image.height = static_cast<int>(cinfo.output_height);
  image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
  row.resize(static_cast<size_t>(image.width) * 4);
  while (cinfo.output_scanline < cinfo.output_height) {
    const size_t y = cinfo.output_scanline;
    JSAMPROW rows[1] = {row.data()};
    jpeg_read_scanlines(&cinfo, rows, 1);
    uint8_t* o = image.rgb.data() + y * static_cast<size_t>(image.width) * 3;
    for (int x = 0; x < image.width; ++x) {
      const uint8_t* s = row.data() + static_cast<size_t>(x) * 4;
      const int nk = s[3];  // stored inverted: 255 - k
      for (int c = 0; c < 3; ++c) {
        const int tmp = (255 - s[c]) * nk + 128;
        o[x * 3 + c] = static_cast<uint8_t>(std::clamp(nk - (((tmp >> 8) + tmp) >> 8), 0, 255));
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& origin,
                   int64_t max_pixels) {
  if (size == 0) fail(origin, "empty file (0 bytes), not an image");
  if (size > kMaxFileBytes)
    fail(origin, "image data too large (" + std::to_string(size) + " bytes)");
  const HeaderInfo info = sniff(data, size, origin);
  if (info.width <= 0 || info.height <= 0) {
    fail(origin, std::string("corrupt ") + format_name(info.format) + ": zero width or height");
  }
  if (info.width > max_pixels / info.height) {  // width * height > max_pixels, overflow-free
    fail(origin, std::string(format_name(info.format)) + " image of " + std::to_string(info.width) +
                     "x" + std::to_string(info.height) + " pixels exceeds the limit of " +
                     std::to_string(max_pixels) + " pixels; refusing to decode it");
  }

  // Structure checks that need more than the header, after the cheap size refusal.
  if (info.format == Format::kPng) check_png_complete(data, size, origin);
  if (info.format == Format::kJpeg) sniff_jpeg(data, size, origin, true);
  if (info.format == Format::kJpeg && info.components == 4) {
    Image image;
    std::vector<uint8_t> row;
    std::string error;
    if (!decode_cmyk_jpeg(data, size, image, row, error))
      fail(origin, "cannot decode CMYK JPEG: " + error);
    return image;
  }

  cv::Mat decoded;
  try {
    const cv::Mat buf(1, static_cast<int>(size), CV_8UC1, const_cast<uint8_t*>(data));
    decoded = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    fail(origin, std::string("cannot decode ") + format_name(info.format) + ": " + e.what());
  }
  if (decoded.empty()) {
    fail(origin, std::string("corrupt or truncated ") + format_name(info.format) +
                     " data (the decoder rejected it)");
  }
  if (static_cast<int64_t>(decoded.total()) > max_pixels) {
    fail(origin, std::string(format_name(info.format)) + " image exceeds the limit of " +
                     std::to_string(max_pixels) + " pixels");
  }

  const cv::Mat m8 = to_8bit(decoded);
  if (m8.empty())
    fail(origin, "unsupported sample type in " + std::string(format_name(info.format)));
  cv::Mat rgb;
  switch (m8.channels()) {
    case 1:
      cv::cvtColor(m8, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 2: {  // gray + alpha: PIL's LA -> RGB replicates the gray and drops alpha
      cv::Mat gray;
      cv::extractChannel(m8, gray, 0);
      cv::cvtColor(gray, rgb, cv::COLOR_GRAY2RGB);
      break;
    }
    case 3:
      cv::cvtColor(m8, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:  // PIL's RGBA -> RGB drops alpha without compositing
      cv::cvtColor(m8, rgb, cv::COLOR_BGRA2RGB);
      break;
    default:
      fail(origin, "unsupported channel count " + std::to_string(m8.channels()));
  }

  Image image;
  image.width = rgb.cols;
  image.height = rgb.rows;
  image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
  for (int y = 0; y < rgb.rows; ++y) {
    std::memcpy(image.rgb.data() + static_cast<size_t>(y) * image.width * 3, rgb.ptr<uint8_t>(y),
                static_cast<size_t>(image.width) * 3);
  }
  return image;
}

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& origin,
                   int64_t max_pixels) {
  return decode_image(bytes.data(), bytes.size(), origin, max_pixels);
}

void require_regular_file(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  const std::string a_what = (what.find_first_of("aeiou") == 0 ? "an " : "a ") + what;
  const std::string only = "; ziprerank reads " + what + "s only from regular files";
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);  // follows symbolic links
  if (ec && ec != std::errc::no_such_file_or_directory) {
    if (ec == std::errc::too_many_symbolic_link_levels) {
      throw InputError(path + ": is a loop of symbolic links (too many levels), not " + a_what +
                       " file");
    }
    throw InputError(path + ": cannot read it (" + ec.message() + ")");
  }
  switch (st.type()) {
    case fs::file_type::regular:
      return;
    case fs::file_type::not_found:
    case fs::file_type::none:
      throw InputError(path + ": " + what + " file not found");
    case fs::file_type::directory:
      throw InputError(path + ": is a directory, not " + a_what + " file");
    case fs::file_type::fifo:
      throw InputError(path + ": is a FIFO (named pipe), not a regular file" + only);
    case fs::file_type::socket:
      throw InputError(path + ": is a socket, not a regular file" + only);
    case fs::file_type::block:
    case fs::file_type::character:
      throw InputError(path + ": is a device, not a regular file" + only);
    default:
      throw InputError(path + ": is not a regular file" + only);
  }
}

Image load_image(const std::string& path, int64_t max_pixels) {
  // Checked before opening: opening a FIFO for reading waits for a writer that never comes.
  require_regular_file(path, "image");
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (!ec && file_size > kMaxFileBytes) {
    throw InputError(path + ": file of " + std::to_string(file_size) +
                     " bytes is too large for an image");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open image file (permission denied?)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(path + ": read error");
  return decode_image(bytes, path, max_pixels);
}

}  // namespace ziprerank
