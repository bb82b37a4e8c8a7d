// JSON helpers for data the agent did not write itself (reports of other runs, state files,
// API answers): text that never throws, fields read by type.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace ballast {

// `j` as JSON text. Strings that are not valid UTF-8 (raw bytes in a YAML file, a fact read from
// firmware or os-release) come out with U+FFFD where plain dump() would throw type_error.316.
template <class Json = nlohmann::json>
[[nodiscard]] std::string json_text(const Json& j, int indent = -1) {
    return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// `s` as a string D-Bus takes: every byte sequence that is not UTF-8, and every NUL,
// surrogate or noncharacter (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF), becomes U+FFFD. sd-bus refuses
// a message with any of them, and one damaged field must not make a whole reply fail.
[[nodiscard]] std::string valid_utf8(std::string_view s);

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
    else if constexpr (std::is_floating_point_v<T>)
        return it->is_number() ? it->template get<T>() : fallback;
    else if (it->is_number_unsigned())  // what the parser gives any integer >= 0
        return std::in_range<T>(it->template get<uint64_t>()) ? T(it->template get<uint64_t>())
                                                              : fallback;
    else if (it->is_number_integer())
        return std::in_range<T>(it->template get<int64_t>()) ? T(it->template get<int64_t>())
                                                             : fallback;
    else
        return fallback;
}

}  // namespace ballast
