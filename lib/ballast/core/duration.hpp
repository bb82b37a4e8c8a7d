// Durations as people write them in config files: "90s", "5m", "1h30m", "250ms", or a bare
// number of seconds.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast {

[[nodiscard]] Result<std::chrono::milliseconds> parse_duration(std::string_view text);
// Shortest exact spelling that parse_duration reads back ("5m", "1h30m", "250ms").
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

// The current time as ISO 8601 UTC ("2026-11-28T07:45:00Z"), for reports and journals.
[[nodiscard]] std::string now_utc();

}  // namespace ballast
