// Recovery keys as systemd-cryptenroll makes them (src/shared/recovery-key.c): 32 random bytes as
// 64 "modhex" characters, in 8 groups of 8 joined by '-'. Modhex ("cbdefghijklnrtuv") types the
// same on most keyboard layouts, which matters at a boot prompt. The key is used verbatim as the
// keyslot passphrase, so a key made here opens with systemd's tools and the other way round.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast::crypt {

inline constexpr size_t kRecoveryKeyBytes = 32;
inline constexpr size_t kRecoveryKeyLength = 71;  // 64 characters and 7 dashes

// A fresh key from getrandom(). The result is a secret: wipe it when done.
[[nodiscard]] Result<std::string> make_recovery_key();
// The canonical spelling of `key` (each byte high nibble first).
[[nodiscard]] std::string format_recovery_key(std::span<const uint8_t, kRecoveryKeyBytes> key);
// The canonical spelling of a key as a person types it: any case, with or without the dashes,
// surrounded by white space. Errc::invalid_argument otherwise; the message never quotes the input,
// which may be a mistyped key.
[[nodiscard]] Result<std::string> normalize_recovery_key(std::string_view typed);

}  // namespace ballast::crypt
