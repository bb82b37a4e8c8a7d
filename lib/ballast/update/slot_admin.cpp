#include "ballast/update/slot_admin.hpp"

#include <spdlog/spdlog.h>

#include "ballast/update/upgrade.hpp"

namespace ballast::update {
namespace {

Result<boot::Slot> need_booted(const SlotEnv& env) {
    if (!env.control) return fail(Errc::unavailable, "no Ballast disk");
    if (!env.booted)
        return fail(Errc::unavailable,
                    "the booted slot is unknown (no ballast.slot= on the kernel command line)");
    return *env.booted;
}

Status set_journal(const SlotEnv& env, Journal j, JobState state, std::string error = "") {
    j.state = state;
    j.error = std::move(error);
    return save_journal(journal_path(env.state_dir), std::move(j));
}

}  // namespace

Result<OutcomeInfo> settle(const SlotEnv& env) {
    const boot::Slot booted = BALLAST_TRY(need_booted(env));
    auto j = BALLAST_TRY(load_journal(journal_path(env.state_dir)));
    auto& control = *env.control;
    auto state = BALLAST_TRY_CTX(control.load(), "boot control");
    auto info = assess_outcome(j, state, booted);
    if (info.what == Outcome::activated) {
        BALLAST_TRY(set_journal(env, *j, JobState::staged));
        j->state = JobState::staged;
        // Seen again with the journal fixed: awaiting the reboot, on trial, or already fallen
        // back (the crash was followed by boots that used up the tries), handled below.
        info = assess_outcome(j, state, booted);
    }
    switch (info.what) {
        case Outcome::fell_back: {
            // The failed slot is not the booted one: marking it bad is always allowed (I1).
            if (state.at(j->target).ok) {
                auto bad = BALLAST_TRY(boot::mark_bad(state, j->target));
                // mark_bad puts the booted (good) slot first; keep it committed.
                BALLAST_TRY(control.save(bad));
            }
            BALLAST_TRY(add_refused(refused_path(env.state_dir), {j->version, info.message, ""}));
            BALLAST_TRY(set_journal(env, *j, JobState::failed, info.message));
            spdlog::error("{}", info.message);
            info.what = Outcome::failed;
            break;
        }
        case Outcome::committed:
            BALLAST_TRY(set_journal(env, *j, JobState::committed));
            info.what = Outcome::none;
            break;
        case Outcome::superseded:
            BALLAST_TRY(set_journal(env, *j, JobState::failed, info.message));
            spdlog::warn("{}", info.message);
            info.what = Outcome::none;
            break;
        default:
            break;
    }
    return info;
}

Result<Verdict> record_health(const SlotEnv& env, bool passed, const std::string& why) {
    const boot::Slot booted = BALLAST_TRY(need_booted(env));
    auto& control = *env.control;
    auto state = BALLAST_TRY_CTX(control.load(), "boot control");
    if (!state.at(booted).trial) return Verdict{};
    auto j = BALLAST_TRY(load_journal(journal_path(env.state_dir)));
    const bool ours = j && j->target == booted && j->state == JobState::staged;
    if (passed) {
        auto next = BALLAST_TRY(boot::commit(state, booted));
        BALLAST_TRY(control.save(next));
        if (ours) BALLAST_TRY(set_journal(env, *j, JobState::committed));
        auto msg = fmt::format("slot {} ({}) passed its health check: committed",
                               boot::name(booted), state.at(booted).version);
        spdlog::info("{}", msg);
        return Verdict{true, msg};
    }
    const std::string version = state.at(booted).version;
    const std::string msg =
        fmt::format("upgrade to {} failed: the health check on slot {} failed: {}", version,
                    boot::name(booted), why);
    BALLAST_TRY(add_refused(refused_path(env.state_dir), {version, msg, ""}));
    if (ours) BALLAST_TRY(set_journal(env, *j, JobState::failed, msg));
    auto next = BALLAST_TRY(boot::mark_bad(state, booted));
    BALLAST_TRY(control.save(next));
    spdlog::error("{}", msg);
    return Verdict{true, msg};
}

Result<boot::Slot> mark_good(const SlotEnv& env, std::optional<boot::Slot> slot) {
    if (!env.control) return fail(Errc::unavailable, "no Ballast disk");
    if (!slot) slot = BALLAST_TRY(need_booted(env));
    auto& control = *env.control;
    auto state = BALLAST_TRY_CTX(control.load(), "boot control");
    auto next = BALLAST_TRY(boot::mark_good(state, *slot));
    // The booted slot marked good is a commit: it goes first in order as well.
    if (env.booted && *slot == *env.booted) next = BALLAST_TRY(boot::commit(next, *slot));
    BALLAST_TRY(control.save(next));
    auto j = BALLAST_TRY(load_journal(journal_path(env.state_dir)));
    if (j && j->target == *slot && j->state == JobState::staged && env.booted == *slot)
        BALLAST_TRY(set_journal(env, *j, JobState::committed));
    return *slot;
}

Result<boot::Slot> mark_bad(const SlotEnv& env, std::optional<boot::Slot> slot) {
    if (!env.control) return fail(Errc::unavailable, "no Ballast disk");
    if (!slot) slot = BALLAST_TRY(need_booted(env));
    auto& control = *env.control;
    auto state = BALLAST_TRY_CTX(control.load(), "boot control");
    auto next = BALLAST_TRY(boot::mark_bad(state, *slot));
    BALLAST_TRY(control.save(next));
    // The upgrade that put this slot there has failed: record it now, as settle() would later.
    auto j = BALLAST_TRY(load_journal(journal_path(env.state_dir)));
    if (j && j->target == *slot && j->state == JobState::staged) {
        const auto msg = fmt::format("upgrade to {} failed: slot {} was marked bad by an operator",
                                     j->version, boot::name(*slot));
        BALLAST_TRY(add_refused(refused_path(env.state_dir), {j->version, msg, ""}));
        BALLAST_TRY(set_journal(env, *j, JobState::failed, msg));
    }
    return *slot;
}

Result<boot::Slot> rollback(const SlotEnv& env) {
    const boot::Slot booted = BALLAST_TRY(need_booted(env));
    auto& control = *env.control;
    auto state = BALLAST_TRY_CTX(control.load(), "boot control");
    auto next = BALLAST_TRY(boot::rollback(state, booted));
    BALLAST_TRY(control.save(next));
    return boot::other(booted);
}

}  // namespace ballast::update
