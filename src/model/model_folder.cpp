#include "ziprerank/model_folder.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
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

// The Qwen2/Qwen3 pre-tokenizer pattern (as written in their tokenizer.json).
constexpr const char* kQwenSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves, the
// rest to U+0100 onwards. The id of a byte is its index in this order.
std::vector<std::pair<int, int>> byte_unicode_order() {
  std::vector<std::pair<int, int>> order;  // (byte, code point)
  std::vector<bool> taken(256, false);
  auto range = [&](int lo, int hi) {
    for (int b = lo; b <= hi; ++b) {
      order.emplace_back(b, b);
      taken[b] = true;
    }
  };
  range('!', '~');
  range(0xA1, 0xAC);
  range(0xAE, 0xFF);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    if (!taken[b]) order.emplace_back(b, next++);
  }
  return order;
}

std::string utf8(int cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text << "\n";
  if (!out) throw InputError("cannot write '" + path.string() + "'");
}

}  // namespace

SpecialTokenIds write_byte_level_tokenizer(const std::string& path) {
  json vocab = json::object();
  const auto order = byte_unicode_order();
  for (size_t i = 0; i < order.size(); ++i) vocab[utf8(order[i].second)] = i;
  const int64_t base = static_cast<int64_t>(order.size());
  const std::vector<std::string> specials = {"<|endoftext|>",    "<|im_start|>",   "<|im_end|>",
                                             "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                             "<|video_pad|>"};
  json added = json::array();
  for (size_t i = 0; i < specials.size(); ++i) {
    added.push_back({{"id", base + static_cast<int64_t>(i)},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer",
               {{"type", "Sequence"},
                {"pretokenizers", json::array({{{"type", "Split"},
                                                {"pattern", {{"Regex", kQwenSplitPattern}}},
                                                {"behavior", "Isolated"},
                                                {"invert", false}},
                                               {{"type", "ByteLevel"},
                                                {"add_prefix_space", false},
                                                {"trim_offsets", false},
                                                {"use_regex", false}}})}}},
              {"post_processor", nullptr},
              {"decoder",
               {{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", false},
                {"use_regex", false}}},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", json::array()}}}};
  write_file(path, tok.dump(1));
  return SpecialTokenIds{base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 6};
}

ModelConfig tiny_model_config() {
  ModelConfig c;
  c.vision.depth = 2;
  c.vision.hidden_size = 64;
  c.vision.num_heads = 4;
  c.vision.intermediate_size = 128;
  c.vision.out_hidden_size = 64;
  c.vision.num_position_embeddings = 2304;
  c.vision.deepstack_visual_indexes = {0};
  c.text.hidden_size = 64;
  c.text.intermediate_size = 128;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.num_key_value_heads = 2;
  c.text.head_dim = 16;
  c.text.rope.mrope_section = {4, 2, 2};
  c.text.max_position_embeddings = 32768;
  c.torch_dtype = "float32";
  return c;
}

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
    detail::read_opt(*it, "scoring", m.scoring, cfg.string(), "ziprerank.");
    const auto is_scoring = [](const std::string& name) {
      return name == "logits" || name == "generate" || name == "similarity";
    };
    if (!is_scoring(m.scoring)) {
      throw InputError(cfg.string() + ": ziprerank.scoring '" + m.scoring +
                       "' is not one of logits, generate, similarity");
    }
    if (auto t = it->find("trained_scorings"); t != it->end()) {
      const std::string what = cfg.string() + ": ziprerank.trained_scorings";
      if (!t->is_array()) throw InputError(what + " must be an array of scoring names");
      for (const json& v : *t) {
        const std::string name = v.is_string() ? v.get<std::string>() : v.dump();
        if (!v.is_string() || !is_scoring(name))
          throw InputError(what + ": '" + name + "' is not one of logits, generate, similarity");
        m.trained_scorings.push_back(name);
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

std::string untrained_scoring_warning(const ModelFolder& folder, const std::string& scoring) {
  const auto& t = folder.trained_scorings;
  if (t.empty() || std::find(t.begin(), t.end(), scoring) != t.end()) return "";
  std::string list;
  for (const std::string& s : t) list += (list.empty() ? "" : ", ") + s;
  return "model '" + folder.name + "' was trained for " + list + " scoring only (" +
         "ziprerank.trained_scorings in its config.json): its " + scoring +
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

void write_spelling_embeddings(const Tokenizer& tokenizer, double weight, double init_range,
                               at::Tensor& embed) {
  if (!(weight > 0 && weight < 1)) throw UsageError("--spelling-embeddings must be in [0, 1)");
  const int64_t vocab = embed.size(0), d = embed.size(1);
  constexpr int kFront = 8, kBack = 4, kLengths = 12, kSymbols = 38;  // a-z, 0-9, other, "'"
  // Codes come from their own generator so the rest of the initialisation does not move.
  at::Generator gen = at::detail::createCPUGenerator(0x5EE11);
  const at::Tensor front = at::randn({kSymbols, kFront, d}, gen);
  const at::Tensor back = at::randn({kSymbols, kBack, d}, gen);
  const at::Tensor length = at::randn({kLengths, d}, gen);
  const at::Tensor word_start = at::randn({d}, gen);
  auto symbol = [](unsigned char c) -> int64_t {
    if (c >= 'a' && c <= 'z') return c - 'a';
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= '0' && c <= '9') return 26 + (c - '0');
    return c == '\'' ? 37 : 36;
  };
  const double row_norm = init_range * std::sqrt(static_cast<double>(d));
  int64_t written = 0;
  for (int64_t id = 0; id < std::min<int64_t>(vocab, tokenizer.vocab_size()); ++id) {
    std::string piece = tokenizer.id_to_token(id);
    if (piece.empty() || (piece.front() == '<' && piece.back() == '>')) continue;  // specials
    bool starts_word = false;
    // The word-start marks as vocabularies spell them: SentencePiece's U+2581 and byte-level
    // BPE's U+0120 (the byte 0x20 mapped to a printable character).
    for (const char* mark : {"\xe2\x96\x81", "\xc4\xa0"}) {
      const std::string m(mark);
      if (piece.rfind(m, 0) == 0) {
        starts_word = true;
        piece = piece.substr(m.size());
        break;
      }
    }
    if (piece.empty()) continue;
    at::Tensor code = at::zeros({d});
    const int64_t n = static_cast<int64_t>(piece.size());
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = symbol(static_cast<unsigned char>(piece[static_cast<size_t>(i)]));
      if (i < kFront) code += front[s][i];
      if (n - 1 - i < kBack) code += back[s][n - 1 - i];
    }
    code += length[std::min<int64_t>(n, kLengths - 1)];
    if (starts_word) code += word_start;
    at::Tensor row = embed[id];
    const at::Tensor mixed = code / code.norm() * weight +
                             row / row.norm().clamp_min(1e-12) * std::sqrt(1 - weight * weight);
    row.copy_(mixed / mixed.norm() * row_norm);
    ++written;
  }
  spdlog::info("spelling codes in {} of {} embeddings (weight {})", written, vocab, weight);
}

void init_model_folder(ModelConfig config, const PreprocessorConfig& preprocessor,
                       const InitOptions& options) {
  const fs::path out(options.out_dir);
  if (fs::exists(out / "config.json") && !options.overwrite) {
    throw UsageError("'" + options.out_dir + "' already holds a model; pass --force to overwrite");
  }
  fs::create_directories(out);

  // Tokenizer first: a fresh byte-level tokenizer decides the special-token ids.
  if (options.tokenizer_src.empty()) {
    const SpecialTokenIds ids = write_byte_level_tokenizer((out / "tokenizer.json").string());
    config.text.vocab_size = ids.video_pad + 1;
    config.bos_token_id = config.pad_token_id = ids.endoftext;
    config.eos_token_id = ids.im_end;
    config.vision_start_token_id = ids.vision_start;
    config.vision_end_token_id = ids.vision_end;
    config.image_token_id = ids.image_pad;
    config.video_token_id = ids.video_pad;
    fs::remove(out / "tokenizer.model");
  } else {
    const fs::path src(options.tokenizer_src);
    if (!fs::exists(src))
      throw InputError("tokenizer file '" + options.tokenizer_src + "' does not exist");
    const std::string fname = src.extension() == ".json" ? "tokenizer.json" : "tokenizer.model";
    fs::copy_file(src, out / fname, fs::copy_options::overwrite_existing);
    fs::remove(out / (fname == "tokenizer.json" ? "tokenizer.model" : "tokenizer.json"));
  }
  const at::ScalarType dtype = options.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  config.torch_dtype = options.dtype;
  config.validate((out / "config.json").string());

  json cfg = json::parse(model_config_to_json(config));
  const auto& tc = config.text;
  const int group = tc.num_attention_heads / std::max(1, tc.num_key_value_heads);
  if (options.match_heads < 0 || options.match_heads > tc.num_attention_heads) {
    throw UsageError("--match-heads must be between 0 and the " +
                     std::to_string(tc.num_attention_heads) + " attention heads");
  }
  if (!cfg["ziprerank"].is_object()) cfg["ziprerank"] = json::object();
  cfg["ziprerank"]["name"] = options.name.empty() ? out.filename().string() : options.name;
  cfg["ziprerank"]["random_init"] = true;
  cfg["ziprerank"]["seed"] = options.seed;
  if (options.match_heads > 0) cfg["ziprerank"]["match_heads"] = options.match_heads;
  if (options.spelling_embeddings > 0)
    cfg["ziprerank"]["spelling_embeddings"] = options.spelling_embeddings;
  if (options.zero_deepstack) cfg["ziprerank"]["zero_deepstack"] = true;
  if (options.spelling_embeddings < 0 || options.spelling_embeddings >= 1)
    throw UsageError("--spelling-embeddings must be in [0, 1)");
  write_file(out / "config.json", cfg.dump(2));
  write_file(out / "preprocessor_config.json", preprocessor_config_to_json(preprocessor));

  at::manual_seed(options.seed);
  const std::vector<WeightSpec> specs = expected_weights(config);
  // Written one tensor at a time (a model of the published size does not fit in memory twice in
  // float32): only the tensors the research initialisations below still change are held.
  const std::string l0 = "model.language_model.layers.0.self_attn.";
  const std::string embed_name = "model.language_model.embed_tokens.weight";
  std::set<std::string> held_names;
  if (options.spelling_embeddings > 0) held_names.insert(embed_name);
  if (options.match_heads > 0)
    held_names.insert({embed_name, l0 + "q_proj.weight", l0 + "k_proj.weight"});
  std::vector<SafetensorsStreamWriter::Layout> layout;
  for (const WeightSpec& spec : specs)
    layout.push_back({spec.name, from_scalar_type(dtype), spec.shape});
  SafetensorsStreamWriter writer((out / "model.safetensors").string(), layout, {{"format", "pt"}});
  const auto put = [&](const std::string& name, const at::Tensor& t) {
    const at::Tensor c = t.to(dtype).contiguous();
    writer.put(name, c.data_ptr(), c.numel() * c.element_size());
  };
  std::vector<at::Tensor> keep;
  std::vector<std::string> names;
  for (const WeightSpec& spec : specs) {
    at::Tensor t;
    switch (spec.init) {
      case WeightSpec::Init::kZeros:
        t = at::zeros(spec.shape);
        break;
      case WeightSpec::Init::kOnes:
        t = at::ones(spec.shape);
        break;
      case WeightSpec::Init::kNormal:
        t = at::randn(spec.shape) * (spec.component.rfind("vision", 0) == 0
                                         ? config.vision.initializer_range
                                         : config.text.initializer_range);
        break;
    }
    if (options.zero_deepstack && spec.name.find(".deepstack_merger_list.") != std::string::npos &&
        spec.name.find(".linear_fc2.") != std::string::npos) {
      t = at::zeros(spec.shape);
    }
    if (held_names.count(spec.name)) {
      keep.push_back(t);
      names.push_back(spec.name);
    } else {
      put(spec.name, t);
    }
  }
  // The initialised tensor of a weight the layout names; throws when it is missing.
  auto weight = [&](const std::string& name) -> at::Tensor& {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return keep[i];
    }
    throw InternalError("init: the layout has no '" + name + "'");
  };
  if (options.spelling_embeddings > 0) {
    write_spelling_embeddings(*load_tokenizer(out.string()), options.spelling_embeddings,
                              config.text.initializer_range,
                              weight("model.language_model.embed_tokens.weight"));
  }
  if (options.match_heads > 0) {
    // Rotary pairs (i, i + hd/2) rotate by theta^(-2i/hd) per position: the last quarter of the
    // pairs turns by well under a radian over any prompt, so a dot product there survives RoPE.
    const int64_t hd = tc.head_dim, d = tc.hidden_size;
    at::Tensor* q = &weight(l0 + "q_proj.weight");
    at::Tensor* k = &weight(l0 + "k_proj.weight");
    const int64_t slow = hd / 4;
    at::Tensor rows = at::zeros({hd});
    rows.narrow(0, hd / 2 - slow, slow).fill_(1);
    rows.narrow(0, hd - slow, slow).fill_(1);
    at::Tensor* embed = &weight("model.language_model.embed_tokens.weight");
    const at::Tensor slow_rows = rows.nonzero().reshape({-1});
    std::vector<at::Tensor> spans;
    for (int g = 0; g * group < options.match_heads; ++g) {
      const at::Tensor a = at::randn({hd, d}) * tc.initializer_range * rows.unsqueeze(1);
      k->narrow(0, g * hd, hd).copy_(a);
      for (int j = 0; j < group && g * group + j < options.match_heads; ++j) {
        q->narrow(0, (g * group + j) * hd, hd).copy_(a);
      }
      spans.push_back(a.index_select(0, slow_rows));
    }
    // The <|image_pad|> embedding, which marks a token as shown on a page when text stands in
    // for visual tokens, starts orthogonal to what the matching heads read: a word on a page then
    // matches the same word in the query exactly, and their values still differ.
    const at::Tensor basis = std::get<0>(at::linalg_qr(at::cat(spans, 0).t()));  // [d, r]
    at::Tensor pad = embed->select(0, config.image_token_id);
    pad.sub_(at::mv(basis, at::mv(basis.t(), pad)));
  }
  for (size_t i = 0; i < keep.size(); ++i) put(names[i], keep[i]);
  writer.finish();
  spdlog::info("wrote a randomly initialised model ({} tensors) to {}", specs.size(), out.string());
}

}  // namespace ziprerank
