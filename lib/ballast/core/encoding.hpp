// Byte encodings used by config files and bundles: base64, gzip, hex.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast {

[[nodiscard]] std::string base64_encode(std::string_view in);
// Standard and URL-safe alphabets; whitespace and padding ignored; anything else is an error.
[[nodiscard]] Result<std::string> base64_decode(std::string_view in);
// gzip (or zlib) stream to bytes; refuses output above max_size.
[[nodiscard]] Result<std::string> gunzip(std::string_view in, size_t max_size = 256u << 20);
[[nodiscard]] std::string to_hex(std::span<const uint8_t> bytes);
// Hex digits (either case, an even number of them) to bytes; nullopt for anything else.
[[nodiscard]] std::optional<std::string> from_hex(std::string_view hex);

}  // namespace ballast
