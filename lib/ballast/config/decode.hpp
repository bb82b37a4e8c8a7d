// Cloud-config files to the typed model. Each file is decoded on its own (its steps keep their
// order and ids), then the Kairos blocks of all files are merged and decoded once.
#pragma once

#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/config/diagnostics.hpp"
#include "ballast/config/fields.hpp"
#include "ballast/config/model.hpp"
#include "ballast/config/sources.hpp"
#include "ballast/config/tree.hpp"

namespace ballast::config {

// Adds the file's steps to `cfg.stages` (stages: blocks, cloud-init keys and k3OS keys mapped to
// stages) and merges its Kairos blocks (install, k3s, ...) into `blocks`.
void decode_file(const SourceFile& src, const Node& tree, DecodeContext& ctx, Config& cfg,
                 Node& blocks);

// Decodes the merged blocks into `cfg`.
void decode_blocks(const Node& blocks, DecodeContext& ctx, Config& cfg);

// Cross-checks once everything is loaded: `after` names existing steps of the same stage.
void check_config(const Config& cfg, Diagnostics& diags);

// The keys a step may have (yip's plus Ballast's); stages/step_modules.hpp acts on them.
[[nodiscard]] std::vector<std::string_view> step_keys();

// Every block a cloud-config file may hold, the top level first (for the schema).
[[nodiscard]] std::vector<BlockInfo> cloud_config_blocks();

}  // namespace ballast::config
