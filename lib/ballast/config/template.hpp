// Go-template style rendering ("{{ trunc 4 .MachineID }}") over node facts, as Kairos and yip
// users write it. A subset: field chains, string/number/bool literals, function calls,
// pipelines, parentheses, {{- -}} trimming, {{/* comments */}}, if / else if / else / end.
// Functions: trunc, default, upper, lower, title, trim, trimPrefix, trimSuffix, replace, quote,
// squote, contains, hasPrefix, hasSuffix, index, join, b64enc, b64dec, toString.
// An unknown function or field is an error; a missing field is allowed only as the value
// `default` falls back from.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/config/diagnostics.hpp"
#include "ballast/core/result.hpp"

namespace ballast::config {

// True when `text` contains a template action at all (cheap pre-check).
[[nodiscard]] bool has_template(std::string_view text);

// Renders `text`. `where` is the position of the text's first character in its file; errors
// name the line of the failing action ("file:line: template: ...").
[[nodiscard]] Result<std::string> render_template(std::string_view text, const nlohmann::json& data,
                                                  const Position& where);

}  // namespace ballast::config
