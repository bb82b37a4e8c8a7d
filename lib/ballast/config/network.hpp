// cloud-init network config in a cloud-config file (`network:`, version 1 or 2), to the netplan
// document the image's renderer reads (netplan, for systemd-networkd). Version 2 is netplan's
// own format: the block is checked here (version, renderer, the device kinds) and handed on with
// its lines where they are in the file, so netplan's errors name the user's file:line:col.
// Version 1 is converted, as cloud-init does, with file:line errors from the conversion.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/config/fields.hpp"
#include "ballast/config/model.hpp"
#include "ballast/config/tree.hpp"

namespace ballast::config {

// Decodes `network` (the value of the top-level key) of `file` whose text is `text`; adds a
// NetworkDoc to cfg.network, or diagnostics.
void decode_network(const Node& network, const Position& key_pos, std::string_view text,
                    DecodeContext& ctx, Config& cfg);

// A version 1 `config:` list to a version 2 document ({"network": {...}}); errors go to
// `diags` with each item's position.
[[nodiscard]] nlohmann::json network_v1_to_v2(const Node& config, Diagnostics& diags);

// YAML text of a JSON document (netplan reads YAML).
[[nodiscard]] std::string to_yaml(const nlohmann::json& doc);

}  // namespace ballast::config
