// The immutable root's layout, as a plan (pure): which mounts `ballast-agent mount` makes in the
// initramfs on top of the read-only slot at SYSROOT, in order. The executor (assemble.hpp) only
// carries the plan out, so what goes where is unit-tested without mounting anything.
//
//   RUN/persistent          BALLAST_PERSISTENT (ext4; /dev/mapper/... once unlocked)
//   RUN/ephemeral           tmpfs: upper layers that die with the boot
//   SYSROOT/oem             BALLAST_OEM, read-only (cloud-config)
//   SYSROOT/etc             overlay: the image's /etc + an upper on persistent (or tmpfs)
//   SYSROOT/var             overlay: the image's /var + a tmpfs upper
//   SYSROOT/tmp             tmpfs
//   SYSROOT/<path>          bind of RUN/persistent/.ballast/state/<path>, for every persistent path
//
// RUN is /run/ballast of the initramfs, which systemd moves into the real root at switch-root.
// State keeps the node path as is below `.ballast/state`, so two paths never share a place
// (Kairos's `a-b.bind` encoding maps /a-b and /a/b to one folder); nested paths are refused.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"

namespace ballast::mount {

enum class EtcMode { persistent, tmpfs };
[[nodiscard]] std::string_view name(EtcMode m) noexcept;

// Kairos's list, minus what the /etc overlay already keeps, plus Ballast's own state.
[[nodiscard]] const std::vector<std::string>& default_persistent_paths();

// agent.yaml `mount:` (composed by config::AgentSettings).
struct Settings {
    std::string device = "/dev/disk/by-partlabel/BALLAST_PERSISTENT";
    std::string oem_device = "/dev/disk/by-partlabel/BALLAST_OEM";  // "": no /oem
    EtcMode etc = EtcMode::persistent;                              // where /etc changes go
    std::vector<std::string> persistent_paths = default_persistent_paths();
    std::chrono::milliseconds device_timeout{std::chrono::seconds(30)};  // udev may be late
};

// One persistent path: absolute, normalised ("/var/log", no "..", "." or "//"), and not a place
// the layout owns or the kernel fills (/, /etc, /tmp, /oem, /proc, /sys, /dev, /run, /boot, /usr
// apart from /usr/local). The message names the rule.
[[nodiscard]] Status check_persistent_path(std::string_view path);

// The whole list: each path as above, none twice, none inside another. One message per
// problem, prefixed with the entry's index ("[2] /var/lib: ...").
[[nodiscard]] std::vector<std::string> check_persistent_paths(
    const std::vector<std::string>& paths);

struct Layout {
    std::string persistent_device;  // block device (or image file) holding the persistent ext4
    std::string oem_device;         // empty: no OEM mount
    EtcMode etc = EtcMode::persistent;
    std::vector<std::string> persistent_paths;
    std::filesystem::path sysroot = "/sysroot";
    std::filesystem::path run_dir = "/run/ballast";
};

struct Step {
    enum class Kind { device, tmpfs, overlay, bind };
    Kind kind = Kind::tmpfs;
    // storage: the partitions and RAM the layout is made of (the rootfs stage runs after these,
    // so it sees /oem); root: the node's own paths.
    enum class Phase { storage, root };
    Phase phase = Phase::root;
    std::string node_path;         // what the node will see ("/etc"); the run dir for ours
    std::filesystem::path target;  // host path mounted on
    std::string source;            // device, "tmpfs", "overlay", or the bind source
    std::string fstype;            // device: "ext4"; tmpfs; overlay
    std::string options;           // mount(2) data ("mode=1777", "lowerdir=...")
    unsigned long flags = 0;       // MS_NOSUID, MS_NODEV (MS_RDONLY comes from read_only)
    bool read_only = false;
    bool optional = false;  // a missing source skips the step (OEM)
    // overlay: the upper and work folders to create first; bind: the image folder to copy into a
    // new source (first boot) so /root keeps its dotfiles and /var/lib/x its seed content, and
    // where that copy is made before it is renamed to `source` (its own tree, so no temporary
    // name can be another path's folder).
    std::filesystem::path upper, work, seed_from, seed_tmp;
    // The mount point may be created (under a writable overlay); in the slot image it must exist.
    bool create_target = false;
    // The node's root for root-phase steps: no part of `target` below it may be a symlink (a
    // link in the image, such as /lib -> usr/lib or /var/run -> /run, would carry the mount
    // outside what the path rules allow).
    std::filesystem::path root;
    // Set by the caller when the source cannot be used (device missing, still locked): the
    // step fails with this reason and the device is not touched.
    std::string blocked;
    [[nodiscard]] std::string describe() const;  // "/etc  overlay (upper on persistent)"
    [[nodiscard]] nlohmann::json to_json() const;
};

// The mounts, in the order they must be made. Checks the layout first (persistent paths as
// above; sysroot and run_dir absolute and free of ',' and ':', which overlay options cannot
// carry).
[[nodiscard]] Result<std::vector<Step>> plan(const Layout& layout);

}  // namespace ballast::mount
