// Kernel command line parsing (/proc/cmdline): "key=value" words, double quotes allowed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast {

struct CmdlineWord {
    std::string key;
    std::optional<std::string> value;  // nullopt for a bare flag ("quiet")
};

[[nodiscard]] std::vector<CmdlineWord> parse_cmdline(std::string_view text);
// The value of the last occurrence of `key` (the kernel's own rule: later words win).
[[nodiscard]] std::optional<std::string> cmdline_value(std::string_view text, std::string_view key);
// Reads /proc/cmdline.
[[nodiscard]] Result<std::string> read_proc_cmdline();

}  // namespace ballast
