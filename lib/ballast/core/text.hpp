// Small text helpers shared by the parsers.
#pragma once

#include <cctype>
#include <charconv>
#include <concepts>
#include <optional>
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

// `s` as a number in `base` if it is digits only (no sign, no white space) and fits in T; never
// throws, so a hostile file can give any string of digits (std::stoul would throw on these).
template <std::unsigned_integral T>
[[nodiscard]] std::optional<T> parse_unsigned(std::string_view s, int base = 10) noexcept {
    if (s.empty()) return std::nullopt;
    T v{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace ballast
