// What changes boot control outside an upgrade, each one boot-control write plus the journal:
// settling the last upgrade at start-up, the verdict of the boot assessment, and the operator's
// mark-good, mark-bad and rollback. All refuse what specs/ab-update.md forbids (the state
// machine in boot/state.hpp decides).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "ballast/boot/control.hpp"
#include "ballast/update/outcome.hpp"

namespace ballast::update {

struct SlotEnv {
    boot::BootControl* control = nullptr;  // null: no Ballast disk
    std::optional<boot::Slot> booted;
    std::filesystem::path state_dir;
};

// At start-up: reads the journal and the boot state and records what happened since. A fallback
// (the new slot was tried and we are not on it) marks the new slot bad, refuses its version and
// fails the journal (I7); an activation the journal missed becomes `staged`. The answer tells the
// daemon what is left to do (resume a write, wait for the health check) and what to report.
[[nodiscard]] Result<OutcomeInfo> settle(const SlotEnv& env);

// The boot assessment's verdict for the booted slot. Only a slot on trial changes (I4, I5):
// passed → committed (trial off, last good, journal committed); failed → marked bad, its
// version refused, journal failed with `why`.
struct Verdict {
    bool trial = false;   // the booted slot was on trial (and is now committed or bad)
    std::string message;  // what was recorded: "slot B (2.0) committed", "upgrade to ... failed"
};
[[nodiscard]] Result<Verdict> record_health(const SlotEnv& env, bool passed,
                                            const std::string& why);

// Operator actions. `slot` empty: the booted slot.
[[nodiscard]] Result<boot::Slot> mark_good(const SlotEnv& env, std::optional<boot::Slot> slot);
[[nodiscard]] Result<boot::Slot> mark_bad(const SlotEnv& env, std::optional<boot::Slot> slot);
// Makes the other slot primary, persistently. Returns it.
[[nodiscard]] Result<boot::Slot> rollback(const SlotEnv& env);

}  // namespace ballast::update
