// `ziprerank eval`: scores a run against relevance judgements (torch-free).
#pragma once

#include "cli/cli.hpp"

namespace ziprerank::cli {

void register_eval_command(CLI::App& app, Handler& handler);

}  // namespace ziprerank::cli
