// libFuzzer target: preprocessor_config.json. Parsing must only ever fail with an InputError; an
// accepted config passes its own validation and survives a write/read round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.hpp"
#include "ziprerank/config.hpp"
#include "ziprerank/errors.hpp"

namespace {

bool same(const ziprerank::PreprocessorConfig& a, const ziprerank::PreprocessorConfig& b) {
  return a.min_pixels == b.min_pixels && a.max_pixels == b.max_pixels &&
         a.patch_size == b.patch_size && a.temporal_patch_size == b.temporal_patch_size &&
         a.merge_size == b.merge_size && a.image_mean == b.image_mean &&
         a.image_std == b.image_std && a.rescale_factor == b.rescale_factor &&
         a.do_resize == b.do_resize && a.do_rescale == b.do_rescale &&
         a.do_normalize == b.do_normalize && a.do_convert_rgb == b.do_convert_rgb &&
         a.resample == b.resample;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ziprerank::PreprocessorConfig config;
  try {
    config = ziprerank::parse_preprocessor_config(text, "fuzz");
  } catch (const ziprerank::InputError&) {
    return 0;
  }
  config.validate("fuzz");  // must not throw for a config the parser accepted
  const std::string written = ziprerank::preprocessor_config_to_json(config);
  ziprerank::PreprocessorConfig again;
  try {
    again = ziprerank::parse_preprocessor_config(written, "fuzz-roundtrip");
  } catch (const ziprerank::InputError&) {
    ziprerank::fuzz::invariant_failed("a written preprocessor config does not read back");
  }
  FUZZ_CHECK(same(config, again));
  return 0;
}
