#include "ballast/core/duration.hpp"

#include <ctime>

#include <cctype>
#include <cstdint>
#include <limits>

namespace ballast {

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
    auto bad = [&](std::string_view why) {
        return fail(Errc::invalid_argument, "invalid duration '{}': {} (examples: 90s, 5m, 1h30m)",
                    text, why);
    };
    std::string_view s = text;
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    if (s.empty()) return bad("empty");
    int64_t total_ms = 0;
    bool any_unit = false;
    while (!s.empty()) {
        if (!std::isdigit(static_cast<unsigned char>(s.front()))) return bad("expected a number");
        int64_t num = 0;
        while (!s.empty() && std::isdigit(static_cast<unsigned char>(s.front()))) {
            if (num > (std::numeric_limits<int64_t>::max() / 10) - 10) return bad("too large");
            num = num * 10 + (s.front() - '0');
            s.remove_prefix(1);
        }
        size_t u = 0;
        while (u < s.size() && std::isalpha(static_cast<unsigned char>(s[u])))
            ++u;
        std::string_view unit = s.substr(0, u);
        s.remove_prefix(u);
        int64_t mult;
        if (unit.empty()) {
            if (any_unit || !s.empty()) return bad("missing unit");
            mult = 1000;  // a bare number is seconds
        } else if (unit == "ms")
            mult = 1;
        else if (unit == "s" || unit == "sec")
            mult = 1000;
        else if (unit == "m" || unit == "min")
            mult = 60'000;
        else if (unit == "h")
            mult = 3'600'000;
        else if (unit == "d")
            mult = 86'400'000;
        else
            return bad("unknown unit '" + std::string(unit) + "'");
        if (num > std::numeric_limits<int64_t>::max() / mult - total_ms) return bad("too large");
        total_ms += num * mult;
        any_unit = true;
    }
    return std::chrono::milliseconds(total_ms);
}

std::string format_duration(std::chrono::milliseconds d) {
    int64_t ms = d.count();
    if (ms == 0) return "0s";
    if (ms % 1000 != 0) return std::to_string(ms) + "ms";
    int64_t s = ms / 1000;
    std::string out;
    if (s >= 86400 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
    if (s >= 3600) out += std::to_string(s / 3600) + "h", s %= 3600;
    if (s >= 60) out += std::to_string(s / 60) + "m", s %= 60;
    if (s > 0) out += std::to_string(s) + "s";
    return out;
}

std::string now_utc() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace ballast
