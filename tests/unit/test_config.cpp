#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/json_util.hpp"
#include "ziprerank/config.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model_folder.hpp"

using namespace ziprerank;

namespace {
const std::string kFixtures = ZIPRERANK_TEST_FIXTURES;

std::string config_with(const std::function<void(nlohmann::json&)>& edit) {
  auto j =
      nlohmann::json::parse(detail::read_text_file(kFixtures + "/config/qwen3_vl_8b_config.json"));
  edit(j);
  return j.dump();
}

void expect_input_error(const std::string& text, const std::string& needle) {
  try {
    parse_model_config(text, "config.json");
    FAIL() << "expected InputError containing '" << needle << "'";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Config, ParsesQwen3VL8B) {
  const ModelConfig c = load_model_config(kFixtures + "/config/qwen3_vl_8b_config.json");
  EXPECT_EQ(c.model_type, "qwen3_vl");
  EXPECT_EQ(c.image_token_id, 151655);
  EXPECT_EQ(c.video_token_id, 151656);
  EXPECT_EQ(c.vision_start_token_id, 151652);
  EXPECT_EQ(c.vision_end_token_id, 151653);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.vision.depth, 27);
  EXPECT_EQ(c.vision.hidden_size, 1152);
  EXPECT_EQ(c.vision.num_heads, 16);
  EXPECT_EQ(c.vision.head_dim(), 72);
  EXPECT_EQ(c.vision.intermediate_size, 4304);
  EXPECT_EQ(c.vision.hidden_act, "gelu_pytorch_tanh");
  EXPECT_EQ(c.vision.patch_size, 16);
  EXPECT_EQ(c.vision.temporal_patch_size, 2);
  EXPECT_EQ(c.vision.spatial_merge_size, 2);
  EXPECT_EQ(c.vision.out_hidden_size, 4096);
  EXPECT_EQ(c.vision.num_position_embeddings, 2304);
  EXPECT_EQ(c.vision.position_grid_side(), 48);
  EXPECT_EQ(c.vision.patch_input_dim(), 1536);
  EXPECT_EQ(c.vision.deepstack_visual_indexes, (std::vector<int>{8, 16, 24}));
  EXPECT_EQ(c.text.vocab_size, 151936);
  EXPECT_EQ(c.text.hidden_size, 4096);
  EXPECT_EQ(c.text.intermediate_size, 12288);
  EXPECT_EQ(c.text.num_hidden_layers, 36);
  EXPECT_EQ(c.text.num_attention_heads, 32);
  EXPECT_EQ(c.text.num_key_value_heads, 8);
  EXPECT_EQ(c.text.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.text.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.text.rope.rope_theta, 5000000.0);
  EXPECT_EQ(c.text.rope.rope_type, "default");
  EXPECT_EQ(c.text.rope.mrope_section, (std::vector<int>{24, 20, 20}));
  EXPECT_TRUE(c.text.rope.mrope_interleaved);
  EXPECT_EQ(c.text.max_position_embeddings, 262144);
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_id, 151645);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(Config, TransformersFiveRopeParameters) {
  // transformers 5 writes rope_parameters (holding rope_theta) instead of rope_scaling.
  const ModelConfig c =
      parse_model_config(config_with([](nlohmann::json& j) {
                           auto& t = j["text_config"];
                           t.erase("rope_scaling");
                           t.erase("rope_theta");
                           t["rope_parameters"] = {{"rope_type", "default"},
                                                   {"rope_theta", 1000000.0},
                                                   {"mrope_section", {24, 20, 20}},
                                                   {"mrope_interleaved", true}};
                         }),
                         "config.json");
  EXPECT_DOUBLE_EQ(c.text.rope.rope_theta, 1000000.0);
  EXPECT_EQ(c.text.rope.mrope_section, (std::vector<int>{24, 20, 20}));
}

TEST(Config, InterleavedMropeSectionsFitAsTransformersLaysThemOut) {
  // head_dim 16: 8 frequencies. Height takes 1, 4, 7 and width 2, 5 for [3, 3, 2]; width's third
  // frequency for [2, 2, 4] would be 2 + 9 = 11, past the head.
  const auto with_sections = [](std::vector<int> sections) {
    return config_with([sections](nlohmann::json& j) {
      auto& t = j["text_config"];
      t["head_dim"] = 16;
      t.erase("rope_scaling");
      t["rope_parameters"] = {{"rope_type", "default"},
                              {"rope_theta", 5000000.0},
                              {"mrope_section", sections},
                              {"mrope_interleaved", true}};
    });
  };
  EXPECT_EQ(parse_model_config(with_sections({3, 3, 2}), "c.json").text.rope.mrope_section,
            (std::vector<int>{3, 3, 2}));
  expect_input_error(with_sections({2, 2, 4}), "does not fit the interleaved layout");
}

TEST(Config, DefaultsMatchTransformersWhenKeysAbsent) {
  const ModelConfig c = parse_model_config(R"({"model_type": "qwen3_vl",
      "vision_config": {"out_hidden_size": 4096}})",
                                           "config.json");
  EXPECT_EQ(c.vision.depth, 27);
  EXPECT_EQ(c.text.num_hidden_layers, 32);
  EXPECT_EQ(c.text.intermediate_size, 22016);
  EXPECT_EQ(c.text.num_key_value_heads, 32);  // falls back to num_attention_heads
  EXPECT_EQ(c.image_token_id, 151655);
}

TEST(Config, KvHeadsFallBackToAttentionHeads) {
  const ModelConfig c = parse_model_config(config_with([](nlohmann::json& j) {
                                             j["text_config"].erase("num_key_value_heads");
                                             j["text_config"]["num_attention_heads"] = 16;
                                             j["text_config"]["head_dim"] = 128;
                                           }),
                                           "config.json");
  EXPECT_EQ(c.text.num_key_value_heads, 16);
}

TEST(Config, RejectsUnknownModelTypeByName) {
  expect_input_error(R"({"model_type": "llama"})", "unsupported model_type 'llama'");
  expect_input_error(R"({"model_type": "llama"})", "qwen3_vl");
  expect_input_error(R"({"hidden_size": 3})", "no 'model_type'");
}

TEST(Config, RejectsBadJsonWithPosition) {
  expect_input_error("{\"model_type\": \"qwen3_vl\",", "invalid JSON at byte");
  expect_input_error("[1, 2]", "JSON object");
  expect_input_error(R"({"model_type": "qwen3_vl", "text_config": {"hidden_size": 16E777216}})",
                     "invalid JSON");
}

TEST(Config, RejectsWrongTypesAndInconsistentShapes) {
  expect_input_error(
      config_with([](nlohmann::json& j) { j["text_config"]["hidden_size"] = "big"; }),
      "text_config.hidden_size");
  expect_input_error(
      config_with([](nlohmann::json& j) { j["text_config"]["num_key_value_heads"] = 7; }),
      "multiple of num_key_value_heads");
  expect_input_error(config_with([](nlohmann::json& j) {
                       j["text_config"]["rope_scaling"]["mrope_section"] = {24, 20, 21};
                     }),
                     "mrope_section sums to 65");
  expect_input_error(
      config_with([](nlohmann::json& j) { j["vision_config"]["out_hidden_size"] = 1024; }),
      "must equal text_config.hidden_size");
  expect_input_error(config_with([](nlohmann::json& j) {
                       j["vision_config"]["deepstack_visual_indexes"] = {8, 30};
                     }),
                     "deepstack_visual_indexes");
  expect_input_error(
      config_with([](nlohmann::json& j) { j["vision_config"]["num_position_embeddings"] = 2300; }),
      "perfect square");
  expect_input_error(config_with([](nlohmann::json& j) {
                       j["text_config"]["rope_scaling"]["rope_type"] = "yarn";
                     }),
                     "unsupported rope_type 'yarn'");
  expect_input_error(config_with([](nlohmann::json& j) { j["vision_config"] = 5; }),
                     "'vision_config' must be a JSON object");
  expect_input_error(config_with([](nlohmann::json& j) { j["image_token_id"] = 999999999; }),
                     "outside the vocabulary");
}

TEST(Config, PruningTextModeDefaultsToTheReferenceAndRoundTrips) {
  const ModelConfig a = load_model_config(kFixtures + "/config/qwen3_vl_8b_config.json");
  EXPECT_EQ(a.qi_early_text_mode, "all_before_image");
  EXPECT_EQ(model_config_to_json(a).find("qi_early_text_mode"), std::string::npos);
  const ModelConfig q = parse_model_config(
      config_with([](nlohmann::json& j) { j["qi_early_text_mode"] = "query_only"; }), "c.json");
  EXPECT_EQ(q.qi_early_text_mode, "query_only");
  EXPECT_EQ(parse_model_config(model_config_to_json(q), "roundtrip").qi_early_text_mode,
            "query_only");
  expect_input_error(config_with([](nlohmann::json& j) { j["qi_early_text_mode"] = "query"; }),
                     "qi_early_text_mode 'query' is not one of all_before_image, query_only");
  // ziprerank's own variant (the query's tokens) has its own key, which wins and round-trips.
  const ModelConfig own = parse_model_config(config_with([](nlohmann::json& j) {
                                               j["qi_early_text_mode"] = "all_before_image";
                                               j["ziprerank"]["pruning_text"] = "query";
                                             }),
                                             "c.json");
  EXPECT_EQ(own.qi_early_text_mode, "query");
  const std::string written = model_config_to_json(own);
  EXPECT_EQ(written.find("qi_early_text_mode"), std::string::npos) << written;
  EXPECT_EQ(parse_model_config(written, "roundtrip").qi_early_text_mode, "query");
  expect_input_error(config_with([](nlohmann::json& j) { j["ziprerank"]["pruning_text"] = "x"; }),
                     "ziprerank.pruning_text 'x'");
}

TEST(Config, ReadsTheReferencesQiEarlyKeys) {
  const ModelConfig none = parse_model_config(config_with([](nlohmann::json&) {}), "c.json");
  EXPECT_FALSE(none.qi_early_enabled.has_value());
  EXPECT_FALSE(none.qi_early_keep_ratio.has_value());
  const ModelConfig on = parse_model_config(config_with([](nlohmann::json& j) {
                                              j["qi_early_enabled"] = true;
                                              j["qi_early_keep_ratio"] = 0.5;
                                            }),
                                            "c.json");
  EXPECT_EQ(on.qi_early_enabled, std::optional<bool>(true));
  EXPECT_EQ(on.qi_early_keep_ratio, std::optional<double>(0.5));
  const ModelConfig back = parse_model_config(model_config_to_json(on), "roundtrip");
  EXPECT_EQ(back.qi_early_enabled, on.qi_early_enabled);
  EXPECT_EQ(back.qi_early_keep_ratio, on.qi_early_keep_ratio);
  expect_input_error(config_with([](nlohmann::json& j) { j["qi_early_keep_ratio"] = 1.5; }),
                     "qi_early_keep_ratio");
}

TEST(Config, RoundTripsThroughJson) {
  const ModelConfig a = load_model_config(kFixtures + "/config/qwen3_vl_8b_config.json");
  const ModelConfig b = parse_model_config(model_config_to_json(a), "roundtrip");
  EXPECT_EQ(model_config_to_json(a), model_config_to_json(b));
  EXPECT_EQ(b.text.rope.mrope_section, a.text.rope.mrope_section);
  EXPECT_EQ(b.vision.deepstack_visual_indexes, a.vision.deepstack_visual_indexes);
}

TEST(PreprocessorConfig, ParsesQwen3VL) {
  const PreprocessorConfig p =
      load_preprocessor_config(kFixtures + "/config/qwen3_vl_8b_preprocessor_config.json");
  EXPECT_EQ(p.min_pixels, 65536);
  EXPECT_EQ(p.max_pixels, 16777216);
  EXPECT_EQ(p.patch_size, 16);
  EXPECT_EQ(p.temporal_patch_size, 2);
  EXPECT_EQ(p.merge_size, 2);
  EXPECT_EQ(p.image_mean, (std::vector<double>{0.5, 0.5, 0.5}));
  EXPECT_EQ(p.image_std, (std::vector<double>{0.5, 0.5, 0.5}));
  EXPECT_DOUBLE_EQ(p.rescale_factor, 1.0 / 255.0);
  EXPECT_EQ(p.resample, 3);
}

TEST(PreprocessorConfig, ExplicitPixelBoundsOverrideSize) {
  const PreprocessorConfig p = parse_preprocessor_config(
      R"({"size": {"shortest_edge": 100, "longest_edge": 1000}, "max_pixels": 5000})", "p.json");
  EXPECT_EQ(p.min_pixels, 100);
  EXPECT_EQ(p.max_pixels, 5000);
}

TEST(PreprocessorConfig, RejectsBadValues) {
  EXPECT_THROW(parse_preprocessor_config(R"({"min_pixels": 10, "max_pixels": 5})", "p.json"),
               InputError);
  EXPECT_THROW(parse_preprocessor_config(R"({"image_std": [0.5, 0, 0.5]})", "p.json"), InputError);
  EXPECT_THROW(parse_preprocessor_config(R"({"image_mean": [0.5]})", "p.json"), InputError);
  EXPECT_THROW(parse_preprocessor_config(R"({"patch_size": "16"})", "p.json"), InputError);
}

TEST(ChatTemplate, ReadsTheModelsOwnAndNamesWhereItDiffersFromTheBuiltIn) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("zr_tpl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  EXPECT_EQ(read_chat_template(dir.string()), "");
  // Qwen3-VL's format, as its template source writes it (string literals, "\n" escaped).
  const std::string qwen =
      "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
      "{%- if item.type == 'image' %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
      "{%- endif %}{{- '<|im_end|>\\n' }}{%- endfor %}"
      "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  std::ofstream(dir / "tokenizer_config.json") << nlohmann::json{{"chat_template", qwen}}.dump();
  EXPECT_EQ(read_chat_template(dir.string()), qwen);
  EXPECT_TRUE(chat_template_differences(qwen).empty());
  // chat_template.json wins over tokenizer_config.json, a .jinja file over both.
  std::ofstream(dir / "chat_template.json")
      << nlohmann::json{{"chat_template", qwen + "<think>"}}.dump();
  EXPECT_EQ(read_chat_template(dir.string()), qwen + "<think>");
  std::ofstream(dir / "chat_template.jinja") << "{{ 'You are a helpful assistant.' }}" + qwen;
  const auto diffs = chat_template_differences(read_chat_template(dir.string()));
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_NE(diffs[0].find("default system message"), std::string::npos);
  EXPECT_EQ(chat_template_differences("{{ messages }}").size(), 3u);
  fs::remove(dir / "chat_template.jinja");
  fs::remove(dir / "chat_template.json");
  std::ofstream(dir / "tokenizer_config.json") << nlohmann::json{
      {"chat_template",
       {{{"name", "tool_use"}, {"template", "x"}},
        {{"name", "default"}, {"template", qwen}}}}}.dump();
  EXPECT_EQ(read_chat_template(dir.string()), qwen);
  std::ofstream(dir / "tokenizer_config.json") << "{broken";
  EXPECT_THROW(read_chat_template(dir.string()), InputError);
  fs::remove_all(dir);
}
