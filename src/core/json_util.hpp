// Small helpers for reading typed values out of nlohmann::json with errors that name the key.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

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

template <typename T>
struct is_std_vector : std::false_type {};
template <typename T, typename A>
struct is_std_vector<std::vector<T, A>> : std::true_type {};

/// Converts a JSON value to T without the conversions nlohmann::json would do silently (or with
/// undefined behaviour): an integer target takes only integral values inside its range (16.0 is
/// 16, 16.5 and 1e20 are refused), a floating-point target only finite numbers, bool only
/// true/false. Vectors convert element by element. False when the value does not fit; `out` is
/// then unchanged.
template <typename T>
bool json_to(const nlohmann::json& v, T& out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return false;
    out = v.get<bool>();
    return true;
  } else if constexpr (std::is_integral_v<T>) {
    using Limits = std::numeric_limits<T>;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(Limits::max())) return false;
      out = static_cast<T>(u);
      return true;
    }
    if (v.is_number_integer()) {
      const int64_t i = v.get<int64_t>();
      if constexpr (std::is_signed_v<T>) {
        if (i < static_cast<int64_t>(Limits::min()) || i > static_cast<int64_t>(Limits::max()))
          return false;
      } else {
        if (i < 0 || static_cast<uint64_t>(i) > static_cast<uint64_t>(Limits::max())) return false;
      }
      out = static_cast<T>(i);
      return true;
    }
    if (v.is_number_float()) {
      // [lo, hi) is exactly T's range: both bounds are powers of two, so exact in a double.
      const double d = v.get<double>();
      const double hi = std::ldexp(1.0, Limits::digits);
      const double lo = std::is_signed_v<T> ? -hi : 0.0;
      if (!(d >= lo && d < hi) || d != std::trunc(d)) return false;
      out = static_cast<T>(d);
      return true;
    }
    return false;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return false;
    const T x = v.get<T>();
    if (!std::isfinite(x)) return false;  // e.g. 1e999, which the JSON parser reads as inf
    out = x;
    return true;
  } else if constexpr (is_std_vector<T>::value) {
    if (!v.is_array()) return false;
    T items;
    items.reserve(v.size());
    for (const auto& e : v) {
      typename T::value_type item{};
      if (!json_to(e, item)) return false;
      items.push_back(std::move(item));
    }
    out = std::move(items);
    return true;
  } else {
    try {
      out = v.get<T>();
      return true;
    } catch (const nlohmann::json::exception&) {
      return false;
    }
  }
}

/// Reads an optional key into `out` (left untouched when absent or null). A present value of the
/// wrong type, or one that does not fit `out` (see json_to), throws InputError naming `origin`
/// and the dotted key.
template <typename T>
void read_opt(const nlohmann::json& obj, const char* key, T& out, const std::string& origin,
              const std::string& scope = "") {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  if (json_to(*it, out)) return;
  if (it->is_number() || it->is_array()) {
    std::string shown = it->dump(-1, ' ', true);
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    throw InputError(origin + ": key '" + scope + key + "' has a value out of range or of the " +
                     "wrong kind (" + shown + ")");
  }
  throw InputError(origin + ": key '" + scope + key + "' has the wrong type (" +
                   std::string(it->type_name()) + ")");
}

}  // namespace ziprerank::detail
