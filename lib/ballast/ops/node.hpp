// The node an operation acts on, resolved the same way by the daemon and every one-shot mode of
// ballast-agent: its root, settings, disk, the slot it booted from and its state folder.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "ballast/boot/disk_boot.hpp"
#include "ballast/boot/slot.hpp"
#include "ballast/config/agent_settings.hpp"
#include "ballast/core/root.hpp"
#include "ballast/update/source.hpp"

namespace ballast::ops {

// ballast-agent's global options, as given.
struct NodeOptions {
    RootPrefix root;
    std::string disk;  // --disk; empty: agent.yaml, then PARTLABEL discovery
    std::filesystem::path settings_path{config::kDefaultAgentSettingsPath};
    bool settings_explicit = false;         // --config given: the file must exist
    std::optional<boot::Slot> booted_slot;  // --booted-slot; else ballast.slot= on /proc/cmdline
};

// --disk, else agent.yaml's disk, else the disk holding PARTLABEL BALLAST_A; empty when none.
[[nodiscard]] std::string resolve_disk(const NodeOptions& o, const config::AgentSettings& s);
// --booted-slot, else ballast.slot= on the kernel command line.
[[nodiscard]] std::optional<boot::Slot> resolve_booted(const NodeOptions& o);
// /var/lib/ballast under the root.
[[nodiscard]] std::filesystem::path state_dir(const NodeOptions& o);
// Where bundles come from and whom they must be signed by (agent.yaml, then the defaults).
[[nodiscard]] update::SourceOptions source_options(const NodeOptions& o,
                                                   const config::AgentSettings& s);
[[nodiscard]] Result<config::AgentSettings> load_settings(const NodeOptions& o);

// A node with its settings loaded and its disk and booted slot resolved.
struct Node {
    NodeOptions options;
    config::AgentSettings settings;
    std::string disk;  // empty: no Ballast disk
    std::optional<boot::Slot> booted;
    std::filesystem::path state_dir;

    [[nodiscard]] static Result<Node> open(const NodeOptions& o);
    // The disk's boot side; Errc::unavailable when the node has no Ballast disk.
    [[nodiscard]] Result<boot::DiskBoot> open_boot() const;
};

}  // namespace ballast::ops
