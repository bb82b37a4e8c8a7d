// Small text helpers shared by the parsers.
#pragma once

#include <cctype>
#include <charconv>
#include <concepts>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// `s` with A-Z as a-z (the C locale's): names compared without case.
[[nodiscard]] inline std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}
[[nodiscard]] inline std::string ascii_upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// The lines of `s` (LF or CRLF), trimmed, empty ones dropped.
[[nodiscard]] inline std::vector<std::string> nonempty_lines(std::string_view s) {
    std::vector<std::string> out;
    while (!s.empty()) {
        const auto eol = s.find('\n');
        const auto line = trim(s.substr(0, eol));
        if (!line.empty()) out.emplace_back(line);
        s = eol == std::string_view::npos ? std::string_view() : s.substr(eol + 1);
    }
    return out;
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

// The checks input values share; each caller words its own message (naming the field).
[[nodiscard]] inline bool is_absolute_path(std::string_view s) noexcept {
    return !s.empty() && s.front() == '/';
}
// 64 lower-case hex digits: a SHA-256 digest as manifests, sha256sum and Ballast write it.
[[nodiscard]] inline bool is_sha256_hex(std::string_view s) noexcept {
    return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}
[[nodiscard]] inline bool is_https_url(std::string_view s) noexcept {
    return s.starts_with("https://");
}
// http:// or https://: where plain http is acceptable because a digest or signature is checked.
[[nodiscard]] inline bool is_http_url(std::string_view s) noexcept {
    return is_https_url(s) || s.starts_with("http://");
}

}  // namespace ballast
