// `ziprerank inspect`: what a model folder holds and whether it is complete.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ziprerank {

struct InspectResult {
  nlohmann::json report;  ///< machine-readable report (also printed by --format json)
  /// every expected tensor present with the right shape and free of NaN/Inf, tokenizer loads
  bool valid = false;
};

/// Opens config, weights and tokenizer of `dir` and checks them against each other, and reads
/// every weight for NaN/Inf (report key `non_finite_tensors`: name, nan, inf counts).
/// Files that cannot be parsed at all throw InputError; mismatches are reported, not thrown.
InspectResult inspect_model(const std::string& dir);

/// Human-readable rendering of the report.
std::string format_inspect_table(const nlohmann::json& report);

}  // namespace ziprerank
