#include "image/resample.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ziprerank::image_detail {
namespace {

// The filters are evaluated in double with the exact expression shapes of the references:
// a different but algebraically equal polynomial can round differently and flip a coefficient.
double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}

double lanczos3(double x) {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
  return 0.0;
}

double bicubic_torch(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

double bilinear_torch(double x) {
  x = std::abs(x);
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double filter_support(ResampleFilter filter) {
  switch (filter) {
    case ResampleFilter::kLanczos3:
      return 3.0;
    case ResampleFilter::kBicubicTorch:
      return 2.0;
    case ResampleFilter::kBilinearTorch:
      return 1.0;
  }
  return 0.0;
}

double evaluate(ResampleFilter filter, double x) {
  switch (filter) {
    case ResampleFilter::kLanczos3:
      return lanczos3(x);
    case ResampleFilter::kBicubicTorch:
      return bicubic_torch(x);
    case ResampleFilter::kBilinearTorch:
      return bilinear_torch(x);
  }
  return 0.0;
}

// Normalized double weights per output sample; both references share this part of the
// algorithm (Pillow's precompute_coeffs, PyTorch's _compute_indices_min_size_weights_aa).
struct FloatTaps {
  int stride = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<double> weights;
  double max_weight = 0.0;
};

FloatTaps float_taps(int in_size, int out_size, ResampleFilter filter) {
  if (in_size <= 0 || out_size <= 0) throw std::invalid_argument("resample: empty axis");
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = scale < 1.0 ? 1.0 : scale;
  const double support = filter_support(filter) * filter_scale;
  const double inv_scale = 1.0 / filter_scale;

  FloatTaps taps;
  taps.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<size_t>(out_size) * taps.stride, 0.0);
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    // Truncation toward zero, then clipping, as both references do.
    int first = static_cast<int>(center - support + 0.5);
    if (first < 0) first = 0;
    int last = static_cast<int>(center + support + 0.5);
    if (last > in_size) last = in_size;
    const int count = std::clamp(last - first, 0, taps.stride);
    double* w = &taps.weights[static_cast<size_t>(i) * taps.stride];
    double total = 0.0;
    for (int k = 0; k < count; ++k) {
      w[k] = evaluate(filter, (k + first - center + 0.5) * inv_scale);
      total += w[k];
    }
    if (total != 0.0) {
      for (int k = 0; k < count; ++k) {
        w[k] /= total;
        taps.max_weight = std::max(taps.max_weight, w[k]);
      }
    }
    taps.first[i] = first;
    taps.count[i] = count;
  }
  return taps;
}

// Round half away from zero through a truncating cast, as both references do.
int32_t to_fixed(double w, int precision) {
  const double v = w * (1 << precision);
  return v < 0 ? static_cast<int32_t>(-0.5 + v) : static_cast<int32_t>(0.5 + v);
}

AxisTaps quantize(const FloatTaps& f, int precision) {
  AxisTaps taps;
  taps.stride = f.stride;
  taps.precision = precision;
  taps.first = f.first;
  taps.count = f.count;
  taps.coeffs.resize(f.weights.size());
  for (size_t k = 0; k < f.weights.size(); ++k) taps.coeffs[k] = to_fixed(f.weights[k], precision);
  return taps;
}

inline uint8_t clip_shift(int32_t acc, int precision) {
  return static_cast<uint8_t>(std::clamp(acc >> precision, 0, 255));
}

// The horizontal pass with every output reading exactly S source pixels: windows shorter than S
// get zero weights (moved back from the row's end where they would run past it), which leaves
// the integer sums, and so the result, unchanged; the fixed trip count lets the compiler unroll.
template <int C, int S>
void horizontal_pass_fixed(const uint8_t* src, int src_width, int row_begin, int rows,
                           const AxisTaps& taps, int out_width, uint8_t* dst) {
  std::vector<int> first(static_cast<size_t>(out_width));
  std::vector<int32_t> weights(static_cast<size_t>(out_width) * S, 0);
  for (int x = 0; x < out_width; ++x) {
    const int f = std::min(taps.first[x], src_width - S);
    first[x] = f;
    const int32_t* k = &taps.coeffs[static_cast<size_t>(x) * taps.stride];
    for (int j = 0; j < taps.count[x]; ++j)
      weights[static_cast<size_t>(x) * S + taps.first[x] - f + j] = k[j];
  }
  const int32_t rounding = 1 << (taps.precision - 1);
  for (int y = 0; y < rows; ++y) {
    const uint8_t* in_row = src + static_cast<size_t>(row_begin + y) * src_width * C;
    uint8_t* out_row = dst + static_cast<size_t>(y) * out_width * C;
    for (int x = 0; x < out_width; ++x) {
      const int32_t* k = &weights[static_cast<size_t>(x) * S];
      const uint8_t* p = in_row + static_cast<size_t>(first[x]) * C;
      int32_t acc[C];
      for (int c = 0; c < C; ++c) acc[c] = rounding;
      for (int j = 0; j < S; ++j) {
        for (int c = 0; c < C; ++c) acc[c] += p[j * C + c] * k[j];
      }
      for (int c = 0; c < C; ++c) out_row[x * C + c] = clip_shift(acc[c], taps.precision);
    }
  }
}

// Runs horizontal_pass_fixed<C, S> for the taps' stride when it is in [S, 16] and fits the row;
// false otherwise.
template <int C, int S = 4>
bool horizontal_pass_fixed_for_stride(const uint8_t* src, int src_width, int row_begin, int rows,
                                      const AxisTaps& taps, int out_width, uint8_t* dst) {
  if (taps.stride > src_width) return false;
  if (taps.stride == S) {
    horizontal_pass_fixed<C, S>(src, src_width, row_begin, rows, taps, out_width, dst);
    return true;
  }
  if constexpr (S < 16) {
    return horizontal_pass_fixed_for_stride<C, S + 1>(src, src_width, row_begin, rows, taps,
                                                      out_width, dst);
  } else {
    return false;
  }
}

template <int C>
void horizontal_pass(const uint8_t* src, int src_width, int row_begin, int rows,
                     const AxisTaps& taps, int out_width, uint8_t* dst) {
  if (horizontal_pass_fixed_for_stride<C>(src, src_width, row_begin, rows, taps, out_width, dst))
    return;
  const int32_t rounding = 1 << (taps.precision - 1);
  for (int y = 0; y < rows; ++y) {
    const uint8_t* in_row = src + static_cast<size_t>(row_begin + y) * src_width * C;
    uint8_t* out_row = dst + static_cast<size_t>(y) * out_width * C;
    for (int x = 0; x < out_width; ++x) {
      const int32_t* k = &taps.coeffs[static_cast<size_t>(x) * taps.stride];
      const uint8_t* p = in_row + static_cast<size_t>(taps.first[x]) * C;
      int32_t acc[C];
      for (int c = 0; c < C; ++c) acc[c] = rounding;
      for (int j = 0; j < taps.count[x]; ++j) {
        for (int c = 0; c < C; ++c) acc[c] += p[j * C + c] * k[j];
      }
      for (int c = 0; c < C; ++c) out_row[x * C + c] = clip_shift(acc[c], taps.precision);
    }
  }
}

// `row_shift` maps the taps' source rows onto the rows present in `src` (Pillow resamples
// horizontally only the rows the vertical pass reads).
void vertical_pass(const uint8_t* src, int width, int channels, const AxisTaps& taps, int row_shift,
                   int out_height, uint8_t* dst) {
  const int32_t rounding = 1 << (taps.precision - 1);
  const size_t row_len = static_cast<size_t>(width) * channels;
  std::vector<int32_t> acc(row_len);
  for (int y = 0; y < out_height; ++y) {
    std::fill(acc.begin(), acc.end(), rounding);
    const int32_t* k = &taps.coeffs[static_cast<size_t>(y) * taps.stride];
    for (int j = 0; j < taps.count[y]; ++j) {
      const uint8_t* in_row = src + static_cast<size_t>(taps.first[y] - row_shift + j) * row_len;
      const int32_t kj = k[j];
      for (size_t i = 0; i < row_len; ++i) acc[i] += in_row[i] * kj;
    }
    uint8_t* out_row = dst + static_cast<size_t>(y) * row_len;
    for (size_t i = 0; i < row_len; ++i) out_row[i] = clip_shift(acc[i], taps.precision);
  }
}

}  // namespace

AxisTaps pil_axis_taps(int in_size, int out_size, ResampleFilter filter) {
  // Pillow's 8-bit path: 32 - 8 - 2 fraction bits, leaving headroom for 8-bit samples and
  // negative lobes in an int accumulator.
  constexpr int kPilPrecision = 22;
  return quantize(float_taps(in_size, out_size, filter), kPilPrecision);
}

AxisTaps torch_uint8_axis_taps(int in_size, int out_size, ResampleFilter filter) {
  const FloatTaps f = float_taps(in_size, out_size, filter);
  // The largest precision (at most 22) whose rounded largest weight still fits in int16.
  int precision = 0;
  for (precision = 0; precision < 22; ++precision) {
    const int next = static_cast<int>(0.5 + f.max_weight * (1 << (precision + 1)));
    if (next >= (1 << 15)) break;
  }
  AxisTaps taps = quantize(f, precision);
  // The reference stores the coefficients as int16; the cast wraps exactly as it does there.
  for (int32_t& c : taps.coeffs) c = static_cast<int16_t>(c);
  return taps;
}

std::vector<uint8_t> resample_separable(const uint8_t* src, int width, int height, int channels,
                                        const AxisTaps* horizontal, int out_width,
                                        const AxisTaps* vertical, int out_height) {
  if (channels != 3) throw std::invalid_argument("resample_separable: only 3 channels");
  if (!horizontal) out_width = width;
  if (!vertical) out_height = height;

  std::vector<uint8_t> temp;
  const uint8_t* stage = src;
  int row_shift = 0;
  if (horizontal) {
    int row_begin = 0;
    int row_end = height;
    if (vertical) {
      row_begin = vertical->first.front();
      row_end = vertical->first.back() + vertical->count.back();
      row_shift = row_begin;
    }
    temp.resize(static_cast<size_t>(row_end - row_begin) * out_width * 3);
    horizontal_pass<3>(src, width, row_begin, row_end - row_begin, *horizontal, out_width,
                       temp.data());
    stage = temp.data();
    if (!vertical) return temp;
  }
  if (!vertical) return std::vector<uint8_t>(src, src + static_cast<size_t>(width) * height * 3);
  std::vector<uint8_t> out(static_cast<size_t>(out_width) * out_height * 3);
  vertical_pass(stage, out_width, 3, *vertical, row_shift, out_height, out.data());
  return out;
}

}  // namespace ziprerank::image_detail
