// Building blocks shared by the vision tower and the text model. Private to the library.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "ziprerank/state_dict.hpp"

namespace ziprerank::detail {

using ParamList = std::vector<std::pair<std::string, at::Tensor>>;

/// Fetches a required weight and records it (under its full checkpoint name) in `params`.
at::Tensor take(StateDict& sd, const std::string& name, const std::vector<int64_t>& shape,
                ParamList& params);

/// A bf16 product at float32 compute (LoadOptions::bf16_products): x (float32 or already
/// bfloat16) is rounded to bfloat16, multiplied by `weight` in bfloat16 (held so, or a float32
/// master weight cast) with float32 accumulation, and the result is float32 with the bias
/// (optional) added in float32.
at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

struct Linear {
  at::Tensor weight, bias;  // bias undefined when absent; weight bfloat16 with bf16_products
  /// Products through linear_bf16: for inference `weight` is held in bfloat16; for training it
  /// stays the float32 master weight, cast (differentiably) for each product.
  bool bf16_products = false;
  Linear() = default;
  Linear(StateDict& sd, const std::string& name, int64_t in, int64_t out, bool has_bias,
         ParamList& params);
  at::Tensor operator()(const at::Tensor& x) const;
};

struct LayerNorm {
  at::Tensor weight, bias;
  double eps = 1e-6;
  LayerNorm() = default;
  LayerNorm(StateDict& sd, const std::string& name, int64_t dim, double eps, ParamList& params);
  at::Tensor operator()(const at::Tensor& x) const {
    if (x.scalar_type() != at::kFloat && x.is_cpu()) {
      // Normalised in float32 and rounded once, as PyTorch 2's layer_norm (the reference's)
      // does; libtorch 1.13's on CPU rounds bfloat16 in several steps (2.4x the error).
      return at::layer_norm(x.to(at::kFloat), {weight.size(0)}, weight.to(at::kFloat),
                            bias.defined() ? bias.to(at::kFloat) : at::Tensor(), eps)
          .to(x.scalar_type());
    }
    return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
  }
};

/// Qwen3 RMSNorm: normalise in float32, cast back, then scale.
struct RMSNorm {
  at::Tensor weight;
  double eps = 1e-6;
  RMSNorm() = default;
  RMSNorm(StateDict& sd, const std::string& name, int64_t dim, double eps, ParamList& params);
  at::Tensor operator()(const at::Tensor& x) const;
};

at::Tensor activation(const at::Tensor& x, const std::string& name);

/// Swaps and negates the two halves of the last dimension: (x1, x2) -> (-x2, x1).
at::Tensor rotate_half(const at::Tensor& x);

/// Scaled dot-product attention. q: [B, H, Sq, d]; k, v: [B, Hkv, Sk, d] with H a multiple of Hkv.
/// causal: query i sits at absolute position (Sk - Sq + i) and sees keys up to it.
/// key_padding: optional [B, Sk] (true/1 = real). Softmax runs in float32; queries are processed in
/// chunks so memory stays bounded for long sequences. float32_scores: for bfloat16/float16 inputs,
/// compute the scores, scale and softmax in float32 and round only the probabilities, as fused
/// attention kernels (the reference's SDPA) do; otherwise the scaled queries and the scores are
/// rounded to the inputs' dtype (the CPU fast path with bfloat16 products).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                     bool causal, const at::Tensor& key_padding = {}, bool float32_scores = false);

}  // namespace ziprerank::detail
