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
#include "core/splitmix64.hpp"
#include "train/data.hpp"
#include "train/grounding.hpp"
#include "train/optimizer.hpp"
#include "train/trainer_internal.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/train.hpp"
#include "ziprerank/vision_cache.hpp"

namespace ziprerank {

namespace fs = std::filesystem;
using detail::SplitMix64;
using nlohmann::json;
using train::kStateFile;
using train::kStateFormat;

namespace {

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

  read_source_folder(resume_state);

  train::Stage2Options s2;
  s2.pages_dir = o.pages_dir;
  s2.max_candidates = o.max_candidates;
  s2.force_gt_top1 = o.force_gt_top1;
  data_ = std::make_unique<train::TrainDataset>(o.data, o.stage, s2);
  if (!o.eval_data.empty()) {
    eval_data_ = std::make_unique<train::TrainDataset>(o.eval_data, o.stage, s2);
    if (eval_data_->size() == 0) throw InputError(o.eval_data + ": no held-out samples");
  }

  const ModelOptions mo = load_model();
  const auto [trainable, total] = setup_optimizer();

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

void Trainer::read_source_folder(const json& resume_state) {
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
}

ModelOptions Trainer::load_model() {
  const TrainOptions& o = options_;
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

  return mo;
}

std::pair<int64_t, int64_t> Trainer::setup_optimizer() {
  const TrainOptions& o = options_;
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
  return {trainable, total};
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

// Runs the micro-batches [first_micro, end_micro) of one step (forward and backward of each
// sample) and adds their losses, agreement and counts to `m`.
void Trainer::accumulate_gradients(const std::vector<size_t>& order, int64_t first_micro,
                                   int64_t end_micro, StepMetrics& m) {
  const TrainOptions& o = options_;
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
    accumulate_gradients(order, first_micro, end_micro, m);
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

}  // namespace ziprerank
