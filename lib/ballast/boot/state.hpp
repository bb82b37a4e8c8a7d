// The A/B boot state and its transitions, with no I/O. The bootloader's decision (decide())
// mirrors overlay/grub/grub.cfg line for line; the transitions are the only way the agent
// changes the state, each refusing what ../shared/specs/ab-update.md forbids.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "ballast/boot/grubenv.hpp"
#include "ballast/boot/slot.hpp"
#include "ballast/core/result.hpp"

namespace ballast::boot {

inline constexpr int kMaxTries = 9;
inline constexpr int kDefaultTries = 3;

struct SlotInfo {
    bool ok = false;      // bootable: written, verified and activated (or committed)
    bool trial = false;   // on trial: the bootloader counts tries
    int tries = 0;        // tries left while on trial (0..9)
    std::string version;  // of the image in the slot ("" when empty)
    bool operator==(const SlotInfo&) const = default;
};

// A factory reset in progress (reset/reset.hpp): stored with the boot state, so that its one
// write is as crash-safe as an activation, until the reset has finished.
struct ResetRequest {
    bool oem = false;        // OEM is wiped too
    bool encrypted = false;  // persistent was LUKS2: it comes back encrypted
    bool poweroff = false;   // the machine powers off once the reset is done (reset.poweroff)
    // Persistent is left alone (reset.reset-persistent: false): only OEM is wiped, so `oem` is
    // set and `encrypted` is not.
    bool keep_persistent = false;
    bool operator==(const ResetRequest&) const = default;
};

struct BootState {
    std::array<SlotInfo, 2> slots{};
    std::array<Slot, 2> order{Slot::A, Slot::B};  // primary first
    std::optional<Slot> last_good;
    std::optional<ResetRequest> reset;
    // The next boot takes the recovery entry, once (agentctl recovery): ballast_next, "r" or "0".
    bool recovery_next = false;

    [[nodiscard]] SlotInfo& at(Slot s) { return slots[s == Slot::A ? 0 : 1]; }
    [[nodiscard]] const SlotInfo& at(Slot s) const { return slots[s == Slot::A ? 0 : 1]; }
    [[nodiscard]] Slot primary() const { return order[0]; }
    bool operator==(const BootState&) const = default;
};

// grubenv variables <-> state. Every value is range-checked; damage is Errc::parse. to_vars()
// puts `ballast_lock` first, in the first 512-byte sector, and every value has a fixed length
// (single digits, slot letters) so that GRUB's in-place save_env never shifts the block: the
// two-copy protocol relies on both (boot/grub.hpp).
[[nodiscard]] Result<BootState> from_vars(const grubenv::Vars& vars);
[[nodiscard]] grubenv::Vars to_vars(const BootState& s, bool lock = false);

// ballast_reset: one hex digit, "0" none, else 1 + oem + 2 * encrypted + 4 * poweroff +
// 8 * keep_persistent (fixed length, as above; 1..4 are what the first resets wrote). A digit
// describing no reset (persistent kept and OEM too, or kept and encrypted) is damage.
[[nodiscard]] std::string reset_var(const std::optional<ResetRequest>& r);
// What it wipes: "persistent", "persistent and OEM" or "OEM".
[[nodiscard]] std::string_view reset_scope(const ResetRequest& r);
[[nodiscard]] Result<std::optional<ResetRequest>> parse_reset_var(std::string_view v);

// A fresh install: `slot` good and primary, the other empty.
[[nodiscard]] BootState initial_state(Slot slot, std::string version);

struct Decision {
    Slot slot;           // what the bootloader starts
    BootState after;     // the state it saves before starting the kernel
    bool saved = false;  // a try was used, or the one-shot recovery consumed (the env is written)
    std::string reason;
    bool recovery = false;  // the recovery entry (ballast.recovery) is started
};
// What the bootloader does with `s` (overlay/grub/grub.cfg): the first slot in order that is ok
// and, when on trial, has tries left (one is used now); else the last good slot; else A. With
// recovery_next, that decision is made (and saved) as ever, then the recovery entry boots the
// last good slot (else the decided one), once.
[[nodiscard]] Decision decide(const BootState& s);

// --- transitions of the agent ---

// Before the first byte of an upgrade: the target is not bootable (I2). Never the booted slot (I1).
[[nodiscard]] Result<BootState> begin_write(BootState s, Slot target, std::optional<Slot> booted);
// The one activating write (I3): target first, ok, on trial with `tries`.
[[nodiscard]] Result<BootState> activate(BootState s, Slot target, int tries, std::string version,
                                         std::optional<Slot> booted);
// Health checks passed on the booted slot (I5): trial off, last good = booted.
[[nodiscard]] Result<BootState> commit(BootState s, Slot booted);
// Operator or failed health check: `slot` not bootable. Refused when nothing good would remain.
[[nodiscard]] Result<BootState> mark_bad(BootState s, Slot slot);
// Operator: `slot` good (committed, not on trial).
[[nodiscard]] Result<BootState> mark_good(BootState s, Slot slot);
// Operator: make the other slot primary, persistently. Refused when it is empty or bad.
[[nodiscard]] Result<BootState> rollback(BootState s, Slot booted);

// One line per slot for messages: "A: good, primary, 1.2.0".
[[nodiscard]] std::string describe(const BootState& s, Slot slot);

}  // namespace ballast::boot
