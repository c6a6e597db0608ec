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

}  // namespace ziprerank::detail
