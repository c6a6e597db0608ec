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

// Helpers are forced inline so that each copy of a kernel compiles them for its own ISA.
#if defined(__GNUC__) || defined(__clang__)
#define ZR_INLINE inline __attribute__((always_inline))
#else
#define ZR_INLINE inline
#endif

// One copy of each kernel per instruction set, picked at load time: the loops are worth 2-4x more
// with wider vectors than the x86-64 baseline's.
namespace fast {
namespace {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ZR_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ZR_VECTOR_CLONES
#endif
#include "model/kernel_loops.inc"
#undef ZR_VECTOR_CLONES
}  // namespace
}  // namespace fast

// The same loops compiled for the baseline only, run when kernel_isa() is kPortable.
namespace portable {
namespace {
#define ZR_VECTOR_CLONES
#include "model/kernel_loops.inc"
#undef ZR_VECTOR_CLONES
}  // namespace
}  // namespace portable

// Runs `...` with `kern` naming the kernels' namespace kernel_isa() chose.
#define ZR_WITH_KERNELS(...)                    \
  do {                                          \
    if (kernel_isa() == KernelIsa::kPortable) { \
      namespace kern = portable;                \
      __VA_ARGS__;                              \
    } else {                                    \
      namespace kern = fast;                    \
      __VA_ARGS__;                              \
    }                                           \
  } while (0)

void softmax_rows(float* scores, const SoftmaxRows& s) {
  ZR_WITH_KERNELS(kern::softmax_all(scores, s, kern::softmax_block_f32));
}
void softmax_rows(uint16_t* scores, const SoftmaxRows& s) {
  ZR_WITH_KERNELS(kern::softmax_all(scores, s, kern::softmax_block_bf16));
}

void rotary_split(const uint16_t* qkv, const RotarySplit& s, uint16_t* q, uint16_t* k,
                  uint16_t* v) {
  ZR_WITH_KERNELS(kern::rotary_split_all(qkv, s, q, k, v, kern::rotary_rows_bf16));
}
void rotary_split(const float* qkv, const RotarySplit& s, float* q, float* k, float* v) {
  ZR_WITH_KERNELS(kern::rotary_split_all(qkv, s, q, k, v, kern::rotary_rows_f32));
}

void layer_norm_to_bf16(const float* x, const float* weight, const float* bias, float eps,
                        uint16_t* out, int64_t rows, int64_t cols) {
  const auto block =
      kernel_isa() == KernelIsa::kPortable ? portable::layer_norm_block : fast::layer_norm_block;
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    block(x + r0 * cols, weight, bias, eps, out + r0 * cols, r1 - r0, cols);
  });
}

void residual_add_bf16(const float* residual, const uint16_t* y, const float* bias, float* out,
                       int64_t rows, int64_t cols) {
  std::vector<float> zeros;
  if (!bias) {
    zeros.assign(static_cast<size_t>(cols), 0.0f);
    bias = zeros.data();
  }
  const auto block =
      kernel_isa() == KernelIsa::kPortable ? portable::residual_block : fast::residual_block;
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    block(residual + r0 * cols, y + r0 * cols, bias, out + r0 * cols, r1 - r0, cols);
  });
}

void gelu_tanh_bias(const uint16_t* in, const float* bias, uint16_t* out, int64_t rows,
                    int64_t cols) {
  ZR_WITH_KERNELS(kern::gelu_rows(in, bias, out, rows, cols, kern::gelu_block_bf16));
}
void gelu_tanh_bias(const float* in, const float* bias, float* out, int64_t rows, int64_t cols) {
  ZR_WITH_KERNELS(kern::gelu_rows(in, bias, out, rows, cols, kern::gelu_block_f32));
}

}  // namespace ziprerank::detail
