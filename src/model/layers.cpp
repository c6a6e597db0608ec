#include "model/layers.hpp"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <limits>

#include "model/kernels.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank::detail {

at::Tensor take(StateDict& sd, const std::string& name, const std::vector<int64_t>& shape,
                ParamList& params) {
  at::Tensor t = sd.get(name, shape);
  if (t.defined()) params.emplace_back(sd.prefix() + name, t);
  return t;
}

at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  // (Casts of what is already bfloat16 or float32 are no-ops.)
  at::Tensor y = at::linear(x.to(at::kBFloat16), weight.to(at::kBFloat16)).to(at::kFloat);
  return bias.defined() ? y.add_(bias.to(at::kFloat)) : y;
}

Linear::Linear(StateDict& sd, const std::string& name, int64_t in, int64_t out, bool has_bias,
               ParamList& params) {
  weight = take(sd, name + ".weight", {out, in}, params);
  if (weight.defined() && sd.options().bf16_products && weight.scalar_type() == at::kFloat) {
    bf16_products = true;
    if (!sd.options().writable) {
      // Only the bfloat16 copy stays: the parameter list names what the model holds.
      weight = weight.to(at::kBFloat16);
      params.back().second = weight;
    }
  }
  if (has_bias) bias = take(sd, name + ".bias", {out}, params);
}

at::Tensor Linear::operator()(const at::Tensor& x) const {
  // The casts inside are differentiable: in training, gradients reach the float32 weights.
  return bf16_products ? linear_bf16(x, weight, bias) : at::linear(x, weight, bias);
}

LayerNorm::LayerNorm(StateDict& sd, const std::string& name, int64_t dim, double eps_,
                     ParamList& params)
    : eps(eps_) {
  weight = take(sd, name + ".weight", {dim}, params);
  bias = take(sd, name + ".bias", {dim}, params);
}

RMSNorm::RMSNorm(StateDict& sd, const std::string& name, int64_t dim, double eps_,
                 ParamList& params)
    : eps(eps_) {
  weight = take(sd, name + ".weight", {dim}, params);
}

at::Tensor RMSNorm::operator()(const at::Tensor& x) const {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(variance + eps)).to(x.scalar_type());
}

at::Tensor activation(const at::Tensor& x, const std::string& name) {
  if (name == "silu") return at::silu(x);
  if (name == "gelu_pytorch_tanh") {
    // bfloat16/float16: computed in float32 and rounded once, as the reference's fused op
    // (PyTorch 2) does; libtorch 1.13's op on CPU rounds reduced-precision inputs in several steps
    // (40% of bfloat16 results one unit off), and the formula below would round after each of
    // its six steps.
    if (x.scalar_type() != at::kFloat)
      return at::gelu(x.to(at::kFloat), "tanh").to(x.scalar_type());
    if (x.requires_grad() && c10::GradMode::is_enabled()) return at::gelu(x, "tanh");
    // Without a graph: 0.5 x (1 + tanh(u)) == x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3),
    // in place. libtorch's tanh is the slow part of its kernel on CPU (1.5x here; results
    // agree to float rounding, 5e-7 absolute).
    constexpr double c = 1.5957691216057308;  // 2 sqrt(2/pi)
    at::Tensor t = x * x;
    t.mul_(0.044715 * c).add_(c).mul_(x).sigmoid_();
    return t.mul_(x);
  }
  if (name == "gelu") return at::gelu(x);
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  throw InternalError("unsupported activation '" + name + "'");
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

namespace {

// Attention for inference on CPU. The query heads that share a key/value head are stacked into
// one matrix ([rep * rows, d] against that head's keys, without copying the keys per query head),
// and a chunk takes enough query rows that every product has at least kMinProductRows rows:
// OpenBLAS packs the keys once per product, so thin products (a handful of rows against thousands
// of keys) spend most of their time packing. Key/value heads go in groups that keep one chunk's
// float32 scores near kScoreBudget elements. The masks, softmax and cast back run in one pass over
// the scores (softmax_rows); results land in place in the output.
at::Tensor attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale, bool causal, const at::Tensor& pad_bias, bool low) {
  constexpr int64_t kMinProductRows = 256;
  constexpr int64_t kScoreBudget = int64_t{4} << 20;  // 16 MiB of float32 scores
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Sk = k.size(2), rep = H / Hkv;
  const bool reduced = q.scalar_type() != at::kFloat;
  const at::Tensor kt = low ? k.to(at::kFloat).transpose(2, 3) : k.transpose(2, 3);
  const at::Tensor qs = (!low && scale != 1.0) ? q * scale : q;
  at::Tensor out = at::empty({B, H, Sq, D}, q.options());
  const int64_t rows = std::min(Sq, (kMinProductRows + rep - 1) / rep);
  const int64_t group =
      std::clamp<int64_t>(kScoreBudget / std::max<int64_t>(1, rep * rows * Sk), 1, Hkv);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h0 = 0; h0 < Hkv; h0 += group) {
      const int64_t g = std::min(group, Hkv - h0);
      // Reduced precision: both products take their second operand transposed in memory
      // (keys as [g, Sk, D], values as [g, D, Sk]). Without oneDNN's bfloat16 kernels (CPUs
      // without AVX-512), libtorch 1.13 multiplies a bfloat16 [m, k] by a plain [k, n] summing
      // in bfloat16 (4,096 ones add up to 256); a transposed one is summed in float32.
      const at::Tensor kg = reduced && !low ? k[b].narrow(0, h0, g).contiguous().transpose(1, 2)
                                            : kt[b].narrow(0, h0, g);  // [g, D, Sk]
      const at::Tensor vg = reduced ? v[b].narrow(0, h0, g).transpose(1, 2).contiguous()
                                    : v[b].narrow(0, h0, g);  // [g, D, Sk] / [g, Sk, D]
      for (int64_t r0 = 0; r0 < Sq; r0 += rows) {
        const int64_t n = std::min(rows, Sq - r0);
        // Causal: the chunk's rows see keys up to the last row's own position; the keys after
        // it would only be masked out, so they are not multiplied at all.
        const int64_t seen = causal ? std::min(Sk, Sk - Sq + r0 + n) : Sk;
        at::Tensor qc =
            qs[b].narrow(0, h0 * rep, g * rep).narrow(1, r0, n).reshape({g, rep * n, D});
        if (low) qc = qc.to(at::kFloat);
        at::Tensor scores = at::bmm(qc, kg.narrow(2, 0, seen));  // [g, rep * n, seen]
        if (low && scale != 1.0) scores.mul_(scale);
        SoftmaxRows s;
        s.batch = 1;
        s.heads = g * rep;
        s.rows = n;
        s.cols = seen;
        s.causal_offset = causal ? Sk - Sq + r0 : -1;
        if (pad_bias.defined()) {
          s.key_bias = pad_bias.data_ptr<float>() + b * Sk;
          s.key_bias_stride = Sk;
        }
        if (scores.scalar_type() == at::kFloat) {
          softmax_rows(scores.data_ptr<float>(), s);
        } else {
          softmax_rows(reinterpret_cast<uint16_t*>(scores.data_ptr<at::BFloat16>()), s);
        }
        const at::Tensor vs = reduced ? vg.narrow(2, 0, seen).transpose(1, 2) : vg.narrow(1, 0, seen);
        const at::Tensor o = at::bmm(scores.to(q.scalar_type()), vs);
        out[b].narrow(0, h0 * rep, g * rep).narrow(1, r0, n).copy_(o.view({g * rep, n, D}));
      }
    }
  }
  return out;
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                     bool causal, const at::Tensor& key_padding, bool float32_scores) {
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Sk = k.size(2);
  if (H % Hkv != 0) throw InternalError("attention: query heads not a multiple of key/value heads");
  // With float32_scores, bfloat16/float16 scores are computed, scaled and normalised in float32
  // and only the probabilities rounded (rounding the scaled queries and the scores to 8 bits each
  // moves large logits by tenths); the keys are widened once for every chunk.
  const bool low = float32_scores && q.scalar_type() != at::kFloat;
  at::Tensor pad_bias;  // [B, 1, 1, Sk] with -inf at padding
  if (key_padding.defined()) {
    const auto opts = at::TensorOptions().dtype(at::kFloat).device(q.device());
    pad_bias = at::zeros({B, 1, 1, Sk}, opts)
                   .masked_fill(key_padding.to(at::kBool).logical_not().view({B, 1, 1, Sk}),
                                -std::numeric_limits<float>::infinity());
  }
  const bool grad =
      c10::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  const at::ScalarType score_type = low ? at::kFloat : q.scalar_type();
  if (q.is_cpu() && !grad && (score_type == at::kFloat || score_type == at::kBFloat16))
    return attention_cpu(q, k, v, scale, causal, pad_bias, low);

  // Training and other devices: libtorch operations throughout, so autograd sees them.
  at::Tensor kk = k, vv = v;
  if (Hkv != H) {  // grouped-query attention: share each kv head among H/Hkv query heads
    const int64_t rep = H / Hkv;
    kk = k.unsqueeze(2).expand({B, Hkv, rep, Sk, D}).reshape({B, H, Sk, D});
    vv = v.unsqueeze(2).expand({B, Hkv, rep, Sk, D}).reshape({B, H, Sk, D});
  }
  const at::Tensor kt = kk.transpose(2, 3);
  const at::Tensor kt32 = low ? kt.to(at::kFloat) : at::Tensor();
  // Keep the float32 score block of one chunk near 16 MiB.
  const int64_t budget = int64_t{4} << 20;
  const int64_t chunk =
      std::max<int64_t>(1, std::min<int64_t>(Sq, budget / std::max<int64_t>(1, B * H * Sk)));
  std::vector<at::Tensor> outs;
  for (int64_t r0 = 0; r0 < Sq; r0 += chunk) {
    const int64_t rows = std::min(chunk, Sq - r0);
    const at::Tensor qc = q.narrow(2, r0, rows);
    const int64_t seen = causal ? std::min(Sk, Sk - Sq + r0 + rows) : Sk;
    // The scale goes on the queries: a chunk of queries is smaller than its block of scores.
    at::Tensor scores32 =
        low ? at::matmul(qc.to(at::kFloat), kt32.narrow(3, 0, seen)).mul_(scale)
            : at::matmul(scale == 1.0 ? qc : qc * scale, kt.narrow(3, 0, seen)).to(at::kFloat);
    if (causal) {
      const auto iopts = at::TensorOptions().dtype(at::kLong).device(q.device());
      const at::Tensor qpos = at::arange(Sk - Sq + r0, Sk - Sq + r0 + rows, iopts).view({rows, 1});
      const at::Tensor kpos = at::arange(0, seen, iopts).view({1, seen});
      scores32 = scores32.masked_fill(kpos > qpos, -std::numeric_limits<float>::infinity());
    }
    if (pad_bias.defined()) scores32 = scores32 + pad_bias.narrow(3, 0, seen);
    const at::Tensor probs = at::softmax(scores32, -1).to(q.scalar_type());
    outs.push_back(at::matmul(probs, vv.narrow(2, 0, seen)));
  }
  return outs.size() == 1 ? outs[0] : at::cat(outs, 2);
}

}  // namespace ziprerank::detail
