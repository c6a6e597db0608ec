#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "model/text_model.hpp"
#include "model/vision_tower.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/runtime.hpp"

namespace ziprerank {

void KVCache::truncate(int64_t n) {
  for (auto* list : {&keys, &values}) {
    for (auto& t : *list) {
      if (t.defined() && t.size(2) > n) t = t.narrow(2, 0, n);
    }
  }
}

Qwen3VLModel::Qwen3VLModel(const ModelConfig& config, StateDict& weights,
                           const ModelOptions& options)
    : config_(config), options_(options) {
  vision_ = std::make_unique<VisionTower>(config.vision, weights.select("model.visual."), params_);
  text_ = std::make_unique<TextModel>(config, weights.select("model.language_model."), params_);
  if (config.tie_word_embeddings) {
    lm_head_ = text_->embed_weight();
  } else {
    lm_head_ = detail::take(weights, "lm_head.weight",
                            {config.text.vocab_size, config.text.hidden_size}, params_);
  }
}

Qwen3VLModel::~Qwen3VLModel() = default;

std::unique_ptr<Qwen3VLModel> Qwen3VLModel::load(const std::string& model_dir,
                                                 const ModelOptions& options) {
  const ModelFolder folder = open_model_folder(model_dir);
  auto store = WeightStore::open(model_dir);
  if (options.device.is_cpu()) {
    // Refuse early, with the fix, rather than let the kernel kill the process half-way.
    uint64_t needed = 0;
    for (const auto& name : store->names())
      needed += store->info(name).numel() * c10::elementSize(options.dtype);
    const size_t available = available_memory_bytes();
    if (available > 0 && needed > available) {
      throw InputError(
          model_dir + ": the weights need " + format_bytes(static_cast<double>(needed)) + " as " +
          c10::toString(options.dtype) + " but only " +
          format_bytes(static_cast<double>(available)) +
          " of memory is available; use --dtype bfloat16, --device cuda, or a smaller model");
    }
  }
  LoadOptions lo;
  lo.dtype = options.dtype;
  lo.device = options.device;
  lo.writable = options.trainable;
  StateDict sd(store, lo);
  auto model = std::make_unique<Qwen3VLModel>(folder.config, sd, options);
  sd.finish(model_dir);
  const auto unused = sd.unused();
  if (!unused.empty()) {
    spdlog::warn("{}: {} tensor(s) in the checkpoint are not used by the model, e.g. '{}'",
                 model_dir, unused.size(), unused.front());
  }
  if (options.trainable) {
    for (auto& [name, t] : model->params_) t.set_requires_grad(true);
  }
  return model;
}

VisionFeatures Qwen3VLModel::encode_images(const at::Tensor& pixel_values,
                                           const std::vector<ImageGrid>& grids) const {
  return vision_->forward(pixel_values, grids);
}

at::Tensor Qwen3VLModel::embed(const at::Tensor& token_ids) const {
  const int64_t V = config_.text.vocab_size;
  if (token_ids.numel() > 0) {
    const int64_t lo = token_ids.min().item<int64_t>(), hi = token_ids.max().item<int64_t>();
    if (lo < 0 || hi >= V) {
      throw InputError("token id " + std::to_string(lo < 0 ? lo : hi) +
                       " is outside the model's vocabulary of " + std::to_string(V) +
                       " (tokenizer and model do not match?)");
    }
  }
  return text_->embed(token_ids.to(lm_head_.device()));
}

at::Tensor Qwen3VLModel::forward(const TextInput& input, KVCache* cache) const {
  return text_->forward(input, cache);
}

at::Tensor Qwen3VLModel::logits(const at::Tensor& hidden, const at::Tensor& vocab_ids) const {
  if (!vocab_ids.defined()) return at::linear(hidden, lm_head_);
  // Only the rows asked for: for listwise scoring that is a handful of identifier letters.
  return at::linear(hidden, lm_head_.index_select(0, vocab_ids.to(lm_head_.device())));
}

at::Tensor mrope_position_ids(const std::vector<int64_t>& ids, const std::vector<ImageGrid>& grids,
                              const ModelConfig& config, int64_t* next_position) {
  const int64_t S = static_cast<int64_t>(ids.size());
  const int64_t m = config.vision.spatial_merge_size;
  at::Tensor pos = at::empty({3, S}, at::TensorOptions().dtype(at::kLong));
  auto p = pos.accessor<int64_t, 2>();
  int64_t next = 0;  // position the next text token gets
  size_t image = 0;
  int64_t i = 0;
  while (i < S) {
    if (ids[i] != config.image_token_id && ids[i] != config.video_token_id) {
      for (int r = 0; r < 3; ++r) p[r][i] = next;
      ++next;
      ++i;
      continue;
    }
    if (image >= grids.size()) {
      throw InputError("the token sequence has more image placeholders than images (" +
                       std::to_string(grids.size()) + ")");
    }
    const ImageGrid& g = grids[image++];
    const int64_t gh = g.h / m, gw = g.w / m, n = g.t * gh * gw;
    if (i + n > S) throw InputError("an image's placeholder run is shorter than its grid implies");
    const int64_t base = next;
    int64_t max_pos = base;
    for (int64_t tt = 0; tt < g.t; ++tt) {
      for (int64_t y = 0; y < gh; ++y) {
        for (int64_t x = 0; x < gw; ++x, ++i) {
          if (ids[i] != config.image_token_id && ids[i] != config.video_token_id) {
            throw InputError("an image's placeholder run is shorter than its grid implies");
          }
          p[0][i] = base + tt;
          p[1][i] = base + y;
          p[2][i] = base + x;
          max_pos = std::max({max_pos, base + tt, base + y, base + x});
        }
      }
    }
    next = max_pos + 1;
  }
  if (image != grids.size()) {
    throw InputError("the token sequence holds " + std::to_string(image) + " images but " +
                     std::to_string(grids.size()) + " were encoded");
  }
  if (next_position) *next_position = next;
  return pos;
}

}  // namespace ziprerank
