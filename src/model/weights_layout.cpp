#include "ziprerank/model_folder.hpp"

namespace ziprerank {

std::vector<WeightSpec> expected_weights(const ModelConfig& c) {
  using Init = WeightSpec::Init;
  std::vector<WeightSpec> w;
  auto add = [&](std::string name, std::vector<int64_t> shape, const char* component,
                 Init init = Init::kNormal) {
    w.push_back(WeightSpec{std::move(name), std::move(shape), component, init});
  };

  const auto& v = c.vision;
  const int64_t vh = v.hidden_size;
  const int64_t merged = vh * v.spatial_merge_size * v.spatial_merge_size;
  const std::string vp = "model.visual.";
  add(vp + "patch_embed.proj.weight",
      {vh, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size}, "vision.patch_embed");
  add(vp + "patch_embed.proj.bias", {vh}, "vision.patch_embed", Init::kZeros);
  add(vp + "pos_embed.weight", {v.num_position_embeddings, vh}, "vision.pos_embed");
  for (int i = 0; i < v.depth; ++i) {
    const std::string b = vp + "blocks." + std::to_string(i) + ".";
    add(b + "norm1.weight", {vh}, "vision.blocks", Init::kOnes);
    add(b + "norm1.bias", {vh}, "vision.blocks", Init::kZeros);
    add(b + "norm2.weight", {vh}, "vision.blocks", Init::kOnes);
    add(b + "norm2.bias", {vh}, "vision.blocks", Init::kZeros);
    add(b + "attn.qkv.weight", {3 * vh, vh}, "vision.blocks");
    add(b + "attn.qkv.bias", {3 * vh}, "vision.blocks", Init::kZeros);
    add(b + "attn.proj.weight", {vh, vh}, "vision.blocks");
    add(b + "attn.proj.bias", {vh}, "vision.blocks", Init::kZeros);
    add(b + "mlp.linear_fc1.weight", {v.intermediate_size, vh}, "vision.blocks");
    add(b + "mlp.linear_fc1.bias", {v.intermediate_size}, "vision.blocks", Init::kZeros);
    add(b + "mlp.linear_fc2.weight", {vh, v.intermediate_size}, "vision.blocks");
    add(b + "mlp.linear_fc2.bias", {vh}, "vision.blocks", Init::kZeros);
  }
  auto merger = [&](const std::string& p, int64_t norm_dim, const char* component) {
    add(p + "norm.weight", {norm_dim}, component, Init::kOnes);
    add(p + "norm.bias", {norm_dim}, component, Init::kZeros);
    add(p + "linear_fc1.weight", {merged, merged}, component);
    add(p + "linear_fc1.bias", {merged}, component, Init::kZeros);
    add(p + "linear_fc2.weight", {v.out_hidden_size, merged}, component);
    add(p + "linear_fc2.bias", {v.out_hidden_size}, component, Init::kZeros);
  };
  merger(vp + "merger.", vh, "vision.merger");
  for (size_t i = 0; i < v.deepstack_visual_indexes.size(); ++i) {
    merger(vp + "deepstack_merger_list." + std::to_string(i) + ".", merged, "vision.deepstack");
  }

  const auto& t = c.text;
  const int64_t d = t.hidden_size;
  const int64_t q = int64_t{t.num_attention_heads} * t.head_dim;
  const int64_t kv = int64_t{t.num_key_value_heads} * t.head_dim;
  const std::string tp = "model.language_model.";
  add(tp + "embed_tokens.weight", {t.vocab_size, d}, "text.embed_tokens");
  for (int i = 0; i < t.num_hidden_layers; ++i) {
    const std::string l = tp + "layers." + std::to_string(i) + ".";
    add(l + "input_layernorm.weight", {d}, "text.layers", Init::kOnes);
    add(l + "post_attention_layernorm.weight", {d}, "text.layers", Init::kOnes);
    add(l + "self_attn.q_proj.weight", {q, d}, "text.layers");
    add(l + "self_attn.k_proj.weight", {kv, d}, "text.layers");
    add(l + "self_attn.v_proj.weight", {kv, d}, "text.layers");
    add(l + "self_attn.o_proj.weight", {d, q}, "text.layers");
    if (t.attention_bias) {
      add(l + "self_attn.q_proj.bias", {q}, "text.layers", Init::kZeros);
      add(l + "self_attn.k_proj.bias", {kv}, "text.layers", Init::kZeros);
      add(l + "self_attn.v_proj.bias", {kv}, "text.layers", Init::kZeros);
      add(l + "self_attn.o_proj.bias", {d}, "text.layers", Init::kZeros);
    }
    add(l + "self_attn.q_norm.weight", {t.head_dim}, "text.layers", Init::kOnes);
    add(l + "self_attn.k_norm.weight", {t.head_dim}, "text.layers", Init::kOnes);
    add(l + "mlp.gate_proj.weight", {t.intermediate_size, d}, "text.layers");
    add(l + "mlp.up_proj.weight", {t.intermediate_size, d}, "text.layers");
    add(l + "mlp.down_proj.weight", {d, t.intermediate_size}, "text.layers");
  }
  add(tp + "norm.weight", {d}, "text.norm", Init::kOnes);
  if (!c.tie_word_embeddings) add("lm_head.weight", {t.vocab_size, d}, "lm_head");
  return w;
}

}  // namespace ziprerank
