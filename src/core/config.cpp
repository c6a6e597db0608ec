#include "ziprerank/config.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "json_util.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

using detail::read_opt;
using nlohmann::json;

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> kTypes = {"qwen3_vl"};
  return kTypes;
}

int VisionConfig::position_grid_side() const {
  return static_cast<int>(std::lround(std::sqrt(static_cast<double>(num_position_embeddings))));
}

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

const json& sub_object(const json& root, const char* key, const std::string& origin) {
  static const json kEmpty = json::object();
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return kEmpty;
  if (!it->is_object()) throw InputError(origin + ": '" + key + "' must be a JSON object");
  return *it;
}

// Token ids may be stored as a single int or (for eos) a list; the first entry is the primary one.
void read_token_id(const json& obj, const char* key, int64_t& out, const std::string& origin,
                   const std::string& scope) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  if (it->is_number_integer()) {
    out = it->get<int64_t>();
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
    out = (*it)[0].get<int64_t>();
  } else {
    throw InputError(origin + ": key '" + scope + key + "' must be an integer token id");
  }
}

void parse_vision(const json& v, VisionConfig& c, const std::string& origin) {
  const std::string s = "vision_config.";
  read_opt(v, "depth", c.depth, origin, s);
  read_opt(v, "hidden_size", c.hidden_size, origin, s);
  read_opt(v, "hidden_act", c.hidden_act, origin, s);
  read_opt(v, "intermediate_size", c.intermediate_size, origin, s);
  read_opt(v, "num_heads", c.num_heads, origin, s);
  read_opt(v, "in_channels", c.in_channels, origin, s);
  read_opt(v, "patch_size", c.patch_size, origin, s);
  read_opt(v, "spatial_merge_size", c.spatial_merge_size, origin, s);
  read_opt(v, "temporal_patch_size", c.temporal_patch_size, origin, s);
  read_opt(v, "out_hidden_size", c.out_hidden_size, origin, s);
  read_opt(v, "num_position_embeddings", c.num_position_embeddings, origin, s);
  read_opt(v, "deepstack_visual_indexes", c.deepstack_visual_indexes, origin, s);
  read_opt(v, "initializer_range", c.initializer_range, origin, s);
}

void parse_rope(const json& r, RopeConfig& c, const std::string& origin, const std::string& scope) {
  // transformers < 5 writes "type" in some older files; "rope_type" is the current key.
  read_opt(r, "type", c.rope_type, origin, scope);
  read_opt(r, "rope_type", c.rope_type, origin, scope);
  read_opt(r, "rope_theta", c.rope_theta, origin, scope);
  read_opt(r, "mrope_section", c.mrope_section, origin, scope);
  read_opt(r, "mrope_interleaved", c.mrope_interleaved, origin, scope);
}

void parse_text(const json& t, TextConfig& c, const std::string& origin) {
  const std::string s = "text_config.";
  read_opt(t, "vocab_size", c.vocab_size, origin, s);
  read_opt(t, "hidden_size", c.hidden_size, origin, s);
  read_opt(t, "intermediate_size", c.intermediate_size, origin, s);
  read_opt(t, "num_hidden_layers", c.num_hidden_layers, origin, s);
  read_opt(t, "num_attention_heads", c.num_attention_heads, origin, s);
  c.num_key_value_heads = c.num_attention_heads;  // transformers' fallback when absent
  read_opt(t, "num_key_value_heads", c.num_key_value_heads, origin, s);
  read_opt(t, "head_dim", c.head_dim, origin, s);
  read_opt(t, "hidden_act", c.hidden_act, origin, s);
  read_opt(t, "max_position_embeddings", c.max_position_embeddings, origin, s);
  read_opt(t, "rms_norm_eps", c.rms_norm_eps, origin, s);
  read_opt(t, "attention_bias", c.attention_bias, origin, s);
  read_opt(t, "initializer_range", c.initializer_range, origin, s);
  read_opt(t, "rope_theta", c.rope.rope_theta, origin, s);
  // transformers 4.x: "rope_scaling"; transformers 5: "rope_parameters" (which also holds
  // rope_theta).
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = t.find(key);
    if (it == t.end() || it->is_null()) continue;
    if (!it->is_object()) throw InputError(origin + ": '" + s + key + "' must be a JSON object");
    parse_rope(*it, c.rope, origin, s + key + ".");
  }
}

template <typename T>
void require_positive(T value, const char* key, const std::string& origin) {
  if (value <= 0) {
    throw InputError(origin + ": '" + key + "' must be positive, got " + std::to_string(value));
  }
}

}  // namespace

void ModelConfig::validate(const std::string& origin) const {
  if (qi_early_text_mode != "all_before_image" && qi_early_text_mode != "query_only" &&
      qi_early_text_mode != "query") {
    throw InputError(origin + ": qi_early_text_mode '" + qi_early_text_mode +
                     "' is not one of all_before_image, query_only");
  }
  if (qi_early_keep_ratio && !(*qi_early_keep_ratio > 0.0 && *qi_early_keep_ratio <= 1.0)) {
    throw InputError(origin + ": qi_early_keep_ratio " + std::to_string(*qi_early_keep_ratio) +
                     " is not in (0, 1]");
  }
  const auto& v = vision;
  require_positive(v.depth, "vision_config.depth", origin);
  require_positive(v.hidden_size, "vision_config.hidden_size", origin);
  require_positive(v.num_heads, "vision_config.num_heads", origin);
  require_positive(v.intermediate_size, "vision_config.intermediate_size", origin);
  require_positive(v.in_channels, "vision_config.in_channels", origin);
  require_positive(v.patch_size, "vision_config.patch_size", origin);
  require_positive(v.spatial_merge_size, "vision_config.spatial_merge_size", origin);
  require_positive(v.temporal_patch_size, "vision_config.temporal_patch_size", origin);
  require_positive(v.out_hidden_size, "vision_config.out_hidden_size", origin);
  require_positive(v.num_position_embeddings, "vision_config.num_position_embeddings", origin);
  if (v.hidden_size % v.num_heads != 0) {
    throw InputError(origin + ": vision_config.hidden_size (" + std::to_string(v.hidden_size) +
                     ") is not divisible by num_heads (" + std::to_string(v.num_heads) + ")");
  }
  if (v.head_dim() % 4 != 0) {
    throw InputError(origin + ": vision head_dim " + std::to_string(v.head_dim()) +
                     " must be a multiple of 4 for the 2D rotary embedding");
  }
  const int64_t side = v.position_grid_side();
  if (side * side != v.num_position_embeddings) {
    throw InputError(origin + ": vision_config.num_position_embeddings (" +
                     std::to_string(v.num_position_embeddings) + ") must be a perfect square");
  }
  int prev = -1;
  for (int idx : v.deepstack_visual_indexes) {
    if (idx <= prev || idx >= v.depth) {
      throw InputError(origin + ": vision_config.deepstack_visual_indexes must be strictly " +
                       "increasing block indexes below depth " + std::to_string(v.depth));
    }
    prev = idx;
  }
  static const std::set<std::string> kVisionActs = {"gelu_pytorch_tanh", "gelu", "silu",
                                                    "quick_gelu"};
  if (!kVisionActs.count(v.hidden_act)) {
    throw InputError(origin + ": unsupported vision_config.hidden_act '" + v.hidden_act +
                     "' (supported: gelu_pytorch_tanh, gelu, silu, quick_gelu)");
  }

  const auto& t = text;
  require_positive(t.vocab_size, "text_config.vocab_size", origin);
  require_positive(t.hidden_size, "text_config.hidden_size", origin);
  require_positive(t.intermediate_size, "text_config.intermediate_size", origin);
  require_positive(t.num_hidden_layers, "text_config.num_hidden_layers", origin);
  require_positive(t.num_attention_heads, "text_config.num_attention_heads", origin);
  require_positive(t.num_key_value_heads, "text_config.num_key_value_heads", origin);
  require_positive(t.head_dim, "text_config.head_dim", origin);
  if (t.num_attention_heads % t.num_key_value_heads != 0) {
    throw InputError(origin + ": text_config.num_attention_heads (" +
                     std::to_string(t.num_attention_heads) +
                     ") must be a multiple of num_key_value_heads (" +
                     std::to_string(t.num_key_value_heads) + ")");
  }
  if (t.hidden_act != "silu") {
    throw InputError(origin + ": unsupported text_config.hidden_act '" + t.hidden_act +
                     "' (supported: silu)");
  }
  if (t.rope.rope_type != "default") {
    throw InputError(origin + ": unsupported rope_type '" + t.rope.rope_type +
                     "' (supported: default)");
  }
  if (t.rope.mrope_section.size() != 3) {
    throw InputError(origin + ": mrope_section must have 3 entries (t, h, w)");
  }
  for (int section : t.rope.mrope_section) {
    if (section < 0) throw InputError(origin + ": mrope_section entries must not be negative");
  }
  // 64-bit sums and products: every entry may be as large as an int.
  const int64_t sum =
      std::accumulate(t.rope.mrope_section.begin(), t.rope.mrope_section.end(), int64_t{0});
  if (t.head_dim % 2 != 0 || sum != t.head_dim / 2) {
    throw InputError(origin + ": mrope_section sums to " + std::to_string(sum) +
                     " but must equal head_dim/2 = " + std::to_string(t.head_dim / 2));
  }
  if (t.rope.mrope_interleaved) {
    // Height takes frequencies 1, 4, 7, ... and width 2, 5, 8, ...: section d's last one,
    // d + 3 (sec[d] - 1), must be a frequency of the head (transformers' layout).
    const auto& ms = t.rope.mrope_section;
    const auto fits = [&](int d) {
      return ms[d] == 0 || d + 3 * (int64_t{ms[d]} - 1) < t.head_dim / 2;
    };
    if (!fits(1) || !fits(2)) {
      throw InputError(origin +
                       ": mrope_section does not fit the interleaved layout for head_dim " +
                       std::to_string(t.head_dim));
    }
  }
  if (v.out_hidden_size != t.hidden_size) {
    throw InputError(origin + ": vision_config.out_hidden_size (" +
                     std::to_string(v.out_hidden_size) + ") must equal text_config.hidden_size (" +
                     std::to_string(t.hidden_size) + ")");
  }
  for (auto [name, id] : {std::pair<const char*, int64_t>{"image_token_id", image_token_id},
                          {"video_token_id", video_token_id},
                          {"vision_start_token_id", vision_start_token_id},
                          {"vision_end_token_id", vision_end_token_id}}) {
    if (id < 0 || id >= t.vocab_size) {
      throw InputError(origin + ": " + name + " " + std::to_string(id) +
                       " is outside the vocabulary (size " + std::to_string(t.vocab_size) + ")");
    }
  }
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& origin) {
  const json root = detail::parse_json(json_text, origin);
  if (!root.is_object()) throw InputError(origin + ": expected a JSON object at the top level");
  ModelConfig c;
  auto mt = root.find("model_type");
  if (mt == root.end() || !mt->is_string()) {
    throw InputError(origin + ": no 'model_type' key; is this a Hugging Face model folder?");
  }
  c.model_type = mt->get<std::string>();
  const auto& supported = supported_model_types();
  if (std::find(supported.begin(), supported.end(), c.model_type) == supported.end()) {
    throw InputError(origin + ": unsupported model_type '" + c.model_type +
                     "' (this build supports: " + join(supported) + ")");
  }
  read_opt(root, "architectures", c.architectures, origin);
  read_opt(root, "image_token_id", c.image_token_id, origin);
  read_opt(root, "video_token_id", c.video_token_id, origin);
  read_opt(root, "vision_start_token_id", c.vision_start_token_id, origin);
  read_opt(root, "vision_end_token_id", c.vision_end_token_id, origin);
  read_opt(root, "torch_dtype", c.torch_dtype, origin);
  read_opt(root, "dtype", c.torch_dtype, origin);
  read_opt(root, "qi_early_text_mode", c.qi_early_text_mode, origin);
  if (c.qi_early_text_mode != "all_before_image" && c.qi_early_text_mode != "query_only") {
    throw InputError(origin + ": qi_early_text_mode '" + c.qi_early_text_mode +
                     "' is not one of all_before_image, query_only");
  }
  if (auto it = root.find("qi_early_enabled"); it != root.end() && !it->is_null()) {
    bool enabled = false;
    read_opt(root, "qi_early_enabled", enabled, origin);
    c.qi_early_enabled = enabled;
  }
  if (auto it = root.find("qi_early_keep_ratio"); it != root.end() && !it->is_null()) {
    double ratio = 0;
    read_opt(root, "qi_early_keep_ratio", ratio, origin);
    c.qi_early_keep_ratio = ratio;
  }
  if (auto z = root.find("ziprerank"); z != root.end() && z->is_object()) {
    if (auto it = z->find("pruning_text"); it != z->end()) {
      const std::string mode = it->is_string() ? it->get<std::string>() : it->dump();
      if (mode != "all_before_image" && mode != "query_only" && mode != "query") {
        throw InputError(origin + ": ziprerank.pruning_text '" + mode +
                         "' is not one of query, all_before_image, query_only");
      }
      c.qi_early_text_mode = mode;
    }
  }

  const json& text = sub_object(root, "text_config", origin);
  const json& vision = sub_object(root, "vision_config", origin);
  parse_vision(vision, c.vision, origin);
  parse_text(text, c.text, origin);

  // Token ids and tying may sit at the top level or inside text_config; the top level wins.
  for (const json* scope : {&text, &root}) {
    const std::string s = scope == &text ? "text_config." : "";
    read_token_id(*scope, "bos_token_id", c.bos_token_id, origin, s);
    read_token_id(*scope, "eos_token_id", c.eos_token_id, origin, s);
    read_token_id(*scope, "pad_token_id", c.pad_token_id, origin, s);
    read_opt(*scope, "tie_word_embeddings", c.tie_word_embeddings, origin, s);
  }
  c.validate(origin);
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  return parse_model_config(detail::read_text_file(path), path);
}

std::string model_config_to_json(const ModelConfig& c, int indent) {
  const auto& v = c.vision;
  const auto& t = c.text;
  json vision = {{"model_type", "qwen3_vl"},
                 {"depth", v.depth},
                 {"hidden_size", v.hidden_size},
                 {"hidden_act", v.hidden_act},
                 {"intermediate_size", v.intermediate_size},
                 {"num_heads", v.num_heads},
                 {"in_channels", v.in_channels},
                 {"patch_size", v.patch_size},
                 {"spatial_merge_size", v.spatial_merge_size},
                 {"temporal_patch_size", v.temporal_patch_size},
                 {"out_hidden_size", v.out_hidden_size},
                 {"num_position_embeddings", v.num_position_embeddings},
                 {"deepstack_visual_indexes", v.deepstack_visual_indexes},
                 {"initializer_range", v.initializer_range}};
  json rope = {{"rope_type", t.rope.rope_type},
               {"mrope_section", t.rope.mrope_section},
               {"mrope_interleaved", t.rope.mrope_interleaved}};
  json text = {{"model_type", "qwen3_vl_text"},
               {"vocab_size", t.vocab_size},
               {"hidden_size", t.hidden_size},
               {"intermediate_size", t.intermediate_size},
               {"num_hidden_layers", t.num_hidden_layers},
               {"num_attention_heads", t.num_attention_heads},
               {"num_key_value_heads", t.num_key_value_heads},
               {"head_dim", t.head_dim},
               {"hidden_act", t.hidden_act},
               {"max_position_embeddings", t.max_position_embeddings},
               {"rms_norm_eps", t.rms_norm_eps},
               {"attention_bias", t.attention_bias},
               {"rope_theta", t.rope.rope_theta},
               {"rope_scaling", rope},
               {"initializer_range", t.initializer_range},
               {"bos_token_id", c.bos_token_id},
               {"eos_token_id", c.eos_token_id},
               {"tie_word_embeddings", c.tie_word_embeddings}};
  json root = {{"model_type", c.model_type},
               {"architectures", c.architectures.empty()
                                     ? std::vector<std::string>{"Qwen3VLForConditionalGeneration"}
                                     : c.architectures},
               {"image_token_id", c.image_token_id},
               {"video_token_id", c.video_token_id},
               {"vision_start_token_id", c.vision_start_token_id},
               {"vision_end_token_id", c.vision_end_token_id},
               {"pad_token_id", c.pad_token_id},
               {"tie_word_embeddings", c.tie_word_embeddings},
               {"torch_dtype", c.torch_dtype},
               {"text_config", text},
               {"vision_config", vision}};
  if (c.qi_early_text_mode == "query") {
    root["ziprerank"] = {{"pruning_text", "query"}};
  } else if (c.qi_early_text_mode != ModelConfig{}.qi_early_text_mode) {
    root["qi_early_text_mode"] = c.qi_early_text_mode;
  }
  if (c.qi_early_enabled) root["qi_early_enabled"] = *c.qi_early_enabled;
  if (c.qi_early_keep_ratio) root["qi_early_keep_ratio"] = *c.qi_early_keep_ratio;
  return root.dump(indent);
}

// ---------------------------------------------------------------------------------------------
// preprocessor_config.json

void PreprocessorConfig::validate(const std::string& origin) const {
  require_positive(min_pixels, "min_pixels", origin);
  require_positive(max_pixels, "max_pixels", origin);
  require_positive(patch_size, "patch_size", origin);
  require_positive(temporal_patch_size, "temporal_patch_size", origin);
  require_positive(merge_size, "merge_size", origin);
  if (min_pixels > max_pixels) {
    throw InputError(origin + ": min_pixels (" + std::to_string(min_pixels) +
                     ") is larger than max_pixels (" + std::to_string(max_pixels) + ")");
  }
  if (image_mean.size() != 3 || image_std.size() != 3) {
    throw InputError(origin + ": image_mean and image_std must have 3 entries (RGB)");
  }
  for (double s : image_std) {
    if (!(s > 0)) throw InputError(origin + ": image_std entries must be positive");
  }
  if (resample != 2 && resample != 3) {
    throw InputError(origin + ": unsupported resample " + std::to_string(resample) +
                     " (supported: 2 = bilinear, 3 = bicubic)");
  }
}

PreprocessorConfig qwen3_vl_preprocessor_config() {
  PreprocessorConfig p;
  p.min_pixels = 65536;
  p.max_pixels = 16777216;
  p.patch_size = 16;
  p.temporal_patch_size = 2;
  p.merge_size = 2;
  p.image_mean = {0.5, 0.5, 0.5};
  p.image_std = {0.5, 0.5, 0.5};
  p.image_processor_type = "Qwen2VLImageProcessorFast";
  return p;
}

PreprocessorConfig parse_preprocessor_config(const std::string& json_text,
                                             const std::string& origin) {
  const json root = detail::parse_json(json_text, origin);
  if (!root.is_object()) throw InputError(origin + ": expected a JSON object at the top level");
  PreprocessorConfig c;
  auto size = root.find("size");
  if (size != root.end() && size->is_object()) {
    read_opt(*size, "shortest_edge", c.min_pixels, origin, "size.");
    read_opt(*size, "longest_edge", c.max_pixels, origin, "size.");
  }
  // Explicit min_pixels/max_pixels override `size`, as in transformers' Qwen2-VL processor.
  read_opt(root, "min_pixels", c.min_pixels, origin);
  read_opt(root, "max_pixels", c.max_pixels, origin);
  read_opt(root, "patch_size", c.patch_size, origin);
  read_opt(root, "temporal_patch_size", c.temporal_patch_size, origin);
  read_opt(root, "merge_size", c.merge_size, origin);
  read_opt(root, "image_mean", c.image_mean, origin);
  read_opt(root, "image_std", c.image_std, origin);
  read_opt(root, "rescale_factor", c.rescale_factor, origin);
  read_opt(root, "do_resize", c.do_resize, origin);
  read_opt(root, "do_rescale", c.do_rescale, origin);
  read_opt(root, "do_normalize", c.do_normalize, origin);
  read_opt(root, "do_convert_rgb", c.do_convert_rgb, origin);
  read_opt(root, "resample", c.resample, origin);
  read_opt(root, "image_processor_type", c.image_processor_type, origin);
  c.validate(origin);
  return c;
}

PreprocessorConfig load_preprocessor_config(const std::string& path) {
  return parse_preprocessor_config(detail::read_text_file(path), path);
}

std::string preprocessor_config_to_json(const PreprocessorConfig& c, int indent) {
  json root = {{"image_processor_type", c.image_processor_type.empty()
                                            ? std::string("Qwen2VLImageProcessorFast")
                                            : c.image_processor_type},
               {"size", {{"shortest_edge", c.min_pixels}, {"longest_edge", c.max_pixels}}},
               {"patch_size", c.patch_size},
               {"temporal_patch_size", c.temporal_patch_size},
               {"merge_size", c.merge_size},
               {"image_mean", c.image_mean},
               {"image_std", c.image_std},
               {"rescale_factor", c.rescale_factor},
               {"do_resize", c.do_resize},
               {"do_rescale", c.do_rescale},
               {"do_normalize", c.do_normalize},
               {"do_convert_rgb", c.do_convert_rgb},
               {"resample", c.resample}};
  return root.dump(indent);
}

}  // namespace ziprerank
