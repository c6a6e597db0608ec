#include "ziprerank/tokenizer.hpp"

#include <filesystem>

#include "ziprerank/errors.hpp"

namespace ziprerank {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path json = fs::path(model_dir) / "tokenizer.json";
  const fs::path spm = fs::path(model_dir) / "tokenizer.model";
  if (fs::exists(json)) return load_bpe_tokenizer(json.string());
  if (fs::exists(spm)) return load_sentencepiece_tokenizer(spm.string());
  throw InputError("'" + model_dir + "' has no tokenizer.json or tokenizer.model");
}

}  // namespace ziprerank
