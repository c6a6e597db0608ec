// The Qwen3-VL architecture (vision tower with DeepStack, Qwen3 text model with interleaved M-RoPE)
// computed with ATen, loaded from a Hugging Face model folder under its checkpoint names.
//
// One code path serves the published 8B ZipRerank checkpoint and the small models ziprerank
// trains: they differ only in config.json.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ziprerank/config.hpp"
#include "ziprerank/state_dict.hpp"

namespace ziprerank {

/// Patch grid of one image: temporal x height x width in patches (before the 2x2 merge).
struct ImageGrid {
  int64_t t = 1, h = 0, w = 0;
  int64_t num_patches() const { return t * h * w; }
  int64_t num_tokens(int64_t merge) const { return t * (h / merge) * (w / merge); }
};

/// Output of the vision tower for a set of images, concatenated in image order.
struct VisionFeatures {
  at::Tensor embeds;                  ///< [N_tokens, D] merged visual tokens
  std::vector<at::Tensor> deepstack;  ///< one [N_tokens, D] per DeepStack level
  std::vector<int64_t> tokens_per_image;
};

/// The features of several pages (or windows of pages) as one: visual tokens, each DeepStack
/// level and the token counts, in the order given.
VisionFeatures concat_vision_features(const std::vector<const VisionFeatures*>& pages);

/// Per-layer key/value cache for incremental decoding and prefix reuse.
struct KVCache {
  std::vector<at::Tensor> keys, values;  ///< [B, kv_heads, S, head_dim] per layer
  int64_t length() const { return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2); }
  /// Drops everything after the first n positions (for reusing a shared prefix).
  void truncate(int64_t n);
};

/// Inputs of one language-model forward pass.
struct TextInput {
  at::Tensor embeds;          ///< [B, S, D]
  at::Tensor position_ids;    ///< [3, B, S] int64 (t, h, w rows)
  at::Tensor attention_mask;  ///< optional [B, S_past + S] with 1 for real tokens, 0 for padding
  at::Tensor visual_mask;     ///< optional [B, S] bool: positions that receive DeepStack features
  std::vector<at::Tensor> deepstack;  ///< [n_visual, D] per level, rows in visual_mask order
};

struct ModelOptions {
  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;
  bool trainable = false;  ///< parameters get their own memory and can require grad
  /// Windowed vision attention: tile side in pixels (see ModelFolder::vision_tile), 0 = whole
  /// images. Unset = the model folder's own setting when loaded from one, 0 otherwise; a model's
  /// options() have it settled (Qwen3VLModel::vision_tile).
  std::optional<int> vision_tile;
  /// Matrix products of the linear layers (and the vision tower's patch embedding) in bfloat16
  /// while everything else computes in float32: weights are stored once in bfloat16, inputs are
  /// rounded to bfloat16, products accumulate in float32, biases are added in float32. On CPUs
  /// with AMX-BF16 this is 2-3x faster than float32 products (see cpu_has_fast_bf16_products).
  /// For training (`trainable`), weights stay float32 (what the optimizer updates) and each
  /// product casts them, gradients flowing back through the casts. Applies only to float32
  /// compute on CPU (ignored otherwise); a loaded model's options() say whether it applied.
  bool bf16_products = false;
};

/// Throws InputError (naming `what`) unless `tile` is 0 or a positive multiple of the vision
/// tower's patch x merge size.
void check_vision_tile(int tile, const VisionConfig& vision, const std::string& what);

/// How windowed vision attention cuts images into tiles: each image's merged-token grid is split
/// evenly into ceil(side / tile_tokens) pieces a side (sizes differ by at most one token).
struct VisionTiling {
  std::vector<ImageGrid> grids;  ///< one per tile, in encoding order (image, frame, row, column)
  at::Tensor patch_rows;         ///< [patches] int64: rows of the images' pixel_values, tile order
  at::Tensor token_order;        ///< [tokens] int64: per image token (image order), its tile row
};
VisionTiling plan_vision_tiles(const std::vector<ImageGrid>& grids, int64_t merge,
                               int64_t tile_tokens);

class VisionTower;
class TextModel;

class Qwen3VLModel {
 public:
  /// Loads config, weights (converted per tensor) and checks every tensor; throws InputError
  /// listing all missing or mis-shaped tensors.
  static std::unique_ptr<Qwen3VLModel> load(const std::string& model_dir,
                                            const ModelOptions& options);
  Qwen3VLModel(const ModelConfig& config, StateDict& weights, const ModelOptions& options);
  ~Qwen3VLModel();

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  /// The vision tile images are read with unless encode_images is given one (0 = whole images).
  int vision_tile() const { return *options_.vision_tile; }

  /// pixel_values: [sum of patches, C*T*P*P] float32 rows in merge-window order (see image.hpp).
  /// With a vision tile (`vision_tile` pixels; unset = the model's own, vision_tile()) each image
  /// is read as tiles; the result keeps the images' token order either way. Without `deepstack` the
  /// DeepStack mergers are not run (VisionFeatures::deepstack stays empty): what scoring by
  /// similarity needs, which never runs the language model.
  VisionFeatures encode_images(const at::Tensor& pixel_values, const std::vector<ImageGrid>& grids,
                               std::optional<int> vision_tile = std::nullopt,
                               bool deepstack = true) const;
  /// Token embeddings [.., D] in the model dtype.
  at::Tensor embed(const at::Tensor& token_ids) const;
  /// Runs the decoder; returns final-normed hidden states [B, S, D]. Appends to `cache` if given.
  at::Tensor forward(const TextInput& input, KVCache* cache = nullptr) const;
  /// lm_head over hidden [.., D]: all vocabulary rows, or only `vocab_ids` (in that order).
  at::Tensor logits(const at::Tensor& hidden, const at::Tensor& vocab_ids = {}) const;

  /// Every parameter under its checkpoint name (shared storage with the model).
  const std::vector<std::pair<std::string, at::Tensor>>& named_parameters() const {
    return params_;
  }

 private:
  ModelConfig config_;
  ModelOptions options_;
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::unique_ptr<VisionTower> vision_;
  std::unique_ptr<TextModel> text_;
  at::Tensor lm_head_;
};

/// 3-row (t, h, w) M-RoPE positions of one unpadded token sequence, as transformers'
/// get_rope_index computes them. `grids` lists the images in order of appearance.
/// Returns [3, S] int64. `next_position` (optional) receives max position + 1.
at::Tensor mrope_position_ids(const std::vector<int64_t>& ids, const std::vector<ImageGrid>& grids,
                              const ModelConfig& config, int64_t* next_position = nullptr);

}  // namespace ziprerank
