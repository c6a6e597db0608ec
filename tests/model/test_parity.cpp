// ziprerank's engine against Hugging Face transformers on tiny random Qwen3-VL models (fixture made
// by scripts/make_parity_fixture.py; see tests/fixtures/parity/README.md): image preprocessing,
// vision tower and DeepStack features, M-RoPE positions, prompt token ids, hidden states and the
// identifier logits after the trailing "[", all in float32 against transformers' eager attention.
//
// Tolerances: pixel levels and positions exactly; every float stage within 1e-4 of the reference
// stage's scale (max |reference|). Each comparison prints its measured figures ("[parity] ...").
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ziprerank/image.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/tokenizer.hpp"

using namespace ziprerank;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(ZIPRERANK_TEST_FIXTURES) / "parity";

// Largest max |diff| accepted, as a fraction of the reference stage's max |value|.
constexpr double kRelativeTolerance = 1e-4;

std::vector<ImageGrid> to_grids(const nlohmann::json& list) {
  std::vector<ImageGrid> grids;
  for (const auto& g : list)
    grids.push_back({g[0].get<int64_t>(), g[1].get<int64_t>(), g[2].get<int64_t>()});
  return grids;
}

class Parity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kDir / "parity_tensors.safetensors")) return;
    meta_ = new nlohmann::json(nlohmann::json::parse(std::ifstream(kDir / "parity.json")));
    ref_ = new std::shared_ptr<const WeightStore>(
        WeightStore::open_files({(kDir / "parity_tensors.safetensors").string()}));
  }
  static void TearDownTestSuite() {
    delete meta_;
    delete ref_;
    meta_ = nullptr;
    ref_ = nullptr;
  }
  void SetUp() override {
    if (meta_ == nullptr) {
      GTEST_SKIP() << "no parity fixture: run scripts/make_parity_fixture.py "
                      "tests/fixtures/parity in the environment scripts/reference_env.sh makes";
    }
  }

  static const nlohmann::json& meta() { return *meta_; }
  static at::Tensor ref(const std::string& name) {
    return (*ref_)->load(name, at::kFloat, at::kCPU, /*writable=*/true);
  }
  static std::string model_dir(const std::string& model) {
    return (kDir / meta()["models"][model]["dir"].get<std::string>()).string();
  }

  // pixel_values rows of one image as transformers' processor made them: the stored uint8 levels
  // of the first temporal frame, repeated over the frames, normalised as (level - 127.5) / 127.5
  // (mean = std = 0.5 fused with the 1/255 rescale; the fixture script checks it is exact).
  static at::Tensor ref_pixel_values(const std::string& model, const std::string& image,
                                     const PreprocessorConfig& pp) {
    const at::Tensor levels = ref(model + ".levels." + image);  // [rows, 3, P, P]
    const int64_t rows = levels.size(0), p = pp.patch_size, t = pp.temporal_patch_size;
    const at::Tensor frames =
        levels.unsqueeze(2).expand({rows, 3, t, p, p}).reshape({rows, 3 * t * p * p});
    return (frames - 127.5) / 127.5;
  }

  // Compares one stage; prints max |diff|, the scale (max |reference| unless given) and their
  // ratio, which must not pass kRelativeTolerance.
  static void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what,
                           double scale = 0) {
    ASSERT_EQ(got.sizes(), want.sizes()) << what;
    const double err = (got.to(at::kFloat) - want).abs().max().item<double>();
    if (scale == 0) scale = want.abs().max().item<double>();
    std::printf("[parity] %-40s max|diff| %.3g  scale %.3g  relative %.3g\n", what.c_str(), err,
                scale, err / scale);
    EXPECT_LE(err, kRelativeTolerance * scale)
        << what << ": max |diff| " << err << " over the scale " << scale << " is " << err / scale
        << " (allowed " << kRelativeTolerance << ")";
  }

  static nlohmann::json* meta_;
  static std::shared_ptr<const WeightStore>* ref_;
};

nlohmann::json* Parity::meta_ = nullptr;
std::shared_ptr<const WeightStore>* Parity::ref_ = nullptr;

}  // namespace

// smart_resize, the antialiased bicubic resize and the normalisation, image by image, under each
// model's preprocessor_config.json (patch 16 and patch 8).
TEST_F(Parity, ImageProcessorPixelValues) {
  for (const auto& [model, m] : meta()["models"].items()) {
    const ModelFolder folder = open_model_folder(model_dir(model));
    const PreprocessorConfig& pp = folder.preprocessor;
    for (const auto& entry : m["processor_images"]) {
      const std::string name = entry["name"];
      SCOPED_TRACE(model + " / " + name);
      const Image img = load_image((kDir / "images" / (name + ".png")).string());
      const PreprocessedImage got = preprocess_image(img, pp, /*page_preresize=*/false);
      const auto want_grid = entry["grid_thw"].get<std::vector<int64_t>>();
      ASSERT_EQ(std::vector<int64_t>(got.grid_thw.begin(), got.grid_thw.end()), want_grid);
      const ResizedSize size = smart_resize(img.height, img.width, pp.patch_size * pp.merge_size,
                                            pp.min_pixels, pp.max_pixels);
      EXPECT_EQ(size.height, want_grid[1] * pp.patch_size);
      EXPECT_EQ(size.width, want_grid[2] * pp.patch_size);
      EXPECT_EQ(got.num_tokens(), entry["tokens"].get<int64_t>());

      // The resized 8-bit pixels, exactly; then the float rows they normalise to.
      const at::Tensor want = ref_pixel_values(model, name, pp);
      const at::Tensor got_levels = at::round(got.pixel_values * 127.5 + 127.5);
      const at::Tensor want_levels = at::round(want * 127.5 + 127.5);
      const int64_t level_diff = (got_levels - want_levels).abs().max().item<float>();
      const double value_diff = (got.pixel_values - want).abs().max().item<double>();
      std::printf("[parity] %-40s max|level diff| %lld of 255, max|diff| %.3g (%lld rows)\n",
                  (model + " pixels " + name).c_str(), static_cast<long long>(level_diff),
                  value_diff, static_cast<long long>(want.size(0)));
      EXPECT_EQ(level_diff, 0) << "resized pixels differ";
      EXPECT_LE(value_diff, 1e-6) << "pixel_values differ beyond float32 rounding";
    }
  }
}

// All images through the vision tower at once: merged tokens and every DeepStack level.
TEST_F(Parity, VisionTowerAndDeepStack) {
  for (const auto& [model, m] : meta()["models"].items()) {
    SCOPED_TRACE(model);
    const ModelFolder folder = open_model_folder(model_dir(model));
    const auto net = Qwen3VLModel::load(model_dir(model), ModelOptions{});
    std::vector<at::Tensor> px;
    std::vector<ImageGrid> grids;
    for (const auto& entry : m["processor_images"]) {
      px.push_back(ref_pixel_values(model, entry["name"].get<std::string>(), folder.preprocessor));
      grids.push_back(to_grids(nlohmann::json::array({entry["grid_thw"]}))[0]);
    }
    const VisionFeatures vf = net->encode_images(at::cat(px), grids);
    expect_close(vf.embeds, ref(model + ".vision.embeds"), model + " vision tokens");
    const size_t levels = net->config().vision.deepstack_visual_indexes.size();
    ASSERT_EQ(vf.deepstack.size(), levels);
    for (size_t k = 0; k < levels; ++k) {
      const std::string name = model + ".vision.deepstack." + std::to_string(k);
      expect_close(vf.deepstack[k], ref(name), model + " deepstack " + std::to_string(k));
    }
  }
}

TEST_F(Parity, MropePositionIds) {
  for (const auto& [model, m] : meta()["models"].items()) {
    const ModelConfig config = open_model_folder(model_dir(model)).config;
    for (const auto& c : m["cases"]) {
      const std::string name = c["name"];
      SCOPED_TRACE(model + " / " + name);
      const at::Tensor pos = mrope_position_ids(c["input_ids"].get<std::vector<int64_t>>(),
                                                to_grids(c["grid_thw"]), config);
      const at::Tensor want = ref(model + "." + name + ".position_ids");
      ASSERT_EQ(pos.sizes(), want.sizes());
      const int64_t mismatches = pos.to(at::kFloat).ne(want).sum().item<int64_t>();
      std::printf("[parity] %-40s %lld of %lld positions differ\n",
                  (model + " " + name + " positions").c_str(), static_cast<long long>(mismatches),
                  static_cast<long long>(want.numel()));
      EXPECT_EQ(mismatches, 0);
    }
  }
}

// ziprerank's own prompt builder and byte-level tokenizer give transformers' token ids.
TEST_F(Parity, RankingPromptIds) {
  for (const auto& [model, m] : meta()["models"].items()) {
    const ModelFolder folder = open_model_folder(model_dir(model));
    const auto tokenizer = load_tokenizer(model_dir(model));
    for (const auto& c : m["cases"]) {
      SCOPED_TRACE(model + " / " + c["name"].get<std::string>());
      std::vector<int64_t> tokens;
      for (const ImageGrid& g : to_grids(c["grid_thw"]))
        tokens.push_back(g.num_tokens(folder.preprocessor.merge_size));
      const PromptTokens p = build_ranking_prompt(*tokenizer, folder.config,
                                                  meta()["query"].get<std::string>(), tokens);
      EXPECT_EQ(p.ids, c["input_ids"].get<std::vector<int64_t>>());
      EXPECT_EQ(p.identifier_ids, c["identifier_ids"].get<std::vector<int64_t>>());
    }
  }
}

// The whole forward pass per prompt (1, 3 and 5 candidates): final-normed hidden states at every
// position, the full logits row at the trailing "[" and the identifier scores read from it.
TEST_F(Parity, HiddenStatesAndIdentifierLogits) {
  for (const auto& [model, m] : meta()["models"].items()) {
    const ModelFolder folder = open_model_folder(model_dir(model));
    const auto net = Qwen3VLModel::load(model_dir(model), ModelOptions{});
    for (const auto& c : m["cases"]) {
      const std::string name = c["name"];
      SCOPED_TRACE(model + " / " + name);
      std::vector<at::Tensor> px;
      for (const auto& image : c["images"])
        px.push_back(ref_pixel_values(model, image.get<std::string>(), folder.preprocessor));
      const std::vector<ImageGrid> grids = to_grids(c["grid_thw"]);
      const std::vector<int64_t> ids = c["input_ids"].get<std::vector<int64_t>>();
      const VisionFeatures vf = net->encode_images(at::cat(px), grids);
      const AssembledSequence seq = assemble_sequence(*net, ids, grids, vf, 1.0);
      const at::Tensor hidden = net->forward(seq.input).squeeze(0);
      expect_close(hidden, ref(model + "." + name + ".hidden"), model + " " + name + " hidden");

      const at::Tensor want_logits = ref(model + "." + name + ".logits_last");
      const at::Tensor last = hidden.select(0, -1);
      expect_close(net->logits(last), want_logits, model + " " + name + " logits at [");
      const at::Tensor letters =
          at::tensor(c["identifier_ids"].get<std::vector<int64_t>>(), at::kLong);
      const at::Tensor scores = net->logits(last, letters);
      const at::Tensor want_scores = want_logits.index_select(0, letters);
      // On the scale of the logits row: a few letters' logits may all lie near zero.
      expect_close(scores, want_scores, model + " " + name + " identifier scores",
                   want_logits.abs().max().item<double>());
      if (letters.numel() > 1) {
        EXPECT_TRUE(
            at::equal(std::get<1>(scores.sort(0, true)), std::get<1>(want_scores.sort(0, true))))
            << "ranking differs: " << scores << " vs " << want_scores;
      }
    }
  }
}
