// Qwen3 decoder with interleaved M-RoPE and DeepStack injection (Qwen3-VL's language model).
#pragma once

#include "model/layers.hpp"
#include "ziprerank/model.hpp"

namespace ziprerank {

class TextModel {
 public:
  TextModel(const ModelConfig& config, StateDict sd, detail::ParamList& params);
  at::Tensor embed(const at::Tensor& ids) const {
    return embed_tokens_.index_select(0, ids.flatten()).view(embed_shape(ids));
  }
  at::Tensor forward(const TextInput& input, KVCache* cache) const;
  const at::Tensor& embed_weight() const { return embed_tokens_; }

  /// cos/sin [B, S, head_dim] of the (interleaved) multimodal rotary embedding, in `dtype`.
  std::pair<at::Tensor, at::Tensor> rope(const at::Tensor& position_ids,
                                         at::ScalarType dtype) const;

 private:
  struct Layer {
    detail::RMSNorm input_norm, post_norm, q_norm, k_norm;
    detail::Linear q, k, v, o, gate, up, down;
  };
  /// h + the layer's MLP of its post-attention norm of h. For inference on CPU the sum is made in
  /// place: h must be the pass's own hidden state, referenced nowhere else.
  at::Tensor mlp_residual(const Layer& layer, const at::Tensor& h) const;
  std::vector<int64_t> embed_shape(const at::Tensor& ids) const {
    auto s = ids.sizes().vec();
    s.push_back(embed_tokens_.size(1));
    return s;
  }

  ModelConfig config_;
  at::Tensor embed_tokens_;
  std::vector<Layer> layers_;
  detail::RMSNorm norm_;
  at::Tensor inv_freq_;  // [head_dim / 2] float32
};

}  // namespace ziprerank
