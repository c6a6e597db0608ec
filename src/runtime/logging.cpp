#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "ziprerank/errors.hpp"
#include "ziprerank/runtime.hpp"

namespace ziprerank {

void setup_logging(const std::string& level) {
  // Everything the program logs goes to stderr; stdout is reserved for results.
  auto logger = spdlog::stderr_color_mt("ziprerank");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    throw UsageError("unknown log level '" + level +
                     "' (use trace, debug, info, warn, error or off)");
  }
  spdlog::set_level(parsed);
}

}  // namespace ziprerank
