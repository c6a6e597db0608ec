// `ziprerank render`: text passages as stage-1 training images, or documents as page images with
// word boxes (torch-free).
#pragma once

#include "cli/cli.hpp"

namespace ziprerank::cli {

void register_render_command(CLI::App& app, Handler& handler);

}  // namespace ziprerank::cli
