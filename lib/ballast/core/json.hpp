// JSON helpers for data the agent did not write itself (reports of other runs, state files,
// API answers): text that never throws, fields read by type.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

namespace ballast {

// `j` as JSON text. Strings that are not valid UTF-8 (raw bytes in a YAML file, a fact read from
// firmware or os-release) come out with U+FFFD where plain dump() would throw type_error.316.
template <class Json = nlohmann::json>
[[nodiscard]] std::string json_text(const Json& j, int indent = -1) {
    return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// `s` with every byte sequence that is not UTF-8 replaced by U+FFFD: D-Bus refuses such
// strings, and one damaged field must not make a whole reply fail.
[[nodiscard]] inline std::string valid_utf8(const std::string& s) {
    return nlohmann::json::parse(json_text(nlohmann::json(s))).get<std::string>();
}

// j[key] if `j` is an object holding a value of T's kind there, else `fallback`. Unlike
// json::value(), a wrong type is not an exception.
template <class T>
[[nodiscard]] T json_field(const nlohmann::json& j, const char* key, T fallback) {
    if (!j.is_object()) return fallback;
    auto it = j.find(key);
    if (it == j.end()) return fallback;
    if constexpr (std::is_same_v<T, std::string>)
        return it->is_string() ? it->template get<std::string>() : fallback;
    else if constexpr (std::is_same_v<T, bool>)
        return it->is_boolean() ? it->template get<bool>() : fallback;
    else
        return it->is_number() ? it->template get<T>() : fallback;
}

}  // namespace ballast
