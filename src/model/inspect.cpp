#include "ziprerank/inspect.hpp"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "ziprerank/errors.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/state_dict.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

using nlohmann::json;

namespace {

struct NonFinite {
  uint64_t nan = 0;
  uint64_t inf = 0;
};

// Counts the NaN and infinite elements of `n` IEEE values of type U (bit patterns) at `p`: all
// exponent bits set; a zero mantissa is an infinity. The first pass only counts (vectorises); the
// second, which tells NaN from Inf, runs only for a tensor that has any.
template <typename U>
NonFinite count_non_finite(const uint8_t* p, uint64_t n, U exponent, U mantissa) {
  const auto load = [p](uint64_t i) {
    U bits;
    std::memcpy(&bits, p + i * sizeof(U), sizeof(U));
    return bits;
  };
  std::atomic<uint64_t> any{0};
  at::parallel_for(0, static_cast<int64_t>(n), int64_t{1} << 20, [&](int64_t b, int64_t e) {
    uint64_t c = 0;
    for (int64_t i = b; i < e; ++i) c += (load(static_cast<uint64_t>(i)) & exponent) == exponent;
    any += c;
  });
  NonFinite r;
  if (any.load() == 0) return r;
  for (uint64_t i = 0; i < n; ++i) {
    const U bits = load(i);
    if ((bits & exponent) != exponent) continue;
    ((bits & mantissa) != 0 ? r.nan : r.inf) += 1;
  }
  return r;
}

NonFinite scan_tensor(const uint8_t* p, const TensorInfo& ti) {
  switch (ti.dtype) {
    case DType::kF32:
      return count_non_finite<uint32_t>(p, ti.numel(), 0x7F800000u, 0x007FFFFFu);
    case DType::kF16:
      return count_non_finite<uint16_t>(p, ti.numel(), 0x7C00, 0x03FF);
    case DType::kBF16:
      return count_non_finite<uint16_t>(p, ti.numel(), 0x7F80, 0x007F);
  }
  return {};
}

}  // namespace

InspectResult inspect_model(const std::string& dir) {
  InspectResult result;
  json& r = result.report;
  const ModelFolder folder = open_model_folder(dir);
  const ModelConfig& c = folder.config;
  r["model_dir"] = dir;
  r["name"] = folder.name;
  r["random_init"] = folder.random_init;
  r["model_type"] = c.model_type;
  r["architecture"] = {{"vision",
                        {{"depth", c.vision.depth},
                         {"hidden_size", c.vision.hidden_size},
                         {"num_heads", c.vision.num_heads},
                         {"intermediate_size", c.vision.intermediate_size},
                         {"patch_size", c.vision.patch_size},
                         {"spatial_merge_size", c.vision.spatial_merge_size},
                         {"deepstack_visual_indexes", c.vision.deepstack_visual_indexes}}},
                       {"text",
                        {{"layers", c.text.num_hidden_layers},
                         {"hidden_size", c.text.hidden_size},
                         {"heads", c.text.num_attention_heads},
                         {"kv_heads", c.text.num_key_value_heads},
                         {"head_dim", c.text.head_dim},
                         {"intermediate_size", c.text.intermediate_size},
                         {"vocab_size", c.text.vocab_size},
                         {"rope_theta", c.text.rope.rope_theta},
                         {"mrope_section", c.text.rope.mrope_section},
                         {"mrope_interleaved", c.text.rope.mrope_interleaved}}},
                       {"tie_word_embeddings", c.tie_word_embeddings},
                       {"qi_early_text_mode", c.qi_early_text_mode}};
  r["preprocessor"] = {{"min_pixels", folder.preprocessor.min_pixels},
                       {"max_pixels", folder.preprocessor.max_pixels},
                       {"patch_size", folder.preprocessor.patch_size},
                       {"merge_size", folder.preprocessor.merge_size}};

  std::vector<std::string> problems;
  const auto store = WeightStore::open(dir);
  std::map<std::string, const WeightSpec*> expected;
  const auto specs = expected_weights(c);
  for (const auto& s : specs) expected[s.name] = &s;

  std::map<std::string, uint64_t> params;  // component -> count
  std::map<std::string, uint64_t> dtypes;  // dtype -> tensor count
  uint64_t total = 0, bytes = 0;
  std::vector<std::string> unexpected;
  for (const auto& name : store->names()) {
    const TensorInfo& ti = store->info(name);
    auto it = expected.find(name);
    const std::string component = it == expected.end() ? "unexpected" : it->second->component;
    params[component] += ti.numel();
    dtypes[dtype_name(ti.dtype)] += 1;
    total += ti.numel();
    bytes += ti.nbytes();
    if (it == expected.end()) {
      unexpected.push_back(name);
    } else if (ti.shape != it->second->shape) {
      problems.push_back("tensor '" + name + "' has shape " + shape_to_string(ti.shape) +
                         ", config implies " + shape_to_string(it->second->shape));
    }
  }
  for (const auto& s : specs) {
    if (!store->contains(s.name)) {
      problems.push_back("missing tensor '" + s.name + "' " + shape_to_string(s.shape));
    }
  }
  r["parameters"] = params;
  r["parameters_total"] = total;
  r["weights_bytes"] = bytes;
  r["dtypes"] = dtypes;
  json files = json::array();
  for (const auto& f : store->files()) {
    files.push_back({{"file", std::filesystem::path(f.path()).filename().string()},
                     {"tensors", f.tensors().size()}});
  }
  r["files"] = files;
  r["unexpected_tensors"] = unexpected;

  // Every stored value is read once: a NaN or Inf weight loads fine and only shows up as NaN
  // scores, so this is where it is named.
  json non_finite = json::array();
  for (const auto& f : store->files()) {
    for (const TensorInfo& ti : f.tensors()) {
      const NonFinite nf = scan_tensor(f.data(ti), ti);
      if (nf.nan == 0 && nf.inf == 0) continue;
      non_finite.push_back({{"name", ti.name}, {"nan", nf.nan}, {"inf", nf.inf}});
      problems.push_back("tensor '" + ti.name + "' holds non-finite values (" +
                         std::to_string(nf.nan) + " NaN, " + std::to_string(nf.inf) + " Inf of " +
                         std::to_string(ti.numel()) + ")");
    }
  }
  r["non_finite_tensors"] = non_finite;

  try {
    const auto tok = load_tokenizer(dir);
    r["tokenizer"] = {{"kind", tok->kind()}, {"vocab_size", tok->vocab_size()}};
    if (tok->vocab_size() > c.text.vocab_size) {
      problems.push_back("tokenizer has " + std::to_string(tok->vocab_size()) +
                         " ids but the embedding has only " + std::to_string(c.text.vocab_size) +
                         " rows");
    }
    for (auto [token, id] : {std::pair<const char*, int64_t>{"<|image_pad|>", c.image_token_id},
                             {"<|vision_start|>", c.vision_start_token_id},
                             {"<|vision_end|>", c.vision_end_token_id}}) {
      const auto got = tok->token_to_id(token);
      if (!got || *got != id) {
        problems.push_back(std::string("tokenizer id of ") + token + " is " +
                           (got ? std::to_string(*got) : "absent") + ", config.json says " +
                           std::to_string(id));
      }
    }
  } catch (const Error& e) {
    problems.push_back(std::string("tokenizer: ") + e.what());
    r["tokenizer"] = {{"kind", "unavailable"}};
  }
  r["problems"] = problems;
  result.valid = problems.empty();
  r["valid"] = result.valid;
  return result;
}

std::string format_inspect_table(const json& r) {
  std::ostringstream o;
  const auto& v = r["architecture"]["vision"];
  const auto& t = r["architecture"]["text"];
  o << "model        " << r["name"].get<std::string>() << "  (" << r["model_dir"].get<std::string>()
    << ")\n";
  if (r["random_init"].get<bool>())
    o << "             RANDOMLY INITIALISED: untrained weights, rankings are meaningless\n";
  o << "type         " << r["model_type"].get<std::string>() << "\n";
  o << "vision       depth " << v["depth"] << ", hidden " << v["hidden_size"] << ", heads "
    << v["num_heads"] << ", mlp " << v["intermediate_size"] << ", patch " << v["patch_size"]
    << ", merge " << v["spatial_merge_size"] << ", deepstack "
    << v["deepstack_visual_indexes"].dump() << "\n";
  o << "text         layers " << t["layers"] << ", hidden " << t["hidden_size"] << ", heads "
    << t["heads"] << "/" << t["kv_heads"] << " kv, head_dim " << t["head_dim"] << ", mlp "
    << t["intermediate_size"] << ", vocab " << t["vocab_size"] << "\n";
  o << "rope         theta " << t["rope_theta"] << ", mrope_section " << t["mrope_section"].dump()
    << (t["mrope_interleaved"].get<bool>() ? " interleaved" : "") << "\n";
  o << "tokenizer    " << r["tokenizer"]["kind"].get<std::string>();
  if (r["tokenizer"].contains("vocab_size")) o << ", " << r["tokenizer"]["vocab_size"] << " ids";
  o << "\n";
  o << "parameters   " << r["parameters_total"] << " total, "
    << format_bytes(r["weights_bytes"].get<double>()) << " on disk\n";
  for (const auto& [component, n] : r["parameters"].items()) {
    char line[128];
    std::snprintf(line, sizeof(line), "  %-20s %14llu\n", component.c_str(),
                  static_cast<unsigned long long>(n.get<uint64_t>()));
    o << line;
  }
  o << "dtypes       ";
  bool first = true;
  for (const auto& [dt, n] : r["dtypes"].items()) {
    o << (first ? "" : ", ") << dt << " x" << n;
    first = false;
  }
  o << "\nfiles        ";
  first = true;
  for (const auto& f : r["files"]) {
    o << (first ? "" : ", ") << f["file"].get<std::string>() << " (" << f["tensors"] << " tensors)";
    first = false;
  }
  o << "\n";
  if (!r["unexpected_tensors"].empty()) {
    o << "unused       " << r["unexpected_tensors"].size()
      << " tensor(s) not part of the architecture, e.g. "
      << r["unexpected_tensors"][0].get<std::string>() << "\n";
  }
  if (r["valid"].get<bool>()) {
    o << "verdict      OK: every tensor the config implies is present with the right shape, and "
         "every weight is finite\n";
  } else {
    o << "verdict      INVALID (" << r["problems"].size() << " problem(s)):\n";
    size_t shown = 0;
    for (const auto& p : r["problems"]) {
      if (shown++ == 20) {
        o << "  ...\n";
        break;
      }
      o << "  " << p.get<std::string>() << "\n";
    }
  }
  return o.str();
}

}  // namespace ziprerank
