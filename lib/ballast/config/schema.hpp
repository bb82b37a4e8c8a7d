// JSON Schema (draft 2020-12) of the config files, generated from the decoders' field tables so
// that editors check a file with the same keys Ballast reads (`agentctl config schema`).
#pragma once

#include <span>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/config/fields.hpp"

namespace ballast::config {

// `blocks` as cloud_config_blocks() or agent_settings_blocks() return them: the top level first,
// every nested block a field names present once.
[[nodiscard]] nlohmann::json json_schema(std::span<const BlockInfo> blocks, std::string_view id);

}  // namespace ballast::config
