// `agentctl reset`: give a Ballast disk (not in use: from the recovery system, or an image file)
// back the state of a fresh install of what it runs. The persistent partition is erased first
// (an encrypted one crypto-erased: its keyslots and headers overwritten, so that the old data
// is unrecoverable from then on), OEM wiped when asked, then persistent made anew as install
// makes it (LUKS2 with a new volume key, TPM2 token and recovery key when it was encrypted).
// The slots and the boot state are kept.
//
// Crash safety: the request is written into the boot state first (its one crash-safe write),
// every step after it can be repeated, and the request is cleared last. A reset cut anywhere is
// finished by running it again on the same disk, with the settings it started with.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/boot/state.hpp"
#include "ballast/core/result.hpp"
#include "ballast/install/installer.hpp"

namespace ballast::install {

struct ResetOptions {
    std::string device;  // the disk (block device or image file)
    // Unset: as the cloud-config's reset: block says (reset-persistent, reset-oem, poweroff),
    // else Kairos' defaults: persistent wiped, OEM kept (--reset-oem: its cloud-config goes
    // too), no poweroff. Poweroff is for the running node's request: the initramfs powers the
    // machine off once it has done the reset.
    std::optional<bool> reset_persistent, reset_oem, poweroff;
    bool encrypt = false;  // --encrypt: persistent comes back LUKS2 even if it was plain
    bool dry_run = false;
    // The running node (D-Bus Reset): only the request is stored, for the initramfs to do the
    // reset at the next boot (persistent is mounted now). Refused while `booted` is on trial:
    // it may still fall back to a slot whose initramfs predates resets. A request already
    // pending is reported as it is.
    bool request_only = false;
    std::optional<boot::Slot> booted;
    // --config: cloud-config whose reset: block applies and whose before-reset and after-reset
    // stages run around the reset. With node_config, the reset: block of the node's own sources
    // under `root` (its OEM and persistent config, kernel command line) applies too.
    std::vector<std::string> config_files;
    bool node_config = false;
    std::string root = "/";
    std::string tpm2_device, pcrs = "7", pcr_bank = "sha256";
    std::string tmp_base = "/tmp";  // where an encrypted volume's scratch files go
    std::function<void(const std::string&)> say;
};

struct ResetReport {
    std::string device;
    bool dry_run = false;
    boot::ResetRequest request;  // what is (or was) asked for: the boot state's digit
    // The running node reboots for it now: the reset: block's reboot (default true).
    bool reboot = true;
    bool resumed = false;  // a reset asked for earlier (or cut short) was finished, as asked
    std::string erased;    // how the old persistent data went: "crypto-erase", "discard", ...
    std::string persistent_before;                 // what it held ("crypto_LUKS", "ext4", "" blank)
    std::optional<Report::Encryption> encryption;  // persistent is LUKS2 again
    // The reset is done, but the after-reset stage failed: why (the command fails after
    // showing the report and the recovery key).
    std::optional<std::string> stage_error;
    [[nodiscard]] nlohmann::json to_json() const;
    [[nodiscard]] std::string text() const;
};

[[nodiscard]] Result<ResetReport> reset(const ResetOptions& o);

// Where a LUKS2 header keeps its secrets, from its first bytes: [0, 2 * hdr_size) the two
// binary headers with their JSON areas, [2 * hdr_size, data_offset) the keyslots' key
// material. Errc::not_found when `head` does not start with a LUKS2 header; Errc::parse when
// its JSON area cannot be read.
struct Luks2Areas {
    uint64_t hdr_size = 0, data_offset = 0;
};
[[nodiscard]] Result<Luks2Areas> luks2_areas(std::string_view head);

}  // namespace ballast::install
