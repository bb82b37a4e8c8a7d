// Typed readers for the fields of the JSON systemd writes (LUKS2 tokens, PCR signature files),
// with errors that name the field and quote at most a short piece of the untrusted value.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr.hpp"

namespace ballast::crypt::jf {

using Json = nlohmann::json;

// `v` as JSON text, cut to 40 characters.
[[nodiscard]] std::string shown(const Json& v);
[[nodiscard]] const Json* member(const Json& obj, std::string_view key);
// obj[key]; missing is an error naming `field` (the key itself unless told).
[[nodiscard]] Result<const Json*> required(const Json& obj, std::string_view field,
                                           std::string_view key = {});
// All errors are Errc::parse naming `field`.
[[nodiscard]] Result<const std::string*> string_field(const Json& v, std::string_view field);
[[nodiscard]] Result<bool> bool_field(const Json& v, std::string_view field);
// An array of PCR numbers 0-23.
[[nodiscard]] Result<PcrMask> pcr_array(const Json& v, std::string_view field);
// Standard alphabet with padding, non-empty, nothing else: what systemd's base64mem writes.
[[nodiscard]] Result<std::string> base64_field(const Json& v, std::string_view field);
// 64 hex digits; `what` says what the digest is ("a SHA-256 policy digest").
[[nodiscard]] Result<Digest> digest_field(const Json& v, std::string_view field,
                                          std::string_view what);

}  // namespace ballast::crypt::jf
