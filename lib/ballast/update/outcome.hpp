// What the journal and the boot state say about the last upgrade, seen from the booted slot.
// Pure: the daemon reads both at start and acts on the answer (resume a write, wait for the
// health check, record a fallback).
#pragma once

#include <optional>
#include <string>

#include "ballast/boot/state.hpp"
#include "ballast/update/journal.hpp"

namespace ballast::update {

enum class Outcome {
    none,             // no upgrade, or one that ended (committed)
    failed,           // ended in failure earlier; `message` says why
    resume_write,     // a write was cut: restart it into the same target
    activated,        // the target was activated but the journal not yet updated: now staged
    awaiting_reboot,  // staged, the new slot not tried yet (--no-reboot)
    on_trial,         // booted into the new slot, which is on trial: assess health, commit
    committed,        // booted into the new slot and it is committed (an operator marked it)
    fell_back,        // the new slot was tried and we are back on the old one
    superseded,       // a later write cleared the staged slot: over, and not a failure
};

struct OutcomeInfo {
    Outcome what = Outcome::none;
    std::string message;
};

[[nodiscard]] OutcomeInfo assess_outcome(const std::optional<Journal>& j, const boot::BootState& s,
                                         boot::Slot booted);

}  // namespace ballast::update
