#include "model/kernels.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace ziprerank::detail {

uint16_t to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

namespace {

// Helpers are forced inline so that each per-ISA clone below compiles them for its own ISA.
#if defined(__GNUC__) || defined(__clang__)
#define ZR_INLINE inline __attribute__((always_inline))
#else
#define ZR_INLINE inline
#endif

ZR_INLINE float load(const float* p, int64_t i) { return p[i]; }
ZR_INLINE float load(const uint16_t* p, int64_t i) { return from_bf16_bits(p[i]); }
ZR_INLINE void store(float* p, int64_t i, float v) { p[i] = v; }
ZR_INLINE void store(uint16_t* p, int64_t i, float v) {
  // Finite values only reach here (gelu of finite inputs): no NaN branch, so the loop vectorises.
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  p[i] = static_cast<uint16_t>(u >> 16);
}

// exp(x) for x clamped to [-80, 80] (results stay normal floats: denormals cost 7x): 2^k * 2^f with
// k = round(x log2 e), f in [-0.5, 0.5], 2^f by its Taylor series to degree 7 (relative error below
// 2e-7). Branch-free, so it vectorises.
ZR_INLINE float exp_approx(float x) {
  x = std::min(std::max(x, -80.0f), 80.0f);
  const float t = x * 1.44269504088896341f;
  const float r = (t + 12582912.0f) - 12582912.0f;  // round to nearest (|t| < 2^22)
  const float f = (t - r) * 0.693147180559945309f;  // in [-0.347, 0.347]
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  // The exponent's bits through unsigned arithmetic (a negative k must not be shifted as a signed
  // value); a NaN input takes exponent 0 here and stays NaN through p.
  const float k = r == r ? r : 0.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

template <typename In, typename Out>
ZR_INLINE void gelu_block(const In* in, const float* bias, Out* out, int64_t rows, int64_t cols) {
  constexpr float c = 1.5957691216057308f;  // 2 sqrt(2/pi)
  for (int64_t r = 0; r < rows; ++r) {
    const In* src = in + r * cols;
    Out* dst = out + r * cols;
    for (int64_t i = 0; i < cols; ++i) {
      const float x = load(src, i) + bias[i];
      const float z = c * (x + 0.044715f * x * x * x);
      store(dst, i, x / (1.0f + exp_approx(-z)));
    }
  }
}

// One copy per instruction set, picked at load time: the loops are worth 2-4x more with wider
// vectors than the x86-64 baseline's.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ZR_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ZR_VECTOR_CLONES
#endif

ZR_VECTOR_CLONES void gelu_block_bf16(const uint16_t* in, const float* bias, uint16_t* out,
                                      int64_t rows, int64_t cols) {
  gelu_block(in, bias, out, rows, cols);
}
ZR_VECTOR_CLONES void gelu_block_f32(const float* in, const float* bias, float* out, int64_t rows,
                                     int64_t cols) {
  gelu_block(in, bias, out, rows, cols);
}

// `bias`, or `n` zeros held in `storage` when it is null: the loops then add a bias unbranched.
const float* bias_or_zeros(const float* bias, int64_t n, std::vector<float>& storage) {
  if (bias) return bias;
  storage.assign(static_cast<size_t>(n), 0.0f);
  return storage.data();
}

template <typename T, typename Block>
void gelu_rows(const T* in, const float* bias, T* out, int64_t rows, int64_t cols, Block block) {
  std::vector<float> zeros;
  bias = bias_or_zeros(bias, cols, zeros);
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    block(in + r0 * cols, bias, out + r0 * cols, r1 - r0, cols);
  });
}

// Rows [r0, r1) of one image of `len` rows starting at row `row0`.
template <typename T>
ZR_INLINE void rotary_rows(const T* qkv, const RotarySplit& s, T* q, T* k, T* v, int64_t row0,
                           int64_t len, int64_t r0, int64_t r1, const float* bias) {
  const int64_t hd = s.head_dim, half = hd / 2, width = s.heads * hd;
  for (int64_t p = r0; p < r1; ++p) {
    const int64_t r = row0 + p;
    const T* src = qkv + r * 3 * width;
    const float* c = s.cos + r * hd;
    const float* sn = s.sin + r * hd;
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t dst = row0 * width + (h * len + p) * hd;
      const int64_t oq = h * hd, ok = width + h * hd, ov = 2 * width + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const float q0 = load(src, oq + i) + bias[oq + i];
        const float q1 = load(src, oq + i + half) + bias[oq + i + half];
        const float k0 = load(src, ok + i) + bias[ok + i];
        const float k1 = load(src, ok + i + half) + bias[ok + i + half];
        store(q, dst + i, (q0 * c[i] - q1 * sn[i]) * s.scale);
        store(q, dst + i + half, (q1 * c[i + half] + q0 * sn[i + half]) * s.scale);
        store(k, dst + i, k0 * c[i] - k1 * sn[i]);
        store(k, dst + i + half, k1 * c[i + half] + k0 * sn[i + half]);
      }
      for (int64_t i = 0; i < hd; ++i) store(v, dst + i, load(src, ov + i) + bias[ov + i]);
    }
  }
}

ZR_VECTOR_CLONES void rotary_rows_bf16(const uint16_t* qkv, const RotarySplit& s, uint16_t* q,
                                       uint16_t* k, uint16_t* v, int64_t row0, int64_t len,
                                       int64_t r0, int64_t r1, const float* bias) {
  rotary_rows(qkv, s, q, k, v, row0, len, r0, r1, bias);
}
ZR_VECTOR_CLONES void rotary_rows_f32(const float* qkv, const RotarySplit& s, float* q, float* k,
                                      float* v, int64_t row0, int64_t len, int64_t r0, int64_t r1,
                                      const float* bias) {
  rotary_rows(qkv, s, q, k, v, row0, len, r0, r1, bias);
}

// One row: x[0, valid) + bias -> softmax, x[valid, cols) = 0. Float32 work row `tmp`.
template <typename T>
ZR_INLINE void softmax_row(T* x, int64_t cols, int64_t valid, const float* bias, float* tmp) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < valid; ++i) tmp[i] = load(x, i) + bias[i];
  // The maximum in 16 lanes: an order-independent reduction the vectoriser can take.
  constexpr int64_t kLanes = 16;
  float lane[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) lane[j] = kNegInf;
  int64_t i0 = 0;
  for (; i0 + kLanes <= valid; i0 += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lane[j] = lane[j] > tmp[i0 + j] ? lane[j] : tmp[i0 + j];
  float mx = kNegInf;
  for (int64_t j = 0; j < kLanes; ++j) mx = mx > lane[j] ? mx : lane[j];
  for (; i0 < valid; ++i0) mx = mx > tmp[i0] ? mx : tmp[i0];
  if (!(mx > kNegInf)) valid = 0;  // nothing visible
  for (int64_t i = 0; i < valid; ++i) tmp[i] = exp_approx(tmp[i] - mx);
  // The sum in lanes too (an in-order float sum would be one add after another).
  for (int64_t j = 0; j < kLanes; ++j) lane[j] = 0;
  i0 = 0;
  for (; i0 + kLanes <= valid; i0 += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lane[j] += tmp[i0 + j];
  float sum = 0;
  for (int64_t j = 0; j < kLanes; ++j) sum += lane[j];
  for (; i0 < valid; ++i0) sum += tmp[i0];
  const float inv = valid > 0 ? 1.0f / sum : 0.0f;
  for (int64_t i = 0; i < valid; ++i) store(x, i, tmp[i] * inv);
  for (int64_t i = valid; i < cols; ++i) store(x, i, 0.0f);
}

ZR_VECTOR_CLONES void softmax_block_f32(float* x, int64_t cols, const int64_t* valid,
                                        const float* const* bias, int64_t n, float* tmp) {
  for (int64_t r = 0; r < n; ++r) softmax_row(x + r * cols, cols, valid[r], bias[r], tmp);
}
ZR_VECTOR_CLONES void softmax_block_bf16(uint16_t* x, int64_t cols, const int64_t* valid,
                                         const float* const* bias, int64_t n, float* tmp) {
  for (int64_t r = 0; r < n; ++r) softmax_row(x + r * cols, cols, valid[r], bias[r], tmp);
}

template <typename T, typename Block>
void softmax_all(T* scores, const SoftmaxRows& s, Block block) {
  const int64_t total = s.batch * s.heads * s.rows;
  std::vector<float> zeros;
  const float* no_bias = bias_or_zeros(nullptr, s.key_bias ? 0 : s.cols, zeros);
  at::parallel_for(0, total, 8, [&](int64_t r0, int64_t r1) {
    constexpr int64_t kChunk = 64;
    std::vector<float> tmp(static_cast<size_t>(s.cols));
    int64_t valid[kChunk];
    const float* bias[kChunk];
    for (int64_t c0 = r0; c0 < r1; c0 += kChunk) {
      const int64_t n = std::min(kChunk, r1 - c0);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t idx = c0 + j, row = idx % s.rows, b = idx / (s.heads * s.rows);
        valid[j] = s.causal_offset >= 0 ? std::min(s.cols, s.causal_offset + row + 1) : s.cols;
        bias[j] = s.key_bias ? s.key_bias + b * s.key_bias_stride : no_bias;
      }
      block(scores + c0 * s.cols, s.cols, valid, bias, n, tmp.data());
    }
  });
}

ZR_VECTOR_CLONES void layer_norm_block(const float* x, const float* w, const float* b, float eps,
                                       uint16_t* out, int64_t rows, int64_t cols) {
  constexpr int64_t kLanes = 16;
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * cols;
    uint16_t* dst = out + r * cols;
    float lane[kLanes] = {};
    int64_t i0 = 0;
    for (; i0 + kLanes <= cols; i0 += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) lane[j] += src[i0 + j];
    float sum = 0;
    for (int64_t j = 0; j < kLanes; ++j) sum += lane[j];
    for (; i0 < cols; ++i0) sum += src[i0];
    const float mean = sum / static_cast<float>(cols);
    for (int64_t j = 0; j < kLanes; ++j) lane[j] = 0;
    i0 = 0;
    for (; i0 + kLanes <= cols; i0 += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) {
        const float d = src[i0 + j] - mean;
        lane[j] += d * d;
      }
    float sq = 0;
    for (int64_t j = 0; j < kLanes; ++j) sq += lane[j];
    for (; i0 < cols; ++i0) sq += (src[i0] - mean) * (src[i0] - mean);
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(cols) + eps);
    for (int64_t i = 0; i < cols; ++i) store(dst, i, (src[i] - mean) * rstd * w[i] + b[i]);
  }
}

ZR_VECTOR_CLONES void residual_block(const float* res, const uint16_t* y, const float* bias,
                                     float* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < cols; ++i)
      out[r * cols + i] = res[r * cols + i] + load(y, r * cols + i) + bias[i];
}

template <typename T, typename Rows>
void rotary_split_all(const T* qkv, const RotarySplit& s, T* q, T* k, T* v, Rows rows) {
  std::vector<float> zeros;
  const float* bias = bias_or_zeros(s.bias, 3 * s.heads * s.head_dim, zeros);
  int64_t row0 = 0;
  for (int64_t i = 0; i < s.images; ++i) {
    const int64_t len = s.lengths[i];
    at::parallel_for(0, len, 16, [&](int64_t r0, int64_t r1) {
      rows(qkv, s, q, k, v, row0, len, r0, r1, bias);
    });
    row0 += len;
  }
}

}  // namespace

void softmax_rows(float* scores, const SoftmaxRows& s) {
  softmax_all(scores, s, softmax_block_f32);
}
void softmax_rows(uint16_t* scores, const SoftmaxRows& s) {
  softmax_all(scores, s, softmax_block_bf16);
}

void rotary_split(const uint16_t* qkv, const RotarySplit& s, uint16_t* q, uint16_t* k,
                  uint16_t* v) {
  rotary_split_all(qkv, s, q, k, v, rotary_rows_bf16);
}
void rotary_split(const float* qkv, const RotarySplit& s, float* q, float* k, float* v) {
  rotary_split_all(qkv, s, q, k, v, rotary_rows_f32);
}

void layer_norm_to_bf16(const float* x, const float* weight, const float* bias, float eps,
                        uint16_t* out, int64_t rows, int64_t cols) {
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    layer_norm_block(x + r0 * cols, weight, bias, eps, out + r0 * cols, r1 - r0, cols);
  });
}

void residual_add_bf16(const float* residual, const uint16_t* y, const float* bias, float* out,
                       int64_t rows, int64_t cols) {
  std::vector<float> zeros;
  bias = bias_or_zeros(bias, cols, zeros);
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    residual_block(residual + r0 * cols, y + r0 * cols, bias, out + r0 * cols, r1 - r0, cols);
  });
}

void gelu_tanh_bias(const uint16_t* in, const float* bias, uint16_t* out, int64_t rows,
                    int64_t cols) {
  gelu_rows(in, bias, out, rows, cols, gelu_block_bf16);
}
void gelu_tanh_bias(const float* in, const float* bias, float* out, int64_t rows, int64_t cols) {
  gelu_rows(in, bias, out, rows, cols, gelu_block_f32);
}

}  // namespace ziprerank::detail
