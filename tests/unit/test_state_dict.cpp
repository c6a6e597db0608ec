#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ziprerank/errors.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/state_dict.hpp"

using namespace ziprerank;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("zr_sd_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void write_tensors(const fs::path& file, const std::vector<std::pair<std::string, at::Tensor>>& ts,
                   DType dtype = DType::kF32) {
  SafetensorsWriter w;
  std::vector<at::Tensor> keep;
  for (const auto& [name, t0] : ts) {
    at::Tensor t = t0.to(to_scalar_type(dtype)).contiguous();
    keep.push_back(t);
    w.add_borrowed(name, dtype, t.sizes().vec(), t.data_ptr(), t.numel() * t.element_size());
  }
  w.write(file.string());
}
}  // namespace

TEST(StateDict, PrefixSelectionShapesAndUsage) {
  TempDir dir;
  write_tensors(dir.path / "model.safetensors",
                {{"model.visual.a.weight", at::arange(6, at::kFloat).reshape({2, 3})},
                 {"model.visual.a.bias", at::ones({2})},
                 {"lm_head.weight", at::zeros({4, 2})}});
  auto store = WeightStore::open(dir.path.string());
  StateDict root(store, LoadOptions{});
  StateDict visual = root.select("model.visual.").select("a.");
  EXPECT_EQ(visual.prefix(), "model.visual.a.");
  at::Tensor w = visual.get("weight", {2, 3});
  ASSERT_TRUE(w.defined());
  EXPECT_TRUE(at::equal(w, at::arange(6, at::kFloat).reshape({2, 3})));
  EXPECT_TRUE(visual.get_optional("bias", {2}).defined());
  EXPECT_FALSE(visual.get_optional("missing_optional", {2}).defined());
  root.finish("model");  // no problems so far
  EXPECT_EQ(root.unused(), (std::vector<std::string>{"lm_head.weight"}));
}

TEST(StateDict, CollectsAllProblemsThenReportsThem) {
  TempDir dir;
  write_tensors(dir.path / "model.safetensors", {{"x.weight", at::zeros({3, 3})}});
  StateDict sd(WeightStore::open(dir.path.string()), LoadOptions{});
  EXPECT_FALSE(sd.get("x.weight", {3, 4}).defined());
  EXPECT_FALSE(sd.get("y.weight", {5}).defined());
  try {
    sd.finish("my-model");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("my-model"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2 problems"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'x.weight' has shape [3, 3] but the config implies [3, 4]"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("missing tensor 'y.weight' [5]"), std::string::npos) << msg;
  }
}

TEST(StateDict, ConvertsPerTensorAndViewsAreZeroCopy) {
  TempDir dir;
  const at::Tensor ref = at::randn({8, 4});
  write_tensors(dir.path / "model.safetensors", {{"w", ref}}, DType::kBF16);
  auto store = WeightStore::open(dir.path.string());
  at::Tensor view = store->view("w");
  EXPECT_EQ(view.scalar_type(), at::kBFloat16);
  const uint8_t* mapped = store->file_of("w").data(store->info("w"));
  EXPECT_EQ(view.data_ptr(), static_cast<const void*>(mapped))
      << "bf16 view should alias the mapping";
  at::Tensor f = store->load("w", at::kFloat, at::kCPU, false);
  EXPECT_EQ(f.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(f, ref, 1e-2, 1e-2));

  write_tensors(dir.path / "model.safetensors", {{"w", ref}}, DType::kF32);
  auto store32 = WeightStore::open(dir.path.string());
  at::Tensor same = store32->load("w", at::kFloat, at::kCPU, false);
  EXPECT_EQ(same.data_ptr(),
            static_cast<const void*>(store32->file_of("w").data(store32->info("w"))));
  at::Tensor own = store32->load("w", at::kFloat, at::kCPU, true);
  EXPECT_NE(own.data_ptr(), same.data_ptr())
      << "writable loads must not alias the read-only mapping";
  EXPECT_TRUE(at::equal(own, ref));
}

TEST(StateDict, ShardedCheckpointWithIndex) {
  TempDir dir;
  write_tensors(dir.path / "model-00001-of-00002.safetensors", {{"a", at::ones({2})}});
  write_tensors(dir.path / "model-00002-of-00002.safetensors", {{"b", at::zeros({3})}});
  std::ofstream(dir.path / "model.safetensors.index.json")
      << R"({"metadata": {"total_size": 20}, "weight_map": {"a": "model-00001-of-00002.safetensors",)"
      << R"( "b": "model-00002-of-00002.safetensors"}})";
  auto store = WeightStore::open(dir.path.string());
  EXPECT_EQ(store->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(store->files().size(), 2u);
  EXPECT_TRUE(at::equal(store->load("b", at::kFloat, at::kCPU, false), at::zeros({3})));
}

TEST(StateDict, ShardIndexErrorsNameTheProblem) {
  TempDir dir;
  write_tensors(dir.path / "s1.safetensors", {{"a", at::ones({2})}});
  auto expect_msg = [&](const std::string& index, const std::string& needle) {
    std::ofstream(dir.path / "model.safetensors.index.json") << index;
    try {
      WeightStore::open(dir.path.string());
      FAIL() << "expected an error containing " << needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_msg(R"({"weight_map": {"a": "s2.safetensors"}})",
             "shard 's2.safetensors', which is missing");
  expect_msg(R"({"weight_map": {"a": "s1.safetensors", "z": "s1.safetensors"}})",
             "'z' should be in shard");
  expect_msg(R"({"weight_map": {"a": "../s1.safetensors"}})", "plain file name");
  expect_msg(R"({"weights": {}})", "weight_map");
  expect_msg(R"({"weight_map": )", "invalid JSON");
}

TEST(StateDict, FolderWithoutWeightsSaysWhatToDo) {
  TempDir dir;
  try {
    WeightStore::open(dir.path.string());
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no model.safetensors"), std::string::npos) << e.what();
  }
}

TEST(StateDict, RecorderListsTheLookupsInOrder) {
  StateDict rec = StateDict::recorder();
  StateDict block = rec.select("blocks.0.");
  EXPECT_FALSE(rec.get("a.weight", {4, 2}).defined());
  EXPECT_FALSE(block.get("norm.bias", {4}).defined());
  EXPECT_FALSE(block.get_optional("extra", {1}).defined());
  EXPECT_FALSE(block.contains("norm.bias"));
  using Lookup = std::pair<std::string, std::vector<int64_t>>;
  const std::vector<Lookup> want = {
      {"a.weight", {4, 2}}, {"blocks.0.norm.bias", {4}}, {"blocks.0.extra", {1}}};
  EXPECT_EQ(rec.requested(), want);
  EXPECT_EQ(block.requested(), want);  // one record shared by every view
  EXPECT_TRUE(rec.unused().empty());
  EXPECT_NO_THROW(rec.finish("recorder"));
}
