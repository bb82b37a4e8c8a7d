// Small text helpers shared by the parsers.
#pragma once

#include <cctype>
#include <string_view>

namespace ballast {

// `s` without leading and trailing white space (the C locale's).
[[nodiscard]] inline std::string_view trim(std::string_view s) noexcept {
    auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (!s.empty() && space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && space(s.back()))
        s.remove_suffix(1);
    return s;
}

}  // namespace ballast
