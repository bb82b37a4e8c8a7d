// Reading the JSON documents metadata services answer: a field of the wrong type is an error
// naming the document and the field, an absent one is empty.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"

namespace ballast::datasource {

// The document as a JSON object, or an error naming `what`.
[[nodiscard]] Result<nlohmann::json> parse_json(std::string_view text, std::string_view what);

// A string field (an integer is given as its digits), or "" when absent or null.
[[nodiscard]] Result<std::string> str_field(const nlohmann::json& j, std::string_view key,
                                            std::string_view what);

}  // namespace ballast::datasource
