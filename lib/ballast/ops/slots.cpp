#include "ballast/ops/slots.hpp"

#include "ballast/boot/disk_boot.hpp"
#include "ballast/disk/partition.hpp"
#include "ballast/install/installer.hpp"
#include "ballast/system/http.hpp"
#include "ballast/update/slot_admin.hpp"
#include "ballast/update/upgrade.hpp"

namespace ballast::ops {
namespace {

Result<boot::DiskBoot> open_boot(const SlotsEnv& env) {
    if (env.disk.empty()) return fail(Errc::unavailable, "no Ballast disk");
    return boot::DiskBoot::open(env.disk);
}

}  // namespace

SettleAction settle_action(const update::OutcomeInfo& info,
                           const std::optional<update::Journal>& journal, boot::Slot booted) {
    using K = SettleAction::Kind;
    SettleAction a{K::none, info.message, journal};
    switch (info.what) {
        case update::Outcome::failed:
            a.kind = K::failed;
            break;
        case update::Outcome::resume_write:
            if (!journal) break;
            if (journal->target == booted) {
                a.kind = K::failed;
                a.message = info.message + "; not resumed: slot " +
                            std::string(boot::name(journal->target)) + " is the booted slot";
            } else {
                a.kind = K::resume;
            }
            break;
        case update::Outcome::awaiting_reboot:
            // The caller's choice survives a restart between activation and the reboot.
            a.kind = journal && journal->reboot ? K::reboot : K::flag_reboot;
            break;
        case update::Outcome::on_trial:
            a.kind = K::wait_health;
            break;
        default:
            break;
    }
    return a;
}

Result<SettleAction> settle(const SlotsEnv& env) {
    if (!env.booted)
        return fail(Errc::unavailable,
                    "the booted slot is unknown (no ballast.slot= on the kernel command line)");
    auto db = open_boot(env);
    if (!db)
        return SettleAction{SettleAction::Kind::unreadable,
                            "settle the last upgrade: " + db.error().what(), std::nullopt};
    auto info = BALLAST_TRY(update::settle({&db->control(), env.booted, env.state_dir}));
    auto journal = BALLAST_TRY(update::load_journal(update::journal_path(env.state_dir)));
    return settle_action(info, journal, *env.booted);
}

Result<boot::Slot> mark(const SlotsEnv& env, bool good, std::optional<boot::Slot> slot) {
    auto db = BALLAST_TRY(open_boot(env));
    update::SlotEnv se{&db.control(), env.booted, env.state_dir};
    return good ? update::mark_good(se, slot) : update::mark_bad(se, slot);
}

Result<boot::Slot> rollback(const SlotsEnv& env) {
    auto db = BALLAST_TRY(open_boot(env));
    return update::rollback({&db.control(), env.booted, env.state_dir});
}

Result<boot::ResetRequest> request_reset(const SlotsEnv& env, const ResetAsk& ask) {
    auto db = BALLAST_TRY(open_boot(env));
    auto state = BALLAST_TRY(db.control().load(false));
    if (state.reset) return *state.reset;
    // An upgrade on trial may still fall back to a slot whose initramfs predates resets: a
    // request cut short there would be ignored with persistent half wiped.
    if (env.booted && state.at(*env.booted).trial)
        return fail(Errc::busy,
                    "slot {} is on trial after an upgrade: wait for its health check to commit it "
                    "(or roll back) before a factory reset",
                    boot::name(*env.booted));
    const auto parts = BALLAST_TRY(disk::read_partitions(env.disk));
    const auto persistent = disk::find_label(parts, disk::kPersistentLabel);
    if (!persistent)
        return fail(Errc::invalid_argument, "{}: no {} partition", env.disk,
                    disk::kPersistentLabel);
    const auto content =
        BALLAST_TRY(disk::probe_content(env.disk, persistent->start, persistent->size));
    boot::ResetRequest req{.oem = ask.oem, .encrypted = ask.encrypt || content == "crypto_LUKS"};
    if (req.encrypted)
        (void)BALLAST_TRY(install::open_sealing(
            ask.tpm2_device, ask.pcrs, ask.pcr_bank,
            fmt::format("reset of an encrypted {} needs a TPM2", disk::kPersistentLabel)));
    state.reset = req;
    BALLAST_TRY(db.control().save(state));
    return req;
}

void add_slots_status(const SlotsEnv& env, nlohmann::json& s) {
    if (env.disk.empty()) return;
    auto db = boot::DiskBoot::open(env.disk);
    auto st = db ? db->control().load(false) : Result<boot::BootState>(std::unexpected(db.error()));
    if (!st) {
        s["BootControlError"] = st.error().what();
        return;
    }
    s["Slots"] = boot::slots_json(*st, env.booted);
    if (st->reset) {
        s["ResetPending"] = true;
        s["ResetOem"] = st->reset->oem;
    }
    s["PrimarySlot"] = std::string(boot::name(st->primary()));
}

void add_journal_status(const std::filesystem::path& state_dir, nlohmann::json& s) {
    if (auto j = update::load_journal(update::journal_path(state_dir)); j && *j) {
        const auto& u = **j;
        s["Upgrade"] = {{"State", std::string(update::name(u.state))},
                        {"Version", u.version},
                        {"FromVersion", u.from_version},
                        {"Target", std::string(boot::name(u.target))},
                        {"Source", http::redact(u.source)},
                        {"Started", u.started},
                        {"Updated", u.updated},
                        {"Error", http::redact(u.error)}};
    } else if (!j) {
        s["UpgradeJournalError"] = j.error().what();
    }
    if (auto r = update::load_refused(update::refused_path(state_dir)); r && !r->empty()) {
        auto arr = nlohmann::json::array();
        for (const auto& x : *r)
            arr.push_back({{"Version", x.version}, {"Reason", x.reason}, {"At", x.at}});
        s["RefusedVersions"] = arr;
    }
}

}  // namespace ballast::ops
