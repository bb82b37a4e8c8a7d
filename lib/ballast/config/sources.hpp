// Where cloud-config comes from, in order (later files override earlier ones), and which files
// count: a header (#cloud-config, #kairos-config, #node-config) or a k3OS file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/config/diagnostics.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast::config {

enum class SourceKind { cloud_config, k3os, no_header };

struct SourceFile {
    std::string name;  // as reported in messages: the node path, or the path given
    std::string text;
    SourceKind kind = SourceKind::cloud_config;
};

// The source folders and files on a node, in order (DESIGN.md §3, plus k3OS's locations).
[[nodiscard]] const std::vector<std::string_view>& node_source_paths();

// Kind of one file: a header line within the first 10 lines (blank and comment lines skipped,
// as yip scans), else k3OS when the path is a k3OS location or the file has a `k3os:` block.
[[nodiscard]] SourceKind detect_kind(std::string_view text, std::string_view path);

struct SourceOptions {
    bool node_sources = true;              // read node_source_paths() under the root
    std::vector<std::string> extra_files;  // --config FILE, read after the node's sources
    std::string cmdline;                   // kernel command line text ("" for none)
};

// Reads every source. Files without a header are skipped with a warning (Kairos ignores them
// silently, a known trap). Unreadable named files are errors.
[[nodiscard]] Result<std::vector<SourceFile>> collect_sources(const RootPrefix& root,
                                                              const SourceOptions& opts,
                                                              Diagnostics& diags);

// `ballast.KEY=VALUE` words of a kernel command line, one YAML document each: dots nest
// (ballast.k3s.enabled=true). `ballast.slot` and other agent keys are left out.
[[nodiscard]] std::vector<std::string> cmdline_config(std::string_view cmdline);

}  // namespace ballast::config
