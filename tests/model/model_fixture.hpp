// A tiny randomly initialised model folder shared by the model tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "ziprerank/model_folder.hpp"

namespace ziprerank::test {

inline PreprocessorConfig qwen3_vl_preprocessor() {
  PreprocessorConfig p;
  p.min_pixels = 65536;
  p.max_pixels = 16777216;
  p.patch_size = 16;
  p.merge_size = 2;
  p.temporal_patch_size = 2;
  p.image_mean = p.image_std = {0.5, 0.5, 0.5};
  return p;
}

/// Creates (once per process) a tiny model folder and returns its path.
inline std::string tiny_model_dir(uint64_t seed = 1) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() /
                       ("zr_tiny_" + std::to_string(::getpid()) + "_" + std::to_string(seed));
  if (!fs::exists(dir / "model.safetensors")) {
    InitOptions o;
    o.out_dir = dir.string();
    o.seed = seed;
    o.overwrite = true;
    ModelConfig c = tiny_model_config();
    c.vision.deepstack_visual_indexes = {
        0, 1};  // two levels: exercises injection after layers 0 and 1
    init_model_folder(c, qwen3_vl_preprocessor(), o);
  }
  return dir.string();
}

}  // namespace ziprerank::test
