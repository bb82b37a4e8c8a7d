// `agentctl install`: lay out a disk (block device or image file), format it, write and verify
// the bundle's image into slot A, install GRUB and the boot state, put the cloud-config into OEM.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr.hpp"
#include "ballast/crypt/tpm2.hpp"
#include "ballast/disk/layout.hpp"
#include "ballast/system/http.hpp"

namespace ballast::install {

struct Options {
    std::string device;  // --device (else install.device)
    // --bundle (else install.source): a bundle folder or .tar, the https:// URL of a .tar, or an
    // oci://REGISTRY/REPO:TAG (install.source also takes Kairos' oci: and docker: spellings).
    std::string bundle;
    std::string keyring;  // --keyring (else the running system's)
    // For a remote bundle: registry credentials (containers-auth.json; "" none), and TLS and
    // proxy settings (the running system's agent.yaml).
    std::string registry_auth;
    http::Options http;
    std::vector<std::string> config_files;  // --config: read for install:, copied into OEM
    bool force = false, dry_run = false;    // --force or install.force
    // --no-format or install.no-format: into the disk's existing Ballast layout, keeping every
    // filesystem (OEM gets the config files, persistent data is left alone).
    bool no_format = false;
    // --reboot / --poweroff / --no-reboot ("none"); else install.reboot / install.poweroff.
    std::optional<std::string> after;
    std::optional<uint64_t> efi_mib, oem_mib, slot_mib, persistent_mib;  // command line wins
    std::string grub_modules = "/usr/lib/grub/x86_64-efi";
    // For install.encrypted_partitions: the TPM (TCTI; "" = /dev/tpmrm0) and the policy.
    std::string tpm2_device, pcrs = "7", pcr_bank = "sha256";
    std::function<void(const std::string&)> say;  // progress lines
    // --auto (ballast-install.service at boot): the settings are this node's own cloud-config
    // (its sources under `root`, the kernel command line, then --config); nothing happens unless
    // install.auto is true, nor when the device already holds a Ballast disk. The installed
    // node's OEM gets those files and, last, install.auto: false, so it never installs itself.
    bool auto_mode = false;
    std::string root = "/";
};

struct Report {
    // Set when --auto found nothing to do (why); everything else is then empty.
    std::string skipped;
    std::string device;
    uint64_t disk_size = 0;
    std::vector<disk::PartitionPlan> layout;
    std::string version, compatible;
    bool dry_run = false, no_format = false;
    // What the node does once installed: "reboot", "poweroff" or "none"; `after_note` says why
    // a requested action is not taken (an image file is never this machine's disk).
    std::string after = "none", after_note;
    // The persistent partition is LUKS2 (install.encrypted_partitions).
    struct Encryption {
        std::string tpm2_device, pcrs;  // as sealed
        std::string uuid;               // empty in a plan
        int tpm2_keyslot = -1, recovery_keyslot = -1;
        std::string recovery_key;  // shown once by agentctl, never written to disk
        [[nodiscard]] nlohmann::json to_json() const;
    };
    std::optional<Encryption> encryption;
    [[nodiscard]] nlohmann::json to_json() const;
    [[nodiscard]] std::string text() const;
};

[[nodiscard]] Result<Report> run(const Options& o);

// A stage (before-install, after-reset, ...) of the `files`' cloud-config; with `node_sources`
// (install --auto), of this node's own sources under `root` before them. Nothing when there
// is no config at all.
[[nodiscard]] Status run_config_stage(const std::string& stage,
                                      const std::vector<std::string>& files,
                                      bool node_sources = false, const std::string& root = "/");

// What a new encrypted persistent partition is sealed to: the TPM (opened before anything is
// written, so that a node that cannot seal is refused first) and the policy.
struct Sealing {
    crypt::Tpm2 tpm;
    crypt::PcrBank bank;
    crypt::PcrMask pcrs;
    [[nodiscard]] Report::Encryption describe() const;
};
// `why` prefixes the TPM's error: "install.encrypted_partitions needs a TPM2".
[[nodiscard]] Result<Sealing> open_sealing(const std::string& tpm2_device, const std::string& pcrs,
                                           const std::string& pcr_bank, std::string_view why);

// The persistent partition made anew (install, reset): plain ext4, or with `seal` LUKS2 sealed
// to the TPM with a recovery key, which `enc` (from seal->describe()) then describes.
[[nodiscard]] Status format_persistent(const std::string& device,
                                       const disk::PartitionPlan& persistent, Sealing* seal,
                                       const std::string& tmpdir,
                                       std::optional<Report::Encryption>& enc,
                                       const std::function<void(const std::string&)>& say);

// Reboots or powers off (through systemd) as the report says; nothing for "none".
[[nodiscard]] Status finish(const Report& r);

// The GRUB configuration shipped with this build (overlay/grub/grub.cfg, compiled in).
[[nodiscard]] std::string_view grub_cfg();

}  // namespace ballast::install
