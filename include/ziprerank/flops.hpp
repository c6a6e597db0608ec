// Floating-point operations of the model's stages, counted from its shapes and the tokens each
// stage sees: what `ziprerank bench` divides by the measured time to give each stage's achieved
// GFLOP/s. A multiply-add counts 2. Element-wise work (norms, activations, rotary, softmax) is left
// out: it is memory-bound and small next to the products.
#pragma once

#include <cstdint>
#include <vector>

#include "ziprerank/config.hpp"
#include "ziprerank/model.hpp"

namespace ziprerank {

struct VisionFlops {
  double patch_embed = 0;  ///< the patch embedding (one product per patch)
  double qkv_proj = 0;     ///< every block's fused QKV product and attention output projection
  double attention = 0;    ///< scores (Q K^T) and weighted values, within each image or tile
  double mlp = 0;          ///< every block's fc1 and fc2
  double mergers = 0;      ///< the patch merger and each DeepStack merger
  double total() const { return patch_embed + qkv_proj + attention + mlp + mergers; }
  VisionFlops& operator+=(const VisionFlops& o);
};

struct TextFlops {
  double qkv_o = 0;      ///< every layer's Q, K, V and output projections
  double attention = 0;  ///< causal scores and weighted values (each query against its past)
  double mlp = 0;        ///< every layer's gate, up and down projections
  double lm_head = 0;    ///< output rows, only at the positions (and vocabulary rows) computed
  double total() const { return qkv_o + attention + mlp + lm_head; }
  TextFlops& operator+=(const TextFlops& o);
};

/// The vision tower over images of these patch grids. `tile_tokens` > 0: attention within tiles
/// of at most that many merged tokens a side (as --vision-tile / (patch x merge) cuts them: see
/// plan_vision_tiles); 0 = whole images. A still image (t = 1) is embedded at 1/temporal of the
/// patch product (its temporal slices are equal, so the kernel's slices act as their sum).
VisionFlops vision_flops(const VisionConfig& config, const std::vector<ImageGrid>& grids,
                         int64_t tile_tokens = 0);

/// The language model over `tokens` new positions after `past` cached ones (a prefill: past 0; a
/// decoding step: tokens 1), then lm_head at `head_positions` positions over `head_rows`
/// vocabulary rows (logits scoring: 1 position, one row per candidate identifier).
TextFlops text_flops(const TextConfig& config, int64_t tokens, int64_t past, int64_t head_positions,
                     int64_t head_rows);

}  // namespace ziprerank
