// `ziprerank serve`: the rerank HTTP server (the library's RerankServer) with the model loaded
// once.
#pragma once

#include "cli/cli.hpp"

namespace ziprerank::cli {

void register_serve_command(CLI::App& app, Handler& handler);

}  // namespace ziprerank::cli
