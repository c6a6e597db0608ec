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
  if (!options_.vision_tile) options_.vision_tile = 0;
  check_vision_tile(*options_.vision_tile, config.vision, "vision tile");
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
  const bool bf16_products =
      options.bf16_products && options.dtype == at::kFloat && options.device.is_cpu();
  if (options.device.is_cpu()) {
    // Refuse early, with the fix, rather than let the kernel kill the process half-way. With
    // bf16 products the linear layers' matrices (2-D tensors other than embeddings) are held in
    // bfloat16.
    uint64_t needed = 0;
    for (const auto& name : store->names()) {
      const auto info = store->info(name);
      const bool matrix = info.shape.size() == 2 && name.find("embed") == std::string::npos &&
                          name.find("lm_head") == std::string::npos;
      const bool halved = bf16_products && !options.trainable && matrix;
      needed += info.numel() * (halved ? 2 : c10::elementSize(options.dtype));
    }
    const size_t available = available_memory_bytes();
    if (available > 0 && needed > available) {
      throw InputError(
          model_dir + ": the weights need " + format_bytes(static_cast<double>(needed)) + " as " +
          c10::toString(options.dtype) +
          (bf16_products && !options.trainable ? " (matrices in bfloat16)" : "") + " but only " +
          format_bytes(static_cast<double>(available)) +
          " of memory is available; use --dtype bfloat16, --device cuda, or a smaller model");
    }
  }
  LoadOptions lo;
  lo.dtype = options.dtype;
  lo.device = options.device;
  lo.writable = options.trainable;
  lo.bf16_products = bf16_products;
  StateDict sd(store, lo);
  ModelOptions resolved = options;
  if (!resolved.vision_tile) resolved.vision_tile = folder.vision_tile;
  resolved.bf16_products = bf16_products;  // what applies here
  auto model = std::make_unique<Qwen3VLModel>(folder.config, sd, resolved);
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

void check_vision_tile(int tile, const VisionConfig& vision, const std::string& what) {
  const int unit = vision.patch_size * vision.spatial_merge_size;
  if (tile < 0 || (tile > 0 && tile % unit != 0)) {
    throw InputError(what + " " + std::to_string(tile) + " must be 0 (whole images) or a " +
                     "positive multiple of " + std::to_string(unit) + " pixels (patch " +
                     std::to_string(vision.patch_size) + " x merge " +
                     std::to_string(vision.spatial_merge_size) + ")");
  }
}

VisionTiling plan_vision_tiles(const std::vector<ImageGrid>& grids, int64_t merge,
                               int64_t tile_tokens) {
  if (merge < 1 || tile_tokens < 1) throw InternalError("plan_vision_tiles: bad merge or tile");
  // Even cuts of n tokens into ceil(n / tile_tokens) pieces: [start, end) of each.
  auto cuts = [&](int64_t n) {
    const int64_t pieces = (n + tile_tokens - 1) / tile_tokens;
    std::vector<std::pair<int64_t, int64_t>> out;
    int64_t start = 0;
    for (int64_t i = 0; i < pieces; ++i) {
      const int64_t len = n / pieces + (i < n % pieces ? 1 : 0);
      out.emplace_back(start, start + len);
      start += len;
    }
    return out;
  };
  const int64_t block = merge * merge;  // patch rows of one merged token
  VisionTiling plan;
  std::vector<int64_t> rows, order;
  int64_t image_token0 = 0, tile_row = 0;
  for (const ImageGrid& g : grids) {
    const int64_t gh = g.h / merge, gw = g.w / merge;
    order.resize(static_cast<size_t>(image_token0 + g.t * gh * gw));
    for (int64_t t = 0; t < g.t; ++t) {
      for (const auto& [y0, y1] : cuts(gh)) {
        for (const auto& [x0, x1] : cuts(gw)) {
          plan.grids.push_back(ImageGrid{1, (y1 - y0) * merge, (x1 - x0) * merge});
          for (int64_t y = y0; y < y1; ++y) {
            for (int64_t x = x0; x < x1; ++x) {
              const int64_t token = image_token0 + (t * gh + y) * gw + x;
              for (int64_t r = 0; r < block; ++r) rows.push_back(token * block + r);
              order[static_cast<size_t>(token)] = tile_row++;
            }
          }
        }
      }
    }
    image_token0 += g.t * gh * gw;
  }
  plan.patch_rows = at::tensor(rows, at::kLong);
  plan.token_order = at::tensor(order, at::kLong);
  return plan;
}

VisionFeatures concat_vision_features(const std::vector<const VisionFeatures*>& pages) {
  VisionFeatures out;
  std::vector<at::Tensor> embeds;
  std::vector<std::vector<at::Tensor>> levels;
  for (const VisionFeatures* f : pages) {
    embeds.push_back(f->embeds);
    out.tokens_per_image.insert(out.tokens_per_image.end(), f->tokens_per_image.begin(),
                                f->tokens_per_image.end());
    if (levels.empty()) levels.resize(f->deepstack.size());
    for (size_t l = 0; l < f->deepstack.size(); ++l) levels[l].push_back(f->deepstack[l]);
  }
  out.embeds = at::cat(embeds, 0);
  for (auto& l : levels) out.deepstack.push_back(at::cat(l, 0));
  return out;
}

VisionFeatures Qwen3VLModel::encode_images(const at::Tensor& pixel_values,
                                           const std::vector<ImageGrid>& grids,
                                           std::optional<int> asked_tile, bool deepstack) const {
  const int vision_tile = asked_tile.value_or(this->vision_tile());
  check_vision_tile(vision_tile, config_.vision, "vision tile");
  const int64_t merge = config_.vision.spatial_merge_size;
  const int64_t tile_tokens = vision_tile / (config_.vision.patch_size * merge);
  // Whole images: no tile set, nothing larger than a tile, or input the tower will refuse.
  const bool cut = tile_tokens > 0 && std::any_of(grids.begin(), grids.end(), [&](const auto& g) {
                     return g.t > 1 || g.h / merge > tile_tokens || g.w / merge > tile_tokens;
                   });
  const bool valid = std::all_of(grids.begin(), grids.end(), [&](const ImageGrid& g) {
    return g.t >= 1 && g.h > 0 && g.w > 0 && g.h % merge == 0 && g.w % merge == 0;
  });
  if (!cut || !valid) return vision_->forward(pixel_values, grids, deepstack);
  const VisionTiling plan = plan_vision_tiles(grids, merge, tile_tokens);
  if (pixel_values.dim() != 2 || pixel_values.size(0) != plan.patch_rows.numel()) {
    return vision_->forward(pixel_values, grids, deepstack);
  }
  const VisionFeatures tiled =
      vision_->forward(pixel_values, plan.grids, deepstack, plan.patch_rows);
  VisionFeatures out;
  const at::Tensor order = plan.token_order.to(tiled.embeds.device());
  out.embeds = tiled.embeds.index_select(0, order);
  for (const at::Tensor& level : tiled.deepstack) {
    out.deepstack.push_back(level.index_select(0, order));
  }
  for (const ImageGrid& g : grids) out.tokens_per_image.push_back(g.num_tokens(merge));
  return out;
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
