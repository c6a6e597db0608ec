// Qwen3-VL vision tower: patch embedding, interpolated learned positions, 2D rotary, pre-norm
// blocks with attention confined to each image, the 2x2 patch merger and the DeepStack mergers.
#pragma once

#include <array>
#include <vector>

#include "model/layers.hpp"
#include "ziprerank/model.hpp"

namespace ziprerank {

class VisionTower {
 public:
  VisionTower(const VisionConfig& config, StateDict sd, detail::ParamList& params);
  /// Without `deepstack` the DeepStack mergers are skipped (out.deepstack stays empty).
  /// `patch_rows` (optional, int64): the rows of pixel_values in the order `grids` lists them (a
  /// permutation, as tiles take them); applied after the row-wise patch embedding, where a row is
  /// 8x narrower than a pixel row.
  VisionFeatures forward(const at::Tensor& pixel_values, const std::vector<ImageGrid>& grids,
                         bool deepstack = true, const at::Tensor& patch_rows = {}) const;

 private:
  struct Merger {
    detail::LayerNorm norm;
    detail::Linear fc1, fc2;
    bool postshuffle = false;
    int64_t merged_dim = 0;
    at::Tensor operator()(const at::Tensor& x) const;
  };
  struct Block {
    detail::LayerNorm norm1, norm2;
    detail::Linear qkv, proj, fc1, fc2;
  };

  at::Tensor patch_embed(const at::Tensor& px) const;
  /// fc1 and the activation of a block's MLP (fused bias and tanh GELU for inference on CPU).
  at::Tensor mlp_hidden(const Block& b, const at::Tensor& x) const;
  /// Inference on CPU: queries (times `scale`), keys (both rotated) and values of the block's
  /// qkv product [S, 3*H] without its bias (float32, or bfloat16 with bf16 products), bias added,
  /// as flat tensors of the product's type in [image][head][row][dim] order, images as in
  /// `lengths`.
  std::array<at::Tensor, 3> split_rotate(const Block& b, const at::Tensor& qkv,
                                         const at::Tensor& cos, const at::Tensor& sin,
                                         const std::vector<int64_t>& lengths, double scale) const;
  at::Tensor position_embeddings(const std::vector<ImageGrid>& grids) const;
  std::pair<at::Tensor, at::Tensor> rotary(const std::vector<ImageGrid>& grids) const;
  at::Tensor block_forward(const Block& b, const at::Tensor& x, const at::Tensor& cos,
                           const at::Tensor& sin, const std::vector<int64_t>& lengths) const;
  /// The block on whole images only (rows = the sum of `lengths`).
  at::Tensor block_rows(const Block& b, const at::Tensor& x, const at::Tensor& cos,
                        const at::Tensor& sin, const std::vector<int64_t>& lengths) const;

  VisionConfig config_;
  at::Tensor patch_kernel_;  // [hidden, C, T, P, P]: the Conv3d kernel (stride == kernel)
  at::Tensor patch_bias_;
  // With bf16 products (inference only): the kernel as a [hidden, C*T*P*P] matrix and folded over
  // its temporal slices for still images, both in bfloat16, made once at load.
  at::Tensor patch_matrix_bf16_, still_matrix_bf16_;
  at::Tensor pos_embed_;  // [num_position_embeddings, hidden]
  at::Tensor inv_freq_;   // [head_dim / 4] float32
  std::vector<Block> blocks_;
  Merger merger_;
  std::vector<Merger> deepstack_;
};

}  // namespace ziprerank
