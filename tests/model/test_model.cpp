#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "model/kernels.hpp"
#include "model/layers.hpp"
#include "model_fixture.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/image.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/runtime.hpp"

using namespace ziprerank;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Qwen3VLModel> load_tiny(c10::ScalarType dtype = at::kFloat) {
  ModelOptions o;
  o.dtype = dtype;
  return Qwen3VLModel::load(test::tiny_model_dir(), o);
}

// A prompt of text, two images and more text, as the ranking prompt lays them out.
struct Sequence {
  std::vector<int64_t> ids;
  std::vector<ImageGrid> grids;
  at::Tensor pixels;
};

Sequence make_sequence(const ModelConfig& c, int64_t seed) {
  Sequence s;
  s.grids = {{1, 4, 6}, {1, 2, 4}};
  at::manual_seed(seed);
  for (int64_t id : {257, 117, 115, 101, 114, 198, 72, 105}) s.ids.push_back(id);
  int64_t patches = 0;
  for (const auto& g : s.grids) {
    s.ids.push_back(c.vision_start_token_id);
    for (int64_t i = 0; i < g.num_tokens(2); ++i) s.ids.push_back(c.image_token_id);
    s.ids.push_back(c.vision_end_token_id);
    patches += g.num_patches();
  }
  for (int64_t id : {258, 198, 257, 97, 115, 198, 58}) s.ids.push_back(id);
  s.pixels = at::rand({patches, c.vision.patch_input_dim()}) * 2 - 1;
  return s;
}

// Embeds the sequence with image features scattered in, and returns the input for one pass.
TextInput build_input(const Qwen3VLModel& m, const Sequence& s, VisionFeatures* vf_out = nullptr) {
  const auto& c = m.config();
  VisionFeatures vf = m.encode_images(s.pixels, s.grids);
  const at::Tensor ids = at::tensor(s.ids, at::kLong);
  at::Tensor emb = m.embed(ids);
  const at::Tensor mask = ids.eq(c.image_token_id);
  emb = emb.index_put({mask}, vf.embeds.to(emb.scalar_type()));
  TextInput in;
  in.embeds = emb.unsqueeze(0);
  in.position_ids = mrope_position_ids(s.ids, s.grids, c).unsqueeze(1);
  in.visual_mask = mask.unsqueeze(0);
  in.deepstack = vf.deepstack;
  if (vf_out) *vf_out = vf;
  return in;
}

}  // namespace

TEST(Model, LoadsEveryTensorOfAnInitialisedFolder) {
  auto m = load_tiny();
  const auto specs = expected_weights(m->config());
  EXPECT_EQ(m->named_parameters().size(), specs.size());
  for (const auto& [name, t] : m->named_parameters()) {
    EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
  }
  // The checkpoint layout (what init writes and inspect checks, recorded from the modules'
  // constructors) and the parameters a loaded model holds name the same tensors with the same
  // shapes, one for one.
  std::map<std::string, std::vector<int64_t>> params;
  for (const auto& [name, t] : m->named_parameters()) params[name] = t.sizes().vec();
  for (const WeightSpec& spec : specs) {
    const auto it = params.find(spec.name);
    ASSERT_NE(it, params.end()) << spec.name << " is in the layout but no module reads it";
    EXPECT_EQ(it->second, spec.shape) << spec.name;
    params.erase(it);
  }
  EXPECT_TRUE(params.empty()) << params.begin()->first << " is read but not in the layout";
}

TEST(Model, CheckpointLayoutOfThePublishedShape) {
  // Qwen3-VL-8B's checkpoint as transformers writes it: 750 tensors (27 vision blocks of 12, 4
  // mergers of 6, 36 language-model layers of 11, embeddings, norm, lm_head), 8,767,123,696
  // numbers in all (8.77 B), with its initialisation kinds and the components inspect groups them
  // by.
  const ModelConfig c =
      load_model_config(std::string(ZIPRERANK_TEST_FIXTURES) + "/config/qwen3_vl_8b_config.json");
  const std::vector<WeightSpec> specs = expected_weights(c);
  ASSERT_EQ(specs.size(), 750u);
  int64_t numbers = 0;
  std::map<std::string, const WeightSpec*> by_name;
  for (const WeightSpec& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    numbers += n;
    EXPECT_TRUE(by_name.emplace(s.name, &s).second) << s.name << " twice";
  }
  EXPECT_EQ(numbers, 8767123696);  // Qwen3-VL-8B's published parameter count
  const auto expect = [&](const std::string& name, std::vector<int64_t> shape,
                          const std::string& component, WeightSpec::Init init) {
    const auto it = by_name.find(name);
    ASSERT_NE(it, by_name.end()) << name;
    EXPECT_EQ(it->second->shape, shape) << name;
    EXPECT_EQ(it->second->component, component) << name;
    EXPECT_EQ(it->second->init, init) << name;
  };
  using Init = WeightSpec::Init;
  expect("model.visual.patch_embed.proj.weight", {1152, 3, 2, 16, 16}, "vision.patch_embed",
         Init::kNormal);
  expect("model.visual.pos_embed.weight", {2304, 1152}, "vision.pos_embed", Init::kNormal);
  expect("model.visual.blocks.26.norm2.bias", {1152}, "vision.blocks", Init::kZeros);
  expect("model.visual.blocks.0.attn.qkv.weight", {3456, 1152}, "vision.blocks", Init::kNormal);
  expect("model.visual.merger.norm.weight", {1152}, "vision.merger", Init::kOnes);
  expect("model.visual.deepstack_merger_list.2.norm.weight", {4608}, "vision.deepstack",
         Init::kOnes);
  expect("model.visual.deepstack_merger_list.2.linear_fc2.weight", {4096, 4608}, "vision.deepstack",
         Init::kNormal);
  expect("model.language_model.embed_tokens.weight", {151936, 4096}, "text.embed_tokens",
         Init::kNormal);
  expect("model.language_model.layers.35.self_attn.k_proj.weight", {1024, 4096}, "text.layers",
         Init::kNormal);
  expect("model.language_model.layers.0.self_attn.q_norm.weight", {128}, "text.layers",
         Init::kOnes);
  expect("model.language_model.layers.0.post_attention_layernorm.weight", {4096}, "text.layers",
         Init::kOnes);
  expect("model.language_model.layers.7.mlp.down_proj.weight", {4096, 12288}, "text.layers",
         Init::kNormal);
  expect("model.language_model.norm.weight", {4096}, "text.norm", Init::kOnes);
  expect("lm_head.weight", {151936, 4096}, "lm_head", Init::kNormal);
}

// The whole model in each compute mode and on each device at hand against the float32 model on
// the CPU: the last position's logits (what scoring reads) and the vision features, within a
// tolerance per mode relative to their scale.
struct ModelCase {
  const char* name;
  at::ScalarType dtype;
  bool bf16_products;
  c10::DeviceType device;
  double tolerance;
};

// How test listings (and CTest's names) show a case.
void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

class ModelModes : public testing::TestWithParam<ModelCase> {};

TEST_P(ModelModes, FollowTheFloat32ModelOnTheCpu) {
  const ModelCase& mc = GetParam();
  const auto reference = load_tiny();
  ModelOptions o;
  o.dtype = mc.dtype;
  o.bf16_products = mc.bf16_products;
  o.device = mc.device;
  const auto m = Qwen3VLModel::load(test::tiny_model_dir(), o);
  ASSERT_EQ(m->options().bf16_products, mc.bf16_products);
  const Sequence s = make_sequence(m->config(), 31);
  c10::InferenceMode guard;
  VisionFeatures want_vf, got_vf;
  const at::Tensor want =
      reference->logits(reference->forward(build_input(*reference, s, &want_vf)));
  Sequence on_device = s;
  on_device.pixels = s.pixels.to(mc.device);
  const at::Tensor got =
      m->logits(m->forward(build_input(*m, on_device, &got_vf))).to(at::kCPU).to(at::kFloat);
  const auto check = [&](const at::Tensor& g, const at::Tensor& w, const char* what) {
    const double scale = std::max(1.0, w.abs().max().item<double>());
    const double diff =
        (g.to(at::kCPU).to(at::kDouble) - w.to(at::kDouble)).abs().max().item<double>();
    EXPECT_LE(diff, mc.tolerance * scale)
        << mc.name << " " << what << ": max difference " << diff << " at scale " << scale;
  };
  check(got_vf.embeds, want_vf.embeds, "vision features");
  check(got.select(1, -1), want.select(1, -1), "last position's logits");
}

std::vector<ModelCase> model_cases() {
  std::vector<ModelCase> cases = {
      {"Float32", at::kFloat, false, c10::kCPU, 1e-5},
      {"Float32WithBfloat16Products", at::kFloat, true, c10::kCPU, 5e-3},
      {"Bfloat16", at::kBFloat16, false, c10::kCPU, 1e-2},
  };
  if (at::hasCUDA()) {
    cases.push_back({"Float32Cuda", at::kFloat, false, c10::kCUDA, 1e-4});
    cases.push_back({"Bfloat16Cuda", at::kBFloat16, false, c10::kCUDA, 1e-2});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ModelModes, testing::ValuesIn(model_cases()),
                         [](const testing::TestParamInfo<ModelCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(Model, MropePositionsFollowGetRopeIndex) {
  const ModelConfig c = tiny_model_config();
  const int64_t I = c.image_token_id, VS = c.vision_start_token_id, VE = c.vision_end_token_id;
  // text(2) <vs> image 2x3 (grid 4x6 patches) <ve> text(1)
  const std::vector<int64_t> ids = {1, 2, VS, I, I, I, I, I, I, VE, 3};
  int64_t next = 0;
  const at::Tensor p = mrope_position_ids(ids, {{1, 4, 6}}, c, &next);
  const std::vector<int64_t> t = {0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7};
  const std::vector<int64_t> h = {0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7};
  const std::vector<int64_t> w = {0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7};
  EXPECT_TRUE(at::equal(p[0], at::tensor(t, at::kLong)));
  EXPECT_TRUE(at::equal(p[1], at::tensor(h, at::kLong)));
  EXPECT_TRUE(at::equal(p[2], at::tensor(w, at::kLong)));
  EXPECT_EQ(next, 8);
  EXPECT_THROW(mrope_position_ids(ids, {}, c), InputError);
  EXPECT_THROW(mrope_position_ids(ids, {{1, 4, 6}, {1, 2, 2}}, c), InputError);
  EXPECT_THROW(mrope_position_ids({1, VS, I, I, VE}, {{1, 4, 6}}, c), InputError);
}

// Attention the plain way: every score, the masks as -inf, one softmax. k and v may have fewer
// heads than q (grouped-query attention); pad is [B, Sk] with 0 at padding.
static at::Tensor masked_softmax_attention(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, double scale, bool causal,
                                           const at::Tensor& pad) {
  const int64_t B = q.size(0), Sq = q.size(2), Sk = k.size(2), rep = q.size(1) / k.size(1);
  const at::Tensor kk = k.repeat_interleave(rep, 1), vv = v.repeat_interleave(rep, 1);
  at::Tensor scores = at::matmul(q, kk.transpose(2, 3)) * scale;
  if (causal) {
    const at::Tensor qpos = at::arange(Sk - Sq, Sk).view({Sq, 1});
    scores = scores.masked_fill(at::arange(Sk).view({1, Sk}) > qpos, -INFINITY);
  }
  scores = scores.masked_fill(pad.view({B, 1, 1, Sk}) == 0, -INFINITY);
  return at::matmul(at::softmax(scores, -1), vv);
}

TEST(Model, ChunkedAttentionEqualsOneMaskedSoftmax) {
  // Long enough for several row chunks, so causal chunks skip the keys after their last row.
  at::manual_seed(9);
  const int64_t B = 1, H = 2, D = 8;
  for (const auto& [Sq, Sk] :
       std::vector<std::pair<int64_t, int64_t>>{{3000, 3000}, {2500, 3000}}) {
    const at::Tensor q = at::randn({B, H, Sq, D}), k = at::randn({B, H, Sk, D}),
                     v = at::randn({B, H, Sk, D});
    at::Tensor pad = at::ones({B, Sk}, at::kLong);
    pad.narrow(1, 5, 3).zero_();  // three keys padded out
    const double scale = 0.35;
    for (bool causal : {true, false}) {
      const at::Tensor want = masked_softmax_attention(q, k, v, scale, causal, pad);
      const at::Tensor got = ziprerank::detail::attention(q, k, v, scale, causal, pad);
      EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-6))
          << Sq << "x" << Sk << (causal ? " causal" : "") << ": max difference "
          << (got - want).abs().max().item<double>();
    }
  }
}

TEST(Model, GroupedQueryAttentionInHeadGroupsEqualsOneMaskedSoftmax) {
  // Two batch elements padded differently; 12 query heads sharing 6 key/value heads; enough keys
  // that the key/value heads go in more than one group and the queries in several row chunks.
  at::manual_seed(11);
  const int64_t B = 2, H = 12, Hkv = 6, D = 8, Sq = 300, Sk = 3000;
  const at::Tensor q = at::randn({B, H, Sq, D}), k = at::randn({B, Hkv, Sk, D}),
                   v = at::randn({B, Hkv, Sk, D});
  at::Tensor pad = at::ones({B, Sk}, at::kLong);
  pad[0].narrow(0, 5, 3).zero_();
  pad[1].narrow(0, 0, 40).zero_();
  const double scale = 0.35;
  for (bool causal : {true, false}) {
    const at::Tensor want = masked_softmax_attention(q, k, v, scale, causal, pad);
    const at::Tensor got = ziprerank::detail::attention(q, k, v, scale, causal, pad);
    EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-6))
        << (causal ? "causal" : "") << ": max difference "
        << (got - want).abs().max().item<double>();
    // With a graph (training), the same numbers through libtorch's operations.
    const at::Tensor qg = q.clone().requires_grad_(true);
    const at::Tensor trained = ziprerank::detail::attention(qg, k, v, scale, causal, pad);
    EXPECT_TRUE(at::allclose(trained.detach(), want, 1e-5, 1e-6));
  }
}

TEST(Model, Bfloat16AttentionSoftmaxRoundsOnce) {
  // Unmasked bfloat16 attention (the vision tower's with bf16 products): float32 softmax of the
  // bfloat16 scores, probabilities rounded once to bfloat16.
  at::manual_seed(5);
  const auto bf = at::kBFloat16;
  const at::Tensor q = at::randn({3, 2, 50, 16}).to(bf), k = at::randn({3, 2, 50, 16}).to(bf),
                   v = at::randn({3, 2, 50, 16}).to(bf);
  const at::Tensor scores = at::matmul(q, k.transpose(2, 3));
  const at::Tensor want =
      at::matmul(at::softmax(scores.to(at::kFloat), -1).to(bf), v).to(at::kFloat);
  const at::Tensor got = ziprerank::detail::attention(q, k, v, 1.0, false);
  ASSERT_EQ(got.scalar_type(), bf);
  EXPECT_TRUE(at::allclose(got.to(at::kFloat), want, 1e-2, 1e-2))
      << (got.to(at::kFloat) - want).abs().max().item<double>();
}

TEST(Model, TanhGeluWithoutAGraphAgreesWithLibtorchs) {
  at::manual_seed(4);
  const at::Tensor x =
      at::cat({at::randn({4096}) * 4, at::tensor({0.f, -30.f, 30.f, -1e4f, 1e4f})});
  const at::Tensor want = at::gelu(x, "tanh");
  at::Tensor got;
  {
    c10::InferenceMode guard;
    got = ziprerank::detail::activation(x, "gelu_pytorch_tanh");
  }
  EXPECT_TRUE(at::allclose(got, want, 1e-5, 2e-6)) << (got - want).abs().max().item<double>();
  // With a graph it is libtorch's own, and gradients flow.
  const at::Tensor leaf = x.clone().requires_grad_(true);
  const at::Tensor y = ziprerank::detail::activation(leaf, "gelu_pytorch_tanh");
  EXPECT_TRUE(at::equal(y.detach(), want));
  y.sum().backward();
  EXPECT_TRUE(leaf.grad().defined());
}

TEST(Model, KvCachedStepsMatchFullRecompute) {
  auto m = load_tiny();
  const Sequence s = make_sequence(m->config(), 11);
  const TextInput full = build_input(*m, s);
  const at::Tensor ref = m->logits(m->forward(full));  // [1, S, V]
  const int64_t S = full.embeds.size(1), split = S - 4;

  KVCache cache;
  TextInput head = full;
  head.embeds = full.embeds.narrow(1, 0, split);
  head.position_ids = full.position_ids.narrow(2, 0, split);
  head.visual_mask = full.visual_mask.narrow(1, 0, split);
  at::Tensor out = m->logits(m->forward(head, &cache));
  EXPECT_EQ(cache.length(), split);
  std::vector<at::Tensor> pieces = {out};
  for (int64_t i = split; i < S; ++i) {  // the tail is text: no DeepStack rows there
    TextInput step;
    step.embeds = full.embeds.narrow(1, i, 1);
    step.position_ids = full.position_ids.narrow(2, i, 1);
    pieces.push_back(m->logits(m->forward(step, &cache)));
  }
  const at::Tensor inc = at::cat(pieces, 1);
  EXPECT_TRUE(at::allclose(inc, ref, 1e-4, 1e-5)) << (inc - ref).abs().max().item<float>();

  // Prefix reuse: truncate and recompute the tail in one go.
  cache.truncate(split);
  TextInput tail;
  tail.embeds = full.embeds.narrow(1, split, S - split);
  tail.position_ids = full.position_ids.narrow(2, split, S - split);
  const at::Tensor t2 = m->logits(m->forward(tail, &cache));
  EXPECT_TRUE(at::allclose(t2, ref.narrow(1, split, S - split), 1e-4, 1e-5));
}

TEST(Model, ImagesEncodedTogetherEqualOneAtATime) {
  auto m = load_tiny();
  const Sequence s = make_sequence(m->config(), 5);
  const VisionFeatures both = m->encode_images(s.pixels, s.grids);
  const int64_t n0 = s.grids[0].num_patches();
  const VisionFeatures a = m->encode_images(s.pixels.narrow(0, 0, n0), {s.grids[0]});
  const VisionFeatures b =
      m->encode_images(s.pixels.narrow(0, n0, s.pixels.size(0) - n0), {s.grids[1]});
  ASSERT_EQ(both.tokens_per_image, (std::vector<int64_t>{6, 2}));
  EXPECT_TRUE(at::allclose(both.embeds, at::cat({a.embeds, b.embeds}), 1e-5, 1e-6));
  ASSERT_EQ(both.deepstack.size(), 2u);
  for (size_t l = 0; l < both.deepstack.size(); ++l) {
    EXPECT_TRUE(
        at::allclose(both.deepstack[l], at::cat({a.deepstack[l], b.deepstack[l]}), 1e-5, 1e-6));
  }
}

TEST(Model, ZeroDeepStackEqualsNoDeepStack) {
  auto m = load_tiny();
  const Sequence s = make_sequence(m->config(), 2);
  TextInput in = build_input(*m, s);
  TextInput zero = in;
  for (auto& d : zero.deepstack) d = at::zeros_like(d);
  TextInput none = in;
  none.deepstack.clear();
  EXPECT_TRUE(at::allclose(m->forward(zero), m->forward(none), 1e-6, 1e-7));
  EXPECT_FALSE(at::allclose(m->forward(in), m->forward(none), 1e-4, 1e-5))
      << "DeepStack must change the output";
}

TEST(Model, SelectedLogitRowsEqualFullLogits) {
  auto m = load_tiny();
  const TextInput in = build_input(*m, make_sequence(m->config(), 3));
  const at::Tensor h = m->forward(in);
  const at::Tensor ids = at::tensor(std::vector<int64_t>{32, 33, 34, 51}, at::kLong);
  const at::Tensor last = h.select(1, h.size(1) - 1);
  EXPECT_TRUE(at::allclose(m->logits(last, ids), m->logits(last).index_select(1, ids), 1e-5, 1e-6));
}

TEST(Model, Bfloat16StaysCloseToFloat32) {
  auto m32 = load_tiny(at::kFloat);
  auto m16 = load_tiny(at::kBFloat16);
  const Sequence s = make_sequence(m32->config(), 9);
  const at::Tensor a = m32->logits(m32->forward(build_input(*m32, s)));
  const at::Tensor b = m16->logits(m16->forward(build_input(*m16, s))).to(at::kFloat);
  const float scale = a.abs().max().item<float>();
  const float err = (a - b).abs().max().item<float>();
  EXPECT_LT(err, 0.05f * scale + 0.02f)
      << "max |fp32 - bf16| = " << err << " (logit scale " << scale << ")";
}

TEST(Model, Bfloat16ProductsStayCloseToFloat32AndHoldOneWeightCopy) {
  auto m32 = load_tiny(at::kFloat);
  ModelOptions o;
  o.bf16_products = true;
  auto mbp = Qwen3VLModel::load(test::tiny_model_dir(), o);
  // Linear weights are held once, in bfloat16; norms, embeddings and biases stay float32.
  int64_t bf16 = 0, f32 = 0;
  for (const auto& [name, t] : mbp->named_parameters()) {
    // (The patch embedding keeps its float32 kernel: it is a Conv3d that training views as one.)
    const bool linear_weight = (name.find("proj.weight") != std::string::npos &&
                                name.find("patch_embed") == std::string::npos) ||
                               name.find("linear_fc1.weight") != std::string::npos ||
                               name.find("attn.qkv.weight") != std::string::npos;
    if (linear_weight) EXPECT_EQ(t.scalar_type(), at::kBFloat16) << name;
    if (name.find(".bias") != std::string::npos || name.find("norm") != std::string::npos)
      EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
    (t.scalar_type() == at::kBFloat16 ? bf16 : f32) += 1;
  }
  EXPECT_GT(bf16, 0);
  EXPECT_GT(f32, 0);
  const Sequence s = make_sequence(m32->config(), 9);
  const VisionFeatures va = m32->encode_images(s.pixels, s.grids);
  const VisionFeatures vb = mbp->encode_images(s.pixels, s.grids);
  ASSERT_EQ(vb.embeds.scalar_type(), at::kFloat);
  const float vscale = va.embeds.abs().max().item<float>();
  EXPECT_LT((va.embeds - vb.embeds).abs().max().item<float>(), 0.03f * vscale);
  EXPECT_GT(at::cosine_similarity(va.embeds, vb.embeds, 1).min().item<float>(), 0.999f);
  EXPECT_FALSE(at::equal(va.embeds, vb.embeds)) << "the products must really be bfloat16";
  const at::Tensor a = m32->logits(m32->forward(build_input(*m32, s)));
  const at::Tensor b = mbp->logits(mbp->forward(build_input(*mbp, s)));
  ASSERT_EQ(b.scalar_type(), at::kFloat);
  const float scale = a.abs().max().item<float>();
  const float err = (a - b).abs().max().item<float>();
  EXPECT_LT(err, 0.02f * scale + 0.01f)
      << "max |fp32 - bf16 products| = " << err << " (logit scale " << scale << ")";
  // Training keeps float32 master weights (what the optimizer updates); the products cast them,
  // and gradients flow back through the casts.
  o.trainable = true;
  auto mt = Qwen3VLModel::load(test::tiny_model_dir(), o);
  for (const auto& [name, t] : mt->named_parameters())
    EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
  const at::Tensor c = mt->logits(mt->forward(build_input(*mt, s)));
  EXPECT_LT((a - c).abs().max().item<float>(), 0.02f * scale + 0.01f);
  EXPECT_FALSE(at::equal(a, c.detach())) << "the products must really be bfloat16";
  c.pow(2).mean().backward();
  int64_t with_grad = 0;
  for (const auto& [name, t] : mt->named_parameters()) {
    if (name.find("mlp.linear_fc1.weight") == std::string::npos &&
        name.find("self_attn.q_proj.weight") == std::string::npos)
      continue;
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_EQ(t.grad().scalar_type(), at::kFloat) << name;
    EXPECT_GT(t.grad().abs().sum().item<float>(), 0.0f) << name;
    ++with_grad;
  }
  EXPECT_GT(with_grad, 0);
}

TEST(Model, InferenceVisionBlocksEqualTheAutogradPath) {
  // Inference reads each block's queries, keys and values through one fused rotary pass; a
  // trainable model (parameters requiring grad) takes the autograd-friendly tensor ops.
  auto infer = load_tiny(at::kFloat);
  ModelOptions o;
  o.trainable = true;
  auto train = Qwen3VLModel::load(test::tiny_model_dir(), o);
  const Sequence s = make_sequence(infer->config(), 4);
  for (const int tile : {0, 32}) {
    const VisionFeatures a = infer->encode_images(s.pixels, s.grids, tile);
    const VisionFeatures b = train->encode_images(s.pixels, s.grids, tile);
    ASSERT_TRUE(b.embeds.requires_grad());
    EXPECT_TRUE(at::allclose(a.embeds, b.embeds.detach(), 1e-4, 1e-5)) << "tile " << tile;
    ASSERT_EQ(a.deepstack.size(), b.deepstack.size());
    for (size_t l = 0; l < a.deepstack.size(); ++l)
      EXPECT_TRUE(at::allclose(a.deepstack[l], b.deepstack[l].detach(), 1e-4, 1e-5));
  }
}

// The fused kernels run the copy for the best instruction set the CPU has, or the portable
// baseline copy when ZIPRERANK_CPU_ISA=portable (the model_kernels_portable test runs the kernel
// tests so, on any host).
TEST(Model, KernelIsaFollowsZiprerankCpuIsa) {
  using ziprerank::detail::KernelIsa;
  const char* env = std::getenv("ZIPRERANK_CPU_ISA");
  if (env && std::string(env) == "portable") {
    EXPECT_EQ(ziprerank::detail::kernel_isa(), KernelIsa::kPortable);
    EXPECT_STREQ(ziprerank::detail::kernel_isa_name(ziprerank::detail::kernel_isa()), "portable");
    return;
  }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const KernelIsa best = __builtin_cpu_supports("avx512f") ? KernelIsa::kAvx512
                         : __builtin_cpu_supports("avx2")  ? KernelIsa::kAvx2
                                                           : KernelIsa::kPortable;
  EXPECT_EQ(ziprerank::detail::kernel_isa(), best)
      << ziprerank::detail::kernel_isa_name(ziprerank::detail::kernel_isa());
#else
  EXPECT_EQ(ziprerank::detail::kernel_isa(), KernelIsa::kPortable);
#endif
}

TEST(Model, FusedGeluKernelAgreesWithLibtorchs) {
  // Wide range, both signs, large magnitudes (the exp clamps) and a bias.
  at::manual_seed(11);
  const int64_t rows = 37, cols = 70;
  const at::Tensor x = at::randn({rows, cols}) * 4, bias = at::randn({cols});
  x.select(0, 0).copy_(at::linspace(-120, 120, cols));
  // Reference in float64, in the form without cancellation: x / (1 + exp(-2u)).
  const auto reference = [](const at::Tensor& in) {
    const at::Tensor d = in.to(at::kDouble);
    const at::Tensor u = 0.7978845608028654 * (d + 0.044715 * d * d * d);
    return d / (1 + at::exp(-2 * u));
  };
  const at::Tensor want = reference(x + bias);
  EXPECT_TRUE(at::allclose(at::gelu(x + bias, "tanh").to(at::kDouble), want, 1e-5, 1e-6));
  at::Tensor got = at::empty_like(x);
  ziprerank::detail::gelu_tanh_bias(x.data_ptr<float>(), bias.data_ptr<float>(),
                                    got.data_ptr<float>(), rows, cols);
  const at::Tensor err = (got.to(at::kDouble) - want).abs();
  // Float evaluation of z = 2u carries ~|z| x 1e-7 relative into exp(-z) (as libtorch's does).
  EXPECT_TRUE((err <= want.abs() * 2e-5 + 1e-7).all().item<bool>()) << err.max().item<double>();
  // bfloat16 in and out: the same function, rounded once (to nearest even, as libtorch rounds).
  const at::Tensor xb = x.to(at::kBFloat16);
  at::Tensor gotb = at::empty_like(xb);
  const auto bits = [](const at::Tensor& t) {
    return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
  };
  ziprerank::detail::gelu_tanh_bias(bits(xb), nullptr, bits(gotb), rows, cols);
  const at::Tensor wantb = reference(xb.to(at::kFloat)).to(at::kFloat).to(at::kBFloat16);
  const at::Tensor diff = (gotb.to(at::kFloat) - wantb.to(at::kFloat)).abs();
  // At most one bfloat16 step apart (a value within float rounding of a rounding boundary).
  EXPECT_TRUE((diff <= wantb.to(at::kFloat).abs() * (1.0 / 128) + 1e-30).all().item<bool>())
      << diff.max().item<double>();
  EXPECT_GT((diff == 0).to(at::kFloat).mean().item<double>(), 0.95);
  for (const float f : {0.0f, -0.0f, 1.0f, 3.14159f, -2.5e-3f, 1e30f, -1e-40f}) {
    EXPECT_EQ(ziprerank::detail::to_bf16_bits(f), at::BFloat16(f).x) << f;
    EXPECT_EQ(ziprerank::detail::from_bf16_bits(at::BFloat16(f).x),
              static_cast<float>(at::BFloat16(f)));
  }
}

TEST(Model, FusedSoftmaxMasksRowsAndZeroesRowsWithNothingToSee) {
  // [batch 2, heads 1, rows 3, cols 5]; batch 1 has every key padded out.
  at::manual_seed(2);
  at::Tensor x = at::randn({2, 1, 3, 5}) * 5;
  const at::Tensor orig = x.clone();
  at::Tensor bias = at::zeros({2, 5});
  bias[0][4] = -INFINITY;
  bias[1].fill_(-INFINITY);
  ziprerank::detail::SoftmaxRows s;
  s.batch = 2;
  s.rows = 3;
  s.cols = 5;
  s.key_bias = bias.data_ptr<float>();
  s.key_bias_stride = 5;
  s.causal_offset = 1;  // row r sees columns < r + 2
  ziprerank::detail::softmax_rows(x.data_ptr<float>(), s);
  for (int64_t r = 0; r < 3; ++r) {
    const int64_t seen = std::min<int64_t>(r + 2, 4);  // causal, and column 4 padded
    const at::Tensor want = at::softmax(orig[0][0][r].narrow(0, 0, seen), 0);
    EXPECT_TRUE(at::allclose(x[0][0][r].narrow(0, 0, seen), want, 1e-5, 1e-7)) << r;
    EXPECT_EQ(x[0][0][r].narrow(0, seen, 5 - seen).abs().sum().item<float>(), 0.0f) << r;
  }
  EXPECT_EQ(x[1].abs().sum().item<float>(), 0.0f) << "nothing to see: zeros, not NaN";
}

TEST(Model, FusedNormAndResidualKernelsMatchLibtorch) {
  at::manual_seed(4);
  const int64_t rows = 9, cols = 37;  // not a multiple of the kernels' 16 lanes
  const at::Tensor x = at::randn({rows, cols}) * 3 + 1, w = at::randn({cols}),
                   b = at::randn({cols});
  const auto bits = [](const at::Tensor& t) {
    return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
  };
  at::Tensor normed = at::empty({rows, cols}, at::kBFloat16);
  ziprerank::detail::layer_norm_to_bf16(x.data_ptr<float>(), w.data_ptr<float>(),
                                        b.data_ptr<float>(), 1e-6f, bits(normed), rows, cols);
  const at::Tensor want = at::layer_norm(x, {cols}, w, b, 1e-6);
  // Rounded once to bfloat16: within half a bfloat16 step (plus float noise) of libtorch's norm.
  EXPECT_TRUE(at::allclose(normed.to(at::kFloat), want, 1.0 / 256, 1e-5))
      << (normed.to(at::kFloat) - want).abs().max().item<double>();
  const at::Tensor y = at::randn({rows, cols}).to(at::kBFloat16);
  at::Tensor out = at::empty({rows, cols});
  ziprerank::detail::residual_add_bf16(x.data_ptr<float>(), bits(y), b.data_ptr<float>(),
                                       out.data_ptr<float>(), rows, cols);
  EXPECT_TRUE(at::allclose(out, x + y.to(at::kFloat) + b, 1e-6, 1e-6));
  ziprerank::detail::residual_add_bf16(x.data_ptr<float>(), bits(y), nullptr, out.data_ptr<float>(),
                                       rows, cols);
  EXPECT_TRUE(at::allclose(out, x + y.to(at::kFloat), 1e-6, 1e-6));
}

TEST(Model, LinearTakesBfloat16WeightsWithFloat32Inputs) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({37, 48}), w = at::randn({20, 48}) * 0.1, b = at::randn({20});
  const at::Tensor ref = at::linear(x, w, b);
  const at::Tensor wb = w.to(at::kBFloat16);
  for (const at::Tensor& in : {x, x.to(at::kBFloat16), x.t().contiguous().t()}) {
    const at::Tensor got = ziprerank::detail::linear_bf16(in, wb, b);
    ASSERT_EQ(got.scalar_type(), at::kFloat);
    EXPECT_LT((got - ref).abs().max().item<float>(), 0.02f * ref.abs().max().item<float>());
  }
  const at::Tensor nobias = ziprerank::detail::linear_bf16(x, wb, at::Tensor());
  ASSERT_EQ(nobias.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(nobias + b, ziprerank::detail::linear_bf16(x, wb, b), 1e-5, 1e-5));
  // bfloat16 input, no bias: still a float32 result.
  EXPECT_EQ(ziprerank::detail::linear_bf16(x.to(at::kBFloat16), wb, {}).scalar_type(), at::kFloat);
}

TEST(Model, CheckpointThatDisagreesWithConfigNamesTheTensors) {
  const fs::path dir = fs::temp_directory_path() / ("zr_mismatch_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(test::tiny_model_dir(), dir);
  auto cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  cfg["text_config"]["intermediate_size"] = 96;
  std::ofstream(dir / "config.json") << cfg.dump();
  try {
    Qwen3VLModel::load(dir.string(), ModelOptions{});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("mlp.gate_proj.weight' has shape [128, 64] but the config implies [96, 64]"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("problems"), std::string::npos) << msg;
  }
  fs::remove_all(dir);
}

TEST(Model, VisionTilePlanCutsEvenlyAndCoversEveryPatchOnce) {
  // 5 x 7 merged tokens in tiles of at most 3: rows 3 + 2, columns 3 + 2 + 2; then a 2 x 2 image.
  const VisionTiling plan = plan_vision_tiles({{1, 10, 14}, {1, 4, 4}}, 2, 3);
  std::vector<std::array<int64_t, 2>> sides;
  for (const ImageGrid& g : plan.grids) {
    EXPECT_EQ(g.t, 1);
    sides.push_back({g.h / 2, g.w / 2});
  }
  const std::vector<std::array<int64_t, 2>> want{{3, 3}, {3, 2}, {3, 2}, {2, 3},
                                                 {2, 2}, {2, 2}, {2, 2}};
  EXPECT_EQ(sides, want);
  const int64_t patches = 10 * 14 + 4 * 4, tokens = patches / 4;
  ASSERT_EQ(plan.patch_rows.numel(), patches);
  ASSERT_EQ(plan.token_order.numel(), tokens);
  EXPECT_TRUE(at::equal(std::get<0>(plan.patch_rows.sort()), at::arange(patches, at::kLong)));
  EXPECT_TRUE(at::equal(std::get<0>(plan.token_order.sort()), at::arange(tokens, at::kLong)));
  // Each merged token keeps its four patch rows together, in order.
  const at::Tensor blocks = plan.patch_rows.view({tokens, 4});
  EXPECT_TRUE(at::equal(blocks - blocks.select(1, 0).unsqueeze(1),
                        at::arange(4, at::kLong).expand({tokens, 4})));
  // The first tile holds tokens (0..2, 0..2) of the first image; the second image comes last.
  EXPECT_EQ(plan.token_order[0].item<int64_t>(), 0);
  EXPECT_EQ(plan.token_order[7].item<int64_t>(), 3);    // row 1, column 0
  EXPECT_EQ(plan.token_order[3].item<int64_t>(), 9);    // row 0, column 3: the second tile
  EXPECT_EQ(plan.token_order[35].item<int64_t>(), 35);  // the 2 x 2 image: one tile of its own
}

TEST(Model, TiledVisionEqualsEachTileReadAsItsOwnImage) {
  const std::string dir = test::tiny_model_dir();
  const PreprocessorConfig pre = open_model_folder(dir).preprocessor;
  ModelOptions whole_o, tiled_o;
  whole_o.vision_tile = 0;
  tiled_o.vision_tile = 96;  // 3 merged tokens of 32 pixels
  const auto whole = Qwen3VLModel::load(dir, whole_o);
  const auto tiled = Qwen3VLModel::load(dir, tiled_o);
  at::manual_seed(3);
  const at::Tensor chw = at::rand({3, 160, 224}) * 2 - 1;  // 5 x 7 merged tokens
  const ImageGrid grid{1, 10, 14};
  const at::Tensor px = patchify(chw, pre);
  const VisionFeatures t = tiled->encode_images(px, {grid});
  ASSERT_EQ(t.tokens_per_image, (std::vector<int64_t>{35}));
  ASSERT_EQ(t.deepstack.size(), 2u);
  const int64_t D = t.embeds.size(1);
  const std::vector<std::pair<int64_t, int64_t>> ys{{0, 3}, {3, 5}}, xs{{0, 3}, {3, 5}, {5, 7}};
  for (const auto& [y0, y1] : ys) {
    for (const auto& [x0, x1] : xs) {
      const at::Tensor crop =
          chw.slice(1, y0 * 32, y1 * 32).slice(2, x0 * 32, x1 * 32).contiguous();
      const VisionFeatures one =
          whole->encode_images(patchify(crop, pre), {{1, (y1 - y0) * 2, (x1 - x0) * 2}});
      auto part = [&](const at::Tensor& all) {
        return all.view({5, 7, D}).slice(0, y0, y1).slice(1, x0, x1).reshape({-1, D});
      };
      EXPECT_TRUE(at::allclose(part(t.embeds), one.embeds, 1e-5, 1e-6)) << y0 << "," << x0;
      for (size_t l = 0; l < one.deepstack.size(); ++l) {
        EXPECT_TRUE(at::allclose(part(t.deepstack[l]), one.deepstack[l], 1e-5, 1e-6));
      }
    }
  }
  // Tiles see less than the whole image; an image within one tile is read whole.
  EXPECT_FALSE(at::allclose(whole->encode_images(px, {grid}).embeds, t.embeds, 1e-4, 1e-5));
  const at::Tensor small = chw.slice(1, 0, 96).slice(2, 0, 64).contiguous();
  EXPECT_TRUE(at::equal(tiled->encode_images(patchify(small, pre), {{1, 6, 4}}).embeds,
                        whole->encode_images(patchify(small, pre), {{1, 6, 4}}).embeds));
}

TEST(Model, StillImagesGoThroughOneFrameOfThePatchKernel) {
  // A still image repeats its pixels in every temporal slot of a patch; the tower then multiplies
  // one copy by the kernel's summed temporal slices. Frames that differ (by far less than the
  // tolerance) take the full product: both give the same features.
  const std::string dir = test::tiny_model_dir();
  const PreprocessorConfig pre = open_model_folder(dir).preprocessor;
  const auto model = Qwen3VLModel::load(dir, ModelOptions{});
  at::manual_seed(5);
  const at::Tensor chw = at::rand({3, 64, 96}) * 2 - 1;
  const ImageGrid grid{1, 4, 6};
  const at::Tensor still = patchify(chw, pre);
  const int64_t T = pre.temporal_patch_size;
  ASSERT_GT(T, 1);
  at::Tensor moving = still.clone().view({still.size(0), 3, T, -1});
  moving.select(2, T - 1).add_(1e-6);
  moving = moving.view_as(still);
  const VisionFeatures a = model->encode_images(still, {grid});
  const VisionFeatures b = model->encode_images(moving, {grid});
  EXPECT_TRUE(at::allclose(a.embeds, b.embeds, 1e-4, 1e-5));
  ASSERT_EQ(a.deepstack.size(), b.deepstack.size());
  for (size_t l = 0; l < a.deepstack.size(); ++l)
    EXPECT_TRUE(at::allclose(a.deepstack[l], b.deepstack[l], 1e-4, 1e-5));
  // Frames that really differ give other features.
  at::Tensor other = still.clone().view({still.size(0), 3, T, -1});
  other.select(2, T - 1).mul_(-1);
  EXPECT_FALSE(at::allclose(model->encode_images(other.view_as(still), {grid}).embeds, a.embeds,
                            1e-3, 1e-4));
  // Without DeepStack: the same tokens, no levels.
  const VisionFeatures lean =
      model->encode_images(still, {grid}, std::nullopt, /*deepstack=*/false);
  EXPECT_TRUE(lean.deepstack.empty());
  EXPECT_TRUE(at::equal(lean.embeds, a.embeds));
}

TEST(Model, VisionTileComesFromTheModelFolderUnlessGiven) {
  const fs::path dir = fs::temp_directory_path() / ("zr_tile_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(test::tiny_model_dir(), dir, fs::copy_options::recursive);
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  cfg["ziprerank"]["vision_tile"] = 96;
  std::ofstream(dir / "config.json") << cfg.dump(2);
  EXPECT_EQ(open_model_folder(dir.string()).vision_tile, 96);
  EXPECT_EQ(Qwen3VLModel::load(dir.string(), ModelOptions{})->options().vision_tile, 96);
  ModelOptions whole;
  whole.vision_tile = 0;
  EXPECT_EQ(Qwen3VLModel::load(dir.string(), whole)->options().vision_tile, 0);
  ModelOptions odd;
  odd.vision_tile = 100;
  EXPECT_THROW(Qwen3VLModel::load(dir.string(), odd), InputError);
  cfg["ziprerank"]["vision_tile"] = 100;
  std::ofstream(dir / "config.json") << cfg.dump(2);
  try {
    open_model_folder(dir.string());
    ADD_FAILURE() << "a tile that is not a multiple of 32 pixels must be refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("ziprerank.vision_tile 100 must be"), std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(Model, RejectsPixelValuesThatDisagreeWithGrids) {
  auto m = load_tiny();
  EXPECT_THROW(m->encode_images(at::zeros({10, 1536}), {{1, 4, 6}}), InputError);
  EXPECT_THROW(m->encode_images(at::zeros({24, 1536}), {{1, 3, 8}}), InputError);
  EXPECT_THROW(m->embed(at::tensor(std::vector<int64_t>{1, 100000}, at::kLong)), InputError);
}

TEST(Model, RefusesWeightsLargerThanAvailableMemoryWithAFix) {
  const size_t available = available_memory_bytes();
  if (available == 0) GTEST_SKIP() << "MemAvailable unknown";
  const fs::path dir = fs::temp_directory_path() / ("zr_huge_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "preprocessor_config.json", "tokenizer.json"}) {
    fs::copy_file(fs::path(test::tiny_model_dir()) / f, dir / f);
  }
  // One float32 tensor twice the available memory, in a sparse file: nothing is really written.
  const uint64_t numel = available / 2;
  const std::string header = R"({"huge":{"dtype":"F32","shape":[)" + std::to_string(numel) +
                             R"(],"data_offsets":[0,)" + std::to_string(numel * 4) + "]}}";
  {
    std::ofstream out(dir / "model.safetensors", std::ios::binary);
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
    out << header;
  }
  fs::resize_file(dir / "model.safetensors", 8 + header.size() + numel * 4);
  try {
    Qwen3VLModel::load(dir.string(), ModelOptions{});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--dtype bfloat16"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Model, InitMatchHeadsShareOneSlowRotaryProjection) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("zr_match_" + std::to_string(::getpid()));
  InitOptions o;
  o.out_dir = dir.string();
  o.seed = 3;
  o.overwrite = true;
  o.match_heads = 1;
  ModelConfig c = tiny_model_config();
  init_model_folder(c, qwen3_vl_preprocessor_config(), o);
  auto m = Qwen3VLModel::load(dir.string(), ModelOptions{});
  at::Tensor q, k, q1;
  for (const auto& [name, t] : m->named_parameters()) {
    if (name == "model.language_model.layers.0.self_attn.q_proj.weight") q = t;
    if (name == "model.language_model.layers.0.self_attn.k_proj.weight") k = t;
    if (name == "model.language_model.layers.1.self_attn.q_proj.weight") q1 = t;
  }
  const int64_t hd = m->config().text.head_dim;
  ASSERT_TRUE(q.defined() && k.defined() && q1.defined());
  const at::Tensor qh = q.narrow(0, 0, hd), kh = k.narrow(0, 0, hd);
  EXPECT_TRUE(at::equal(qh, kh));
  // Only the last quarter of each rotary half is written; the rest of the head is zero.
  const at::Tensor row_norms = qh.abs().sum(1);
  for (int64_t i = 0; i < hd; ++i) {
    const bool slow = (i % (hd / 2)) >= hd / 2 - hd / 4;
    EXPECT_EQ(row_norms[i].item<double>() > 0, slow) << "row " << i;
  }
  // The <|image_pad|> embedding is invisible to the matching projection.
  at::Tensor embed;
  for (const auto& [name, t] : m->named_parameters()) {
    if (name == "model.language_model.embed_tokens.weight") embed = t;
  }
  const at::Tensor pad = embed.select(0, m->config().image_token_id);
  EXPECT_LT(at::mv(kh, pad).abs().max().item<double>(), 1e-6 * kh.abs().max().item<double>());
  // The other heads and layers keep their plain random initialisation.
  if (q.size(0) > hd) EXPECT_FALSE(at::equal(q.narrow(0, hd, hd), kh));
  EXPECT_GT(q1.abs().sum(1).min().item<double>(), 0);
  o.match_heads = c.text.num_attention_heads + 1;
  EXPECT_THROW(init_model_folder(c, qwen3_vl_preprocessor_config(), o), UsageError);
  fs::remove_all(dir);
}

TEST(Model, InitZeroDeepStackStartsTheMergersSilent) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("zr_zerods_" + std::to_string(::getpid()));
  InitOptions o;
  o.out_dir = dir.string();
  o.overwrite = true;
  o.zero_deepstack = true;
  ModelConfig c = tiny_model_config();
  ASSERT_FALSE(c.vision.deepstack_visual_indexes.empty());
  init_model_folder(c, qwen3_vl_preprocessor_config(), o);
  auto m = Qwen3VLModel::load(dir.string(), ModelOptions{});
  int zeroed = 0;
  for (const auto& [name, t] : m->named_parameters()) {
    const bool fc2 = name.find(".deepstack_merger_list.") != std::string::npos &&
                     name.find(".linear_fc2.") != std::string::npos;
    if (fc2) {
      EXPECT_EQ(t.abs().max().item<double>(), 0) << name;
      ++zeroed;
    } else if (name.find("merger.linear_fc2.weight") != std::string::npos) {
      EXPECT_GT(t.abs().max().item<double>(), 0) << name;  // the main merger is untouched
    }
  }
  EXPECT_EQ(zeroed, 2 * static_cast<int>(c.vision.deepstack_visual_indexes.size()));
  // A page's DeepStack features are then all zero.
  const at::Tensor pixels = at::randn({16, 3 * 2 * c.vision.patch_size * c.vision.patch_size});
  const VisionFeatures f = m->encode_images(pixels, {ImageGrid{1, 4, 4}});
  for (const at::Tensor& d : f.deepstack) EXPECT_EQ(d.abs().max().item<double>(), 0);
  EXPECT_GT(f.embeds.abs().max().item<double>(), 0);
  fs::remove_all(dir);
}

TEST(Model, Bfloat16ModelAttentionKeepsScoresInFloat32) {
  // A bfloat16 model's attention (float32_scores): large logits lose nothing to rounding before
  // the softmax, as in fused attention kernels. Against float64 from the same bfloat16 inputs,
  // the error is that of rounding the probabilities and the output once; rounding the scores
  // to bfloat16 first (the fast path) is far off at this scale.
  at::manual_seed(12);
  const auto bf = at::kBFloat16;
  const at::Tensor q = (at::randn({1, 2, 40, 16}) * 3).to(bf), k = at::randn({1, 2, 40, 16}).to(bf),
                   v = at::randn({1, 2, 40, 16}).to(bf);
  const double scale = 0.7;
  const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const at::Tensor want =
      at::matmul(at::softmax(at::matmul(qd, kd.transpose(2, 3)) * scale, -1), vd);
  for (bool causal : {false, true}) {
    const at::Tensor mask_q = at::arange(40).view({40, 1}), mask_k = at::arange(40).view({1, 40});
    const at::Tensor ref =
        causal ? at::matmul(at::softmax((at::matmul(qd, kd.transpose(2, 3)) * scale)
                                            .masked_fill(mask_k > mask_q, -INFINITY),
                                        -1),
                            vd)
               : want;
    const at::Tensor exact = ziprerank::detail::attention(q, k, v, scale, causal, {}, true);
    const at::Tensor fast = ziprerank::detail::attention(q, k, v, scale, causal, {}, false);
    ASSERT_EQ(exact.scalar_type(), bf);
    const double e_exact = (exact.to(at::kDouble) - ref).abs().max().item<double>();
    const double e_fast = (fast.to(at::kDouble) - ref).abs().max().item<double>();
    EXPECT_LT(e_exact, 0.03) << (causal ? "causal" : "");
    EXPECT_LT(e_exact, e_fast) << (causal ? "causal" : "");
  }
}

TEST(Model, TanhGeluOfABfloat16TensorRoundsOnce) {
  // bfloat16 activations are computed in float32 and rounded once (as the reference's fused op),
  // not in the six separately rounded steps of the formula the float32 path computes in place.
  at::manual_seed(13);
  const at::Tensor x = (at::randn({4096}) * 3).to(at::kBFloat16);
  const at::Tensor got = ziprerank::detail::activation(x, "gelu_pytorch_tanh");
  ASSERT_EQ(got.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(got, at::gelu(x.to(at::kFloat), "tanh").to(at::kBFloat16)));
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor exact =
      0.5 * xd * (1 + at::tanh(0.7978845608028654 * (xd + 0.044715 * xd.pow(3))));
  constexpr double c = 1.5957691216057308;
  at::Tensor steps = x * x;  // the formula, each step rounded to bfloat16
  steps.mul_(0.044715 * c).add_(c).mul_(x).sigmoid_().mul_(x);
  const double e_got = (got.to(at::kDouble) - exact).abs().max().item<double>();
  const double e_steps = (steps.to(at::kDouble) - exact).abs().max().item<double>();
  EXPECT_LT(e_got, e_steps);
}
