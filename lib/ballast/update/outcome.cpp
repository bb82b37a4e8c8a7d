#include "ballast/update/outcome.hpp"

namespace ballast::update {

OutcomeInfo assess_outcome(const std::optional<Journal>& j, const boot::BootState& s,
                           boot::Slot booted) {
    if (!j) return {};
    const auto& t = s.at(j->target);
    const auto tn = boot::name(j->target);
    switch (j->state) {
        case JobState::committed:
            return {};
        case JobState::failed:
            return {Outcome::failed, j->error};
        case JobState::writing:
            // The activating write is the last step before the journal says staged; a crash in
            // between may even have been followed by a reboot into the new slot.
            if (t.ok && t.trial && t.version == j->version)
                return {Outcome::activated,
                        fmt::format("slot {} holds {}, activated", tn, j->version)};
            return {Outcome::resume_write,
                    fmt::format("the write of {} into slot {} was interrupted", j->version, tn)};
        case JobState::staged:
            break;
    }
    if (booted == j->target) {
        if (!t.ok)
            return {Outcome::fell_back,
                    fmt::format("upgrade to {} failed: slot {} was marked bad while running it; "
                                "the next boot goes back to {}",
                                j->version, tn,
                                j->from_version.empty() ? "the old version" : j->from_version)};
        if (t.ok && t.trial)
            return {Outcome::on_trial, fmt::format("booted {} from slot {} on trial ({} tries "
                                                   "left)",
                                                   j->version, tn, t.tries)};
        return {Outcome::committed, fmt::format("booted {} from slot {}", j->version, tn)};
    }
    // Cleared by a later upgrade's first write (which then stopped before its own journal): this
    // version did not fail, it was replaced.
    if (!t.ok && t.version.empty())
        return {Outcome::superseded,
                fmt::format("the staged upgrade to {} was superseded: slot {} was cleared for "
                            "another write",
                            j->version, tn)};
    // Marked good by an operator without booting it.
    if (t.ok && !t.trial && t.version == j->version)
        return {Outcome::committed, fmt::format("slot {} holds {}, marked good", tn, j->version)};
    if (t.ok && t.trial && t.tries == j->tries && t.version == j->version)
        return {
            Outcome::awaiting_reboot,
            fmt::format("{} is staged in slot {}; it boots at the next reboot", j->version, tn)};
    std::string why = !t.ok                 ? "it was marked bad"
                      : t.trial && !t.tries ? fmt::format("all {} boot tries were used", j->tries)
                                            : fmt::format("{} of {} boot tries were used",
                                                          j->tries - t.tries, j->tries);
    return {Outcome::fell_back,
            fmt::format("upgrade to {} failed: slot {} did not come up healthy ({}); running {} "
                        "from slot {}",
                        j->version, tn, why,
                        j->from_version.empty() ? "the old version" : j->from_version,
                        boot::name(booted))};
}

}  // namespace ballast::update
