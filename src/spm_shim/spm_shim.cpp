// The only translation unit that includes SentencePiece headers. See spm_shim.h for why.
#include "spm_shim/spm_shim.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

struct zr_spm {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {
void set_error(char* err, size_t errlen, const std::string& msg) {
  if (!err || errlen == 0) return;
  std::strncpy(err, msg.c_str(), errlen - 1);
  err[errlen - 1] = '\0';
}
}  // namespace

extern "C" {

int zr_spm_abi_version(void) { return ZR_SPM_ABI_VERSION; }

// No C++ exception may leave these functions: they are a C interface, and the caller opens them
// with dlopen. SentencePiece throws on some malformed models (e.g. darts_clone's "zero-length
// key" for an empty piece) instead of returning a status; such a throw becomes an error here.

zr_spm* zr_spm_load(const char* path, char* err, size_t errlen) {
  zr_spm* model = nullptr;
  try {
    model = new zr_spm();
    const auto status = model->processor.Load(path);
    if (!status.ok()) {
      set_error(err, errlen, status.ToString());
      delete model;
      return nullptr;
    }
    return model;
  } catch (const std::exception& e) {
    set_error(err, errlen, std::string("malformed model (") + e.what() + ")");
  } catch (...) {
    set_error(err, errlen, "malformed model");
  }
  delete model;
  return nullptr;
}

void zr_spm_free(zr_spm* model) { delete model; }

int zr_spm_encode(const zr_spm* model, const char* text, size_t len, int** ids, size_t* n,
                  char* err, size_t errlen) {
  std::vector<int> out;
  try {
    const auto status = model->processor.Encode(std::string(text, len), &out);
    if (!status.ok()) {
      set_error(err, errlen, status.ToString());
      return 1;
    }
  } catch (const std::exception& e) {
    set_error(err, errlen, e.what());
    return 1;
  }
  *n = out.size();
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.empty() ? 1 : out.size())));
  if (!*ids) return 1;
  if (!out.empty()) std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  return 0;
}

int zr_spm_decode(const zr_spm* model, const int* ids, size_t n, char** text, size_t* len,
                  char* err, size_t errlen) {
  std::string out;
  try {
    const auto status = model->processor.Decode(std::vector<int>(ids, ids + n), &out);
    if (!status.ok()) {
      set_error(err, errlen, status.ToString());
      return 1;
    }
  } catch (const std::exception& e) {
    set_error(err, errlen, e.what());
    return 1;
  }
  *len = out.size();
  *text = static_cast<char*>(std::malloc(out.size() + 1));
  if (!*text) return 1;
  std::memcpy(*text, out.data(), out.size());
  (*text)[out.size()] = '\0';
  return 0;
}

void zr_spm_free_buffer(void* p) { std::free(p); }

int zr_spm_piece_size(const zr_spm* model) { return model->processor.GetPieceSize(); }

int zr_spm_piece_to_id(const zr_spm* model, const char* piece) {
  const int id = model->processor.PieceToId(piece);
  // PieceToId maps unknown pieces to the unk id; tell a real "<unk>" apart from a miss.
  if (id == model->processor.unk_id() && model->processor.IdToPiece(id) != piece) return -1;
  return id;
}

const char* zr_spm_id_to_piece(const zr_spm* model, int id) {
  if (id < 0 || id >= model->processor.GetPieceSize()) return nullptr;
  return model->processor.IdToPiece(id).c_str();
}

}  // extern "C"
