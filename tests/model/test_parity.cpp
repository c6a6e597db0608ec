// ziprerank's engine against Hugging Face transformers on the same tiny random Qwen3-VL
// (fixture made by scripts/make_parity_fixture.py; see tests/fixtures/parity/README.md).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ziprerank/image.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/state_dict.hpp"

using namespace ziprerank;
namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(ZIPRERANK_TEST_FIXTURES) / "parity";

class Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kDir / "parity_tensors.safetensors")) {
      GTEST_SKIP()
          << "no parity fixture yet: run scripts/make_parity_fixture.py tests/fixtures/parity on a "
             "machine with transformers >= 4.57 and commit the result";
    }
    meta_ = nlohmann::json::parse(std::ifstream(kDir / "parity.json"));
    ref_ = WeightStore::open_files({(kDir / "parity_tensors.safetensors").string()});
    model_ = Qwen3VLModel::load(kDir.string(), ModelOptions{});
    for (const auto& g : meta_["grid_thw"])
      grids_.push_back({g[0].get<int64_t>(), g[1].get<int64_t>(), g[2].get<int64_t>()});
    ids_ = meta_["input_ids"].get<std::vector<int64_t>>();
  }
  at::Tensor ref(const std::string& name) const {
    return ref_->load(name, at::kFloat, at::kCPU, true);
  }

  static void expect_close(const at::Tensor& got, const at::Tensor& want, double atol, double rtol,
                           const std::string& what) {
    ASSERT_EQ(got.sizes(), want.sizes()) << what;
    const double err = (got - want).abs().max().item<double>();
    const double scale = want.abs().max().item<double>();
    EXPECT_TRUE(at::allclose(got, want, rtol, atol))
        << what << ": max |diff| " << err << " (max |ref| " << scale << ")";
  }

  nlohmann::json meta_;
  std::shared_ptr<const WeightStore> ref_;
  std::unique_ptr<Qwen3VLModel> model_;
  std::vector<ImageGrid> grids_;
  std::vector<int64_t> ids_;
};

}  // namespace

TEST_F(Parity, ImageProcessorPixelValues) {
  const ModelFolder folder = open_model_folder(kDir.string());
  std::vector<at::Tensor> px;
  for (size_t i = 0; i < grids_.size(); ++i) {
    const Image img = load_image((kDir / ("image" + std::to_string(i) + ".png")).string());
    const PreprocessedImage p =
        preprocess_image(img, folder.preprocessor, /*page_preresize=*/false);
    EXPECT_EQ(p.grid_thw[1], grids_[i].h);
    EXPECT_EQ(p.grid_thw[2], grids_[i].w);
    px.push_back(p.pixel_values);
  }
  // Exact for the same resize arithmetic; one uint8 level (2/255 after normalisation) otherwise.
  expect_close(at::cat(px), ref("pixel_values"), 2.0 / 255 + 1e-6, 0, "pixel_values");
}

TEST_F(Parity, VisionTowerAndDeepStack) {
  const VisionFeatures vf = model_->encode_images(ref("pixel_values"), grids_);
  expect_close(vf.embeds, ref("image_embeds"), 1e-4, 1e-4, "merged visual tokens");
  for (size_t i = 0; i < vf.deepstack.size(); ++i) {
    expect_close(vf.deepstack[i], ref("deepstack." + std::to_string(i)), 1e-4, 1e-4,
                 "deepstack " + std::to_string(i));
  }
}

TEST_F(Parity, MropePositionIds) {
  const at::Tensor pos = mrope_position_ids(ids_, grids_, model_->config());
  EXPECT_TRUE(at::equal(pos.to(at::kFloat), ref("position_ids")));
}

TEST_F(Parity, FinalLogitsAndIdentifierScores) {
  const VisionFeatures vf = model_->encode_images(ref("pixel_values"), grids_);
  const AssembledSequence seq = assemble_sequence(*model_, ids_, grids_, vf, 1.0);
  const at::Tensor logits = model_->logits(model_->forward(seq.input)).squeeze(0);
  const at::Tensor want = ref("logits");
  expect_close(logits, want, 1e-3, 1e-3, "logits at every position");
  // Single-pass scores: the identifier letters' logits at the last ("[") position.
  const at::Tensor letters = at::tensor(meta_["letter_ids"].get<std::vector<int64_t>>(), at::kLong);
  const at::Tensor last = model_->forward(seq.input).select(1, -1);
  expect_close(model_->logits(last, letters).squeeze(0), want[-1].index_select(0, letters), 1e-3,
               1e-3, "identifier scores");
}
