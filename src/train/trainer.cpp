#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "core/json_util.hpp"
#include "train/data.hpp"
#include "train/grounding.hpp"
#include "train/optimizer.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/train.hpp"

namespace ziprerank {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFormat = "ziprerank-trainer-state";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// splitmix64: a tiny generator whose output is the same on every platform and standard library,
// so a seed names one data order everywhere (std::shuffle's algorithm is unspecified).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) without modulo bias.
  uint64_t below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do {
      r = next();
    } while (r >= limit);
    return r % bound;
  }
};

// 0..n-1 in the order a Fisher-Yates shuffle drawn from `seed` gives.
template <typename Index>
std::vector<Index> random_order(size_t n, uint64_t seed) {
  std::vector<Index> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<Index>(i);
  SplitMix64 rng{seed};
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

// The reference's optimizer groups: no weight decay for biases and for nn.LayerNorm weights,
// which in Qwen3-VL are the vision tower's norm1/norm2 and the mergers' norm (the text model's
// RMSNorm is not an nn.LayerNorm, so it decays).
bool takes_weight_decay(const std::string& name) {
  if (name.find("bias") != std::string::npos) return false;
  if (name.rfind("model.visual.", 0) == 0) {
    const std::string module = name.substr(0, name.rfind('.'));
    const std::string last = module.substr(module.rfind('.') + 1);
    if (last.rfind("norm", 0) == 0) return false;
  }
  return true;
}

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw InputError("cannot write '" + tmp.string() + "'");
  }
  fs::rename(tmp, path);
}

at::Tensor cpu_contiguous(const at::Tensor& t, at::ScalarType dtype) {
  return t.detach().to(at::kCPU, dtype).contiguous();
}

void add_tensor(SafetensorsWriter& writer, std::vector<at::Tensor>& keep, const std::string& name,
                const at::Tensor& t, DType dtype) {
  at::Tensor c = cpu_contiguous(t, to_scalar_type(dtype));
  writer.add_borrowed(name, dtype, c.sizes().vec(), c.data_ptr(), c.numel() * c.element_size());
  keep.push_back(std::move(c));
}

// Settings that shape the trajectory: a resumed run must use the same ones to continue exactly.
json trajectory_settings(const TrainOptions& o) {
  return {{"stage", o.stage},
          {"batch_size", o.batch_size},
          {"grad_accum", o.grad_accum},
          {"epochs", o.epochs},
          {"max_steps", o.max_steps},
          {"warmup_steps", o.warmup_steps},
          {"rank_weight", o.rank_weight},
          {"align_weight", o.align_weight},
          {"candidate_weight", o.candidate_weight},
          {"text_candidates", o.text_candidates},
          {"align_only", o.align_only},
          {"align_crop", o.align_crop},
          {"lr", o.lr},
          {"max_grad_norm", o.max_grad_norm},
          {"weight_decay", o.weight_decay},
          {"beta1", o.beta1},
          {"beta2", o.beta2},
          {"eps", o.eps},
          {"seed", o.seed},
          {"shuffle", o.shuffle},
          {"freeze_vision", o.freeze_vision},
          {"freeze_embeddings", o.freeze_embeddings},
          {"keep_ratio", o.keep_ratio},
          {"max_candidates", o.max_candidates},
          {"force_gt_top1", o.force_gt_top1},
          {"soft_decay", o.soft_decay},
          {"bf16_products", o.bf16_products}};
}

// Adds one step's losses, samples, tokens and seconds to a running sum.
void add_losses_and_counts(StepMetrics& sum, const StepMetrics& m) {
  sum.loss += m.loss;
  sum.gen_loss += m.gen_loss;
  sum.rank_loss += m.rank_loss;
  sum.align_loss += m.align_loss;
  sum.candidate_loss += m.candidate_loss;
  sum.rank_top1 += m.rank_top1;
  sum.candidate_top1 += m.candidate_top1;
  sum.samples += m.samples;
  sum.tokens += m.tokens;
  sum.seconds += m.seconds;
}

std::string flag_name(const std::string& key) {
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

}  // namespace

void TrainOptions::resolve() {
  if (stage != 1 && stage != 2) throw UsageError("--stage must be 1 or 2");
  const bool s1 = stage == 1;
  if (batch_size <= 0) batch_size = s1 ? 8 : 2;
  if (grad_accum <= 0) grad_accum = s1 ? 4 : 8;
  if (epochs <= 0) epochs = s1 ? 3 : 1;
  if (warmup_steps < 0) warmup_steps = s1 ? 100 : 50;
  if (rank_weight < 0) rank_weight = s1 ? 10.0 : 1.0;
  if (data.empty()) throw UsageError("--data is required");
  if (output.empty()) throw UsageError("--output is required");
  if (init.empty() && resume.empty())
    throw UsageError("give --init (a model folder) or --resume (a checkpoint)");
  if (!(lr > 0)) throw UsageError("--lr must be positive");
  if (!(max_grad_norm >= 0)) throw UsageError("--max-grad-norm must not be negative");
  if (!(align_weight >= 0)) throw UsageError("--align-weight must not be negative");
  if (!(candidate_weight >= 0)) throw UsageError("--candidate-weight must not be negative");
  if (align_only && !(align_weight > 0))
    throw UsageError("--align-only trains the grounding loss alone: give --align-weight > 0");
  if (align_crop < 0) throw UsageError("--align-crop must not be negative");
  if (align_crop > 0 && !(align_only && stage == 2))
    throw UsageError("--align-crop is for stage-2 --align-only runs");
  if (text_candidates && align_weight > 0)
    throw UsageError("--text-candidates runs no vision tower: --align-weight has nothing to train");
  if (weight_decay < 0) throw UsageError("--weight-decay must not be negative");
  if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1))
    throw UsageError("Adam betas must be in [0, 1)");
  if (!(eps > 0)) throw UsageError("Adam eps must be positive");
  if (max_steps < 0) throw UsageError("--max-steps must not be negative");
  if (!(keep_ratio > 0 && keep_ratio <= 1)) throw UsageError("--keep-ratio must be in (0, 1]");
  if (max_candidates < 2 || max_candidates > kMaxWindow) {
    throw UsageError("--max-candidates must be between 2 and " + std::to_string(kMaxWindow));
  }
  if (!(soft_decay > 0 && soft_decay <= 1)) throw UsageError("--soft-decay must be in (0, 1]");
  if (log_every < 1) throw UsageError("--log-every must be at least 1");
  if (eval_every < 0) throw UsageError("--eval-every must not be negative");
  if (eval_samples < 0) throw UsageError("--eval-samples must not be negative");
  if ((eval_every > 0 || eval_samples > 0) && eval_data.empty())
    throw UsageError("--eval-every and --eval-samples need --eval-data (held-out samples)");
  if (save_every < 0) throw UsageError("--save-every must not be negative");
  if (keep_checkpoints < 0) throw UsageError("--keep-checkpoints must not be negative");
  if (save_dtype != "auto" && save_dtype != "float32" && save_dtype != "bfloat16" &&
      save_dtype != "float16") {
    throw UsageError("--save-dtype must be auto, float32, bfloat16 or float16");
  }
  if (checkpoint_dir.empty()) checkpoint_dir = (fs::path(output) / "checkpoints").string();
  if (name.empty()) name = fs::path(output).lexically_normal().filename().string();
}

struct Trainer::Prepared {
  train::TrainExample example;
  std::vector<int64_t> target_ids;  ///< the ranking after "[", then eos
};

struct Trainer::SampleResult {
  double gen_sum = 0;      ///< summed token NLL
  double rank = NAN;       ///< ranking loss of the sample, NaN when undefined
  double align = NAN;      ///< grounding loss of the sample, NaN when off or no word was shown
  double candidate = NAN;  ///< per-candidate relevance loss, NaN when off
  double rank_top1 = NAN, candidate_top1 = NAN;      ///< top1_agreement of each, NaN when undefined
  int64_t tokens = 0;                                ///< language-model input tokens
  double data_s = 0, forward_s = 0, backward_s = 0;  ///< where the time went
};

Trainer::Trainer(TrainOptions options) : options_(std::move(options)) {
  options_.resolve();
  const TrainOptions& o = options_;
  if (!o.metrics_file.empty()) {
    // Said now, not after the first step's work.
    const fs::path dir = fs::path(o.metrics_file).parent_path();
    if (!dir.empty() && !fs::is_directory(dir)) {
      throw InputError("cannot write the metrics file '" + o.metrics_file + "': the folder '" +
                       dir.string() + "' does not exist");
    }
  }
  source_dir_ = o.resume.empty() ? o.init : o.resume;
  json resume_state;
  if (!o.resume.empty()) {
    const fs::path state_path = fs::path(o.resume) / kStateFile;
    if (!fs::exists(state_path)) {
      throw InputError("'" + o.resume + "' is not a training checkpoint (no " + kStateFile + ")");
    }
    resume_state =
        detail::parse_json(detail::read_text_file(state_path.string()), state_path.string());
    if (resume_state.value("format", "") != kStateFormat) {
      throw InputError(state_path.string() + ": not a ziprerank trainer state");
    }
  } else if (fs::exists(fs::path(o.output) / "config.json") && !o.overwrite) {
    throw UsageError("'" + o.output + "' already holds a model; pass --force to overwrite it");
  }

  folder_ = open_model_folder(source_dir_);
  source_config_ = detail::read_text_file((fs::path(source_dir_) / "config.json").string());
  for (const auto& entry : fs::directory_iterator(source_dir_)) {
    if (!entry.is_regular_file()) continue;
    const std::string f = entry.path().filename().string();
    if (entry.path().extension() == ".safetensors" || f == "model.safetensors.index.json" ||
        f == "config.json" || f == kStateFile || f.back() == '~' ||
        entry.path().extension() == ".tmp") {
      continue;
    }
    side_files_.emplace_back(f, detail::read_text_file(entry.path().string()));
  }
  init_name_ = resume_state.is_null() ? folder_.name : resume_state.value("init", folder_.name);
  const auto& vc = folder_.config.vision;
  const auto& pc = folder_.preprocessor;
  if (pc.patch_size != vc.patch_size || pc.merge_size != vc.spatial_merge_size ||
      pc.temporal_patch_size != vc.temporal_patch_size) {
    throw InputError(source_dir_ +
                     ": preprocessor_config.json disagrees with config.json on the patch layout");
  }
  tokenizer_ = load_tokenizer(source_dir_);

  train::Stage2Options s2;
  s2.pages_dir = o.pages_dir;
  s2.max_candidates = o.max_candidates;
  s2.force_gt_top1 = o.force_gt_top1;
  data_ = std::make_unique<train::TrainDataset>(o.data, o.stage, s2);
  if (!o.eval_data.empty()) {
    eval_data_ = std::make_unique<train::TrainDataset>(o.eval_data, o.stage, s2);
    if (eval_data_->size() == 0) throw InputError(o.eval_data + ": no held-out samples");
  }

  ModelOptions mo;
  mo.device = parse_device(o.device);
  mo.dtype = at::kFloat;  // master weights and compute stay float32 on every device
  mo.trainable = true;
  mo.bf16_products = o.bf16_products;
  model_ = Qwen3VLModel::load(source_dir_, mo);

  if (!o.init_vision.empty() && o.resume.empty()) {
    const auto vision_store = WeightStore::open(o.init_vision);
    int64_t replaced = 0;
    c10::NoGradGuard no_grad;
    for (const auto& [name, t] : model_->named_parameters()) {
      if (name.rfind("model.visual.", 0) != 0) continue;
      const at::Tensor src = vision_store->load(name, at::kFloat, t.device(), false);
      if (src.sizes() != t.sizes()) {
        throw InputError(o.init_vision + ": '" + name + "' has another shape than in " + o.init);
      }
      t.copy_(src);
      ++replaced;
    }
    spdlog::info("vision tower and mergers ({} tensors) from {}", replaced, o.init_vision);
  }
  const auto store = WeightStore::open(source_dir_);
  for (const auto& [name, t] : model_->named_parameters()) {
    DType d = store->info(name).dtype;
    if (o.save_dtype == "float32") d = DType::kF32;
    if (o.save_dtype == "bfloat16") d = DType::kBF16;
    if (o.save_dtype == "float16") d = DType::kF16;
    stored_dtypes_.emplace_back(name, d);
  }

  optimizer_ = std::make_unique<train::AdamW>(o.beta1, o.beta2, o.eps);
  int64_t trainable = 0, total = 0;
  for (const auto& [name, t] : model_->named_parameters()) {
    total += t.numel();
    if ((o.freeze_vision && name.rfind("model.visual.", 0) == 0) ||
        (o.freeze_embeddings && name == "model.language_model.embed_tokens.weight")) {
      t.set_requires_grad(false);
      continue;
    }
    trainable += t.numel();
    optimizer_->add(name, t, takes_weight_decay(name) ? o.weight_decay : 0.0);
  }

  const int64_t n = static_cast<int64_t>(data_->size());
  micro_per_epoch_ = (n + o.batch_size - 1) / o.batch_size;
  steps_per_epoch_ = (micro_per_epoch_ + o.grad_accum - 1) / o.grad_accum;
  total_steps_ = o.max_steps > 0 ? o.max_steps : o.epochs * steps_per_epoch_;
  render_cache_ = std::make_unique<train::RenderCache>(o.render_cache_bytes, o.render);
  if (o.freeze_vision && !o.text_candidates && o.vision_cache_bytes > 0)
    vision_cache_ = std::make_unique<VisionCache>(o.vision_cache_bytes);
  if (o.text_candidates && o.stage == 2) page_words_ = std::make_unique<train::PageWordIndex>();
  if (o.align_weight > 0) {
    if (o.freeze_vision)
      throw UsageError("--align-weight trains the vision tower: drop --freeze-vision");
    page_words_ = std::make_unique<train::PageWordIndex>();
    word_pieces_ = std::make_unique<train::WordPieces>(tokenizer_);
    for (const auto& [name, t] : model_->named_parameters()) {
      if (name == "model.language_model.embed_tokens.weight") embed_weight_ = t;
    }
    if (!embed_weight_.defined()) throw InternalError("the model has no token embeddings");
  }

  if (!resume_state.is_null()) load_resume_state();
  spdlog::info(
      "train stage {}: {} samples from {}, {} x {} samples per step, {} steps ({} per epoch), "
      "lr {:.2e}, warm-up {}, {} of {} parameters trainable{}, {} on {}{}",
      o.stage, n, o.data, o.batch_size, o.grad_accum, total_steps_, steps_per_epoch_, o.lr,
      o.warmup_steps, trainable, total,
      o.freeze_vision && o.freeze_embeddings ? " (vision and token embeddings frozen)"
      : o.freeze_vision                      ? " (vision frozen)"
      : o.freeze_embeddings                  ? " (token embeddings frozen)"
                                             : "",
      folder_.name, mo.device.str(), o.bf16_products ? " (bfloat16 products)" : "");
}

Trainer::~Trainer() = default;

size_t Trainer::num_samples() const { return data_->size(); }

std::vector<size_t> Trainer::epoch_order(int epoch) const {
  if (!options_.shuffle) {
    std::vector<size_t> order(data_->size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    return order;
  }
  // Each epoch's order depends on (seed, epoch) only, so a resumed run needs no RNG state.
  return random_order<size_t>(
      data_->size(), options_.seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(epoch + 1)));
}

Trainer::Prepared Trainer::prepare(const train::TrainDataset& data, size_t index,
                                   std::optional<uint64_t> shuffle_seed) {
  Prepared p;
  p.example = data.get(index);
  if (shuffle_seed)
    train::reorder_candidates(p.example, random_order<int64_t>(p.example.size(), *shuffle_seed));
  const std::string& target = p.example.target;
  p.target_ids = tokenizer_->encode(target.substr(1));  // the prompt already ends with "["
  p.target_ids.push_back(folder_.config.eos_token_id);
  return p;
}

Trainer::SampleResult Trainer::run_sample(const Prepared& p, int64_t batch_tokens,
                                          int64_t batch_samples, bool backward) {
  const train::TrainExample& ex = p.example;
  const ModelConfig& c = model_->config();
  SampleResult r;
  auto t0 = Clock::now();
  std::vector<at::Tensor> pixels;
  std::vector<ImageGrid> grids;
  std::vector<int64_t> tokens_per_image;
  train::GroundingTargets grounding;
  std::vector<std::shared_ptr<const EncodedPage>> cached_pages;  // with a vision cache
  const bool align = options_.align_weight > 0;
  std::vector<int64_t> text_grid_ids;  // --text-candidates: the token shown at each grid cell
  if (options_.text_candidates && options_.stage == 2) {
    // Each page's words (from its words.json) on the grid its pixels would get.
    const int64_t merge = folder_.preprocessor.merge_size;
    const int64_t patch = folder_.preprocessor.patch_size;
    for (const PageRef& page : ex.pages) {
      // A page's words and size never change: decode and lay it out once per run.
      auto it = text_pages_.find(page.path);
      if (it == text_pages_.end()) {
        const std::vector<train::PlacedWord>* words = page_words_->find(page.path);
        if (!words) {
          throw InputError(ex.origin + ": --text-candidates needs the words.json sidecar beside '" +
                           page.path + "'");
        }
        const Image img = page_preresize(load_page(page));
        const ResizedSize rs =
            smart_resize(img.height, img.width, patch * merge, folder_.preprocessor.min_pixels,
                         folder_.preprocessor.max_pixels);
        const std::array<int64_t, 3> thw{1, rs.height / patch, rs.width / patch};
        TextPage laid{ImageGrid{thw[0], thw[1], thw[2]},
                      train::words_on_grid(*words, img.width, img.height, thw, patch, merge,
                                           *tokenizer_, c.pad_token_id)};
        it = text_pages_.emplace(page.path, std::move(laid)).first;
      }
      const TextPage& laid = it->second;
      text_grid_ids.insert(text_grid_ids.end(), laid.ids.begin(), laid.ids.end());
      grids.push_back(laid.grid);
      tokens_per_image.push_back(static_cast<int64_t>(laid.ids.size()));
    }
  } else if (options_.text_candidates) {
    const int64_t merge = folder_.preprocessor.merge_size;
    const ResizedSize rs = smart_resize(
        options_.render.size, options_.render.size, folder_.preprocessor.patch_size * merge,
        folder_.preprocessor.min_pixels, folder_.preprocessor.max_pixels);
    const ImageGrid grid{1, rs.height / folder_.preprocessor.patch_size,
                         rs.width / folder_.preprocessor.patch_size};
    const int64_t cells = grid.num_tokens(merge);
    for (const std::string& passage : ex.passages) {
      std::vector<int64_t> ids = tokenizer_->encode(" " + passage);
      ids.resize(static_cast<size_t>(cells), c.pad_token_id);
      text_grid_ids.insert(text_grid_ids.end(), ids.begin(), ids.end());
      grids.push_back(grid);
      tokens_per_image.push_back(cells);
    }
  }
  try {
    const size_t n = options_.text_candidates ? 0 : ex.size();
    int64_t token_offset = 0;
    for (size_t i = 0; i < n; ++i) {
      if (vision_cache_) {
        // A frozen tower gives a page the same features every time: encode it once.
        const std::string key =
            options_.stage == 1 ? "passage\n" + ex.passages[i] : "page\n" + ex.pages[i].path;
        std::shared_ptr<const EncodedPage> page = vision_cache_->get(key);
        if (!page) {
          const Image img =
              options_.stage == 1 ? render_cache_->get(ex.passages[i]) : load_page(ex.pages[i]);
          const PreprocessedImage pre =
              preprocess_image(img, folder_.preprocessor, options_.stage == 2);
          auto encoded = std::make_shared<EncodedPage>();
          encoded->grid = ImageGrid{pre.grid_thw[0], pre.grid_thw[1], pre.grid_thw[2]};
          at::NoGradGuard no_grad;
          encoded->features = model_->encode_images(pre.pixel_values, {encoded->grid});
          page = encoded;
          vision_cache_->put(key, page);
        }
        cached_pages.push_back(page);
        grids.push_back(page->grid);
        tokens_per_image.push_back(page->features.embeds.size(0));
        continue;
      }
      // Stage-1 passages are drawn at 280x280, below the 1024 pre-resize bound anyway.
      Image img = options_.stage == 1 ? render_cache_->get(ex.passages[i]) : load_page(ex.pages[i]);
      std::vector<train::PlacedWord> cropped_words;
      bool cropped = false;
      if (options_.align_crop > 0) {
        // A random window of the page at its input scale, and the words whose centre it holds.
        const std::vector<train::PlacedWord>* all = page_words_->find(ex.pages[i].path);
        // Drawn from (seed, step, page): a resumed run cuts the same windows; a held-out
        // measurement (no backward pass) cuts the same ones at every step.
        const uint64_t page_hash = std::hash<std::string>{}(ex.pages[i].path);
        const uint64_t round = backward ? static_cast<uint64_t>(step_ + 1) : 0;
        SplitMix64 rng{options_.seed ^ (0xA24BAED4963EE407ull * round) ^ page_hash};
        const int side = options_.align_crop;
        const int cw = std::min(side, img.width), ch = std::min(side, img.height);
        // Around a random word when the page has any (margins teach nothing), else anywhere.
        int x0 = static_cast<int>(rng.below(static_cast<uint64_t>(img.width - cw + 1)));
        int y0 = static_cast<int>(rng.below(static_cast<uint64_t>(img.height - ch + 1)));
        if (all && !all->empty()) {
          const train::PlacedWord& w = (*all)[rng.below(all->size())];
          x0 = std::clamp(static_cast<int>(w.cx) - cw / 4 - static_cast<int>(rng.below(cw / 2 + 1)),
                          0, img.width - cw);
          y0 = std::clamp(static_cast<int>(w.cy) - ch / 4 - static_cast<int>(rng.below(ch / 2 + 1)),
                          0, img.height - ch);
        }
        img = crop_image(img, x0, y0, cw, ch);
        if (all) {
          for (const train::PlacedWord& w : *all) {
            if (w.cx >= x0 && w.cx < x0 + cw && w.cy >= y0 && w.cy < y0 + ch)
              cropped_words.push_back({w.text, w.cx - x0, w.cy - y0});
          }
        }
        cropped = true;
      }
      const PreprocessedImage pre =
          preprocess_image(img, folder_.preprocessor, options_.stage == 2);
      pixels.push_back(pre.pixel_values);
      grids.push_back(ImageGrid{pre.grid_thw[0], pre.grid_thw[1], pre.grid_thw[2]});
      tokens_per_image.push_back(pre.num_tokens());
      if (align) {
        std::vector<train::PlacedWord> passage;
        const std::vector<train::PlacedWord>* words = nullptr;
        if (options_.stage == 1) {
          passage = train::passage_words(ex.passages[i], options_.render);
          words = &passage;
        } else {
          words = cropped ? &cropped_words : page_words_->find(ex.pages[i].path);
          if (!words && !warned_no_words_) {
            spdlog::warn("{}: no words.json beside '{}': its pages get no grounding loss",
                         ex.origin, ex.pages[i].path);
            warned_no_words_ = true;
          }
        }
        if (words) {
          train::add_grounding_targets(*words, img.width, img.height, pre.grid_thw,
                                       folder_.preprocessor.patch_size, pre.merge_size,
                                       token_offset, *word_pieces_, &grounding);
        }
      }
      token_offset += pre.num_tokens();
    }
  } catch (const InputError& e) {
    throw InputError(ex.origin + ": " + e.what());
  }
  const PromptTokens prompt = build_ranking_prompt(*tokenizer_, c, ex.query, tokens_per_image);
  const int64_t source_len = static_cast<int64_t>(prompt.ids.size());
  std::vector<int64_t> ids = prompt.ids;
  ids.insert(ids.end(), p.target_ids.begin(), p.target_ids.end());

  r.data_s = seconds_since(t0);
  t0 = Clock::now();
  VisionFeatures vision;
  if (options_.text_candidates) {
    // Word embedding plus the <|image_pad|> embedding: what the token shows, and that it sits on
    // a page (visual tokens differ from the query's text tokens, as real visual tokens do).
    vision.embeds = model_->embed(at::tensor(text_grid_ids, at::kLong)) +
                    model_->embed(at::tensor(std::vector<int64_t>{c.image_token_id}, at::kLong));
    vision.tokens_per_image = tokens_per_image;
  } else if (vision_cache_) {
    std::vector<at::Tensor> embeds;
    std::vector<std::vector<at::Tensor>> levels(
        model_->config().vision.deepstack_visual_indexes.size());
    for (const auto& page : cached_pages) {
      embeds.push_back(page->features.embeds);
      for (size_t l = 0; l < levels.size(); ++l)
        levels[l].push_back(page->features.deepstack.at(l));
    }
    vision.embeds = at::cat(embeds, 0);
    for (auto& level : levels) vision.deepstack.push_back(at::cat(level, 0));
    vision.tokens_per_image = tokens_per_image;
  } else {
    // A frozen tower needs no graph: its activations would only cost memory.
    c10::AutoGradMode grad_mode(!options_.freeze_vision && backward);
    vision = model_->encode_images(at::cat(pixels, 0), grids);
  }
  at::Tensor align_loss;
  if (align && grounding.size() > 0) {
    // The embedding parameter itself: always current, read as constants by the loss.
    align_loss = train::grounding_loss(vision.embeds, embed_weight_, grounding);
    r.align = align_loss.item<double>();
  }
  if (options_.align_only) {
    r.forward_s = seconds_since(t0);
    t0 = Clock::now();
    if (backward && align_loss.defined()) {
      (align_loss * (options_.align_weight / static_cast<double>(batch_samples) /
                     static_cast<double>(options_.grad_accum)))
          .backward();
    }
    r.backward_s = seconds_since(t0);
    return r;
  }
  const AssembledSequence seq = assemble_sequence(*model_, ids, grids, vision, options_.keep_ratio,
                                                  pruning_text(model_->config(), prompt));
  const at::Tensor hidden = model_->forward(seq.input);  // [1, S, D]
  // Pruning removes visual tokens, all of which sit before the "[": it moves back by as many.
  const int64_t bracket = source_len - 1 - (seq.visual_before - seq.visual_after);
  const int64_t T = static_cast<int64_t>(p.target_ids.size());
  const at::Tensor logits =
      model_->logits(hidden.select(0, 0).narrow(0, bracket, T)).to(at::kFloat);  // [T, V]
  const auto dev = logits.device();
  const at::Tensor gen = token_nll_sum(logits, at::tensor(p.target_ids, at::kLong).to(dev));
  const at::Tensor scores =
      logits.select(0, 0).index_select(0, at::tensor(prompt.identifier_ids, at::kLong).to(dev));
  const at::Tensor rank = options_.stage == 1
                              ? ranknet_loss(scores, train::rank_positions(ex.ranking))
                              : soft_ranking_loss(scores, ex.ranking, ex.gt, options_.soft_decay);

  at::Tensor candidate_loss;
  if (options_.candidate_weight > 0) {
    // Each candidate's score pools (log-sum-exp) the relevance read at each of its kept visual
    // tokens and at its <|vision_end|>, with every token pruned from earlier images removed:
    // a token that shows a query word can carry the signal without the model first learning to
    // gather an image into one position.
    const at::Tensor own = at::tensor(std::vector<int64_t>{c.vision_end_token_id}, at::kLong);
    const at::Tensor token_scores =
        model_->logits(hidden.select(0, 0), own.to(hidden.device())).to(at::kFloat).reshape({-1});
    std::vector<at::Tensor> pooled;
    int64_t removed = 0;
    for (size_t k = 0; k < tokens_per_image.size(); ++k) {
      if (ids[static_cast<size_t>(prompt.image_starts[k] + tokens_per_image[k])] !=
          c.vision_end_token_id) {
        throw InternalError("the prompt has no <|vision_end|> after image " + std::to_string(k));
      }
      const int64_t kept = seq.kept_per_image.empty() ? tokens_per_image[k] : seq.kept_per_image[k];
      const int64_t first = prompt.image_starts[k] - removed;
      pooled.push_back(at::logsumexp(token_scores.narrow(0, first, kept + 1), 0));
      removed += tokens_per_image[k] - kept;
    }
    const at::Tensor cand_scores = at::stack(pooled);
    candidate_loss = options_.stage == 1
                         ? ranknet_loss(cand_scores, train::rank_positions(ex.ranking))
                         : soft_ranking_loss(cand_scores, ex.ranking, ex.gt, options_.soft_decay);
    r.candidate = candidate_loss.item<double>();
    r.candidate_top1 = top1_agreement(cand_scores, ex.ranking,
                                      options_.stage == 2 ? ex.gt : std::vector<int64_t>{});
    if (spdlog::should_log(spdlog::level::trace)) {
      const at::Tensor cs = cand_scores.detach().cpu();
      std::string text;
      for (int64_t k = 0; k < cs.numel(); ++k) text += fmt::format(" {:.4f}", cs[k].item<double>());
      spdlog::trace("{}: candidate scores{}, loss {:.4f}", ex.origin, text, r.candidate);
    }
  }

  r.gen_sum = gen.item<double>();
  r.rank = rank.item<double>();
  r.rank_top1 =
      top1_agreement(scores, ex.ranking, options_.stage == 2 ? ex.gt : std::vector<int64_t>{});
  r.tokens = seq.input.embeds.size(1);
  r.forward_s = seconds_since(t0);
  if (!backward) return r;
  t0 = Clock::now();
  at::Tensor loss = gen / static_cast<double>(batch_tokens);
  if (!std::isnan(r.rank) && rank.requires_grad()) {
    loss = loss + rank * (options_.rank_weight / static_cast<double>(batch_samples));
  }
  if (candidate_loss.defined() && !std::isnan(r.candidate)) {
    loss = loss + candidate_loss * (options_.candidate_weight / static_cast<double>(batch_samples));
  }
  if (align_loss.defined()) {
    loss = loss + align_loss * (options_.align_weight / static_cast<double>(batch_samples));
  }
  (loss / static_cast<double>(options_.grad_accum)).backward();
  r.backward_s = seconds_since(t0);
  return r;
}

TrainSummary Trainer::run(const std::atomic<bool>* stop) {
  const TrainOptions& o = options_;
  TrainSummary summary;
  summary.start_step = step_;
  summary.total_steps = total_steps_;
  const auto t_run = Clock::now();
  int cached_epoch = -1;
  std::vector<size_t> order;
  StepMetrics window;  // sums over the steps since the last log line
  int window_steps = 0;
  int64_t last_saved = -1;
  if (eval_data_ && step_ == 0) summary.evals.push_back(evaluate());  // the starting point

  while (step_ < total_steps_) {
    const auto t_step = Clock::now();
    const int epoch = static_cast<int>(step_ / steps_per_epoch_);
    if (epoch != cached_epoch) {
      order = epoch_order(epoch);
      cached_epoch = epoch;
    }
    const int64_t first_micro = (step_ % steps_per_epoch_) * o.grad_accum;
    const int64_t end_micro = std::min(first_micro + o.grad_accum, micro_per_epoch_);
    const double lr = o.lr * cosine_with_warmup(step_, o.warmup_steps, total_steps_);
    StepMetrics m;
    m.epoch = epoch + 1;
    m.lr = lr;
    double rank_hits = 0, candidate_hits = 0;
    int64_t rank_judged = 0, candidate_judged = 0;
    for (int64_t micro = first_micro; micro < end_micro; ++micro) {
      const size_t begin = static_cast<size_t>(micro * o.batch_size);
      const size_t end = std::min(order.size(), begin + static_cast<size_t>(o.batch_size));
      std::vector<Prepared> batch;
      int64_t batch_tokens = 0;
      for (size_t k = begin; k < end; ++k) {
        batch.push_back(prepare(*data_, order[k]));
        batch_tokens += static_cast<int64_t>(batch.back().target_ids.size());
      }
      const auto samples = static_cast<int64_t>(batch.size());
      double gen = 0, rank = 0, align = 0, candidate = 0;
      for (const Prepared& p : batch) {
        const SampleResult r = run_sample(p, batch_tokens, samples);
        spdlog::debug("{}: {} tokens; data {:.0f} ms, forward {:.0f} ms, backward {:.0f} ms",
                      p.example.origin, r.tokens, 1e3 * r.data_s, 1e3 * r.forward_s,
                      1e3 * r.backward_s);
        gen += r.gen_sum / static_cast<double>(batch_tokens);
        if (!std::isnan(r.rank)) rank += r.rank / static_cast<double>(samples);
        if (!std::isnan(r.align)) align += r.align / static_cast<double>(samples);
        if (!std::isnan(r.candidate)) candidate += r.candidate / static_cast<double>(samples);
        if (!std::isnan(r.rank_top1)) rank_hits += r.rank_top1, ++rank_judged;
        if (!std::isnan(r.candidate_top1)) candidate_hits += r.candidate_top1, ++candidate_judged;
        m.tokens += r.tokens;
      }
      m.samples += samples;
      m.gen_loss += gen / o.grad_accum;
      m.rank_loss += rank / o.grad_accum;
      m.align_loss += align / o.grad_accum;
      m.candidate_loss += candidate / o.grad_accum;
    }
    if (rank_judged > 0) m.rank_top1 = rank_hits / static_cast<double>(rank_judged);
    if (candidate_judged > 0)
      m.candidate_top1 = candidate_hits / static_cast<double>(candidate_judged);
    if (step_ == summary.start_step) warn_about_parameters_without_gradient();
    if (o.max_grad_norm > 0) m.grad_norm = optimizer_->clip_grad_norm(o.max_grad_norm);
    optimizer_->step(lr);
    optimizer_->zero_grad();
    ++step_;
    m.step = step_;
    m.loss = m.gen_loss + o.rank_weight * m.rank_loss + o.align_weight * m.align_loss +
             o.candidate_weight * m.candidate_loss;
    m.seconds = seconds_since(t_step);
    last_loss_ = m.loss;
    summary.history.push_back(m);
    summary.samples += m.samples;
    summary.tokens += m.tokens;
    write_metrics(m);

    add_losses_and_counts(window, m);
    ++window_steps;
    if (step_ % o.log_every == 0 || step_ == total_steps_) {
      spdlog::info(
          "step {}/{} epoch {} | loss {:.4f} gen {:.4f} rank {:.4f}{}{} | lr {:.2e} | "
          "{:.1f} tokens/s {:.3f} samples/s",
          step_, total_steps_, m.epoch, window.loss / window_steps, window.gen_loss / window_steps,
          window.rank_loss / window_steps,
          o.align_only ? "" : fmt::format(" top1 {:.2f}", window.rank_top1 / window_steps),
          (o.align_weight > 0 ? fmt::format(" align {:.4f}", window.align_loss / window_steps)
                              : std::string()) +
              (o.candidate_weight > 0 ? fmt::format(" candidate {:.4f} top1 {:.2f}",
                                                    window.candidate_loss / window_steps,
                                                    window.candidate_top1 / window_steps)
                                      : std::string()),
          lr, window.tokens / std::max(window.seconds, 1e-9),
          window.samples / std::max(window.seconds, 1e-9));
      window = StepMetrics{};
      window_steps = 0;
    }
    if (eval_data_ && (step_ == total_steps_ || (o.eval_every > 0 && step_ % o.eval_every == 0)))
      summary.evals.push_back(evaluate());
    if (o.save_every > 0 && step_ % o.save_every == 0) {
      summary.last_checkpoint = save_checkpoint();
      last_saved = step_;
    }
    if (stop && stop->load() && step_ < total_steps_) {
      if (last_saved != step_) summary.last_checkpoint = save_checkpoint();
      summary.interrupted = true;
      spdlog::warn("interrupted after step {}: resume with --resume {}", step_,
                   summary.last_checkpoint);
      break;
    }
  }
  summary.steps = step_;
  summary.seconds = seconds_since(t_run);
  if (!summary.interrupted) {
    save_model(o.output);
    spdlog::info(
        "trained {} steps ({} samples, {} tokens in {:.1f} s: {:.1f} tokens/s, "
        "{:.3f} samples/s); model written to {}",
        step_ - summary.start_step, summary.samples, summary.tokens, summary.seconds,
        summary.tokens / std::max(summary.seconds, 1e-9),
        summary.samples / std::max(summary.seconds, 1e-9), o.output);
  }
  return summary;
}

EvalMetrics Trainer::evaluate() {
  if (!eval_data_) throw UsageError("no held-out samples to measure: give --eval-data");
  const auto t0 = Clock::now();
  const size_t n = options_.eval_samples > 0
                       ? std::min(eval_data_->size(), static_cast<size_t>(options_.eval_samples))
                       : eval_data_->size();
  at::NoGradGuard no_grad;
  struct Mean {
    double sum = 0;
    int64_t count = 0;
    void add(double v) {
      if (!std::isnan(v)) sum += v, ++count;
    }
    double get() const { return count > 0 ? sum / static_cast<double>(count) : NAN; }
  } gen, rank, align, candidate, rank_top1, candidate_top1;
  for (size_t i = 0; i < n; ++i) {
    // Held-out files often list candidates in their first stage's order, the right one first;
    // a model that prefers early identifiers would look good there without reading. Each
    // sample's candidates get one random order, the same at every measurement.
    const Prepared p =
        options_.eval_shuffle
            ? prepare(*eval_data_, i, options_.seed ^ (0x9E3779B97F4A7C15ull * (i + 1)))
            : prepare(*eval_data_, i);
    const auto tokens = static_cast<int64_t>(p.target_ids.size());
    const SampleResult r = run_sample(p, tokens, 1, /*backward=*/false);
    // The generation loss is a per-token mean, as in training (not run with --align-only).
    if (!options_.align_only) gen.add(r.gen_sum / static_cast<double>(tokens));
    rank.add(r.rank);
    align.add(r.align);
    candidate.add(r.candidate);
    rank_top1.add(r.rank_top1);
    candidate_top1.add(r.candidate_top1);
  }
  EvalMetrics e;
  e.step = step_;
  e.samples = static_cast<int64_t>(n);
  e.gen_loss = gen.get();
  e.rank_loss = rank.get();
  e.align_loss = align.get();
  e.candidate_loss = candidate.get();
  e.rank_top1 = rank_top1.get();
  e.candidate_top1 = candidate_top1.get();
  e.seconds = seconds_since(t0);
  report_eval(e);
  return e;
}

void Trainer::report_eval(const EvalMetrics& e) {
  // (log label, metrics key, value); undefined values (NaN) are left out of both.
  const std::vector<std::tuple<const char*, const char*, double>> fields = {
      {"gen", "gen_loss", e.gen_loss},
      {"rank", "rank_loss", e.rank_loss},
      {"top1", "rank_top1", e.rank_top1},
      {"align", "align_loss", e.align_loss},
      {"candidate", "candidate_loss", e.candidate_loss},
      {"candidate-top1", "candidate_top1", e.candidate_top1}};
  // One metrics line per measurement, told apart from the step lines by "eval": true.
  json line = {{"eval", true}, {"step", e.step}, {"samples", e.samples}, {"seconds", e.seconds}};
  std::string text;
  for (const auto& [label, key, value] : fields) {
    if (std::isnan(value)) continue;
    text += fmt::format(" {} {:.4f}", label, value);
    line[key] = value;
  }
  spdlog::info("held-out at step {} ({} samples, {:.1f} s):{}", e.step, e.samples, e.seconds, text);
  if (options_.metrics_file.empty()) return;
  std::ofstream out(options_.metrics_file, std::ios::app);
  out << line.dump() << "\n";
  if (!out) throw InputError("cannot write the metrics file '" + options_.metrics_file + "'");
}

void Trainer::warn_about_parameters_without_gradient() const {
  std::vector<std::string> missing;
  for (const train::AdamW::Param& p : optimizer_->params()) {
    if (!p.value.grad().defined()) missing.push_back(p.name);
  }
  if (!missing.empty()) {
    spdlog::warn(
        "{} trainable parameter(s) received no gradient in the first step and will not change, "
        "e.g. '{}'",
        missing.size(), missing.front());
  }
}

void Trainer::write_metrics(const StepMetrics& m) {
  if (options_.metrics_file.empty()) return;
  const json line = {{"step", m.step},
                     {"epoch", m.epoch},
                     {"loss", m.loss},
                     {"gen_loss", m.gen_loss},
                     {"rank_loss", m.rank_loss},
                     {"align_loss", m.align_loss},
                     {"candidate_loss", m.candidate_loss},
                     {"rank_top1", m.rank_top1},
                     {"candidate_top1", m.candidate_top1},
                     {"grad_norm", m.grad_norm},
                     {"lr", m.lr},
                     {"samples", m.samples},
                     {"tokens", m.tokens},
                     {"seconds", m.seconds},
                     {"tokens_per_s", m.tokens / std::max(m.seconds, 1e-9)},
                     {"samples_per_s", m.samples / std::max(m.seconds, 1e-9)}};
  std::ofstream out(options_.metrics_file, std::ios::app);
  out << line.dump() << "\n";
  if (!out) throw InputError("cannot write the metrics file '" + options_.metrics_file + "'");
}

void Trainer::save_model(const std::string& dir) const {
  const fs::path out(dir);
  fs::create_directories(out);
  // Weights of another layout left in the folder would shadow or confuse the new ones.
  for (const auto& entry : fs::directory_iterator(out)) {
    const std::string f = entry.path().filename().string();
    if (f == "model.safetensors.index.json" ||
        (f.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors")) {
      fs::remove(entry.path());
    }
  }
  for (const auto& [f, bytes] : side_files_) write_text_atomic(out / f, bytes);

  SafetensorsWriter writer;
  std::vector<at::Tensor> keep;
  const auto& params = model_->named_parameters();
  for (size_t i = 0; i < params.size(); ++i)
    add_tensor(writer, keep, params[i].first, params[i].second, stored_dtypes_[i].second);
  writer.set_metadata("format", "pt");
  writer.write((out / "model.safetensors").string());
  keep.clear();

  json cfg = detail::parse_json(source_config_, source_dir_ + "/config.json");
  if (options_.save_dtype != "auto") cfg["torch_dtype"] = options_.save_dtype;
  const TrainOptions& o = options_;
  json note =
      cfg.contains("ziprerank") && cfg["ziprerank"].is_object() ? cfg["ziprerank"] : json::object();
  note["name"] = o.name;
  note["random_init"] = false;
  // Every setting that shapes the trajectory, plus what the run was and how it ended.
  json training = trajectory_settings(o);
  training.update({{"init", init_name_},
                   {"data", fs::path(o.data).filename().string()},
                   {"samples", data_->size()},
                   {"steps", step_},
                   {"total_steps", total_steps_},
                   {"schedule", "cosine with linear warm-up"},
                   {"optimizer", "AdamW, float32 state"},
                   {"rank_loss", o.stage == 1 ? "weighted RankNet" : "soft ranking"},
                   {"final_loss", last_loss_}});
  note["training"] = training;
  note.erase("seed");  // the init's random seed does not describe trained weights
  // Training the language model (any ranking loss) makes the init's list of the scorings it was
  // trained for out of date; training the tower alone leaves it as it was.
  if (!o.align_only) note.erase("trained_scorings");
  cfg["ziprerank"] = note;
  write_text_atomic(out / "config.json", cfg.dump(2) + "\n");
}

std::string Trainer::save_checkpoint() {
  char leaf[32];
  std::snprintf(leaf, sizeof(leaf), "step-%08" PRId64, step_);
  const fs::path root(options_.checkpoint_dir);
  const fs::path final_dir = root / leaf;
  const fs::path tmp = root / (std::string(leaf) + ".partial");
  fs::remove_all(tmp);
  save_model(tmp.string());

  SafetensorsWriter writer;
  std::vector<at::Tensor> keep;
  json steps = json::object();
  const std::map<std::string, DType> stored(stored_dtypes_.begin(), stored_dtypes_.end());
  for (const train::AdamW::Param& p : optimizer_->params()) {
    // model.safetensors holds the weights in the save dtype; exact resumption needs the float32
    // masters.
    if (stored.at(p.name) != DType::kF32)
      add_tensor(writer, keep, "master/" + p.name, p.value, DType::kF32);
    if (!p.exp_avg.defined()) continue;
    add_tensor(writer, keep, "exp_avg/" + p.name, p.exp_avg, DType::kF32);
    add_tensor(writer, keep, "exp_avg_sq/" + p.name, p.exp_avg_sq, DType::kF32);
    steps[p.name] = p.steps;
  }
  writer.write((tmp / kOptimizerFile).string());
  keep.clear();

  const json state = {
      {"format", kStateFormat},
      {"version", 1},
      {"step", step_},
      {"total_steps", total_steps_},
      {"steps_per_epoch", steps_per_epoch_},
      {"init", init_name_},
      {"settings", trajectory_settings(options_)},
      {"data", {{"samples", data_->size()}, {"fnv1a64", hex64(data_->content_hash())}}},
      {"last_loss", last_loss_},
      {"adam_steps", steps}};
  write_text_atomic(tmp / kStateFile, state.dump(2) + "\n");
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  spdlog::info("checkpoint written to {}", final_dir.string());

  if (options_.keep_checkpoints > 0) {
    std::vector<fs::path> all;
    for (const auto& e : fs::directory_iterator(root)) {
      const std::string f = e.path().filename().string();
      if (e.is_directory() && f.rfind("step-", 0) == 0 && e.path().extension() != ".partial")
        all.push_back(e.path());
    }
    std::sort(all.begin(), all.end());  // zero-padded step numbers sort by step
    for (size_t i = 0; i + options_.keep_checkpoints < all.size(); ++i) fs::remove_all(all[i]);
  }
  return final_dir.string();
}

void Trainer::load_resume_state() {
  const fs::path dir(options_.resume);
  const std::string origin = (dir / kStateFile).string();
  const json state = detail::parse_json(detail::read_text_file(origin), origin);
  const json want = trajectory_settings(options_);
  const json have = state.value("settings", json::object());
  // A setting newer than the checkpoint is absent from it; at its default it changes nothing.
  const json defaults = trajectory_settings(TrainOptions{});
  std::string mismatches;
  for (const auto& [key, value] : want.items()) {
    if (!have.contains(key) && defaults.contains(key) && defaults[key] == value) continue;
    if (!have.contains(key) || have[key] != value) {
      mismatches += "\n  " + flag_name(key) + ": checkpoint " +
                    (have.contains(key) ? have[key].dump() : "absent") + ", now " + value.dump();
    }
  }
  if (!mismatches.empty()) {
    throw UsageError(
        "--resume continues a run exactly, so its settings must not change; these differ:" +
        mismatches);
  }
  const json data = state.value("data", json::object());
  if (data.value("fnv1a64", "") != hex64(data_->content_hash()) ||
      data.value("samples", size_t{0}) != data_->size()) {
    throw UsageError("the training data '" + options_.data +
                     "' is not the file this checkpoint was trained on");
  }
  step_ = state.at("step").get<int64_t>();
  last_loss_ = state.value("last_loss", 0.0);
  if (state.value("total_steps", int64_t{-1}) != total_steps_) {
    throw UsageError("the checkpoint's run had " + state.value("total_steps", json()).dump() +
                     " steps, this one " + std::to_string(total_steps_));
  }

  const auto store = WeightStore::open_files({(dir / kOptimizerFile).string()});
  const json steps = state.value("adam_steps", json::object());
  const auto dev = model_->options().device;
  at::NoGradGuard no_grad;
  for (train::AdamW::Param& p : optimizer_->params()) {
    const std::string master = "master/" + p.name;
    if (store->contains(master)) p.value.copy_(store->load(master, at::kFloat, dev, true));
    if (!store->contains("exp_avg/" + p.name)) continue;
    p.exp_avg = store->load("exp_avg/" + p.name, at::kFloat, dev, true);
    p.exp_avg_sq = store->load("exp_avg_sq/" + p.name, at::kFloat, dev, true);
    p.steps = steps.value(p.name, int64_t{0});
  }

  // Metric lines after the checkpoint belong to the interrupted run: drop them, so the file
  // reads as one uninterrupted run.
  if (!options_.metrics_file.empty() && fs::exists(options_.metrics_file)) {
    std::ifstream in(options_.metrics_file);
    std::string line, kept;
    while (std::getline(in, line)) {
      try {
        if (json::parse(line).value("step", int64_t{0}) > step_) continue;
      } catch (const json::exception&) {
        continue;  // a line torn by the interruption
      }
      kept += line + "\n";
    }
    in.close();
    write_text_atomic(options_.metrics_file, kept);
  }
  spdlog::info("resuming from {} at step {} of {}", options_.resume, step_, total_steps_);
}

}  // namespace ziprerank
