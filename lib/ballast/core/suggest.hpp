// "Did you mean": the closest known word to a misspelt one.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ballast {

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
[[nodiscard]] size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word`, if it is close enough to be a likely typo
// (distance <= max(1, len/3)). Ties go to the earlier candidate.
[[nodiscard]] std::optional<std::string> closest_match(
    std::string_view word, std::span<const std::string_view> candidates);

}  // namespace ballast
