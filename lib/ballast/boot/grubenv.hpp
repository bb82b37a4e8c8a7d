// GRUB's environment block, natively: exactly 1024 bytes, "# GRUB Environment Block\n", then
// "key=value\n" lines, then '#' padding to the end. In values GRUB escapes '\' and newline with
// a backslash. GRUB's save_env rewrites the file's sectors in place, so the size never changes.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::boot::grubenv {

inline constexpr size_t kSize = 1024;
inline constexpr std::string_view kHeader = "# GRUB Environment Block\n";

using Vars = std::vector<std::pair<std::string, std::string>>;  // in file order

[[nodiscard]] Result<Vars> parse(std::string_view block);
// Errc::invalid_argument when the variables do not fit in 1024 bytes or a name is invalid.
[[nodiscard]] Result<std::string> serialize(const Vars& vars);

[[nodiscard]] std::optional<std::string> get(const Vars& vars, std::string_view key);
void set(Vars& vars, std::string_view key, std::string value);

}  // namespace ballast::boot::grubenv
