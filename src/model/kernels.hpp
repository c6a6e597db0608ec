// Fused element-wise passes for inference on CPU, written as plain loops the compiler vectorises.
// Each replaces several libtorch operations (each a full pass over memory) by one. Private to the
// library.
#pragma once

#include <cstdint>

namespace ziprerank::detail {

/// The instruction set the vector kernels below run with: the best the CPU has (AVX-512, AVX2,
/// else the x86-64 baseline, one copy of each kernel per set, picked at load time), or the
/// portable baseline copy when the environment variable ZIPRERANK_CPU_ISA is "portable" ("native"
/// or unset: the best). Read once per process: CI sets it to test the portable copy on any host.
enum class KernelIsa { kPortable, kAvx2, kAvx512 };
KernelIsa kernel_isa();
const char* kernel_isa_name(KernelIsa isa);

/// bfloat16 <-> float32 bit conversions (round to nearest even, as libtorch's).
uint16_t to_bf16_bits(float f);
float from_bf16_bits(uint16_t b);

/// out[r][c] = gelu_tanh(in[r][c] + bias[c]) for a row-major [rows, cols] block (bias may be
/// null). `In`/`Out` are float or uint16_t (bfloat16 bits). The tanh form as 1 / (1 + exp(-2u)),
/// u = sqrt(2/pi) (x + 0.044715 x^3), with an exp accurate to about 2e-7 relative.
void gelu_tanh_bias(const uint16_t* in, const float* bias, uint16_t* out, int64_t rows,
                    int64_t cols);
void gelu_tanh_bias(const float* in, const float* bias, float* out, int64_t rows, int64_t cols);

/// LayerNorm of float32 rows [rows, cols] (weight and bias [cols]) written as bfloat16: the norm
/// and the cast before a bf16 product in one pass.
void layer_norm_to_bf16(const float* x, const float* weight, const float* bias, float eps,
                        uint16_t* out, int64_t rows, int64_t cols);
/// out = residual + y + bias for float32 residual rows, bfloat16 y (a bf16 product) and a float32
/// bias [cols] (may be null): the cast, the bias add and the residual add in one pass.
void residual_add_bf16(const float* residual, const uint16_t* y, const float* bias, float* out,
                       int64_t rows, int64_t cols);

/// Softmax over the last dimension of scores [batch, heads, rows, cols], in place, computed in
/// float32 (bfloat16 scores rounded once at the end). Optional masking as attention needs it:
/// `key_bias` [batch, cols] (0 or -inf) is added to every row of its batch element; with
/// `causal_offset` >= 0, row r sees only columns < causal_offset + r + 1 (the rest get 0). A row
/// with nothing to see gets all zeros.
struct SoftmaxRows {
  int64_t batch = 1, heads = 1, rows = 0, cols = 0;
  const float* key_bias = nullptr;
  int64_t key_bias_stride = 0;  ///< elements between batch elements of key_bias
  int64_t causal_offset = -1;
};
void softmax_rows(float* scores, const SoftmaxRows& s);
void softmax_rows(uint16_t* scores, const SoftmaxRows& s);

/// Rotary split of a vision block's qkv product: qkv is row-major [S, 3, heads, hd] (bias, when
/// given, [3 * heads * hd] is added first); cos/sin are [S, hd] float32. Writes queries (rotated,
/// times `scale`), keys (rotated) and values into q/k/v, each [S * heads * hd] in [image][head]
/// [row][dim] order, images of `lengths[i]` rows in turn. Rotation: x cos + rotate_half(x) sin.
struct RotarySplit {
  const float* bias = nullptr;
  const float* cos = nullptr;
  const float* sin = nullptr;
  const int64_t* lengths = nullptr;
  int64_t images = 0, heads = 0, head_dim = 0;
  float scale = 1.0f;
};
void rotary_split(const uint16_t* qkv, const RotarySplit& s, uint16_t* q, uint16_t* k, uint16_t* v);
void rotary_split(const float* qkv, const RotarySplit& s, float* q, float* k, float* v);

}  // namespace ziprerank::detail
