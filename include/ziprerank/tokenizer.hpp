// Text tokenizers behind one interface: the byte-level BPE of `tokenizer.json` (the published
// Qwen3-VL / ZipRerank checkpoints) and SentencePiece `tokenizer.model` (ziprerank's own models).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ziprerank {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Token ids of `text`. Added/special tokens written literally in the text (e.g. "<|im_start|>")
  /// become their single ids; nothing else is added (no BOS/EOS).
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  /// Text of a sequence of ids (special tokens included verbatim).
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  /// Number of ids the tokenizer can produce (base vocabulary + added tokens).
  virtual int64_t vocab_size() const = 0;
  /// Id of an exact token string (a vocabulary entry or an added token), if any.
  virtual std::optional<int64_t> token_to_id(const std::string& token) const = 0;
  /// The token string of an id; throws InputError for an id out of range.
  virtual std::string id_to_token(int64_t id) const = 0;
  /// Short description for logs and `inspect`, e.g. "byte-level BPE (tokenizer.json)".
  virtual std::string kind() const = 0;
};

/// Loads the tokenizer of a model folder: tokenizer.json if present, else tokenizer.model.
/// Throws InputError when neither exists or the file is malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);

/// Loads a SentencePiece model file. Throws InputError if the file is malformed, or Error when
/// SentencePiece support is not available in this build (sanitizer builds).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_path);

/// Loads a Hugging Face `tokenizer.json` (byte-level BPE as used by Qwen2/Qwen3).
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& tokenizer_json_path);
/// The same from the file's text; `origin` names it in error messages.
std::unique_ptr<Tokenizer> parse_bpe_tokenizer(const std::string& json_text,
                                               const std::string& origin);

/// True when SentencePiece can be used in this process (the isolated shim library loads).
bool sentencepiece_available(std::string* why_not = nullptr);

/// Ids of the Qwen chat and vision special tokens in a tokenizer written by
/// write_byte_level_tokenizer.
struct SpecialTokenIds {
  int64_t endoftext, im_start, im_end, vision_start, vision_end, image_pad, video_pad;
};
/// Writes a byte-level BPE tokenizer.json with no merges: the 256 bytes as ids 0..255 and the
/// Qwen chat/vision special tokens after them. Returns the ids given to the special tokens.
SpecialTokenIds write_byte_level_tokenizer(const std::string& path);

}  // namespace ziprerank
