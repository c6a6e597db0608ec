#include "json_util.hpp"

#include <fstream>
#include <sstream>

namespace ziprerank::detail {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open '" + path + "' for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError("error while reading '" + path + "'");
  return ss.str();
}

nlohmann::json parse_json(const std::string& text, const std::string& origin) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(origin + ": invalid JSON at byte " + std::to_string(e.byte) + " (" + e.what() +
                     ")");
  } catch (const nlohmann::json::exception& e) {
    // e.g. a number too large to represent
    throw InputError(origin + ": invalid JSON (" + std::string(e.what()) + ")");
  }
}

nlohmann::json parse_json_object(const std::string& line, const std::string& origin) {
  nlohmann::json obj;
  try {
    obj = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(origin + ": malformed JSON (" + std::string(e.what()) + ")");
  }
  if (!obj.is_object()) throw InputError(origin + ": expected a JSON object");
  return obj;
}

std::string require_string(const nlohmann::json& obj, const char* key, const std::string& origin) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw InputError(origin + ": missing field '" + key + "'");
  if (!it->is_string()) {
    throw InputError(origin + ": field '" + std::string(key) + "' must be a string");
  }
  return it->get<std::string>();
}

}  // namespace ziprerank::detail
