// libFuzzer target: config.json and preprocessor_config.json parsing must only ever fail with an
// InputError; a config that parses must pass its own validation.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ziprerank/config.hpp"
#include "ziprerank/errors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto config = ziprerank::parse_model_config(text, "fuzz");
    config.validate("fuzz");
    ziprerank::parse_model_config(ziprerank::model_config_to_json(config), "fuzz-roundtrip");
  } catch (const ziprerank::InputError&) {
  }
  try {
    ziprerank::parse_preprocessor_config(text, "fuzz");
  } catch (const ziprerank::InputError&) {
  }
  return 0;
}
