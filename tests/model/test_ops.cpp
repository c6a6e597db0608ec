// The model's building blocks in every dtype and on every device at hand, each against a float64
// computation from the same (rounded) inputs, with a tolerance per dtype: float32 to a few units
// of its rounding, bfloat16 to a few units of its own. CUDA cases run where CUDA is present.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/layers.hpp"

namespace {

using ziprerank::detail::attention;

struct OpCase {
  at::ScalarType dtype;
  c10::DeviceType device;
};

std::string name_of(const OpCase& c) {
  return std::string(c.dtype == at::kFloat ? "Float32" : "Bfloat16") +
         (c.device == c10::kCPU ? "Cpu" : "Cuda");
}
std::string case_name(const testing::TestParamInfo<OpCase>& info) { return name_of(info.param); }
// How test listings (and CTest's names) show a case.
void PrintTo(const OpCase& c, std::ostream* os) { *os << name_of(c); }

std::vector<OpCase> op_cases() {
  std::vector<OpCase> cases = {{at::kFloat, c10::kCPU}, {at::kBFloat16, c10::kCPU}};
  if (at::hasCUDA()) {
    cases.push_back({at::kFloat, c10::kCUDA});
    cases.push_back({at::kBFloat16, c10::kCUDA});
  }
  return cases;
}

class Ops : public testing::TestWithParam<OpCase> {
 protected:
  at::TensorOptions opts() const {
    return at::TensorOptions().dtype(GetParam().dtype).device(GetParam().device);
  }
  // Random values rounded to the case's dtype, on its device.
  at::Tensor input(std::vector<int64_t> shape, double scale = 1.0) const {
    return (at::randn(shape) * scale).to(opts());
  }
  // The largest error allowed relative to the result's scale: 8 units of float32's rounding
  // (2^-24) and one of bfloat16's at that scale (2^-8; the result is rounded once, intermediate
  // values stay float32).
  double tolerance() const { return GetParam().dtype == at::kFloat ? 5e-7 : 4e-3; }

  // max |got - want| <= tolerance x max(1, max |want|).
  void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) const {
    ASSERT_EQ(got.scalar_type(), GetParam().dtype) << what;
    ASSERT_EQ(got.device().type(), GetParam().device) << what;
    ASSERT_EQ(got.sizes(), want.sizes()) << what;
    const at::Tensor g = got.to(at::kCPU).to(at::kDouble), w = want.to(at::kCPU);
    const double scale = std::max(1.0, w.abs().max().item<double>());
    const double diff = (g - w).abs().max().item<double>();
    EXPECT_LE(diff, tolerance() * scale)
        << what << ": max difference " << diff << " at scale " << scale;
  }
};

at::Tensor f64(const at::Tensor& t) { return t.to(at::kCPU).to(at::kDouble); }

// Attention in float64 from the same (rounded) inputs: each key/value head shared by H/Hkv query
// heads, causal as the decoder (query i sees keys up to Sk - Sq + i), padding = 0 masked out.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               double scale, bool causal, const at::Tensor& pad = {}) {
  const int64_t B = q.size(0), rep = q.size(1) / k.size(1), Sq = q.size(2), Sk = k.size(2);
  at::Tensor scores = at::matmul(f64(q), f64(k).repeat_interleave(rep, 1).transpose(2, 3)) * scale;
  if (causal) {
    const at::Tensor qpos = at::arange(Sk - Sq, Sk).view({Sq, 1});
    scores = scores.masked_fill(at::arange(Sk).view({1, Sk}) > qpos, -INFINITY);
  }
  if (pad.defined()) scores = scores.masked_fill(pad.view({B, 1, 1, Sk}) == 0, -INFINITY);
  return at::matmul(at::softmax(scores, -1), f64(v).repeat_interleave(rep, 1));
}

TEST_P(Ops, AttentionCausalPaddedGroupedQuery) {
  at::manual_seed(21);
  const int64_t B = 2, H = 4, Hkv = 2, D = 16, Sq = 70, Sk = 90;
  const at::Tensor q = input({B, H, Sq, D}), k = input({B, Hkv, Sk, D}), v = input({B, Hkv, Sk, D});
  at::Tensor pad = at::ones({B, Sk}, at::kLong);
  pad[1].narrow(0, 0, 7).zero_();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (bool causal : {false, true}) {
    const at::Tensor want = reference_attention(q, k, v, scale, causal, pad);
    // Scores in float32 (as fused kernels) and, for bfloat16, also in bfloat16 (the CPU fast path
    // with bfloat16 products); the latter rounds the scores as well, so it gets three units.
    for (bool f32_scores : {true, false}) {
      const at::Tensor got = attention(q, k, v, scale, causal, pad.to(q.device()), f32_scores);
      const std::string what = std::string(causal ? "causal" : "full") +
                               (f32_scores ? ", float32 scores" : ", scores in the dtype");
      if (f32_scores || GetParam().dtype == at::kFloat) {
        expect_close(got, want, what);
      } else {
        const double diff = (f64(got) - want).abs().max().item<double>();
        EXPECT_LE(diff, 3 * tolerance()) << what << ": max difference " << diff;
      }
    }
  }
}

// Thousands of keys: each output is a weighted sum over all of them, which must be summed in
// float32 whatever the dtype. Values near 1 make a sum kept in bfloat16 plain to see: its steps
// (a probability of ~1/4096 each) fall below bfloat16's spacing near 0.5 and the output stalls
// far below 1 (libtorch 1.13 summed so on CPUs without AVX-512 before the values' layout was
// chosen for it).
TEST_P(Ops, AttentionOverThousandsOfKeysSumsInFloat32) {
  at::manual_seed(22);
  const int64_t B = 1, H = 4, Hkv = 2, D = 16, Sq = 40, Sk = 4096;
  const at::Tensor q = input({B, H, Sq, D}, 0.1), k = input({B, Hkv, Sk, D}, 0.1);
  const at::Tensor v = (1.0 + at::randn({B, Hkv, Sk, D}) * 0.1).to(opts());
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (bool causal : {false, true}) {
    const at::Tensor want = reference_attention(q, k, v, scale, causal);
    for (bool f32_scores : {true, false}) {
      const at::Tensor got = attention(q, k, v, scale, causal, {}, f32_scores);
      ASSERT_EQ(got.scalar_type(), GetParam().dtype);
      // bfloat16: one unit of its rounding; float32: a sum of 4,096 terms, within 2^-17.
      const double bound = GetParam().dtype == at::kFloat ? 8e-6 : tolerance();
      const double diff = (f64(got) - want).abs().max().item<double>();
      EXPECT_LE(diff, bound) << (causal ? "causal" : "full")
                             << (f32_scores ? ", float32 scores" : ", scores in the dtype");
    }
  }
}

TEST_P(Ops, RmsNormAsQwen3) {
  at::manual_seed(22);
  ziprerank::detail::RMSNorm norm;
  norm.eps = 1e-6;
  norm.weight = input({48}, 0.5) + 1;
  const at::Tensor x = input({5, 7, 48}, 3.0);
  // Qwen3: normalised in float32, cast back to the input's dtype, then scaled.
  const at::Tensor xd = f64(x);
  at::Tensor normed = xd * at::rsqrt(xd.pow(2).mean(-1, true) + 1e-6);
  normed = normed.to(at::kFloat).to(GetParam().dtype).to(at::kDouble);
  expect_close(norm(x), f64(norm.weight) * normed, "rms norm");
}

TEST_P(Ops, LayerNorm) {
  at::manual_seed(23);
  ziprerank::detail::LayerNorm norm;
  norm.eps = 1e-6;
  norm.weight = input({40}, 0.5) + 1;
  norm.bias = input({40}, 0.5);
  const at::Tensor x = input({6, 40}, 2.0) + 3;  // an offset mean, as activations have
  const at::Tensor xd = f64(x);
  const at::Tensor mean = xd.mean(-1, true), var = (xd - mean).pow(2).mean(-1, true);
  const at::Tensor want = (xd - mean) * at::rsqrt(var + 1e-6) * f64(norm.weight) + f64(norm.bias);
  expect_close(norm(x), want, "layer norm");
}

TEST_P(Ops, Activations) {
  at::manual_seed(24);
  const at::Tensor x = input({3, 257}, 3.0);
  const at::Tensor xd = f64(x);
  const double c = std::sqrt(2.0 / M_PI);
  const at::Tensor gelu_tanh = 0.5 * xd * (1 + at::tanh(c * (xd + 0.044715 * xd.pow(3))));
  expect_close(ziprerank::detail::activation(x, "gelu_pytorch_tanh"), gelu_tanh, "gelu tanh");
  expect_close(ziprerank::detail::activation(x, "silu"), xd * at::sigmoid(xd), "silu");
  expect_close(ziprerank::detail::activation(x, "gelu"), 0.5 * xd * (1 + at::erf(xd / M_SQRT2)),
               "gelu");
  expect_close(ziprerank::detail::activation(x, "quick_gelu"), xd * at::sigmoid(1.702 * xd),
               "quick gelu");
}

TEST_P(Ops, RotateHalf) {
  at::manual_seed(25);
  const at::Tensor x = input({2, 3, 8});
  const at::Tensor got = ziprerank::detail::rotate_half(x);
  // Exact in every dtype: a permutation and a negation.
  EXPECT_TRUE(at::equal(got.narrow(-1, 0, 4), -x.narrow(-1, 4, 4)));
  EXPECT_TRUE(at::equal(got.narrow(-1, 4, 4), x.narrow(-1, 0, 4)));
}

TEST_P(Ops, LinearWithBfloat16Products) {
  // The bfloat16 product at float32 compute rounds its input and weight to bfloat16 and
  // accumulates in float32: within bfloat16's tolerance of the float64 product, in either dtype.
  at::manual_seed(26);
  const at::Tensor x = input({9, 64}), w = input({24, 64}, 0.2), b = input({24});
  const at::Tensor got = ziprerank::detail::linear_bf16(x, w, b);
  ASSERT_EQ(got.scalar_type(), at::kFloat);
  const at::Tensor want = at::linear(f64(x), f64(w), f64(b));
  const double scale = std::max(1.0, want.abs().max().item<double>());
  EXPECT_LE((f64(got) - want).abs().max().item<double>(), 1.6e-2 * scale);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Ops, testing::ValuesIn(op_cases()), case_name);

}  // namespace
