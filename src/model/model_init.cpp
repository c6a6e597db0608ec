// Randomly initialised model folders (`ziprerank init`): the config, the tokenizer and the weights,
// written one tensor at a time, with the optional research initialisations described in
// models/README.md (token-matching heads, spelling codes, silent DeepStack).
#include "ziprerank/model_init.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "ziprerank/errors.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/safetensors.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text << "\n";
  if (!out) throw InputError("cannot write '" + path.string() + "'");
}

// The tokenizer goes first: a byte-level tokenizer written from scratch sets the config's
// vocabulary size and special-token ids to its own.
void write_init_tokenizer(const InitOptions& options, const fs::path& out, ModelConfig& config) {
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
}

std::string init_config_json(const ModelConfig& config, const InitOptions& options,
                             const fs::path& out) {
  json cfg = json::parse(model_config_to_json(config));
  if (!cfg["ziprerank"].is_object()) cfg["ziprerank"] = json::object();
  cfg["ziprerank"]["name"] = options.name.empty() ? out.filename().string() : options.name;
  cfg["ziprerank"]["random_init"] = true;
  cfg["ziprerank"]["seed"] = options.seed;
  if (options.match_heads > 0) cfg["ziprerank"]["match_heads"] = options.match_heads;
  if (options.spelling_embeddings > 0)
    cfg["ziprerank"]["spelling_embeddings"] = options.spelling_embeddings;
  if (options.zero_deepstack) cfg["ziprerank"]["zero_deepstack"] = true;
  return cfg.dump(2);
}

// The first `heads` query heads of layer 0 and their key-value heads share one random projection
// onto the slowest rotary pairs (models/README.md, "The initialisations init offers").
void init_match_heads(const ModelConfig& config, int heads, at::Tensor& q, at::Tensor& k,
                      at::Tensor& embed) {
  // Rotary pairs (i, i + hd/2) rotate by theta^(-2i/hd) per position: the last quarter of the
  // pairs turns by well under a radian over any prompt, so a dot product there survives RoPE.
  const auto& tc = config.text;
  const int group = tc.num_attention_heads / std::max(1, tc.num_key_value_heads);
  const int64_t hd = tc.head_dim, d = tc.hidden_size;
  const int64_t slow = hd / 4;
  at::Tensor rows = at::zeros({hd});
  rows.narrow(0, hd / 2 - slow, slow).fill_(1);
  rows.narrow(0, hd - slow, slow).fill_(1);
  const at::Tensor slow_rows = rows.nonzero().reshape({-1});
  std::vector<at::Tensor> spans;
  for (int g = 0; g * group < heads; ++g) {
    const at::Tensor a = at::randn({hd, d}) * tc.initializer_range * rows.unsqueeze(1);
    k.narrow(0, g * hd, hd).copy_(a);
    for (int j = 0; j < group && g * group + j < heads; ++j) {
      q.narrow(0, (g * group + j) * hd, hd).copy_(a);
    }
    spans.push_back(a.index_select(0, slow_rows));
  }
  // The <|image_pad|> embedding, which marks a token as shown on a page when text stands in
  // for visual tokens, starts orthogonal to what the matching heads read: a word on a page then
  // matches the same word in the query exactly, and their values still differ.
  const at::Tensor basis = std::get<0>(at::linalg_qr(at::cat(spans, 0).t()));  // [d, r]
  at::Tensor pad = embed.select(0, config.image_token_id);
  pad.sub_(at::mv(basis, at::mv(basis.t(), pad)));
}

}  // namespace

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

  write_init_tokenizer(options, out, config);  // decides the special-token ids
  const at::ScalarType dtype = options.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  config.torch_dtype = options.dtype;
  config.validate((out / "config.json").string());

  if (options.match_heads < 0 || options.match_heads > config.text.num_attention_heads) {
    throw UsageError("--match-heads must be between 0 and the " +
                     std::to_string(config.text.num_attention_heads) + " attention heads");
  }
  if (options.spelling_embeddings < 0 || options.spelling_embeddings >= 1)
    throw UsageError("--spelling-embeddings must be in [0, 1)");
  write_file(out / "config.json", init_config_json(config, options, out));
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
    init_match_heads(config, options.match_heads, weight(l0 + "q_proj.weight"),
                     weight(l0 + "k_proj.weight"), weight(embed_name));
  }
  for (size_t i = 0; i < keep.size(); ++i) put(names[i], keep[i]);
  writer.finish();
  spdlog::info("wrote a randomly initialised model ({} tensors) to {}", specs.size(), out.string());
}

}  // namespace ziprerank
