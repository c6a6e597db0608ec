// Parsing and checking of rerank requests: pure functions, no sockets, each refusal an HttpError
// with the status to answer and a message naming the field.
#include <array>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "core/utf8.hpp"
#include "ziprerank/serve.hpp"

namespace ziprerank::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The JSON type of a value, as a client would call it.
std::string type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

[[noreturn]] void bad(const std::string& message) { throw HttpError(400, message); }

using detail::starts_with;

const std::vector<std::string>& image_media_types() {
  static const std::vector<std::string> types = {"image/png", "image/jpeg", "image/jpg",
                                                 "image/webp", "image/bmp"};
  return types;
}

bool is_image_media_type(const std::string& t) {
  for (const std::string& s : image_media_types())
    if (t == s) return true;
  return false;
}

// A "pdf" or image source: a data URI (decoded here) or a path (resolved by the server).
void read_source(const std::string& text, const std::string& where, bool pdf,
                 RequestDocument& doc) {
  if (text.empty()) bad(where + " is empty: give a file path under the pages root or a data URI");
  if (!starts_with(text, "data:")) {
    doc.path = text;
    return;
  }
  std::string type;
  try {
    doc.data = decode_data_uri(text, &type);
  } catch (const HttpError& e) {
    bad(where + ": " + e.what());
  }
  if (pdf && type != "application/pdf")
    bad(where + " is a data URI of type '" + type + "'; a PDF is sent as application/pdf");
  if (!pdf && type == "application/pdf")
    bad(where + " is a PDF: send it as {\"pdf\": ..., \"page\": n}");
  if (!pdf && !is_image_media_type(type))
    bad(where + " is a data URI of type '" + type +
        "'; images are image/png, image/jpeg, image/webp or image/bmp");
  if (doc.data.empty()) bad(where + " is a data URI with no bytes");
}

RequestDocument parse_document(const json& v, size_t i) {
  const std::string where = "documents[" + std::to_string(i) + "]";
  RequestDocument doc;
  if (v.is_string()) {
    read_source(v.get<std::string>(), where, false, doc);
    return doc;
  }
  if (!v.is_object()) {
    bad(where + " is " + type_name(v) +
        "; a document is an image path, a data URI, {\"image\": ...} or {\"pdf\": ..., "
        "\"page\": n}");
  }
  for (const auto& [key, value] : v.items()) {
    if (key != "image" && key != "pdf" && key != "page")
      bad(where + " has an unknown field '" + key + "' (known: image, pdf, page)");
    (void)value;
  }
  const bool has_image = v.contains("image"), has_pdf = v.contains("pdf");
  if (has_image == has_pdf) bad(where + " needs exactly one of \"image\" and \"pdf\"");
  const std::string key = has_pdf ? "pdf" : "image";
  if (!v[key].is_string())
    bad(where + "." + key + " is " + type_name(v[key]) + "; expected a string");
  read_source(v[key].get<std::string>(), where + "." + key, has_pdf, doc);
  if (has_pdf) {
    doc.pdf = true;
    if (!v.contains("page")) bad(where + " names a PDF without \"page\" (1-based)");
    const json& page = v["page"];
    if (!page.is_number_integer() || page.get<int64_t>() < 1 || page.get<int64_t>() > 1000000)
      bad(where + ".page must be a page number from 1 (got " + page.dump() + ")");
    doc.page = static_cast<int>(page.get<int64_t>());
  } else if (v.contains("page")) {
    bad(where + " has \"page\" but no \"pdf\"");
  }
  return doc;
}

}  // namespace

std::vector<uint8_t> base64_decode(const std::string& text) {
  static const std::array<int8_t, 256> table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int k = 0; k < 64; ++k)
      t[static_cast<unsigned char>(alphabet[k])] = static_cast<int8_t>(k);
    return t;
  }();
  size_t n = text.size();
  while (n > 0 && text[n - 1] == '=' && text.size() - n < 2) --n;
  if (n % 4 == 1 || (text.size() != n && text.size() % 4 != 0))
    throw HttpError(400, "invalid base64: wrong length");
  std::vector<uint8_t> out;
  out.reserve(n / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    const int8_t v = table[static_cast<unsigned char>(text[i])];
    if (v < 0) throw HttpError(400, "invalid base64: unexpected character at " + std::to_string(i));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero (canonical encoding).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
    throw HttpError(400, "invalid base64: trailing bits are not zero");
  return out;
}

std::vector<uint8_t> decode_data_uri(const std::string& uri, std::string* media_type) {
  if (!starts_with(uri, "data:")) throw HttpError(400, "not a data URI (data:<type>;base64,...)");
  const size_t comma = uri.find(',');
  if (comma == std::string::npos) throw HttpError(400, "data URI without a ',' before the data");
  const std::string head = uri.substr(5, comma - 5);
  const std::string marker = ";base64";
  if (head.size() < marker.size() ||
      head.compare(head.size() - marker.size(), marker.size(), marker) != 0) {
    throw HttpError(400, "data URI is not base64 (expected data:<type>;base64,...)");
  }
  std::string type = head.substr(0, head.size() - marker.size());
  if (const size_t semi = type.find(';'); semi != std::string::npos) type.resize(semi);
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (media_type) *media_type = type;
  return base64_decode(uri.substr(comma + 1));
}

RerankRequest parse_rerank_request(const std::string& body, const RequestLimits& limits) {
  if (body.size() > limits.max_body_bytes) {
    throw HttpError(413, "request body of " + std::to_string(body.size()) +
                             " bytes is above the server's --max-body-bytes of " +
                             std::to_string(limits.max_body_bytes));
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    bad(std::string("request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad("request body is " + type_name(j) + "; expected a JSON object");
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (key != "query" && key != "documents" && key != "top_n" && key != "return_documents" &&
        key != "model") {
      bad("unknown field '" + key + "' (known: query, documents, top_n, return_documents, model)");
    }
  }
  RerankRequest r;
  if (!j.contains("query")) bad("missing field 'query'");
  if (!j["query"].is_string()) bad("'query' is " + type_name(j["query"]) + "; expected a string");
  r.query = j["query"].get<std::string>();
  if (r.query.find_first_not_of(" \t\r\n") == std::string::npos) bad("'query' is empty");
  if (!j.contains("documents")) bad("missing field 'documents'");
  const json& docs = j["documents"];
  if (!docs.is_array()) bad("'documents' is " + type_name(docs) + "; expected an array");
  if (docs.empty()) bad("'documents' is empty: nothing to rerank");
  if (docs.size() > static_cast<size_t>(limits.max_candidates)) {
    throw HttpError(413, std::to_string(docs.size()) +
                             " documents in one request, above the server's --max-candidates "
                             "of " +
                             std::to_string(limits.max_candidates));
  }
  for (size_t i = 0; i < docs.size(); ++i) r.documents.push_back(parse_document(docs[i], i));
  if (j.contains("top_n") && !j["top_n"].is_null()) {
    const json& t = j["top_n"];
    if (!t.is_number_integer() || t.get<int64_t>() < 1)
      bad("'top_n' must be a positive integer (got " + t.dump() + ")");
    r.top_n = static_cast<int>(std::min<int64_t>(t.get<int64_t>(), 1 << 30));
  }
  if (j.contains("return_documents") && !j["return_documents"].is_null()) {
    if (!j["return_documents"].is_boolean())
      bad("'return_documents' is " + type_name(j["return_documents"]) + "; expected a boolean");
    r.return_documents = j["return_documents"].get<bool>();
  }
  if (r.return_documents) r.raw_documents = docs;
  return r;
}

std::string resolve_under_root(const std::string& root, const std::string& path) {
  if (root.empty()) {
    throw HttpError(403,
                    "file documents are off: the server was started without --pages-root; "
                    "send the page as a data URI");
  }
  std::error_code ec;
  const fs::path base = fs::canonical(root, ec);
  if (ec) throw HttpError(500, "the pages root '" + root + "' is not readable: " + ec.message());
  const fs::path given(path);
  const fs::path full = fs::weakly_canonical(given.is_absolute() ? given : base / given, ec);
  if (ec) throw HttpError(400, "'" + path + "': cannot resolve it (" + ec.message() + ")");
  // Inside the root: the root's components are a prefix of the resolved path's.
  auto b = base.begin(), f = full.begin();
  for (; b != base.end(); ++b, ++f) {
    if (f == full.end() || *b != *f) {
      throw HttpError(403, "'" + path + "' is outside the pages root");
    }
  }
  if (!fs::exists(full, ec))
    throw HttpError(400, "'" + path + "' does not exist under the pages root");
  if (!fs::is_regular_file(full, ec)) throw HttpError(400, "'" + path + "' is not a regular file");
  return full.string();
}

}  // namespace ziprerank::serve
