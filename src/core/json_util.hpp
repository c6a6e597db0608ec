// Small helpers for reading typed values out of nlohmann::json with errors that name the key.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ziprerank/errors.hpp"

namespace ziprerank::detail {

/// Reads a whole file; throws InputError naming the path if it cannot be opened or read.
std::string read_text_file(const std::string& path);

/// Parses JSON text; on a syntax error throws InputError with the origin and byte position.
nlohmann::json parse_json(const std::string& text, const std::string& origin);

/// Parses one JSONL record that must be an object; errors say "<origin>: malformed JSON (...)".
nlohmann::json parse_json_object(const std::string& line, const std::string& origin);

/// A required string field; errors name the field ("<origin>: missing field 'query'").
std::string require_string(const nlohmann::json& obj, const char* key, const std::string& origin);

/// Reads an optional key into `out` (left untouched when absent or null). A present value of the
/// wrong type throws InputError naming `origin` and the dotted key.
template <typename T>
void read_opt(const nlohmann::json& obj, const char* key, T& out, const std::string& origin,
              const std::string& scope = "") {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InputError(origin + ": key '" + scope + key + "' has the wrong type (" +
                     std::string(it->type_name()) + ")");
  }
}

}  // namespace ziprerank::detail
