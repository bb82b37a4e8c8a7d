// The k3s command-line flags that its config file accepts as keys (k3s server and agent, 1.27+),
// and how each takes its value. Flags not listed stay on the command line untouched.
#pragma once

#include <optional>
#include <string_view>

namespace ballast::k3s {

enum class FlagKind { string, list, boolean };

// The kind of `--name` (without dashes), or nullopt when k3s's config file has no such key.
[[nodiscard]] std::optional<FlagKind> flag_kind(std::string_view name);

}  // namespace ballast::k3s
