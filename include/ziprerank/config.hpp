// Typed model configuration for the Qwen3-VL architecture, parsed once from a model folder's
// config.json and preprocessor_config.json. Every default is written out here and matches the
// value Hugging Face transformers uses when a key is absent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ziprerank {

struct VisionConfig {
  int depth = 27;
  int hidden_size = 1152;
  std::string hidden_act = "gelu_pytorch_tanh";
  int intermediate_size = 4304;
  int num_heads = 16;
  int in_channels = 3;
  int patch_size = 16;
  int spatial_merge_size = 2;
  int temporal_patch_size = 2;
  int out_hidden_size = 3584;
  int num_position_embeddings = 2304;
  std::vector<int> deepstack_visual_indexes = {8, 16, 24};
  double initializer_range = 0.02;

  int head_dim() const { return hidden_size / num_heads; }
  /// Width of one row of pixel_values: channels x temporal x patch x patch.
  int patch_input_dim() const {
    return in_channels * temporal_patch_size * patch_size * patch_size;
  }
  /// Side of the learned position-embedding grid (48 for 2304 entries).
  int position_grid_side() const;
};

struct RopeConfig {
  std::string rope_type = "default";
  double rope_theta = 5000000.0;
  std::vector<int> mrope_section = {24, 20, 20};
  bool mrope_interleaved = true;
};

struct TextConfig {
  int64_t vocab_size = 151936;
  int hidden_size = 4096;
  int intermediate_size = 22016;
  int num_hidden_layers = 32;
  int num_attention_heads = 32;
  int num_key_value_heads = 32;
  int head_dim = 128;
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 128000;
  double rms_norm_eps = 1e-6;
  bool attention_bias = false;
  RopeConfig rope;
  double initializer_range = 0.02;
};

struct ModelConfig {
  std::string model_type = "qwen3_vl";
  std::vector<std::string> architectures;
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;
  int64_t bos_token_id = 151643;
  int64_t eos_token_id = 151645;
  int64_t pad_token_id = 151643;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "bfloat16";  ///< dtype the weights were saved in (informational)
  /// Which text tokens query-aware pruning compares the visual tokens with. The reference's key
  /// `qi_early_text_mode`, with the reference's meanings: "all_before_image" (the default: every
  /// text token before the first image: chat tokens, instruction and query) or "query_only"
  /// (the reference's heuristic: the tokens after the last newline before the first image).
  /// ziprerank's own variant, `ziprerank.pruning_text: "query"` in config.json (which wins over
  /// `qi_early_text_mode`), is held here as "query": the query's own tokens.
  std::string qi_early_text_mode = "all_before_image";
  /// The reference's QI-Early keys as config.json states them (read by the model folder to
  /// choose the default keep ratio): `qi_early_enabled` and `qi_early_keep_ratio`; unset: absent.
  std::optional<bool> qi_early_enabled;
  std::optional<double> qi_early_keep_ratio;
  VisionConfig vision;
  TextConfig text;

  /// Checks internal consistency (head sizes divide, rope sections fit the head, ...).
  /// Throws InputError naming the offending key.
  void validate(const std::string& origin) const;
};

/// Image processor settings (`preprocessor_config.json`, Qwen2VLImageProcessor keys).
struct PreprocessorConfig {
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  std::vector<double> image_mean = {0.48145466, 0.4578275, 0.40821073};
  std::vector<double> image_std = {0.26862954, 0.26130258, 0.27577711};
  double rescale_factor = 1.0 / 255.0;
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;
  bool do_convert_rgb = true;
  int resample = 3;  ///< PIL code; 3 = bicubic
  std::string image_processor_type;

  void validate(const std::string& origin) const;
};

/// Parses config.json text. `origin` names the file in error messages.
/// Rejects an unsupported model_type by name, with the list of supported ones.
ModelConfig parse_model_config(const std::string& json_text, const std::string& origin);
ModelConfig load_model_config(const std::string& path);
std::string model_config_to_json(const ModelConfig& config, int indent = 2);

/// The image settings Qwen3-VL checkpoints ship (patch 16, temporal 2, merge 2, mean = std = 0.5,
/// 65,536..16,777,216 pixels); the default for models ziprerank creates.
PreprocessorConfig qwen3_vl_preprocessor_config();

PreprocessorConfig parse_preprocessor_config(const std::string& json_text,
                                             const std::string& origin);
PreprocessorConfig load_preprocessor_config(const std::string& path);
std::string preprocessor_config_to_json(const PreprocessorConfig& config, int indent = 2);

/// Model types this build can run.
const std::vector<std::string>& supported_model_types();

}  // namespace ziprerank
