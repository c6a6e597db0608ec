// The checkpoint layout a config implies, read off the modules themselves: the model is
// constructed over a recording StateDict, so the names and shapes below are exactly the ones
// loading asks for, and `init`, `inspect` and the loader cannot disagree.
#include <utility>

#include "core/utf8.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/state_dict.hpp"

namespace ziprerank {
namespace {

using detail::ends_with;
using detail::starts_with;

// The part of the model a checkpoint name belongs to, as inspect groups tensors.
std::string component_of(const std::string& name) {
  static const std::pair<const char*, const char*> kComponents[] = {
      {"model.visual.patch_embed.", "vision.patch_embed"},
      {"model.visual.pos_embed.", "vision.pos_embed"},
      {"model.visual.blocks.", "vision.blocks"},
      {"model.visual.merger.", "vision.merger"},
      {"model.visual.deepstack_merger_list.", "vision.deepstack"},
      {"model.language_model.embed_tokens.", "text.embed_tokens"},
      {"model.language_model.layers.", "text.layers"},
      {"model.language_model.norm.", "text.norm"},
      {"lm_head.", "lm_head"},
  };
  for (const auto& [prefix, component] : kComponents) {
    if (starts_with(name, prefix)) return component;
  }
  throw InternalError("no model component for the checkpoint tensor '" + name + "'");
}

// How `init` fills a tensor, as transformers initialises Qwen3-VL: biases zero, the scales of
// layer and RMS norms one, every other weight normal.
WeightSpec::Init init_of(const std::string& name) {
  if (ends_with(name, ".bias")) return WeightSpec::Init::kZeros;
  const std::string suffix = ".weight";
  if (!ends_with(name, suffix)) return WeightSpec::Init::kNormal;
  const std::string owner = name.substr(0, name.size() - suffix.size());  // "...input_layernorm"
  const std::string module = owner.substr(owner.rfind('.') + 1);
  return module.find("norm") != std::string::npos ? WeightSpec::Init::kOnes
                                                  : WeightSpec::Init::kNormal;
}

}  // namespace

std::vector<WeightSpec> expected_weights(const ModelConfig& config) {
  StateDict recorder = StateDict::recorder();
  const Qwen3VLModel model(config, recorder, ModelOptions{});
  std::vector<WeightSpec> specs;
  for (const auto& [name, shape] : recorder.requested())
    specs.push_back(WeightSpec{name, shape, component_of(name), init_of(name)});
  return specs;
}

}  // namespace ziprerank
