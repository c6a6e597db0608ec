// A tiny randomly initialised model folder shared by the model tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <system_error>

#include "ziprerank/model_folder.hpp"
#include "ziprerank/model_init.hpp"

namespace ziprerank::test {

/// Removes a folder when the process ends.
struct RemovedAtExit {
  std::filesystem::path dir;
  ~RemovedAtExit() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

/// Creates (once per process) a tiny model folder and returns its path; it is removed at exit.
inline std::string tiny_model_dir(uint64_t seed = 1) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() /
                       ("zr_tiny_" + std::to_string(::getpid()) + "_" + std::to_string(seed));
  static std::map<uint64_t, RemovedAtExit> removed_at_exit;
  removed_at_exit.try_emplace(seed, RemovedAtExit{dir});
  if (!fs::exists(dir / "model.safetensors")) {
    InitOptions o;
    o.out_dir = dir.string();
    o.seed = seed;
    o.overwrite = true;
    ModelConfig c = tiny_model_config();
    c.vision.deepstack_visual_indexes = {
        0, 1};  // two levels: exercises injection after layers 0 and 1
    init_model_folder(c, qwen3_vl_preprocessor_config(), o);
  }
  return dir.string();
}

}  // namespace ziprerank::test
