#include <gtest/gtest.h>

#include "ziprerank/flops.hpp"

using namespace ziprerank;

namespace {

VisionConfig tiny_vision() {
  VisionConfig c;
  c.depth = 2;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_heads = 2;
  c.in_channels = 3;
  c.patch_size = 2;
  c.temporal_patch_size = 2;
  c.spatial_merge_size = 2;
  c.out_hidden_size = 12;
  c.deepstack_visual_indexes = {0};
  return c;
}

TextConfig tiny_text() {
  TextConfig c;
  c.num_hidden_layers = 2;
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.intermediate_size = 32;
  return c;
}

}  // namespace

TEST(Flops, VisionTowerByHand) {
  // One still 4x6-patch image (24 patches, 6 merged tokens), counted by hand:
  // patch embed 2*24*(3*2*2)*8 (one temporal slice); per block QKV+proj 2*24*8*(24+8), scores and
  // values 2*(2*24*24*8), MLP 2*24*(2*8*16); two mergers 2*6*32*(32+12).
  const VisionFlops f = vision_flops(tiny_vision(), {ImageGrid{1, 4, 6}});
  EXPECT_DOUBLE_EQ(f.patch_embed, 4608);
  EXPECT_DOUBLE_EQ(f.qkv_proj, 2 * 12288);
  EXPECT_DOUBLE_EQ(f.attention, 2 * 18432);
  EXPECT_DOUBLE_EQ(f.mlp, 2 * 12288);
  EXPECT_DOUBLE_EQ(f.mergers, 2 * 16896);
  EXPECT_DOUBLE_EQ(f.total(), 124416);
}

TEST(Flops, VisionTilesOnlyChangeAttention) {
  // Tiles of at most 2 merged tokens a side cut the 2x3-token image into 2x2 and 2x1 tokens
  // (16 and 8 patches): attention 2 blocks * 4*8*(16^2 + 8^2); everything else as whole.
  const VisionFlops whole = vision_flops(tiny_vision(), {ImageGrid{1, 4, 6}});
  const VisionFlops tiled = vision_flops(tiny_vision(), {ImageGrid{1, 4, 6}}, 2);
  EXPECT_DOUBLE_EQ(tiled.attention, 2 * 32 * (256 + 64));
  EXPECT_DOUBLE_EQ(tiled.total() - tiled.attention, whole.total() - whole.attention);
  // A tile larger than the image leaves it whole.
  EXPECT_DOUBLE_EQ(vision_flops(tiny_vision(), {ImageGrid{1, 4, 6}}, 8).attention, whole.attention);
  // Two images: the products add up, attention stays per image.
  const VisionFlops two = vision_flops(tiny_vision(), {ImageGrid{1, 4, 6}, ImageGrid{1, 4, 6}});
  EXPECT_DOUBLE_EQ(two.total(), 2 * whole.total());
}

TEST(Flops, LanguageModelByHand) {
  // 5 tokens, 2 layers, D 16, 4 query heads and 2 key/value heads of 4, MLP 32, lm_head at one
  // position over 3 rows: QKV+O 2*2*5*16*(16+8+8+16), causal pairs 15 -> 2*2*2*15*16,
  // MLP 2*2*5*3*16*32, head 2*16*3.
  const TextFlops f = text_flops(tiny_text(), 5, 0, 1, 3);
  EXPECT_DOUBLE_EQ(f.qkv_o, 15360);
  EXPECT_DOUBLE_EQ(f.attention, 1920);
  EXPECT_DOUBLE_EQ(f.mlp, 30720);
  EXPECT_DOUBLE_EQ(f.lm_head, 96);
  EXPECT_DOUBLE_EQ(f.total(), 15360 + 1920 + 30720 + 96);
}

TEST(Flops, DecodingStepsAddUpToTheLongerPrefill) {
  // A step after 5 cached tokens sees 6 keys; prefill of 5 plus that step is a prefill of 6.
  const TextFlops step = text_flops(tiny_text(), 1, 5, 0, 0);
  EXPECT_DOUBLE_EQ(step.attention, 2 * 2 * 2 * 6 * 16);
  TextFlops sum = text_flops(tiny_text(), 5, 0, 0, 0);
  sum += step;
  const TextFlops six = text_flops(tiny_text(), 6, 0, 0, 0);
  EXPECT_DOUBLE_EQ(sum.qkv_o, six.qkv_o);
  EXPECT_DOUBLE_EQ(sum.attention, six.attention);
  EXPECT_DOUBLE_EQ(sum.mlp, six.mlp);
}
