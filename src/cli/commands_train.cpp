#include "cli/commands_train.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <string>

#include "ziprerank/errors.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/train.hpp"

namespace ziprerank::cli {

namespace {

struct TrainArgs {
  TrainOptions options;
  int threads = 0;
  std::string matmul = "float32";
  int render_cache_mb = 512;
  int vision_cache_mb = 2048;
};

std::atomic<bool> g_stop_training{false};

extern "C" void on_train_signal(int) {
  // First Ctrl-C: finish the current step, write a checkpoint, stop. A second one ends the process.
  g_stop_training.store(true);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

int run_train(TrainArgs a) {
  configure_threads(a.threads);
  a.options.bf16_products = parse_matmul(a.matmul, parse_device(a.options.device), at::kFloat);
  a.options.render_cache_bytes = static_cast<size_t>(a.render_cache_mb) << 20;
  a.options.vision_cache_bytes = static_cast<size_t>(a.vision_cache_mb) << 20;
  Trainer trainer(a.options);
  std::signal(SIGINT, on_train_signal);
  std::signal(SIGTERM, on_train_signal);
  const TrainSummary s = trainer.run(&g_stop_training);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  return s.interrupted ? static_cast<int>(ExitCode::kInterrupted) : 0;
}

// What to train on and from: stage, data, init, output.
void add_data_options(CLI::App* cmd, TrainOptions& o) {
  cmd->add_option("--stage", o.stage, "1: rendered-text pretraining; 2: page distillation")
      ->check(CLI::IsMember({1, 2}))
      ->capture_default_str();
  cmd->add_option(
         "--data", o.data,
         "Training JSONL. Stage 1: {\"query\", \"passages\": [text...], \"ranking\": "
         "[indices, best first]} or rank_zephyr {\"conversations\": [...]}. Stage 2: "
         "{\"query_id\", \"query\", \"candidates\": [{\"id\", \"image\"}...], \"relevant\", "
         "\"ranking\"} or the reference rows {\"query\", \"doc_name\", \"candidate_page_ids\", "
         "\"gt_page_ids\", \"openai_ranking\"}")
      ->required();
  cmd->add_option("--init", o.init,
                  "Model folder to start from (from `ziprerank init`, or a published one)");
  cmd->add_option("--init-vision", o.init_vision,
                  "Model folder whose vision tower and mergers replace those of --init (same "
                  "shapes), e.g. one trained with --align-only");
  cmd->add_option("-o,--output", o.output,
                  "Model folder to write (checkpoints go to OUTPUT/checkpoints)")
      ->required();
  cmd->add_option(
      "--resume", o.resume,
      "Continue exactly from a checkpoint folder (same data and settings; --init is not needed)");
  cmd->add_flag("--force", o.overwrite, "Overwrite a model already in --output");
  cmd->add_option("--pages-dir", o.pages_dir,
                  "Stage 2, reference rows: page images as DIR/{doc_name}/{page}.png or "
                  "DIR/{doc_name}_{page}.png (.jpg/.jpeg/.webp too; a '.pdf' suffix of doc_name "
                  "may be left out)");
  cmd->add_option("--max-candidates", o.max_candidates, "Stage 2: candidates kept per sample")
      ->capture_default_str();
  cmd->add_flag("--force-gt-top1", o.force_gt_top1,
                "Stage 2: move the first ground-truth page to the top of the target");
}

// The optimisation: batches, schedule, losses, freezing, pruning.
void add_optimisation_options(CLI::App* cmd, TrainOptions& o) {
  cmd->add_option("--batch-size", o.batch_size,
                  "Samples per micro-batch (0 = 8 for stage 1, 2 for stage 2)")
      ->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum,
                  "Micro-batches per optimizer step (0 = 4 for stage 1, 8 for stage 2)")
      ->capture_default_str();
  cmd->add_option("--epochs", o.epochs, "Epochs (0 = 3 for stage 1, 1 for stage 2)")
      ->capture_default_str();
  cmd->add_option("--max-steps", o.max_steps, "Optimizer steps; overrides --epochs when > 0")
      ->capture_default_str();
  cmd->add_option("--lr", o.lr, "Peak learning rate (cosine schedule with linear warm-up)")
      ->capture_default_str();
  cmd->add_option("--max-grad-norm", o.max_grad_norm,
                  "Clip the total gradient norm to this before each step (0 = off, as the "
                  "reference)")
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup_steps,
                  "Warm-up steps (-1 = 100 for stage 1, 50 for stage 2)")
      ->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay,
                  "AdamW weight decay (not applied to biases and LayerNorms)")
      ->capture_default_str();
  cmd->add_option("--rank-weight", o.rank_weight,
                  "Weight of the ranking loss (-1 = 10 for stage 1, 1 for stage 2)")
      ->capture_default_str();
  cmd->add_option("--align-weight", o.align_weight,
                  "Weight of the word-grounding loss (0 = off): merged visual tokens are pulled "
                  "toward the text embeddings of the words they show (stage 1: passage layout; "
                  "stage 2: words.json beside the pages)")
      ->capture_default_str();
  cmd->add_option("--candidate-weight", o.candidate_weight,
                  "Weight of a per-candidate relevance loss (0 = off): the ranking loss on one "
                  "score per candidate, pooled (log-sum-exp) over its visual tokens and its "
                  "<|vision_end|>")
      ->capture_default_str();
  cmd->add_flag("--text-candidates", o.text_candidates,
                "Show each candidate as its text tokens on the visual-token grid its pixels would "
                "get, instead of pixels (stage 1: the passage row by row; stage 2: each word where "
                "words.json puts it): a language-model warm-up; the vision tower is not run");
  cmd->add_flag("--align-only", o.align_only,
                "Train the vision tower on the grounding loss alone (needs --align-weight; the "
                "language model is not run): a reading warm-up");
  cmd->add_option("--align-crop", o.align_crop,
                  "With --align-only in stage 2: train on random square crops of this many "
                  "pixels cut from each page at its input scale (0 = whole pages); reading is "
                  "local and crops cost a fraction of a page")
      ->capture_default_str();
  cmd->add_option("--soft-decay", o.soft_decay,
                  "Stage 2: position decay of the soft-ranking target")
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of the data order")->capture_default_str();
  cmd->add_flag("!--no-shuffle", o.shuffle, "Keep the file order instead of shuffling every epoch");
  cmd->add_flag("--freeze-vision", o.freeze_vision,
                "Do not train the vision tower and mergers (as the reference)");
  cmd->add_flag("--freeze-embeddings", o.freeze_embeddings,
                "Do not train the input token embeddings (keeps a trained tower's visual tokens, "
                "and query-aware pruning, aligned to them)");
  cmd->add_option("--keep-ratio", o.keep_ratio,
                  "Train with query-aware visual token pruning: fraction of each image's tokens "
                  "kept (1.0 = off)")
      ->capture_default_str();
}

// Checkpoints, logs, held-out measurements and the saved model.
void add_checkpoint_options(CLI::App* cmd, TrainOptions& o) {
  cmd->add_option("--save-every", o.save_every,
                  "Write a checkpoint every N optimizer steps (0 = only when interrupted)")
      ->capture_default_str();
  cmd->add_option("--keep-checkpoints", o.keep_checkpoints,
                  "Keep only the newest N checkpoints (0 = all)")
      ->capture_default_str();
  cmd->add_option("--checkpoint-dir", o.checkpoint_dir,
                  "Where checkpoints go (default OUTPUT/checkpoints)");
  cmd->add_option("--log-every", o.log_every, "Log a line every N optimizer steps")
      ->capture_default_str();
  cmd->add_option("--metrics", o.metrics_file,
                  "Append one JSON line per optimizer step to this file (loss curves); held-out "
                  "measurements add lines marked \"eval\": true");
  cmd->add_option("--eval-data", o.eval_data,
                  "Held-out JSONL in --data's format: measured without gradient (losses, top-1 "
                  "agreement) before the first step, every --eval-every steps and after the last; "
                  "each sample's candidates are shown in a fixed random order (from --seed)");
  cmd->add_flag("!--eval-in-file-order", o.eval_shuffle,
                "Show the held-out candidates in the file's order instead (a first stage's order "
                "often puts the right one first)");
  cmd->add_option("--eval-every", o.eval_every,
                  "Optimizer steps between held-out measurements (0 = first and last only)")
      ->capture_default_str();
  cmd->add_option("--eval-samples", o.eval_samples,
                  "Measure only the first N held-out samples (0 = all)")
      ->capture_default_str();
  cmd->add_option("--name", o.name,
                  "Model name recorded in config.json (default: the output folder's name)");
  cmd->add_option("--save-dtype", o.save_dtype,
                  "Weights dtype of the written model: auto (as the init checkpoint), float32, "
                  "bfloat16, float16")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16"}))
      ->capture_default_str();
}

// Device, threads, products and caches.
void add_runtime_options(CLI::App* cmd, TrainArgs& a) {
  TrainOptions& o = a.options;
  cmd->add_option(
         "--device", o.device,
         "cpu, cuda or cuda:N (weights, gradients and AdamW state stay float32 on every device)")
      ->capture_default_str();
  cmd->add_option("--threads", a.threads,
                  "Compute threads (0 = OpenBLAS's own count: OPENBLAS_NUM_THREADS, else every "
                  "core; with OpenBLAS, libtorch's own pool stays at 1 thread)")
      ->capture_default_str();
  cmd->add_option("--matmul", a.matmul,
                  "Linear layers' products on CPU: float32, bfloat16 (float32 master weights "
                  "cast for each product, float32 accumulation; faster on CPUs with AMX-BF16), "
                  "or auto (bfloat16 where the CPU has AMX-BF16)")
      ->check(CLI::IsMember({"auto", "float32", "fp32", "bfloat16", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--vision-cache-mb", a.vision_cache_mb,
                  "With --freeze-vision: memory for the features of encoded pages kept for reuse "
                  "(a frozen tower gives a page the same features every epoch; 0 = off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--render-cache-mb", a.render_cache_mb,
                  "Stage 1: memory for rendered passages kept for reuse")
      ->capture_default_str();
}

}  // namespace

void register_train_command(CLI::App& app, Handler& handler) {
  auto a = std::make_shared<TrainArgs>();
  TrainOptions& o = a->options;
  auto* cmd = app.add_subcommand(
      "train",
      "Train: stage 1 (rendered text passages, generation + weighted RankNet) or stage 2 (page "
      "images, generation + soft-ranking distillation). Writes a model folder that rank, batch "
      "and inspect load as is.");
  add_data_options(cmd, o);
  add_optimisation_options(cmd, o);
  add_checkpoint_options(cmd, o);
  add_runtime_options(cmd, *a);
  cmd->callback([a, &handler] { handler = [a] { return run_train(*a); }; });
}

}  // namespace ziprerank::cli
