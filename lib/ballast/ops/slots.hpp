// What the daemon does to boot control in its own process, each one write: settling the last
// upgrade at start-up, the operator's mark-good, mark-bad and rollback; and what GetStatus shows
// of the slots and the journal. Each call opens the disk's boot control anew: GRUB changes it at
// boot, and operators may run agentctl offline.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ballast/boot/slot.hpp"
#include "ballast/boot/state.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/update/journal.hpp"
#include "ballast/update/outcome.hpp"

namespace ballast::ops {

// The slot vocabulary, for callers that reach boot control only through ops (the daemon).
using boot::name;
using boot::parse_slot;
using boot::Slot;

struct SlotsEnv {
    std::string disk;  // empty: no Ballast disk
    std::optional<boot::Slot> booted;
    std::filesystem::path state_dir;
};

// What the daemon does next about the last upgrade (settle() says what happened since).
struct SettleAction {
    enum class Kind {
        none,
        unreadable,   // boot control could not be opened: log `message`, change nothing
        failed,       // report `message` as the last error
        resume,       // start the upgrade in `journal` again (a write was cut)
        reboot,       // staged, and the caller wanted the reboot: reboot now
        flag_reboot,  // staged with --no-reboot: say a reboot is required
        wait_health,  // on trial: the health check will commit or fail it
    } kind = Kind::none;
    std::string message;
    std::optional<update::Journal> journal;
};

// Pure: the action for what assess/settle found, given the journal and the booted slot. A write
// is never resumed into the booted slot (I1).
[[nodiscard]] SettleAction settle_action(const update::OutcomeInfo& info,
                                         const std::optional<update::Journal>& journal,
                                         boot::Slot booted);

// Records what happened since the last upgrade (update::settle) and says what to do next.
[[nodiscard]] Result<SettleAction> settle(const SlotsEnv& env);

// Operator actions; `slot` empty: the booted slot. Each returns the slot acted on.
[[nodiscard]] Result<boot::Slot> mark(const SlotsEnv& env, bool good,
                                      std::optional<boot::Slot> slot);
[[nodiscard]] Result<boot::Slot> rollback(const SlotsEnv& env);
// The next boot takes the boot menu's recovery entry, once (one boot-control write); the slot it
// will start. Refused while the booted slot is on trial (its health check decides first).
[[nodiscard]] Result<boot::Slot> request_recovery(const SlotsEnv& env);

// The operator's factory reset of the running node: the request goes into the boot state (one
// write), and the initramfs finishes it at the next boot before persistent is mounted
// (ops/mount.hpp, install/reset.hpp). An encrypted persistent partition must be sealed to a
// TPM again then: the TPM is opened now, so that a node without one is refused here rather
// than coming up without its persistent partition. A reset already pending is returned as it is.
// What is not asked for comes from the reset: block of the node's cloud-config under `root`.
struct ResetAsk {
    std::optional<bool> oem, persistent, poweroff, reboot;
    bool encrypt = false;
    std::string tpm2_device, pcrs = "7", pcr_bank = "sha256";
    std::string root = "/";
};
struct ResetAnswer {
    boot::ResetRequest request;
    std::string what;    // boot::reset_scope(request)
    bool reboot = true;  // now, for it
};
[[nodiscard]] Result<ResetAnswer> request_reset(const SlotsEnv& env, const ResetAsk& ask);
// Every check request_reset makes (trial, config, TPM), writing nothing: before the node leaves
// its cluster for a reset that would then be refused.
[[nodiscard]] Status check_reset(const SlotsEnv& env, const ResetAsk& ask);
// A reset is pending in the boot state (asking again returns it as it is).
[[nodiscard]] bool reset_pending(const SlotsEnv& env);

// The k3s step set k3s up on the node under `root`: a reset leaves its cluster first.
[[nodiscard]] bool k3s_set_up(const RootPrefix& root);
// The node leaves its k3s cluster (k3s/leave.hpp): the report ({"ok", "left", ...}), ok with
// "left": false where k3s is not set up.
[[nodiscard]] Result<nlohmann::json> leave_cluster(const RootPrefix& root,
                                                   std::chrono::seconds timeout);

// GetStatus: Slots, PrimarySlot and NextBoot (slot, reason, recovery) (or BootControlError),
// ResetPending (with ResetOem when so); Upgrade (the journal, credentials redacted) or
// UpgradeJournalError; RefusedVersions.
void add_slots_status(const SlotsEnv& env, nlohmann::json& status);
void add_journal_status(const std::filesystem::path& state_dir, nlohmann::json& status);

}  // namespace ballast::ops
