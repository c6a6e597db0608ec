// SentencePiece tokenizer over the dlopen'ed shim (see src/spm_shim/spm_shim.h).
#include <dlfcn.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "spm_shim/spm_shim.h"
#include "ziprerank/errors.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

namespace fs = std::filesystem;

namespace {

struct ShimApi {
  decltype(&zr_spm_abi_version) abi_version = nullptr;
  decltype(&zr_spm_load) load = nullptr;
  decltype(&zr_spm_free) free_model = nullptr;
  decltype(&zr_spm_encode) encode = nullptr;
  decltype(&zr_spm_decode) decode = nullptr;
  decltype(&zr_spm_free_buffer) free_buffer = nullptr;
  decltype(&zr_spm_piece_size) piece_size = nullptr;
  decltype(&zr_spm_piece_to_id) piece_to_id = nullptr;
  decltype(&zr_spm_id_to_piece) id_to_piece = nullptr;
  std::string error;  // why the shim is unavailable
};

// (Unused in sanitizer builds, which never load the shim.)
[[maybe_unused]] std::vector<std::string> shim_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("ZIPRERANK_SPM_SHIM")) out.emplace_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path() / "libziprerank_spm.so").string());
    out.push_back((exe.parent_path() / ".." / "libziprerank_spm.so").string());
    out.push_back(
        (exe.parent_path() / ".." / "lib" / "ziprerank" / "libziprerank_spm.so").string());
  }
#ifdef ZIPRERANK_SPM_INSTALL_PATH
  out.emplace_back(ZIPRERANK_SPM_INSTALL_PATH);
#endif
#ifdef ZIPRERANK_SPM_BUILD_PATH
  out.emplace_back(ZIPRERANK_SPM_BUILD_PATH);
#endif
  return out;
}

const ShimApi& shim() {
  static ShimApi api;
  static std::once_flag once;
  std::call_once(once, [] {
#ifdef ZIPRERANK_SANITIZE
    api.error =
        "SentencePiece is disabled in sanitizer builds (RTLD_DEEPBIND is incompatible "
        "with AddressSanitizer)";
    return;
#else
    void* handle = nullptr;
    std::string tried;
    for (const auto& path : shim_candidates()) {
      if (!fs::exists(path)) continue;
      // DEEPBIND keeps the shim's own protobuf symbols from resolving to libtorch's copy.
      handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle) {
        spdlog::debug("SentencePiece shim: {}", path);
        break;
      }
      tried += std::string("\n  ") + path + ": " + dlerror();
    }
    if (!handle) {
      api.error = "cannot load libziprerank_spm.so (SentencePiece support); set ZIPRERANK_SPM_SHIM "
                  "to its path or reinstall ziprerank" + tried;
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(handle, name);
      if (!p && api.error.empty()) api.error = std::string("SentencePiece shim lacks ") + name;
      return p;
    };
    api.abi_version = reinterpret_cast<decltype(api.abi_version)>(sym("zr_spm_abi_version"));
    api.load = reinterpret_cast<decltype(api.load)>(sym("zr_spm_load"));
    api.free_model = reinterpret_cast<decltype(api.free_model)>(sym("zr_spm_free"));
    api.encode = reinterpret_cast<decltype(api.encode)>(sym("zr_spm_encode"));
    api.decode = reinterpret_cast<decltype(api.decode)>(sym("zr_spm_decode"));
    api.free_buffer = reinterpret_cast<decltype(api.free_buffer)>(sym("zr_spm_free_buffer"));
    api.piece_size = reinterpret_cast<decltype(api.piece_size)>(sym("zr_spm_piece_size"));
    api.piece_to_id = reinterpret_cast<decltype(api.piece_to_id)>(sym("zr_spm_piece_to_id"));
    api.id_to_piece = reinterpret_cast<decltype(api.id_to_piece)>(sym("zr_spm_id_to_piece"));
    if (api.error.empty() && api.abi_version() != ZR_SPM_ABI_VERSION) {
      api.error = "libziprerank_spm.so is from another ziprerank version (ABI mismatch)";
    }
#endif
  });
  return api;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    const ShimApi& api = shim();
    if (!api.error.empty()) throw Error(ExitCode::kInternal, api.error);
    if (!fs::exists(path)) throw InputError("SentencePiece model '" + path + "' does not exist");
    char err[512] = {0};
    model_ = api.load(path.c_str(), err, sizeof(err));
    if (!model_) throw InputError("cannot load SentencePiece model '" + path + "': " + err);
    size_ = api.piece_size(model_);
  }
  ~SentencePieceTokenizer() override { shim().free_model(model_); }

  std::vector<int64_t> encode(const std::string& text) const override {
    int* ids = nullptr;
    size_t n = 0;
    char err[512] = {0};
    if (shim().encode(model_, text.data(), text.size(), &ids, &n, err, sizeof(err)) != 0) {
      throw InputError("SentencePiece could not encode text: " + std::string(err));
    }
    std::vector<int64_t> out(ids, ids + n);
    shim().free_buffer(ids);
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<int> narrow;
    narrow.reserve(ids.size());
    for (int64_t id : ids) {
      if (id < 0 || id >= size_)
        throw InputError("token id " + std::to_string(id) + " is out of range");
      narrow.push_back(static_cast<int>(id));
    }
    char* text = nullptr;
    size_t len = 0;
    char err[512] = {0};
    if (shim().decode(model_, narrow.data(), narrow.size(), &text, &len, err, sizeof(err)) != 0) {
      throw InputError("SentencePiece could not decode ids: " + std::string(err));
    }
    std::string out(text, len);
    shim().free_buffer(text);
    return out;
  }

  int64_t vocab_size() const override { return size_; }

  std::optional<int64_t> token_to_id(const std::string& token) const override {
    const int id = shim().piece_to_id(model_, token.c_str());
    if (id < 0) return std::nullopt;
    return id;
  }

  std::string id_to_token(int64_t id) const override {
    const char* piece =
        id < 0 || id >= size_ ? nullptr : shim().id_to_piece(model_, static_cast<int>(id));
    if (!piece) throw InputError("token id " + std::to_string(id) + " is out of range");
    return piece;
  }

  std::string kind() const override { return "SentencePiece (tokenizer.model)"; }

 private:
  std::string path_;
  zr_spm* model_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace

bool sentencepiece_available(std::string* why_not) {
  const ShimApi& api = shim();
  if (why_not) *why_not = api.error;
  return api.error.empty();
}

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

}  // namespace ziprerank
