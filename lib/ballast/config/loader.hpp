// Loading a node's cloud-config: sources -> header check -> YAML -> typed model, with every
// problem collected as file:line:col diagnostics.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/config/diagnostics.hpp"
#include "ballast/config/model.hpp"
#include "ballast/config/sources.hpp"
#include "ballast/config/tree.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast::config {

struct Loaded {
    Config config;
    Node merged;                             // all files merged, for `config show`
    std::vector<SourceFile> sources;         // every file looked at, in order
    std::vector<std::string> skipped_files;  // files with errors: none of their content applies
    Diagnostics diags;
};

// Loads and decodes `sources`. Problems are in `diags`; a file with an error contributes
// nothing (it is listed in skipped_files) and the other files still apply.
[[nodiscard]] Loaded load_sources(std::vector<SourceFile> sources, const nlohmann::json& facts,
                                  Diagnostics diags = {});

// Loads `sources` for the settings of one top-level block (`key`: "install", "reset"): an error
// in a file that holds that block is an error here (with all the errors' text), since its
// settings must not silently fall back to defaults. Errors in other files stay in `diags` for
// the caller to judge.
[[nodiscard]] Result<Loaded> load_for_block(std::vector<SourceFile> sources, std::string_view key,
                                            const nlohmann::json& facts);

// Collects the node's sources under `root` (plus `opts`) and loads them.
[[nodiscard]] Result<Loaded> load_config(const RootPrefix& root, const SourceOptions& opts,
                                         const nlohmann::json& facts);

// The merged tree as JSON: {"value": ..., "source": "file:line:col"} per leaf when
// `with_sources`, plain values otherwise.
[[nodiscard]] nlohmann::json tree_to_json(const Node& n, bool with_sources);

}  // namespace ballast::config
