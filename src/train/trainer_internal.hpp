// What the trainer's source files share: the prepared sample and its result, the checkpoint
// files' names, and the clock. Private to the train module.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "train/data.hpp"
#include "ziprerank/train.hpp"

namespace ziprerank {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

namespace train {
inline constexpr const char* kStateFile = "trainer_state.json";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";
inline constexpr const char* kStateFormat = "ziprerank-trainer-state";
}  // namespace train

struct Trainer::Prepared {
  train::TrainExample example;
  std::vector<int64_t> target_ids;  ///< the ranking after "[", then eos
};

struct Trainer::SampleResult {
  double gen_sum = 0;      ///< summed token NLL
  double rank = NAN;       ///< ranking loss of the sample, NaN when undefined
  double align = NAN;      ///< grounding loss of the sample, NaN when off or no word was shown
  double candidate = NAN;  ///< per-candidate relevance loss, NaN when off
  double rank_top1 = NAN, candidate_top1 = NAN;      ///< top1_agreement of each, NaN when undefined
  int64_t tokens = 0;                                ///< language-model input tokens
  double data_s = 0, forward_s = 0, backward_s = 0;  ///< where the time went
};

}  // namespace ziprerank
