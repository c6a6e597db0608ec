// Training the listwise reranker, as the reference's train.py does it:
//   stage 1: text passages rendered to 280x280 images, loss = generation cross-entropy
//            + 10 x weighted RankNet on the identifier logits at the "[" position;
//   stage 2: real page images, loss = generation cross-entropy + soft-ranking distillation
//            (ground truth first, then the teacher's order, position weights 0.5^pos).
//
// Batching: samples are processed one at a time (no padding) and their gradients accumulate.
// Each sample's loss is scaled so that the summed gradient equals the reference's batch loss:
// the generation loss of a micro-batch is its summed token NLL divided by the micro-batch's
// label-token count, the ranking loss is the mean over the micro-batch's samples, and the
// total is divided by the gradient-accumulation steps (as Accelerate does).
//
// Deviations from the reference, by necessity: AdamW keeps fp32 state (the reference uses
// bitsandbytes' 8-bit AdamW); weights train in float32 on every device (no bf16 autocast in
// this ATen API); there is no gradient checkpointing; the data order comes from our own seeded
// shuffle (not torch's RNG); a sample whose RankNet loss is undefined (no ordered pair) adds no
// ranking loss, where the reference drops the ranking term of its whole micro-batch.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/render.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

// ---------------------------------------------------------------------------------------------
// Losses (one sample each; `scores` are the identifier logits at the "[" position).

/// The reference's rank_net(y_pred, y_true, weighted) on one list: BCE-with-logits over every
/// ordered pair (i, j) with y_true[i] > y_true[j] (ties and infinities dropped), target 1, weight
/// 1 / (r_i + r_j) where r is the 1-based rank in the descending sort of y_true (ties keep index
/// order) when `weighted`; mean over the pairs kept. NaN when no pair is kept.
at::Tensor rank_net(const at::Tensor& y_pred, const at::Tensor& y_true, bool weighted = true);

/// Stage-1 ranking loss: y_true[i] = the model's own scores sorted descending, taken at
/// rank_of[i] (the teacher rank of candidate i, 0-based), then weighted rank_net.
at::Tensor ranknet_loss(const at::Tensor& scores, const std::vector<int64_t>& rank_of);

/// Target distribution of the soft-ranking loss over `n` candidates: the order is every ground
/// truth (in `gt` order) then the other candidates in `ranking` order, skipping candidates marked
/// invalid; position p gets decay^p, normalised. Invalid candidates get 0.
std::vector<double> soft_ranking_target(int64_t n, const std::vector<int64_t>& ranking,
                                        const std::vector<int64_t>& gt, double decay,
                                        const std::vector<bool>& valid = {});

/// Whether the highest of `scores` (the first of equal highest) is the candidate the teacher puts
/// first: the first ground truth in range when `gt` has one, else the first of `ranking`. 1 or 0;
/// NaN when neither names a candidate. The losses have floors above zero (the soft-ranking target
/// is a distribution), so this is the plain measure of whether a model has learned to rank.
double top1_agreement(const at::Tensor& scores, const std::vector<int64_t>& ranking,
                      const std::vector<int64_t>& gt = {});

/// Stage-2 ranking loss: -sum(target * log_softmax(valid scores)); -inf scores (batch padding in
/// the reference) are not candidates. Zero (no gradient) when nothing is valid.
at::Tensor soft_ranking_loss(const at::Tensor& scores, const std::vector<int64_t>& ranking,
                             const std::vector<int64_t>& gt, double decay = 0.5);

/// Summed negative log-likelihood of `targets` [T] under `logits` [T, V] (computed in float32).
at::Tensor token_nll_sum(const at::Tensor& logits, const at::Tensor& targets);

/// Hugging Face get_cosine_schedule_with_warmup multiplier after `step` scheduler steps.
double cosine_with_warmup(int64_t step, int64_t warmup_steps, int64_t total_steps,
                          double num_cycles = 0.5);

// ---------------------------------------------------------------------------------------------
// Training run.

struct TrainOptions {
  int stage = 1;          ///< 1: rendered passages + RankNet; 2: pages + soft ranking
  std::string data;       ///< JSONL (formats in docs and data.hpp)
  std::string pages_dir;  ///< stage 2, reference format: folder of page images
  std::string init;       ///< model folder to start from (ignored with `resume`)
  /// Optional model folder whose vision tower and mergers (model.visual.*) replace those of
  /// `init` (same shapes): joins a tower trained with --align-only to a language model trained
  /// with --text-candidates. Ignored with `resume`.
  std::string init_vision;
  std::string output;          ///< final model folder
  std::string resume;          ///< checkpoint folder to continue from (exactly)
  std::string checkpoint_dir;  ///< default: <output>/checkpoints
  std::string metrics_file;    ///< optional JSONL, one line per optimizer step
  std::string name;            ///< "ziprerank.name" of the output; default: the output folder name
  std::string device = "cpu";
  /// Linear layers' products in bfloat16 (float32 master weights, activations, gradients of
  /// everything else and optimizer state; CPU only): ModelOptions::bf16_products.
  bool bf16_products = false;
  std::string save_dtype =
      "auto";              ///< auto (as the init checkpoint stored each tensor), float32, bfloat16
  bool overwrite = false;  ///< allow writing into a folder that already holds a model

  // 0 / negative = the stage's reference setting (stage 1 | stage 2).
  int batch_size = 0;       ///< samples per micro-batch (8 | 2)
  int grad_accum = 0;       ///< micro-batches per optimizer step (4 | 8)
  int epochs = 0;           ///< (3 | 1)
  int64_t max_steps = 0;    ///< optimizer steps; overrides epochs when > 0
  int warmup_steps = -1;    ///< (100 | 50)
  double rank_weight = -1;  ///< weight of the ranking loss (10 | 1)
  /// Weight of the word-grounding loss (0 = off): each merged visual token that shows words is
  /// pulled toward the text embeddings of those words (stage 1: the rendered passages' layout;
  /// stage 2: the words.json sidecar beside rendered pages, pages without one are skipped).
  double align_weight = 0.0;
  /// Weight of the per-candidate relevance loss (0 = off): the ranking loss applied to one score
  /// per candidate, the log-sum-exp of the lm_head row of `<|vision_end|>` read at each of the
  /// candidate's visual tokens and at its `<|vision_end|>`, so tokens learn to recognise the
  /// query before the final readout has to gather and compare whole candidates.
  double candidate_weight = 0.0;
  /// Show each candidate as its own text tokens (each plus the `<|image_pad|>` embedding, marking
  /// it as shown on a page) instead of its pixels: stage 1 lays a passage's tokens row by row on
  /// the grid of merged visual tokens its rendering would get (padding after the text); stage 2
  /// puts each word of a page (from the words.json sidecar) at the cell where it is drawn. The
  /// language model learns to rank from perfect reading, the vision tower is not run. The
  /// warm-up before visual tokens, trained with the grounding loss, take their place.
  bool text_candidates = false;
  /// Train the vision tower on the grounding loss alone: the language model is not run (a
  /// reading warm-up for a tower trained from scratch; the ranking losses read as 0).
  bool align_only = false;
  /// With align_only in stage 2: train on random square crops of this many pixels (a multiple
  /// of patch x merge) cut from each page at its input scale, instead of whole pages (0 = whole
  /// pages). Reading is local and the tower's attention cost grows with the square of the patch
  /// count, so crops teach the same reading at a fraction of the cost.
  int align_crop = 0;
  double lr = 3e-6;
  double max_grad_norm = 0.0;  ///< clip the total gradient norm to this (0 = off, as the reference)
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  uint64_t seed = 42;
  bool shuffle = true;
  bool freeze_vision = false;
  /// Keep the input token embeddings fixed (the space a trained tower's visual tokens and
  /// query-aware pruning are aligned to).
  bool freeze_embeddings = false;
  double keep_ratio = 1.0;  ///< QI-Early pruning during training (selection has no gradient)
  int max_candidates = 10;  ///< stage 2
  bool force_gt_top1 = false;
  double soft_decay = 0.5;

  /// Held-out JSONL (the same format as `data`): measured without gradient before the first
  /// step, every `eval_every` steps and after the last one (losses and top-1 agreement).
  std::string eval_data;
  int64_t eval_every = 0;    ///< optimizer steps between held-out measurements (0 = start and end)
  int64_t eval_samples = 0;  ///< measure the first N held-out samples (0 = all)
  /// Show each held-out sample's candidates in a fixed random order (from `seed`); false: in the
  /// file's order.
  bool eval_shuffle = true;

  int64_t save_every = 0;    ///< optimizer steps between checkpoints (0 = only on interrupt)
  int keep_checkpoints = 0;  ///< keep the newest N checkpoints (0 = all)
  int log_every = 10;        ///< optimizer steps between log lines
  size_t render_cache_bytes = size_t{512} << 20;
  /// With freeze_vision: memory for the visual features of pages (or passages) kept for reuse;
  /// a frozen tower gives a page the same features every epoch (0 = encode every time).
  size_t vision_cache_bytes = size_t{2048} << 20;
  PassageRenderOptions render;

  /// Fills in the stage defaults and checks ranges; throws UsageError.
  void resolve();
};

/// What one optimizer step did (the loss terms as the reference logs them).
struct StepMetrics {
  int64_t step = 0;  ///< 1-based
  int epoch = 0;     ///< 1-based
  double loss = 0, gen_loss = 0, rank_loss = 0, align_loss = 0, candidate_loss = 0, lr = 0;
  /// Share of the step's samples whose identifier logits (rank) / per-candidate scores
  /// (candidate) put the teacher's first candidate first (see top1_agreement); 0 when undefined.
  double rank_top1 = 0, candidate_top1 = 0;
  double grad_norm = 0;  ///< total gradient norm before clipping (0 when clipping is off)
  int64_t samples = 0, tokens = 0;  ///< tokens = language-model input tokens
  double seconds = 0;
};

/// A measurement on held-out samples (TrainOptions::eval_data), without gradient.
struct EvalMetrics {
  int64_t step = 0;  ///< optimizer steps done before the measurement
  int64_t samples = 0;
  /// Means over the samples where each is defined (see StepMetrics); NaN when none is.
  double gen_loss = NAN, rank_loss = NAN, align_loss = NAN, candidate_loss = NAN;
  double rank_top1 = NAN, candidate_top1 = NAN;
  double seconds = 0;
};

struct TrainSummary {
  int64_t start_step = 0;  ///< > 0 when resumed
  int64_t steps = 0;       ///< optimizer steps done when run() returned
  int64_t total_steps = 0;
  int64_t samples = 0, tokens = 0;  ///< in this run
  double seconds = 0;               ///< wall time of the training loop in this run
  bool interrupted = false;
  std::string last_checkpoint;
  std::vector<StepMetrics> history;  ///< every step of this run
  std::vector<EvalMetrics> evals;    ///< held-out measurements of this run, in order
};

class VisionCache;

struct VisionFeatures;
struct PromptTokens;
struct AssembledSequence;

namespace train {
struct TrainExample;
class TrainDataset;
class AdamW;
class RenderCache;
class PageWordIndex;
class WordPieces;
}  // namespace train

class Trainer {
 public:
  /// Loads the data (every line is checked first), the model and, with `resume`, the full
  /// training state. Throws InputError / UsageError.
  explicit Trainer(TrainOptions options);
  ~Trainer();

  /// Trains until the last step (or until `stop` becomes true: then a checkpoint is saved).
  /// Writes the final model folder to options.output unless interrupted.
  TrainSummary run(const std::atomic<bool>* stop = nullptr);

  /// Measures the current weights on the held-out samples (options.eval_data) without gradient
  /// and without changing any training state. Throws UsageError when no eval_data was given.
  EvalMetrics evaluate();

  /// Writes a loadable model folder with the current weights.
  void save_model(const std::string& dir) const;
  /// Writes a checkpoint (model folder + optimizer state + position) and returns its folder.
  std::string save_checkpoint();

  const TrainOptions& options() const { return options_; }
  const ModelFolder& folder() const { return folder_; }
  std::shared_ptr<const Qwen3VLModel> model() const { return model_; }
  std::shared_ptr<const Tokenizer> tokenizer() const { return tokenizer_; }
  int64_t step() const { return step_; }
  int64_t total_steps() const { return total_steps_; }
  size_t num_samples() const;

 private:
  struct SampleResult;
  struct Prepared;
  /// With `shuffle_seed`, the candidates are shown in a random order drawn from it.
  Prepared prepare(const train::TrainDataset& data, size_t index,
                   std::optional<uint64_t> shuffle_seed = std::nullopt);
  /// Forward pass of one sample; with `backward`, the scaled losses' gradients are accumulated.
  /// Without it (a held-out measurement) --align-crop windows do not depend on the step.
  SampleResult run_sample(const Prepared& p, int64_t batch_tokens, int64_t batch_samples,
                          bool backward = true);
  // The stages of run_sample (train/sample.cpp).
  struct SampleInputs;
  void gather_text_candidates(const train::TrainExample& ex, SampleInputs& in);
  void gather_images(const train::TrainExample& ex, bool backward, SampleInputs& in);
  void gather_cached_page(const train::TrainExample& ex, size_t i, SampleInputs& in);
  VisionFeatures vision_features(const SampleInputs& in, bool backward);
  at::Tensor candidate_relevance_loss(const train::TrainExample& ex, const at::Tensor& hidden,
                                      const PromptTokens& prompt, const std::vector<int64_t>& ids,
                                      const AssembledSequence& seq,
                                      const std::vector<int64_t>& tokens_per_image,
                                      SampleResult& r);
  // The constructor's stages.
  void read_source_folder(const nlohmann::json& resume_state);
  ModelOptions load_model();
  std::pair<int64_t, int64_t> setup_optimizer();  ///< (trainable, total) parameter counts
  void accumulate_gradients(const std::vector<size_t>& order, int64_t first_micro,
                            int64_t end_micro, StepMetrics& m);
  void report_eval(const EvalMetrics& e);
  std::vector<size_t> epoch_order(int epoch) const;
  void load_resume_state();
  void write_metrics(const StepMetrics& m);
  void warn_about_parameters_without_gradient() const;

  TrainOptions options_;
  ModelFolder folder_;      ///< of the init (or checkpoint) folder: files copied to the output
  std::string source_dir_;  ///< where tokenizer and processor files come from
  /// The source folder's config.json and side files (tokenizer, processor, ...), read at start:
  /// a resumed run may prune the very checkpoint it started from (--keep-checkpoints).
  std::string source_config_;
  std::vector<std::pair<std::string, std::string>> side_files_;  ///< (file name, bytes)
  std::string init_name_;
  std::shared_ptr<Qwen3VLModel> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<train::TrainDataset> data_;
  std::unique_ptr<train::TrainDataset> eval_data_;  ///< held-out samples, when given
  std::unique_ptr<train::AdamW> optimizer_;
  std::unique_ptr<train::RenderCache> render_cache_;
  std::unique_ptr<VisionCache> vision_cache_;
  /// Stage-2 --text-candidates: each page's grid and the tokens laid on it, by page path.
  struct TextPage {
    ImageGrid grid;
    std::vector<int64_t> ids;
  };
  std::unordered_map<std::string, TextPage> text_pages_;
  std::unique_ptr<train::PageWordIndex> page_words_;
  std::unique_ptr<train::WordPieces> word_pieces_;
  at::Tensor embed_weight_;  ///< the token-embedding parameter (grounding targets), when used
  bool warned_no_words_ = false;
  std::vector<std::pair<std::string, DType>> stored_dtypes_;  ///< per parameter, for saving
  int64_t micro_per_epoch_ = 0, steps_per_epoch_ = 0, total_steps_ = 0;
  int64_t step_ = 0;
  double last_loss_ = 0;
};

}  // namespace ziprerank
