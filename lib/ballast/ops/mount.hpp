// The initramfs's assembly of the immutable root (ballast-agent mount): wait for the persistent
// device, finish a factory reset that was asked for or cut, unlock it when it is LUKS, mount the
// storage, run the rootfs stage, mount the node's paths, run the initramfs stage chrooted into the
// result. Whatever goes wrong, the boot goes on: each failure is in the report (and on the
// console), the mount layer puts a tmpfs where persistent storage could not go, and such a boot
// is a recovery boot (no stage runs; ballast-recovery.target). The order is
// assemble_root() over MountIo, which tests fake.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/mount/assemble.hpp"
#include "ballast/ops/node.hpp"

namespace ballast::ops {

struct MountRequest {
    std::string sysroot = "/sysroot";  // the slot, mounted read-only by the initramfs
    std::string run_dir = "/run/ballast";
    std::string device;  // persistent partition; empty: agent.yaml mount.device
    bool stages = true;  // run the rootfs and initramfs stages around the assembly
    bool dry_run = false;
};

// A factory reset the initramfs finished: what it did, and whether the machine powers off now
// (reset.poweroff: once the after-reset stage has run).
struct FinishedReset {
    std::string what;
    bool poweroff = false;
    std::string recovery_key;  // a new encrypted persistent's: shown, then kept for the escrow
};

struct MountReport {
    mount::Report mounts;
    std::optional<std::string> reset;         // a pending factory reset was finished: what it did
    bool reset_poweroff = false;              // ... and asked for the machine to power off
    std::string reset_recovery_key;           // ... and made this key (never in to_json())
    std::optional<std::string> reset_error;   // ... or not: persistent is not mounted, why
    std::optional<std::string> unlocked;      // the method that opened persistent
    std::optional<std::string> unlock_error;  // persistent stays locked: why
    std::optional<std::string> config_error;  // agent.yaml did not load: defaults were used
    // A recovery boot: why (asked for with ballast.recovery, or persistent could not be
    // mounted). The cloud-config stages do not run, and the node starts ballast-recovery.target
    // instead of its default target (RUN/recovery.json, units/ballast-recovery-generator).
    std::optional<std::string> recovery;
    bool recovery_asked = false;
    bool stages_ok = true;
    [[nodiscard]] bool ok() const;
    [[nodiscard]] nlohmann::json to_json() const;
};

// What assemble_root() does to the machine.
class MountIo {
  public:
    virtual ~MountIo() = default;
    // Whether `path` exists within `timeout` (udev makes by-partlabel links a moment late).
    [[nodiscard]] virtual bool wait_for(const std::string& path,
                                        std::chrono::milliseconds timeout) = 0;
    // `ballast.recovery` on the kernel command line (the boot menu's recovery entry).
    [[nodiscard]] virtual bool recovery_asked() = 0;
    // Finishes a factory reset the boot state of the disk holding `device` asks for
    // (install/reset.hpp); nullopt when none is pending.
    [[nodiscard]] virtual Result<std::optional<FinishedReset>> finish_reset(
        const std::string& device) = 0;
    // What the device holds (libblkid's name: "crypto_LUKS", "ext4"); nullopt when blank.
    [[nodiscard]] virtual Result<std::optional<std::string>> probe(const std::string& device) = 0;
    // Opens `device` as /dev/mapper/`name`; the method that opened it.
    [[nodiscard]] virtual Result<std::string> unlock(const std::string& device,
                                                     const std::string& name) = 0;
    [[nodiscard]] virtual Status assemble(const std::vector<mount::Step>& steps,
                                          mount::Step::Phase phase, mount::Report& report) = 0;
    // rootfs: on the initramfs's root; initramfs: chrooted into the assembled one.
    [[nodiscard]] virtual bool run_stage(const char* stage) = 0;
};

inline constexpr std::string_view kPersistentMapperName = "ballast-persistent";

inline constexpr std::string_view kRecoveryFile = "recovery.json";  // in the run dir

// Marks this boot a recovery boot (RUN/recovery.json, and why on the console): mount_root does
// when persistent is not mounted, and the initramfs's mount mode when the assembly failed.
void mark_recovery(const std::filesystem::path& run_dir, const std::string& reason, bool asked);

// This boot is a recovery boot: why ({"reason", "asked"} as the initramfs wrote it), from
// /run/ballast/recovery.json under `root`; nullopt on a normal boot. Such a boot runs none of
// the node's own services, upgrades nothing and is never assessed (nothing is committed).
[[nodiscard]] std::optional<nlohmann::json> recovery_boot(const RootPrefix& root);

// A factory reset asked for on the kernel command line, for sites with hands but no network:
// `ballast.reset` (persistent) or `ballast.reset=oem` (and OEM); true when OEM goes too. Meant for
// one boot's command line (GRUB's `e`): a word kept in the default command line resets every
// boot. Errc::invalid_argument for any other value (the word is then ignored, with a warning).
[[nodiscard]] Result<std::optional<bool>> reset_from_cmdline(std::string_view cmdline);

// agent.yaml's mount settings with the request's device and folders.
[[nodiscard]] mount::Layout layout_of(const MountRequest& req, const config::AgentSettings& s);
// The mounts `mount_root` would make, in order (`ballast-agent mount --dry-run`).
[[nodiscard]] Result<std::vector<mount::Step>> mount_plan(const MountRequest& req,
                                                          const config::AgentSettings& s);

// The sequence, on `io`. Errors only for what stops the assembly itself (a plan that cannot be
// made, a root assembled already in this boot).
[[nodiscard]] Result<MountReport> assemble_root(mount::Layout layout,
                                                const mount::Settings& settings, bool stages,
                                                MountIo& io);

// Settings for the initramfs: --config, else the slot's agent.yaml. A bad file must not leave
// the node with a read-only /etc and /var: the defaults, with `error` saying why.
struct MountSettings {
    config::AgentSettings settings;
    std::optional<std::string> error;
};
[[nodiscard]] Result<MountSettings> mount_settings(const NodeOptions& node,
                                                   const RootPrefix& sysroot, bool dry_run);

// assemble_root() on this machine; the report also goes to RUN/mount.json.
[[nodiscard]] Result<MountReport> mount_root(const NodeOptions& node, const MountRequest& req,
                                             const MountSettings& settings);

}  // namespace ballast::ops
