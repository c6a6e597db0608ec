// Separable 8-bit fixed-point resampling shared by two reference implementations whose results
// must be reproduced bit for bit:
//   - Pillow's `Image.resize` (libImaging/Resample.c): double coefficients rounded to 22
//     fraction bits, used here for the LANCZOS page pre-resize;
//   - PyTorch's native uint8 antialiased interpolate() on CPU (torch >= 2.1): the same
//     support-scaled filter, but coefficients rounded to int16 with a precision chosen from the
//     largest weight of the axis.
// Both run a horizontal pass into an 8-bit intermediate, then a vertical pass.
#pragma once

#include <cstdint>
#include <vector>

namespace ziprerank::image_detail {

enum class ResampleFilter {
  kLanczos3,       ///< Pillow LANCZOS: sinc(x) * sinc(x / 3) on [-3, 3)
  kBicubicTorch,   ///< Keys cubic, a = -0.5, in PyTorch's polynomial form
  kBilinearTorch,  ///< triangle on (-1, 1)
};

/// Fixed-point taps of one axis: output i reads count[i] consecutive source samples starting at
/// first[i], weighted by coeffs[i * stride + k] / 2^precision.
struct AxisTaps {
  int stride = 0;
  int precision = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> coeffs;
};

/// Pillow's taps for resizing an axis of `in_size` samples to `out_size` (box = whole axis).
AxisTaps pil_axis_taps(int in_size, int out_size, ResampleFilter filter);

/// PyTorch's uint8 antialias taps (align_corners=false, no explicit scale factor).
AxisTaps torch_uint8_axis_taps(int in_size, int out_size, ResampleFilter filter);

/// Resamples interleaved 8-bit pixels (`channels` per pixel). A null `horizontal` or `vertical`
/// skips that pass (the size along that axis is kept).
std::vector<uint8_t> resample_separable(const uint8_t* src, int width, int height, int channels,
                                        const AxisTaps* horizontal, int out_width,
                                        const AxisTaps* vertical, int out_height);

}  // namespace ziprerank::image_detail
