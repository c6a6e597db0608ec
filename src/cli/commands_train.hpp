// `ziprerank train`: stage 1 (rendered-text listwise pretraining) and stage 2 (page distillation).
#pragma once

#include "cli/cli.hpp"

namespace ziprerank::cli {

void register_train_command(CLI::App& app, Handler& handler);

}  // namespace ziprerank::cli
