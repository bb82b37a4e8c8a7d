// What the daemon and its one-shot modes agree on about this node: its settings, its disk, the
// slot it booted from, its state folder.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "ballast/boot/slot.hpp"
#include "ballast/config/agent_settings.hpp"
#include "ballast/core/root.hpp"
#include "ballast/update/upgrade.hpp"

namespace ballast::agent {

// Global options of ballast-agent, as given.
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

}  // namespace ballast::agent
