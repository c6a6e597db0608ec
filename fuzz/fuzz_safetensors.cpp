// libFuzzer target: the safetensors header parser must reject any input with an InputError,
// never crash, hang or allocate without bound.
#include <cstddef>
#include <cstdint>

#include "ziprerank/errors.hpp"
#include "ziprerank/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto header = ziprerank::parse_safetensors_header(data, size, "fuzz");
    // Accepted files must satisfy the invariants the loader relies on.
    for (const auto& t : header.tensors) {
      if (t.end > header.data_size || t.begin > t.end) __builtin_trap();
      if (t.numel() * ziprerank::dtype_size(t.dtype) != t.nbytes()) __builtin_trap();
    }
  } catch (const ziprerank::InputError&) {
  }
  return 0;
}
