// libFuzzer target: a SentencePiece tokenizer.model, through the C interface of ziprerank's shim.
//
// The ziprerank binary opens the shim with dlopen(RTLD_DEEPBIND), which AddressSanitizer does not
// support (sanitizer builds disable SentencePiece). The isolation only exists because libtorch's
// protobuf clashes with the one inside libsentencepiece; this target has no libtorch, so it links
// the shim directly. libsentencepiece itself is not instrumented: ASan sees its crashes and heap
// misuse, but libFuzzer gets coverage only from the shim.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "spm_shim/spm_shim.h"

namespace {

const char* const kSamples[] = {
    "Hello world! It's 2024.",
    "  leading and  double  spaces ",
    "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD",
    "\xFF\xFE invalid \xC3",
    "",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ziprerank::fuzz::ScratchFile file(".model");
  char err[512] = {0};
  zr_spm* model = zr_spm_load(file.write(data, size).c_str(), err, sizeof(err));
  if (!model) return 0;
  const int n = zr_spm_piece_size(model);
  FUZZ_CHECK(n >= 0);
  for (const char* text : kSamples) {
    int* ids = nullptr;
    size_t count = 0;
    if (zr_spm_encode(model, text, std::char_traits<char>::length(text), &ids, &count, err,
                      sizeof(err)) != 0) {
      continue;
    }
    for (size_t i = 0; i < count; ++i) FUZZ_CHECK(ids[i] >= 0 && ids[i] < n);
    char* decoded = nullptr;
    size_t len = 0;
    if (zr_spm_decode(model, ids, count, &decoded, &len, err, sizeof(err)) == 0) {
      zr_spm_free_buffer(decoded);
    }
    zr_spm_free_buffer(ids);
  }
  for (int id = 0; id < n && id < 64; ++id) {
    const char* piece = zr_spm_id_to_piece(model, id);
    FUZZ_CHECK(piece != nullptr);
    zr_spm_piece_to_id(model, piece);
  }
  FUZZ_CHECK(zr_spm_id_to_piece(model, -1) == nullptr && zr_spm_id_to_piece(model, n) == nullptr);
  zr_spm_free(model);
  return 0;
}
