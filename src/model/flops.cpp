#include "ziprerank/flops.hpp"

#include <algorithm>

namespace ziprerank {

VisionFlops& VisionFlops::operator+=(const VisionFlops& o) {
  patch_embed += o.patch_embed;
  qkv_proj += o.qkv_proj;
  attention += o.attention;
  mlp += o.mlp;
  mergers += o.mergers;
  return *this;
}

TextFlops& TextFlops::operator+=(const TextFlops& o) {
  qkv_o += o.qkv_o;
  attention += o.attention;
  mlp += o.mlp;
  lm_head += o.lm_head;
  return *this;
}

VisionFlops vision_flops(const VisionConfig& c, const std::vector<ImageGrid>& grids,
                         int64_t tile_tokens) {
  VisionFlops f;
  const double H = c.hidden_size, I = c.intermediate_size, depth = c.depth;
  const int64_t merge = c.spatial_merge_size;
  double patches = 0;
  for (const ImageGrid& g : grids) {
    const double n = static_cast<double>(g.num_patches());
    patches += n;
    // A still image's temporal slices are one frame repeated: the embedding multiplies one copy.
    const double in = g.t == 1 ? static_cast<double>(c.patch_input_dim()) / c.temporal_patch_size
                               : c.patch_input_dim();
    f.patch_embed += 2.0 * n * in * H;
  }
  // Attention segments: whole images, or their tiles when any image is larger than a tile (the
  // tower then cuts every image the same way; one smaller than a tile stays whole).
  std::vector<double> segments;
  const bool cut = tile_tokens > 0 && std::any_of(grids.begin(), grids.end(), [&](const auto& g) {
                     return g.t > 1 || g.h / merge > tile_tokens || g.w / merge > tile_tokens;
                   });
  if (cut) {
    for (const ImageGrid& tile : plan_vision_tiles(grids, merge, tile_tokens).grids)
      segments.push_back(static_cast<double>(tile.num_patches()));
  } else {
    for (const ImageGrid& g : grids) segments.push_back(static_cast<double>(g.num_patches()));
  }
  f.qkv_proj = depth * 2.0 * patches * H * (3.0 * H + H);
  for (double s : segments) f.attention += depth * 2.0 * (2.0 * s * s * H);
  f.mlp = depth * 2.0 * patches * 2.0 * H * I;
  // Each merger: [tokens, merge^2 H] -> fc1 (merge^2 H) -> fc2 (out_hidden_size).
  const double tokens = patches / static_cast<double>(merge * merge);
  const double wide = H * static_cast<double>(merge * merge);
  const double mergers = 1.0 + static_cast<double>(c.deepstack_visual_indexes.size());
  f.mergers = mergers * 2.0 * tokens * wide * (wide + c.out_hidden_size);
  return f;
}

TextFlops text_flops(const TextConfig& c, int64_t tokens, int64_t past, int64_t head_positions,
                     int64_t head_rows) {
  TextFlops f;
  const double L = static_cast<double>(tokens), P = static_cast<double>(past);
  const double D = c.hidden_size, hd = c.head_dim, layers = c.num_hidden_layers;
  const double q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  f.qkv_o = layers * 2.0 * L * D * (q + 2.0 * kv + q);
  // Query i (0-based among the new ones) sees past + i + 1 keys: L P + L (L + 1) / 2 pairs, each
  // a score and a weighted value per query head.
  const double pairs = L * P + L * (L + 1.0) / 2.0;
  f.attention = layers * 2.0 * 2.0 * pairs * q;
  f.mlp = layers * 2.0 * L * 3.0 * D * c.intermediate_size;
  f.lm_head = 2.0 * static_cast<double>(head_positions) * D * static_cast<double>(head_rows);
  return f;
}

}  // namespace ziprerank
