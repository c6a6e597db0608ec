// Randomly initialised model folders: what `ziprerank init` writes (tests, training seeds).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "ziprerank/config.hpp"

namespace ziprerank {

class Tokenizer;

/// What `init_model_folder` writes. The research initialisations (match_heads,
/// spelling_embeddings, zero_deepstack) and why they exist are described in models/README.md.
struct InitOptions {
  std::string out_dir;
  /// A tokenizer.json / tokenizer.model to copy; empty: a byte-level tokenizer written from
  /// scratch, which then sets the config's vocabulary size and special-token ids to its own.
  std::string tokenizer_src;
  uint64_t seed = 0;
  std::string dtype = "float32";  ///< stored dtype: "float32" or "bfloat16"
  std::string name;               ///< recorded in config.json; default: the folder's name
  bool overwrite = false;
  /// First-layer query heads (0..num_attention_heads) that start as token-matching heads: a
  /// token attends to earlier copies of itself. 0: plain random initialisation.
  int match_heads = 0;
  /// Weight in [0, 1) of a spelling code mixed into each word piece's embedding. 0: plain random.
  double spelling_embeddings = 0.0;
  /// The DeepStack mergers start with a zero output projection.
  bool zero_deepstack = false;
};

/// The tiny architecture `init` uses when no config is given (2 vision blocks, 2 text layers).
ModelConfig tiny_model_config();

/// Writes config.json, preprocessor_config.json, a tokenizer and model.safetensors (one tensor at
/// a time: peak memory is about the largest tensor, whatever the model's size). Throws
/// UsageError (existing folder without overwrite, bad options) and InputError (files).
void init_model_folder(ModelConfig config, const PreprocessorConfig& preprocessor,
                       const InitOptions& options);

/// Mixes a spelling code into the embedding rows of `embed` [V, D] for every piece of
/// `tokenizer` that is not a special token (see InitOptions::spelling_embeddings); rows keep the
/// norm init_range x sqrt(D). The codes do not depend on the global seed.
void write_spelling_embeddings(const Tokenizer& tokenizer, double weight, double init_range,
                               at::Tensor& embed);

}  // namespace ziprerank
