#include "model/text_model.hpp"

#include <c10/core/GradMode.h>

#include <cmath>

#include "ziprerank/errors.hpp"

namespace ziprerank {

using detail::Linear;
using detail::RMSNorm;

TextModel::TextModel(const ModelConfig& c, StateDict sd, detail::ParamList& params) : config_(c) {
  const auto& t = c.text;
  const int64_t D = t.hidden_size, hd = t.head_dim;
  const int64_t qdim = int64_t{t.num_attention_heads} * hd,
                kvdim = int64_t{t.num_key_value_heads} * hd;
  embed_tokens_ = detail::take(sd, "embed_tokens.weight", {t.vocab_size, D}, params);
  for (int i = 0; i < t.num_hidden_layers; ++i) {
    StateDict l = sd.select("layers." + std::to_string(i) + ".");
    Layer layer;
    layer.input_norm = RMSNorm(l, "input_layernorm", D, t.rms_norm_eps, params);
    layer.post_norm = RMSNorm(l, "post_attention_layernorm", D, t.rms_norm_eps, params);
    layer.q = Linear(l, "self_attn.q_proj", D, qdim, t.attention_bias, params);
    layer.k = Linear(l, "self_attn.k_proj", D, kvdim, t.attention_bias, params);
    layer.v = Linear(l, "self_attn.v_proj", D, kvdim, t.attention_bias, params);
    layer.o = Linear(l, "self_attn.o_proj", qdim, D, t.attention_bias, params);
    layer.q_norm = RMSNorm(l, "self_attn.q_norm", hd, t.rms_norm_eps, params);
    layer.k_norm = RMSNorm(l, "self_attn.k_norm", hd, t.rms_norm_eps, params);
    layer.gate = Linear(l, "mlp.gate_proj", D, t.intermediate_size, false, params);
    layer.up = Linear(l, "mlp.up_proj", D, t.intermediate_size, false, params);
    layer.down = Linear(l, "mlp.down_proj", t.intermediate_size, D, false, params);
    layers_.push_back(std::move(layer));
  }
  norm_ = RMSNorm(sd, "norm", D, t.rms_norm_eps, params);
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  inv_freq_ = 1.0 / at::pow(t.rope.rope_theta,
                            at::arange(0, hd, 2, i64).to(at::kFloat) / static_cast<double>(hd));
}

std::pair<at::Tensor, at::Tensor> TextModel::rope(const at::Tensor& position_ids,
                                                  at::ScalarType dtype) const {
  // freqs[r] = position[r] x inv_freq for the t, h, w rows: [3, B, S, head_dim / 2] in float32.
  const at::Tensor pos = position_ids.to(at::kFloat);
  const at::Tensor inv = inv_freq_.to(pos.device());
  const at::Tensor freqs = pos.unsqueeze(-1) * inv;
  const auto& sec = config_.text.rope.mrope_section;
  at::Tensor f = freqs[0].clone();
  if (config_.text.rope.mrope_interleaved) {
    // Frequencies cycle t, h, w: index 3j+1 takes the h row, 3j+2 the w row, for the first
    // sec[1] (resp. sec[2]) triples; everything else stays t.
    for (int dim = 1; dim <= 2; ++dim) {
      const int64_t len = int64_t{sec[dim]} * 3;
      const at::Tensor idx =
          at::arange(dim, len, 3, at::TensorOptions().dtype(at::kLong).device(pos.device()));
      f.index_copy_(-1, idx, freqs[dim].index_select(-1, idx));
    }
  } else {
    // Contiguous sections: [t x sec0 | h x sec1 | w x sec2].
    f.narrow(-1, sec[0], sec[1]).copy_(freqs[1].narrow(-1, sec[0], sec[1]));
    f.narrow(-1, sec[0] + sec[1], sec[2]).copy_(freqs[2].narrow(-1, sec[0] + sec[1], sec[2]));
  }
  const at::Tensor emb = at::cat({f, f}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor TextModel::mlp_residual(const Layer& L, const at::Tensor& h) const {
  const auto block = [&L](const at::Tensor& x) {
    const at::Tensor xm = L.post_norm(x);
    return L.down(at::silu(L.gate(xm)) * L.up(xm));
  };
  const int64_t width = config_.text.intermediate_size;
  const bool grad = c10::GradMode::is_enabled() && h.requires_grad();
  // Inference on CPU: the MLP runs on blocks of at least 512 rows whose float32 intermediates
  // ([rows, intermediate], a few of them) stay near 16 MiB each, instead of a whole window's
  // (hundreds of MB each at the 8B's width: fresh memory maps whose pages fault in one by one,
  // and nothing in cache between the products). The 8B shape's 5,000-token window: the language
  // model ~10% faster.
  const int64_t rows = std::max<int64_t>(512, (int64_t{4} << 20) / std::max<int64_t>(1, width));
  const int64_t total = h.numel() / h.size(-1);
  if (grad || !h.is_cpu() || total <= rows) return h + block(h);
  at::Tensor out = h.is_contiguous() ? h : h.contiguous();
  const at::Tensor x = h.reshape({total, h.size(-1)});
  at::Tensor o = out.view({total, h.size(-1)});
  for (int64_t r0 = 0; r0 < total; r0 += rows) {
    const int64_t n = std::min(rows, total - r0);
    o.narrow(0, r0, n).add_(block(x.narrow(0, r0, n)));
  }
  return out;
}

at::Tensor TextModel::forward(const TextInput& in, KVCache* cache) const {
  const auto& t = config_.text;
  const at::Tensor& x0 = in.embeds;
  if (x0.dim() != 3 || x0.size(2) != t.hidden_size) {
    throw InputError("text input embeddings have shape " + shape_to_string(x0.sizes().vec()) +
                     ", expected [batch, seq, " + std::to_string(t.hidden_size) + "]");
  }
  const int64_t B = x0.size(0), S = x0.size(1), hd = t.head_dim;
  if (in.position_ids.dim() != 3 || in.position_ids.size(0) != 3 || in.position_ids.size(1) != B ||
      in.position_ids.size(2) != S) {
    throw InputError("position_ids must be [3, batch, seq]");
  }
  if (cache && cache->keys.empty()) {
    cache->keys.resize(layers_.size());
    cache->values.resize(layers_.size());
  }
  const auto [cos0, sin0] = rope(in.position_ids, x0.scalar_type());
  const at::Tensor cos = cos0.unsqueeze(1), sin = sin0.unsqueeze(1);  // [B, 1, S, hd]
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));

  at::Tensor visual_rows;  // flat row indices of the visual positions in [B * S]
  if (!in.deepstack.empty()) {
    if (!in.visual_mask.defined())
      throw InternalError("DeepStack features given without a visual mask");
    visual_rows = in.visual_mask.reshape({-1}).nonzero().squeeze(1);
  }
  at::Tensor h = x0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    const at::Tensor xn = L.input_norm(h);
    at::Tensor q = L.q_norm(L.q(xn).view({B, S, -1, hd})).transpose(1, 2);
    at::Tensor k = L.k_norm(L.k(xn).view({B, S, -1, hd})).transpose(1, 2);
    at::Tensor v = L.v(xn).view({B, S, -1, hd}).transpose(1, 2);
    q = q * cos + detail::rotate_half(q) * sin;
    k = k * cos + detail::rotate_half(k) * sin;
    if (cache) {
      if (cache->keys[i].defined()) {
        k = at::cat({cache->keys[i], k}, 2);
        v = at::cat({cache->values[i], v}, 2);
      }
      cache->keys[i] = k;
      cache->values[i] = v;
    }
    const at::Tensor a = detail::attention(q, k, v, scale, /*causal=*/true, in.attention_mask,
                                           /*float32_scores=*/true);
    h = h + L.o(a.transpose(1, 2).reshape({B, S, -1}));
    h = mlp_residual(L, h);
    if (i < in.deepstack.size()) {
      const at::Tensor ds = in.deepstack[i].to(h.device(), h.scalar_type());
      if (ds.size(0) != visual_rows.size(0)) {
        throw InternalError("DeepStack level " + std::to_string(i) + " has " +
                            std::to_string(ds.size(0)) + " rows for " +
                            std::to_string(visual_rows.size(0)) + " visual positions");
      }
      h = h.reshape({B * S, -1}).index_add(0, visual_rows, ds).view({B, S, -1});
    }
  }
  return norm_(h);
}

}  // namespace ziprerank
