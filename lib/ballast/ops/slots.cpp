#include "ballast/ops/slots.hpp"

#include "ballast/boot/disk_boot.hpp"
#include "ballast/install/reset.hpp"
#include "ballast/k3s/leave.hpp"
#include "ballast/k3s/state.hpp"
#include "ballast/system/http.hpp"
#include "ballast/system/systemd.hpp"
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

Result<boot::Slot> request_recovery(const SlotsEnv& env) {
    auto db = BALLAST_TRY(open_boot(env));
    auto st = BALLAST_TRY(db.control().load(true));
    if (env.booted && st.at(*env.booted).trial)
        return fail(Errc::busy,
                    "slot {} is on trial after an upgrade: wait for its health check to commit it "
                    "(or roll back) before booting recovery",
                    boot::name(*env.booted));
    st.recovery_next = true;
    const auto slot = boot::decide(st).slot;
    BALLAST_TRY_CTX(db.control().save(st), "boot state");
    return slot;
}

namespace {

install::ResetOptions reset_options(const SlotsEnv& env, const ResetAsk& ask) {
    install::ResetOptions o;
    o.device = env.disk;
    o.reset_oem = ask.oem;
    o.reset_persistent = ask.persistent;
    o.poweroff = ask.poweroff;
    o.encrypt = ask.encrypt;
    o.tpm2_device = ask.tpm2_device;
    o.pcrs = ask.pcrs;
    o.pcr_bank = ask.pcr_bank;
    o.request_only = true;
    o.booted = env.booted;
    o.node_config = true;
    o.root = ask.root;
    return o;
}

}  // namespace

Status check_reset(const SlotsEnv& env, const ResetAsk& ask) {
    if (env.disk.empty()) return fail(Errc::unavailable, "no Ballast disk");
    auto o = reset_options(env, ask);
    o.dry_run = true;
    BALLAST_TRY(install::reset(o));
    return {};
}

bool reset_pending(const SlotsEnv& env) {
    if (env.disk.empty()) return false;
    auto db = boot::DiskBoot::open(env.disk);
    auto st = db ? db->control().load(false) : Result<boot::BootState>(std::unexpected(db.error()));
    return st && st->reset;
}

bool k3s_set_up(const RootPrefix& root) {
    // A state that cannot be read counts as set up: the leave job then says what is wrong
    // (--force goes past it) instead of the reset skipping the cluster without a word.
    auto state = k3s::load_state(root);
    return !state || (*state && (*state)->role != k3s::Role::none);
}

Result<nlohmann::json> leave_cluster(const RootPrefix& root, std::chrono::seconds timeout) {
    auto state = BALLAST_TRY(k3s::load_state(root));
    if (!state || state->role == k3s::Role::none)
        return nlohmann::json{{"ok", true}, {"left", false}, {"detail", "k3s is not set up here"}};
    auto rep = BALLAST_TRY(k3s::leave(root, *state, timeout));
    // k3s must not run on as a node that left: it would register itself again (a server would
    // find its etcd member gone) before the reset's reboot, whenever that is.
    if (root.is_host_root() && systemd::running() && !state->unit.empty()) {
        auto m = systemd::Manager::connect();
        auto st = m ? m->stop(state->unit) : Status(std::unexpected(m.error()));
        if (!st)
            rep.detail += (rep.detail.empty() ? "" : "; ") +
                          ("stop " + state->unit + ": " + st.error().what());
    }
    auto j = rep.to_json();
    j["ok"] = true;
    j["left"] = true;
    return j;
}

Result<ResetAnswer> request_reset(const SlotsEnv& env, const ResetAsk& ask) {
    if (env.disk.empty()) return fail(Errc::unavailable, "no Ballast disk");
    auto rep = BALLAST_TRY(install::reset(reset_options(env, ask)));
    return ResetAnswer{rep.request, std::string(boot::reset_scope(rep.request)),
                       ask.reboot.value_or(rep.reboot)};
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
        s["ResetPersistent"] = !st->reset->keep_persistent;
        s["ResetPoweroff"] = st->reset->poweroff;
        s["ResetWhat"] = std::string(boot::reset_scope(*st->reset));
    }
    if (st->recovery_next) s["RecoveryNext"] = true;
    s["PrimarySlot"] = std::string(boot::name(st->primary()));
    // What the bootloader will do with this state (boot::decide mirrors grub.cfg): the primary
    // slot may be empty or being written, and then another boots.
    const boot::Decision next = boot::decide(*st);
    s["NextBoot"] = {{"Slot", std::string(boot::name(next.slot))},
                     {"Reason", next.reason},
                     {"Recovery", next.recovery}};
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
