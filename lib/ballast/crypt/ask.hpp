// Asking for a PIN or recovery key: from an environment variable (systemd's names: PIN, NEWPIN,
// PASSWORD), else the terminal with echo off, else, under a systemd unit, systemd-ask-password
// (the boot console and Plymouth in the initramfs). Never logged.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast::crypt {

// nullopt: nobody can be asked (no variable, no terminal, no agent), or the user gave nothing.
// `timeout` bounds the wait for a password agent (boot); 0: none. A terminal waits for its user.
[[nodiscard]] std::optional<std::string> ask_secret(
    std::string_view prompt, std::string_view env_name,
    std::chrono::seconds timeout = std::chrono::seconds(0));

}  // namespace ballast::crypt
