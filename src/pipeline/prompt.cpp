#include "ziprerank/prompt.hpp"

#include <algorithm>
#include <iterator>

#include "core/utf8.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

std::string identifier(int index) {
  if (index < 0 || index >= kMaxWindow) throw InternalError("identifier index out of range");
  return std::string(1, static_cast<char>('A' + index));
}

std::string ranking_prompt_text(const std::string& query, int n) {
  std::string pictures;
  for (int i = 0; i < n; ++i) {
    if (i) pictures += ", ";
    pictures += "Picture " + std::to_string(i + 1) + " is passage [" + identifier(i) + "]";
  }
  return "You are RankGPT, an intelligent assistant that can rank passages based on their "
         "relevancy "
         "to the query.\n"
         "\n"
         "I will provide you with " +
         std::to_string(n) +
         " passages as images.\n"
         "Rank the passages based on their relevance to the search query.\n"
         "\n"
         "The images are provided in order: " +
         pictures +
         ".\n"
         "\n"
         "Search Query: " +
         query +
         "\n"
         "\n"
         "Rank the passages above based on their relevance to the search query.\n"
         "The passages should be listed in descending order using identifiers.\n"
         "The most relevant passages should be listed first.\n"
         "The output format should be [A] > [B], etc.\n"
         "Only output the ranking results, do not say anything else.";
}

int64_t single_token_id(const Tokenizer& tokenizer, const std::string& text) {
  if (auto id = tokenizer.token_to_id(text)) return *id;
  const auto ids = tokenizer.encode(text);
  if (ids.size() != 1) {
    throw InputError("the tokenizer has no single token for '" + text + "' (got " +
                     std::to_string(ids.size()) + " tokens); it cannot drive listwise scoring");
  }
  return ids[0];
}

PromptTokens build_ranking_prompt(const Tokenizer& tokenizer, const ModelConfig& config,
                                  const std::string& query,
                                  const std::vector<int64_t>& tokens_per_image) {
  const int n = static_cast<int>(tokens_per_image.size());
  if (query.find_first_not_of(" \t\r\n") == std::string::npos)
    throw InputError("the query is empty");
  if (n == 0) throw InputError("no candidate pages to rank");
  if (n > kMaxWindow) {
    throw InputError(std::to_string(n) + " candidates in one window; at most " +
                     std::to_string(kMaxWindow) +
                     " fit (identifiers A..Z): use a smaller --window");
  }
  // The chat template renders each image as <|vision_start|><|image_pad|><|vision_end|>; the
  // processor then repeats the pad once per visual token. Tokenizing the rendered text once and
  // expanding the pad ids afterwards gives the same ids, since special tokens split the text.
  std::string text = "<|im_start|>user\n" + ranking_prompt_text(query, n);
  for (int i = 0; i < n; ++i) text += "<|vision_start|><|image_pad|><|vision_end|>";
  text += "<|im_end|>\n<|im_start|>assistant\n";
  const std::vector<int64_t> raw = tokenizer.encode(text);

  PromptTokens out;
  int image = 0;
  for (int64_t id : raw) {
    if (id == config.image_token_id) {
      if (image >= n) throw InternalError("prompt has more image placeholders than images");
      out.image_starts.push_back(static_cast<int64_t>(out.ids.size()));
      out.ids.insert(out.ids.end(), tokens_per_image[image], config.image_token_id);
      ++image;
    } else {
      out.ids.push_back(id);
    }
  }
  if (image != n) {
    throw InputError("the tokenizer did not produce one <|image_pad|> (id " +
                     std::to_string(config.image_token_id) +
                     ") per image; tokenizer and config.json disagree");
  }
  out.ids.push_back(single_token_id(tokenizer, "["));

  // Where the query's tokens sit: the tokens of the text up to "Search Query:" and of that text
  // plus the query, counted as far as they agree with the whole prompt's tokens (a token that
  // straddles a boundary falls to the side it starts on).
  const std::string full = ranking_prompt_text(query, n);
  const std::string marker = "Search Query:";
  const size_t at = full.find(marker);
  if (at == std::string::npos) throw InternalError("the ranking prompt has no query marker");
  const std::string head = "<|im_start|>user\n" + full.substr(0, at + marker.size());
  auto agreeing = [&](const std::string& prefix) {
    const std::vector<int64_t> p = tokenizer.encode(prefix);
    int64_t k = 0;
    while (k < static_cast<int64_t>(p.size()) && k < static_cast<int64_t>(out.ids.size()) &&
           p[static_cast<size_t>(k)] == out.ids[static_cast<size_t>(k)]) {
      ++k;
    }
    return k;
  };
  out.query_begin = agreeing(head);
  out.query_end = agreeing(head + " " + query);
  if (out.query_end <= out.query_begin) {
    throw InputError("the query '" + query + "' has no tokens of its own in the prompt");
  }
  for (int i = 0; i < n; ++i)
    out.identifier_ids.push_back(single_token_id(tokenizer, identifier(i)));
  return out;
}

namespace {
// The digit 0 of every run of Unicode decimal digits (general category Nd, Unicode 14, what
// Python's \d matches); each run holds 0..9 in order.
constexpr char32_t kDecimalZeros[] = {
    0x30,    0x660,   0x6F0,   0x7C0,   0x966,   0x9E6,   0xA66,   0xAE6,   0xB66,   0xBE6,
    0xC66,   0xCE6,   0xD66,   0xDE6,   0xE50,   0xED0,   0xF20,   0x1040,  0x1090,  0x17E0,
    0x1810,  0x1946,  0x19D0,  0x1A80,  0x1A90,  0x1B50,  0x1BB0,  0x1C40,  0x1C50,  0xA620,
    0xA8D0,  0xA900,  0xA9D0,  0xA9F0,  0xAA50,  0xABF0,  0xFF10,  0x104A0, 0x10D30, 0x11066,
    0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0,
    0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2,
    0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0};

// The value of a decimal digit, or -1.
int decimal_digit_value(char32_t cp) {
  const auto* end = std::end(kDecimalZeros);
  const auto* it = std::upper_bound(std::begin(kDecimalZeros), end, cp);
  if (it == std::begin(kDecimalZeros)) return -1;
  const char32_t offset = cp - *(it - 1);
  return offset < 10 ? static_cast<int>(offset) : -1;
}
}  // namespace

std::vector<int> parse_generated_ranking(const std::string& text, int n) {
  // As the reference parser: every letter A..T is an identifier (brackets optional); when there is
  // none, every run of digits is a 1-based position; then missing candidates follow in order.
  std::vector<int> order;
  std::vector<bool> seen(n, false);
  auto take = [&](int idx) {
    if (idx >= 0 && idx < n && !seen[idx]) {
      seen[idx] = true;
      order.push_back(idx);
    }
  };
  bool any_letter = false;
  for (char ch : text) {
    if (ch >= 'A' && ch <= 'T') {
      any_letter = true;
      take(ch - 'A');
    }
  }
  if (!any_letter) {
    // Runs of decimal digits as Python's \d+ and int() read them: any Unicode decimal digit
    // (category Nd, e.g. fullwidth or Arabic-Indic), leading zeros allowed. A value past the
    // largest window is out of range however long the run.
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    int64_t value = -1;  // -1: not in a run
    for (size_t i = 0; i <= text.size();) {
      char32_t cp = 0;
      size_t len = i < text.size() ? detail::utf8_decode_one(s, text.size(), i, &cp) : 1;
      const int digit = i < text.size() && len > 0 ? decimal_digit_value(cp) : -1;
      if (len == 0) len = 1;  // a malformed byte: not a digit
      if (digit >= 0) {
        value = std::min<int64_t>((value < 0 ? 0 : value) * 10 + digit, 1000000);
      } else if (value >= 0) {
        take(static_cast<int>(value) - 1);
        value = -1;
      }
      i += len;
    }
  }
  for (int i = 0; i < n; ++i) take(i);
  return order;
}

}  // namespace ziprerank
