// A model folder on disk (Hugging Face layout) and the weights its config implies.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ziprerank/config.hpp"

namespace ziprerank {

/// One tensor the architecture needs, by checkpoint name.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string component;  ///< e.g. "vision.blocks", "text.layers", "lm_head"
  enum class Init { kNormal, kZeros, kOnes } init = Init::kNormal;
};

/// Every tensor a Qwen3-VL checkpoint of this config holds, with its shape (Hugging Face names).
std::vector<WeightSpec> expected_weights(const ModelConfig& config);

/// What `generation_config.json` says that changes greedy decoding (generate scoring), as
/// transformers' generate() applies it with do_sample=False (the reference's call). Sampling
/// settings (temperature, top_k, top_p) do not apply to greedy decoding and are ignored.
struct GenerationSettings {
  /// > 1 lowers the logits of every token already in the sequence (prompt included): a positive
  /// logit is divided by it, a negative one multiplied. 1.0: off.
  double repetition_penalty = 1.0;
  /// Tokens that end decoding besides config.json's eos/pad (`eos_token_id`, one id or a list).
  std::vector<int64_t> eos_token_ids;
  /// End-of-sequence tokens are suppressed until this many tokens are generated
  /// (`min_new_tokens`).
  int64_t min_new_tokens = 0;
  bool from_file = false;  ///< generation_config.json was present
};

/// Reads `dir`/generation_config.json where present (defaults otherwise); keys ziprerank cannot
/// apply to greedy decoding (no_repeat_ngram_size, bad_words_ids, ...) are logged as warnings.
GenerationSettings load_generation_settings(const std::string& dir);

/// kLogits: one forward pass, the identifier logits after "["; kGenerate: greedy decoding of the
/// ranking; kSimilarity: no language model: each page scores, summed over the query's words and
/// weighted by their length, each word's best match among the page's merged visual tokens in the
/// text-embedding space (similarity.hpp; how a model whose tower was trained to read ranks). Only
/// the visual tokens query-aware pruning keeps are scored, what the language model would see;
/// windows do not change the scores. The
/// pipeline (reranker.hpp) implements them; a model folder names its own.
enum class Scoring { kLogits, kGenerate, kSimilarity };
/// Every scoring mode by name, in enum order (what --scoring accepts).
const std::vector<std::string>& scoring_names();
/// The name of a scoring mode, and back; parse_scoring throws UsageError for an unknown name.
const std::string& scoring_name(Scoring scoring);
Scoring parse_scoring(const std::string& name);

struct ModelFolder {
  std::string dir;
  ModelConfig config;
  PreprocessorConfig preprocessor;
  GenerationSettings generation;  ///< generation_config.json, for generate scoring
  std::string tokenizer_file;     ///< tokenizer.json or tokenizer.model (full path)
  std::string name;          ///< the "ziprerank.name" note in config.json, else the folder name
  bool random_init = false;  ///< config.json says the weights are untrained
  /// How this model ranks when the command does not say (`ziprerank.scoring` in config.json):
  /// logits (the default), generate or similarity.
  Scoring scoring = Scoring::kLogits;
  /// The scorings this model was trained for (`ziprerank.trained_scorings` in config.json); empty:
  /// not stated (any). A model whose language model is untrained lists only "similarity".
  std::vector<Scoring> trained_scorings;
  /// The keep ratio of query-aware pruning when the command does not say: `ziprerank.keep_ratio`
  /// in config.json (in (0, 1]); else the reference's keys, `qi_early_keep_ratio` (0.25 when
  /// absent) where `qi_early_enabled` is true; else 1.0 (no pruning, as the reference).
  double keep_ratio = 1.0;
  /// Windowed vision attention (`ziprerank.vision_tile` in config.json): the vision tower reads
  /// each image as tiles of at most this many pixels a side, cut evenly on the merged-token grid,
  /// each attending only within itself, and the tiles' tokens are put back in the image's order.
  /// 0 (the default, as Qwen3-VL) reads every image whole. A multiple of patch x merge size.
  int vision_tile = 0;
};

/// The model's own chat template, where the folder has one: `chat_template.jinja`, else
/// `chat_template.json`'s or `tokenizer_config.json`'s "chat_template" (the "default" one of a
/// list); empty when none.
std::string read_chat_template(const std::string& dir);
/// How `template_text` would format the ranking prompt differently from ziprerank's built-in
/// Qwen3-VL chat format (`<|im_start|>user\n` + text + images + `<|im_end|>\n<|im_start|>
/// assistant\n`, images as `<|vision_start|><|image_pad|><|vision_end|>`, no system message):
/// one line per difference found; empty when it matches as far as can be told without running
/// the template.
std::vector<std::string> chat_template_differences(const std::string& template_text);

/// A warning for ranking with `scoring` when the folder lists the scorings it was trained for
/// and `scoring` is not one of them; empty otherwise.
std::string untrained_scoring_warning(const ModelFolder& folder, Scoring scoring);

/// Reads config.json and preprocessor_config.json and finds the tokenizer. Weights are not opened.
ModelFolder open_model_folder(const std::string& dir);

/// The model used when --model is not given: $ZIPRERANK_MODEL, else the trained model shipped in
/// models/, else the tiny random model the build generates. Throws InputError when none exists.
std::string default_model_dir();

}  // namespace ziprerank
