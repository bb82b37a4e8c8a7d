#include "ballast/ops/node.hpp"

#include <spdlog/spdlog.h>

#include "ballast/boot/sdboot.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/disk/discover.hpp"
#include "ballast/disk/layout.hpp"
#include "ballast/update/bundle.hpp"

namespace ballast::ops {

std::string resolve_disk(const NodeOptions& o, const config::AgentSettings& s) {
    if (!o.disk.empty()) return o.disk;
    if (!s.disk.empty()) return s.disk;
    auto found = disk::find_disk_by_partlabel(disk::kSlotALabel);
    if (found) return *found;
    spdlog::debug("no Ballast disk found ({})", found.error().message());
    return "";
}

std::optional<boot::Slot> resolve_booted(const NodeOptions& o) {
    if (o.booted_slot) return o.booted_slot;
    if (auto cmdline = read_proc_cmdline())
        if (auto slot = boot::booted_slot_from_cmdline(*cmdline)) return slot;
    // A UKI serves either slot, so its command line names none: systemd-boot says which entry
    // it started.
    auto loader = boot::booted_slot_from_loader();
    if (!loader) spdlog::warn("booted slot: {}", loader.error().what());
    return loader.value_or(std::nullopt);
}

std::filesystem::path state_dir(const NodeOptions& o) {
    return o.root("/var/lib/ballast");
}

update::SourceOptions source_options(const NodeOptions& o, const config::AgentSettings& s) {
    update::SourceOptions so;
    so.keyring = !s.update.keyring.empty() ? o.root(s.update.keyring).string()
                                           : update::default_keyring(o.root.base().string());
    if (!s.update.registry_auth.empty()) so.registry_auth = o.root(s.update.registry_auth).string();
    so.http.ca_file = s.http.ca_file;
    so.http.proxy = s.http.proxy;
    return so;
}

Result<config::AgentSettings> load_settings(const NodeOptions& o) {
    return config::load_agent_settings(o.settings_path, o.settings_explicit);
}

Result<Node> Node::open(const NodeOptions& o) {
    Node n;
    n.options = o;
    n.settings = BALLAST_TRY(load_settings(o));
    n.disk = resolve_disk(o, n.settings);
    n.booted = resolve_booted(o);
    n.state_dir = ops::state_dir(o);
    return n;
}

Result<boot::DiskBoot> Node::open_boot() const {
    if (disk.empty()) return fail(Errc::unavailable, "no Ballast disk found");
    return boot::DiskBoot::open(disk);
}

}  // namespace ballast::ops
