#include "ziprerank/model_folder.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/json_util.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Name of the trained model shipped in models/ and of the random stand-in the build generates.
constexpr const char* kShippedModel = "ziprerank-small";
constexpr const char* kBuildRandomModel = "tiny-random";

}  // namespace

ModelFolder open_model_folder(const std::string& dir) {
  if (!fs::is_directory(dir)) {
    throw InputError("model folder '" + dir + "' does not exist (or is not a folder)");
  }
  ModelFolder m;
  m.dir = dir;
  const fs::path cfg = fs::path(dir) / "config.json";
  if (!fs::exists(cfg)) throw InputError("'" + dir + "' has no config.json; is it a model folder?");
  const std::string text = detail::read_text_file(cfg.string());
  m.config = parse_model_config(text, cfg.string());
  const json root = json::parse(text);
  m.name = fs::path(dir).lexically_normal().filename().string();
  if (m.name.empty()) m.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  // The keep ratio when the command does not say: the checkpoint's own QI-Early keys as the
  // reference reads them (pruning on only where qi_early_enabled is true, then at
  // qi_early_keep_ratio, 0.25 when absent), else no pruning, as the reference's evaluation
  // without --use_qi_early; ziprerank.keep_ratio below wins over both.
  m.keep_ratio =
      m.config.qi_early_enabled.value_or(false) ? m.config.qi_early_keep_ratio.value_or(0.25) : 1.0;
  if (auto it = root.find("ziprerank"); it != root.end() && it->is_object()) {
    detail::read_opt(*it, "name", m.name, cfg.string(), "ziprerank.");
    detail::read_opt(*it, "random_init", m.random_init, cfg.string(), "ziprerank.");
    const auto is_scoring = [](const std::string& name) {
      const auto& names = scoring_names();
      return std::find(names.begin(), names.end(), name) != names.end();
    };
    std::string scoring = scoring_name(m.scoring);
    detail::read_opt(*it, "scoring", scoring, cfg.string(), "ziprerank.");
    if (!is_scoring(scoring)) {
      throw InputError(cfg.string() + ": ziprerank.scoring '" + scoring +
                       "' is not one of logits, generate, similarity");
    }
    m.scoring = parse_scoring(scoring);
    if (auto t = it->find("trained_scorings"); t != it->end()) {
      const std::string what = cfg.string() + ": ziprerank.trained_scorings";
      if (!t->is_array()) throw InputError(what + " must be an array of scoring names");
      for (const json& v : *t) {
        const std::string name = v.is_string() ? v.get<std::string>() : v.dump();
        if (!v.is_string() || !is_scoring(name))
          throw InputError(what + ": '" + name + "' is not one of logits, generate, similarity");
        m.trained_scorings.push_back(parse_scoring(name));
      }
    }
    detail::read_opt(*it, "keep_ratio", m.keep_ratio, cfg.string(), "ziprerank.");
    if (!(m.keep_ratio > 0.0 && m.keep_ratio <= 1.0)) {
      throw InputError(cfg.string() + ": ziprerank.keep_ratio " + std::to_string(m.keep_ratio) +
                       " is not in (0, 1]");
    }
    detail::read_opt(*it, "vision_tile", m.vision_tile, cfg.string(), "ziprerank.");
    check_vision_tile(m.vision_tile, m.config.vision, cfg.string() + ": ziprerank.vision_tile");
  }
  const fs::path pre = fs::path(dir) / "preprocessor_config.json";
  if (!fs::exists(pre)) {
    throw InputError("'" + dir + "' has no preprocessor_config.json (the image settings)");
  }
  m.preprocessor = load_preprocessor_config(pre.string());
  m.generation = load_generation_settings(dir);
  for (const char* f : {"tokenizer.json", "tokenizer.model"}) {
    if (fs::exists(fs::path(dir) / f)) {
      m.tokenizer_file = (fs::path(dir) / f).string();
      break;
    }
  }
  if (m.tokenizer_file.empty())
    throw InputError("'" + dir + "' has no tokenizer.json or tokenizer.model");
  return m;
}

std::string read_chat_template(const std::string& dir) {
  const fs::path jinja = fs::path(dir) / "chat_template.jinja";
  if (fs::is_regular_file(jinja)) return detail::read_text_file(jinja.string());
  for (const char* name : {"chat_template.json", "tokenizer_config.json"}) {
    const fs::path path = fs::path(dir) / name;
    if (!fs::is_regular_file(path)) continue;
    json root;
    try {
      root = json::parse(detail::read_text_file(path.string()));
    } catch (const json::parse_error& e) {
      throw InputError(path.string() + ": not valid JSON (" + e.what() + ")");
    }
    const auto it = root.is_object() ? root.find("chat_template") : root.end();
    if (root.is_object() && it != root.end()) {
      if (it->is_string()) return it->get<std::string>();
      if (it->is_array()) {  // [{"name": "default", "template": "..."}, ...]
        for (const json& t : *it) {
          if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
              t["template"].is_string())
            return t["template"].get<std::string>();
        }
      }
    }
  }
  return "";
}

std::vector<std::string> chat_template_differences(const std::string& t) {
  std::vector<std::string> out;
  if (t.empty()) return out;
  const auto has = [&](const std::string& s) { return t.find(s) != std::string::npos; };
  if (!has("<|im_start|>") || !has("<|im_end|>"))
    out.push_back("it does not use Qwen's <|im_start|>/<|im_end|> turns");
  if (!has("<|vision_start|><|image_pad|><|vision_end|>"))
    out.push_back("it does not write an image as <|vision_start|><|image_pad|><|vision_end|>");
  // In the template's source the generation prompt is a string literal: "\n" as two characters.
  if (!has("<|im_start|>assistant\\n") && !has("<|im_start|>assistant\n"))
    out.push_back("its generation prompt is not <|im_start|>assistant followed by a newline");
  if (has("<think>"))
    out.push_back("it adds a <think> block (a thinking model): the ranking prompt has none");
  if (has("You are a helpful assistant"))
    out.push_back("it adds a default system message: the ranking prompt has none");
  return out;
}

GenerationSettings load_generation_settings(const std::string& dir) {
  GenerationSettings g;
  const fs::path path = fs::path(dir) / "generation_config.json";
  if (!fs::exists(path)) return g;
  const std::string origin = path.string();
  json root;
  try {
    root = json::parse(detail::read_text_file(origin));
  } catch (const json::parse_error& e) {
    throw InputError(origin + ": not valid JSON (" + e.what() + ")");
  }
  if (!root.is_object()) throw InputError(origin + ": must be a JSON object");
  g.from_file = true;
  detail::read_opt(root, "repetition_penalty", g.repetition_penalty, origin);
  if (!(g.repetition_penalty > 0.0) || !std::isfinite(g.repetition_penalty))
    throw InputError(origin + ": repetition_penalty must be a positive number");
  detail::read_opt(root, "min_new_tokens", g.min_new_tokens, origin);
  if (g.min_new_tokens < 0) throw InputError(origin + ": min_new_tokens must not be negative");
  if (auto it = root.find("eos_token_id"); it != root.end() && !it->is_null()) {
    const auto add = [&](const json& v) {
      if (!v.is_number_integer()) throw InputError(origin + ": eos_token_id must be token ids");
      g.eos_token_ids.push_back(v.get<int64_t>());
    };
    if (it->is_array()) {
      for (const json& v : *it) add(v);
    } else {
      add(*it);
    }
  }
  // Settings transformers' greedy decoding would apply that ziprerank does not: say so.
  for (const char* key :
       {"no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "sequence_bias",
        "forced_bos_token_id", "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens",
        "min_length", "exponential_decay_length_penalty", "num_beams"}) {
    auto it = root.find(key);
    if (it == root.end() || it->is_null()) continue;
    const bool neutral =
        (it->is_number() && (it->get<double>() == 0.0 ||
                             (std::string(key) == "num_beams" && it->get<double>() == 1.0))) ||
        (it->is_array() && it->empty());
    if (!neutral) {
      spdlog::warn("{}: '{}' is not applied by ziprerank's greedy decoding (generate scoring)",
                   origin, key);
    }
  }
  return g;
}

const std::vector<std::string>& scoring_names() {
  static const std::vector<std::string> names{"logits", "generate", "similarity"};
  return names;
}

const std::string& scoring_name(Scoring scoring) {
  return scoring_names().at(static_cast<size_t>(scoring));
}

Scoring parse_scoring(const std::string& name) {
  const auto& names = scoring_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return static_cast<Scoring>(i);
  }
  throw UsageError("unknown scoring '" + name + "' (use logits, generate or similarity)");
}

std::string untrained_scoring_warning(const ModelFolder& folder, Scoring scoring) {
  const auto& t = folder.trained_scorings;
  if (t.empty() || std::find(t.begin(), t.end(), scoring) != t.end()) return "";
  std::string list;
  for (Scoring s : t) list += (list.empty() ? "" : ", ") + scoring_name(s);
  return "model '" + folder.name + "' was trained for " + list + " scoring only (" +
         "ziprerank.trained_scorings in its config.json): its " + scoring_name(scoring) +
         " rankings are not meaningful; drop --scoring to use its own";
}

std::string default_model_dir() {
  if (const char* env = std::getenv("ZIPRERANK_MODEL"); env && *env) return env;
  std::vector<fs::path> roots;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    roots.push_back(exe.parent_path() / "models");                                 // build tree
    roots.push_back(exe.parent_path() / ".." / "share" / "ziprerank" / "models");  // installed
  }
#ifdef ZIPRERANK_MODEL_INSTALL_DIR
  roots.emplace_back(ZIPRERANK_MODEL_INSTALL_DIR);
#endif
#ifdef ZIPRERANK_MODEL_BUILD_DIR
  roots.emplace_back(ZIPRERANK_MODEL_BUILD_DIR);
#endif
  for (const char* name : {kShippedModel, kBuildRandomModel}) {
    for (const auto& root : roots) {
      const fs::path p = root / name;
      if (fs::exists(p / "config.json")) return p.lexically_normal().string();
    }
  }
  throw InputError("no default model found; pass --model DIR or set ZIPRERANK_MODEL");
}

}  // namespace ziprerank
