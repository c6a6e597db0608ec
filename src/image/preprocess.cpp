// The Qwen2-VL / Qwen3-VL image preprocessing stage, mirroring transformers'
// Qwen2VLImageProcessorFast (resize -> fused rescale/normalize -> patchify) and ZipRerank's
// LANCZOS page pre-resize in front of it.
#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/_upsample_bilinear2d_aa.h>
#include <ATen/ops/empty.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "image/resample.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/image.hpp"

namespace ziprerank {
namespace {

using image_detail::AxisTaps;
using image_detail::ResampleFilter;

// transformers rejects extreme strips before sizing them (MAX_RATIO in the Qwen2-VL processor).
constexpr double kMaxAspectRatio = 200.0;

std::string dims(int64_t width, int64_t height) {
  return std::to_string(width) + "x" + std::to_string(height);
}

void check_image(const Image& image, const char* where) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    throw InputError(std::string(where) + ": empty or inconsistent image (" +
                     dims(image.width, image.height) + ", " + std::to_string(image.rgb.size()) +
                     " bytes)");
  }
}

Image resample_with(const Image& image, int width, int height, const AxisTaps* horizontal,
                    const AxisTaps* vertical) {
  Image out;
  out.width = width;
  out.height = height;
  out.rgb = image_detail::resample_separable(image.rgb.data(), image.width, image.height, 3,
                                             horizontal, width, vertical, height);
  return out;
}

Image resize_float_round(const Image& image, int64_t height, int64_t width, int resample) {
  c10::InferenceMode guard;
  const int64_t h = image.height;
  const int64_t w = image.width;
  at::Tensor chw = at::empty({1, 3, h, w}, at::kFloat);
  float* dst = chw.data_ptr<float>();
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < h * w; ++i) dst[c * h * w + i] = image.rgb[i * 3 + c];
  }
  at::Tensor out = resample == 3 ? at::_upsample_bicubic2d_aa(chw, {height, width}, false)
                                 : at::_upsample_bilinear2d_aa(chw, {height, width}, false);
  out = out.contiguous();
  const float* src = out.data_ptr<float>();
  Image result;
  result.width = static_cast<int>(width);
  result.height = static_cast<int>(height);
  result.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t i = 0; i < height * width; ++i) {
      // torch.round rounds half to even, as nearbyint does in the default rounding mode.
      const float v = std::nearbyint(std::clamp(src[c * height * width + i], 0.0f, 255.0f));
      result.rgb[i * 3 + c] = static_cast<uint8_t>(v);
    }
  }
  return result;
}

}  // namespace

Image resize_lanczos_pil(const Image& image, int width, int height) {
  check_image(image, "resize_lanczos_pil");
  if (width <= 0 || height <= 0) {
    throw InputError("resize_lanczos_pil: target size " + dims(width, height) + " is empty");
  }
  if (width == image.width && height == image.height) return image;
  AxisTaps horizontal, vertical;
  const bool need_horizontal = width != image.width;
  const bool need_vertical = height != image.height;
  if (need_horizontal) {
    horizontal = image_detail::pil_axis_taps(image.width, width, ResampleFilter::kLanczos3);
  }
  if (need_vertical) {
    vertical = image_detail::pil_axis_taps(image.height, height, ResampleFilter::kLanczos3);
  }
  return resample_with(image, width, height, need_horizontal ? &horizontal : nullptr,
                       need_vertical ? &vertical : nullptr);
}

Image crop_image(const Image& image, int x, int y, int width, int height) {
  check_image(image, "crop");
  if (width <= 0 || height <= 0 || x < 0 || y < 0 || x > image.width - width ||
      y > image.height - height) {
    throw InputError("crop: the " + dims(width, height) + " window at (" + std::to_string(x) +
                     ", " + std::to_string(y) + ") does not fit a " +
                     dims(image.width, image.height) + " image");
  }
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  const size_t row = static_cast<size_t>(width) * 3;
  for (int r = 0; r < height; ++r) {
    const size_t src = (static_cast<size_t>(y + r) * image.width + x) * 3;
    std::copy_n(image.rgb.begin() + static_cast<std::ptrdiff_t>(src), row,
                out.rgb.begin() + static_cast<std::ptrdiff_t>(r * row));
  }
  return out;
}

Image page_preresize(const Image& image, int max_side) {
  check_image(image, "page_preresize");
  const int longest = std::max(image.width, image.height);
  if (longest <= max_side) return image;
  // Python float arithmetic: scale = max_size / max_dim, then int() truncation of each side.
  const double scale = static_cast<double>(max_side) / longest;
  const int width = static_cast<int>(image.width * scale);
  const int height = static_cast<int>(image.height * scale);
  if (width <= 0 || height <= 0) {
    throw InputError("page pre-resize: a " + dims(image.width, image.height) +
                     " image shrinks to " + dims(width, height) +
                     " (aspect ratio too extreme for a page)");
  }
  return resize_lanczos_pil(image, width, height);
}

ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels) {
  if (height <= 0 || width <= 0) {
    throw InputError("smart_resize: image size " + dims(width, height) + " is empty");
  }
  if (factor <= 0) throw InputError("smart_resize: factor must be positive");
  const double ratio =
      static_cast<double>(std::max(height, width)) / static_cast<double>(std::min(height, width));
  if (ratio > kMaxAspectRatio) {
    throw InputError("image of " + dims(width, height) + " pixels has aspect ratio " +
                     std::to_string(ratio) + "; the processor accepts at most 200");
  }
  // Python divides exact integers with one rounding; the doubles below are exact for any real
  // image size, so each C++ division rounds the same way.
  const double h = static_cast<double>(height);
  const double w = static_cast<double>(width);
  const double f = static_cast<double>(factor);
  // Python's round() is half-to-even, like nearbyint in the default rounding mode.
  int64_t h_bar = static_cast<int64_t>(std::nearbyint(h / f)) * factor;
  int64_t w_bar = static_cast<int64_t>(std::nearbyint(w / f)) * factor;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt((h * w) / static_cast<double>(max_pixels));
    h_bar = std::max(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    w_bar = std::max(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    h_bar = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  return {h_bar, w_bar};
}

Image resize_antialiased(const Image& image, int64_t height, int64_t width, int resample,
                         ResizeArithmetic arithmetic) {
  check_image(image, "resize_antialiased");
  if (resample != 2 && resample != 3) {
    throw InputError("resize: unsupported resample " + std::to_string(resample) +
                     " (supported: 2 = bilinear, 3 = bicubic)");
  }
  if (height <= 0 || width <= 0 || height > (1 << 20) || width > (1 << 20)) {
    throw InputError("resize: bad target size " + dims(width, height));
  }
  // torchvision returns the input untouched when the size already matches.
  if (height == image.height && width == image.width) return image;
  if (arithmetic == ResizeArithmetic::kFloatRound) {
    return resize_float_round(image, height, width, resample);
  }
  const ResampleFilter filter =
      resample == 3 ? ResampleFilter::kBicubicTorch : ResampleFilter::kBilinearTorch;
  AxisTaps horizontal, vertical;
  const bool need_horizontal = width != image.width;
  const bool need_vertical = height != image.height;
  if (need_horizontal) {
    horizontal = image_detail::torch_uint8_axis_taps(image.width, static_cast<int>(width), filter);
  }
  if (need_vertical) {
    vertical = image_detail::torch_uint8_axis_taps(image.height, static_cast<int>(height), filter);
  }
  return resample_with(image, static_cast<int>(width), static_cast<int>(height),
                       need_horizontal ? &horizontal : nullptr,
                       need_vertical ? &vertical : nullptr);
}

namespace {
// The float32 value normalize_image gives each 8-bit value of each channel.
std::array<std::array<float, 256>, 3> normalize_table(const PreprocessorConfig& config) {
  if (config.image_mean.size() != 3 || config.image_std.size() != 3) {
    throw InputError("normalize_image: image_mean and image_std need 3 entries");
  }
  // transformers folds the rescale into the statistics when both steps are on:
  //   mean' = float32(mean) * (1 / rescale_factor), std' likewise, then (x - mean') / std'.
  // torch multiplies a float32 tensor by a Python float in float32, hence the casts.
  float mean[3], stdev[3];
  const bool fused = config.do_rescale && config.do_normalize;
  const float inverse_rescale = static_cast<float>(1.0 / config.rescale_factor);
  for (int c = 0; c < 3; ++c) {
    mean[c] = static_cast<float>(config.image_mean[c]);
    stdev[c] = static_cast<float>(config.image_std[c]);
    if (fused) {
      mean[c] = mean[c] * inverse_rescale;
      stdev[c] = stdev[c] * inverse_rescale;
    }
  }
  const float rescale = static_cast<float>(config.rescale_factor);
  std::array<std::array<float, 256>, 3> table{};
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const float x = static_cast<float>(v);
      table[c][v] = config.do_normalize ? (x - mean[c]) / stdev[c]
                    : config.do_rescale ? x * rescale
                                        : x;
    }
  }
  return table;
}

// pixel_values rows of an h x w frame: rows in merge-window order (block row, block column, row
// in block, column in block), each laid out as (c, t, y, x) with the frame repeated over t.
// fill(c, y, x0, out) writes the p values of channel c, image row y, columns [x0, x0 + p).
template <typename Fill>
at::Tensor patch_rows(int64_t h, int64_t w, const PreprocessorConfig& config, Fill fill) {
  const int64_t p = config.patch_size, m = config.merge_size, t = config.temporal_patch_size;
  if (h % (p * m) != 0 || w % (p * m) != 0) {
    throw InputError("patchify: image of " + dims(w, h) + " is not a multiple of patch_size * " +
                     "merge_size = " + std::to_string(p * m) + " (is do_resize off?)");
  }
  const int64_t gh = h / p, gw = w / p, frame = p * p, row_len = 3 * t * frame;
  at::Tensor out = at::empty({gh * gw, row_len}, at::kFloat);
  float* dst = out.data_ptr<float>();
  int64_t row = 0;
  for (int64_t by = 0; by < gh / m; ++by) {
    for (int64_t bx = 0; bx < gw / m; ++bx) {
      for (int64_t iy = 0; iy < m; ++iy) {
        for (int64_t ix = 0; ix < m; ++ix, ++row) {
          const int64_t y0 = (by * m + iy) * p, x0 = (bx * m + ix) * p;
          for (int64_t c = 0; c < 3; ++c) {
            float* first = dst + row * row_len + c * t * frame;
            for (int64_t y = 0; y < p; ++y) fill(c, y0 + y, x0, first + y * p);
            for (int64_t f = 1; f < t; ++f) std::copy(first, first + frame, first + f * frame);
          }
        }
      }
    }
  }
  return out;
}
}  // namespace

at::Tensor normalize_patchify(const Image& image, const PreprocessorConfig& config) {
  check_image(image, "normalize_patchify");
  const auto table = normalize_table(config);
  const int64_t p = config.patch_size, w = image.width;
  const uint8_t* rgb = image.rgb.data();
  return patch_rows(image.height, w, config, [&](int64_t c, int64_t y, int64_t x0, float* out) {
    const float* lut = table[static_cast<size_t>(c)].data();
    const uint8_t* s = rgb + (y * w + x0) * 3 + c;
    for (int64_t x = 0; x < p; ++x) out[x] = lut[s[x * 3]];
  });
}

at::Tensor normalize_image(const Image& image, const PreprocessorConfig& config) {
  check_image(image, "normalize_image");
  const auto table = normalize_table(config);
  const int64_t h = image.height;
  const int64_t w = image.width;
  at::Tensor out = at::empty({3, h, w}, at::kFloat);
  float* dst = out.data_ptr<float>();
  for (int64_t c = 0; c < 3; ++c) {
    const float* lut = table[static_cast<size_t>(c)].data();
    float* plane = dst + c * h * w;
    for (int64_t i = 0; i < h * w; ++i) plane[i] = lut[image.rgb[i * 3 + c]];
  }
  return out;
}

at::Tensor patchify(const at::Tensor& chw, const PreprocessorConfig& config) {
  if (chw.dim() != 3 || chw.size(0) != 3 || chw.scalar_type() != at::kFloat) {
    throw InputError("patchify: expected a float32 [3, H, W] tensor");
  }
  const int64_t p = config.patch_size, h = chw.size(1), w = chw.size(2);
  const at::Tensor src_t = chw.contiguous();
  const float* src = src_t.data_ptr<float>();
  return patch_rows(h, w, config, [&](int64_t c, int64_t y, int64_t x0, float* out) {
    const float* s = src + (c * h + y) * w + x0;
    std::copy(s, s + p, out);
  });
}

PreprocessedImage preprocess_image(const Image& image, const PreprocessorConfig& config,
                                   bool page_preresize_enabled, ResizeArithmetic arithmetic) {
  check_image(image, "preprocess_image");
  Image shrunk;
  const Image* current = &image;
  if (page_preresize_enabled) {
    shrunk = page_preresize(image);
    current = &shrunk;
  }
  Image resized;
  if (config.do_resize) {
    const ResizedSize size = smart_resize(current->height, current->width,
                                          int64_t{config.patch_size} * config.merge_size,
                                          config.min_pixels, config.max_pixels);
    resized = resize_antialiased(*current, size.height, size.width, config.resample, arithmetic);
    current = &resized;
  }
  PreprocessedImage result;
  result.pixel_values = normalize_patchify(*current, config);
  result.grid_thw = {1, current->height / config.patch_size, current->width / config.patch_size};
  result.merge_size = config.merge_size;
  return result;
}

}  // namespace ziprerank
