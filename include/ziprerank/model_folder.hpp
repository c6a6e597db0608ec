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
  std::string scoring = "logits";
  /// The scorings this model was trained for (`ziprerank.trained_scorings` in config.json); empty:
  /// not stated (any). A model whose language model is untrained lists only "similarity".
  std::vector<std::string> trained_scorings;
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
std::string untrained_scoring_warning(const ModelFolder& folder, const std::string& scoring);

/// Reads config.json and preprocessor_config.json and finds the tokenizer. Weights are not opened.
ModelFolder open_model_folder(const std::string& dir);

/// The model used when --model is not given: $ZIPRERANK_MODEL, else the trained model shipped in
/// models/, else the tiny random model the build generates. Throws InputError when none exists.
std::string default_model_dir();

/// Writes a randomly initialised model folder: config.json, preprocessor_config.json,
/// model.safetensors and a tokenizer. `tokenizer_src` is a tokenizer.json / tokenizer.model to
/// copy; empty means a byte-level tokenizer written from scratch (which fixes the token ids of
/// the special tokens in the config to its own).
struct InitOptions {
  std::string out_dir;
  std::string tokenizer_src;
  uint64_t seed = 0;
  std::string dtype = "float32";  ///< "float32" or "bfloat16"
  std::string name;
  bool overwrite = false;
  /// Query heads of the first decoder layer that start as token-matching heads: each such head
  /// and its key-value head share one random projection that writes only the most slowly
  /// rotating rotary dimensions, so a token attends to earlier copies of itself wherever they
  /// are (a query word seen again on a page) at a logit of about sqrt(head_dim). Trained like
  /// every other weight afterwards; 0 = plain random initialisation. The `<|image_pad|>`
  /// embedding then starts orthogonal to those projections (see --text-candidates in train.hpp).
  int match_heads = 0;
  /// Weight in [0, 1) of a spelling code in each word piece's embedding (0 = plain random): the
  /// code sums random vectors for each character by its place from the start and from the end of
  /// the piece (case folded), its length, and whether it starts a word; the rest of the row stays
  /// random, so pieces remain distinct. Pieces that look alike then start close together, which
  /// gives a vision tower trained to point visual tokens at the embeddings of the words they show
  /// (train --align-weight) credit for partly read words.
  double spelling_embeddings = 0.0;
  /// The DeepStack mergers start with a zero output projection, so the language model first sees
  /// the tower only through the merged visual tokens (as a language model warmed up on text
  /// tokens in their place expects); the DeepStack features grow in where they are trained.
  bool zero_deepstack = false;
};
ModelConfig tiny_model_config();

class Tokenizer;
/// Mixes a spelling code into the embedding rows of `embed` [V, D] (see
/// InitOptions::spelling_embeddings) for every piece of `tokenizer` that is not a special token;
/// rows keep the norm init_range x sqrt(D). The codes do not depend on the global seed.
void write_spelling_embeddings(const Tokenizer& tokenizer, double weight, double init_range,
                               at::Tensor& embed);
void init_model_folder(ModelConfig config, const PreprocessorConfig& preprocessor,
                       const InitOptions& options);

/// Writes a byte-level BPE tokenizer.json with no merges: the 256 bytes as ids 0..255 and the
/// Qwen chat/vision special tokens after them. Returns the ids given to the special tokens.
struct SpecialTokenIds {
  int64_t endoftext, im_start, im_end, vision_start, vision_end, image_pad, video_pad;
};
SpecialTokenIds write_byte_level_tokenizer(const std::string& path);

}  // namespace ziprerank
