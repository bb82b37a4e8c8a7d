// The daemon's side of upgrades and boot assessment: jobs for the long parts (the write, the
// health checks), in-process calls for the one-write operator actions, the start-up settling of
// the last upgrade, and the reboot.
#include <spdlog/spdlog.h>

#include "ballast/api/names.hpp"
#include "ballast/boot/disk_boot.hpp"
#include "ballast/core/json.hpp"
#include "ballast/system/http.hpp"
#include "ballast/system/systemd.hpp"
#include "ballast/update/slot_admin.hpp"
#include "ballast/update/upgrade.hpp"
#include "daemon.hpp"

namespace ballast::agent {

Result<boot::Slot> Daemon::booted() const {
    if (booted_slot_.empty())
        return fail(Errc::unavailable,
                    "the booted slot is unknown (no ballast.slot= on the kernel command line)");
    return boot::parse_slot(booted_slot_);
}

void Daemon::settle_last_upgrade() {
    if (disk_.empty() || booted_slot_.empty()) return;
    auto db = boot::DiskBoot::open(disk_);
    if (!db) {
        spdlog::warn("settle the last upgrade: {}", db.error().what());
        return;
    }
    const auto sdir = state_dir(opts_.node);
    update::SlotEnv env{&*db, *booted(), sdir};
    auto info = update::settle(env);
    if (!info) {
        set_last_error("settle the last upgrade: " + info.error().what());
        return;
    }
    switch (info->what) {
        case update::Outcome::failed:
            set_last_error(info->message);
            break;
        case update::Outcome::resume_write: {
            auto j = update::load_journal(update::journal_path(sdir));
            if (!j || !*j) break;
            if ((*j)->target == *booted()) {  // never write the booted slot (I1)
                set_last_error(info->message + "; not resumed: slot " +
                               std::string(boot::name((*j)->target)) + " is the booted slot");
                break;
            }
            spdlog::warn("{}: starting it again from {}", info->message, (*j)->source);
            auto st = start_upgrade((*j)->source, (*j)->force, (*j)->reboot, (*j)->manifest_sha256);
            if (!st) set_last_error("resume the upgrade: " + st.error().what());
            break;
        }
        case update::Outcome::awaiting_reboot: {
            spdlog::info("{}", info->message);
            // The caller's choice survives a restart between activation and the reboot.
            auto j = update::load_journal(update::journal_path(sdir));
            if (j && *j && (*j)->reboot)
                reboot_or_flag(info->message);
            else
                reboot_required_ = true;
            break;
        }
        case update::Outcome::on_trial:
            spdlog::info("{}; waiting for the health check", info->message);
            break;
        default:
            break;
    }
}

Status Daemon::start_upgrade(const std::string& source, bool force, bool reboot,
                             std::optional<std::string> expect_manifest) {
    if (disk_.empty()) return fail(Errc::unavailable, "no Ballast disk: nothing to upgrade");
    BALLAST_TRY(booted());
    if (source.empty() || (!update::is_url(source) && source.front() != '/'))
        return fail(Errc::invalid_argument,
                    "source '{}': expected an absolute path or an https:// URL", source);
    std::vector<std::string> tail = {"upgrade", source, "--json"};
    if (force) tail.push_back("--force");
    if (!reboot) tail.push_back("--no-reboot");
    if (expect_manifest) tail.insert(tail.end(), {"--expect-manifest", *expect_manifest});
    BALLAST_TRY(jobs_.start(
        "upgrade", job_argv(std::move(tail)),
        [this, reboot](const nlohmann::json& report, int exit_status) {
            const bool ok = json_field<bool>(report, "ok", false);
            std::string msg;
            const bool already = ok && json_field<bool>(report, "already", false);
            const auto version = json_field<std::string>(report, "version", "");
            const auto target = json_field<std::string>(report, "target", "");
            if (already)
                msg = fmt::format("already running {} (slot {})", version, target);
            else if (ok)
                msg = fmt::format("upgraded to {} in slot {}", version, target);
            else if (report.is_object() && report.contains("error"))
                msg = "upgrade: " + json_field<std::string>(report, "error", "(not a string)");
            else
                msg =
                    fmt::format("upgrade: the job ended with status {} and no report", exit_status);
            msg = http::redact(msg);  // LastError and the signal are for everyone
            progress_ = nlohmann::json::object();
            progress_phase_.clear();
            emit_changed("Progress");
            if (!ok)
                set_last_error(msg);
            else
                set_last_error("");
            spdlog::log(ok ? spdlog::level::info : spdlog::level::err, "{}", msg);
            job_finished("upgrade", ok, msg);
            if (ok && !already) {
                if (reboot)
                    reboot_or_flag(msg);
                else
                    reboot_required_ = true;
            }
        },
        [this](const nlohmann::json& p) { on_upgrade_progress(p); }));
    progress_ = {{"Phase", "starting"}, {"Percent", 0.0}, {"Bytes", 0},
                 {"Total", 0},          {"Rate", 0.0},    {"EtaSeconds", -1.0}};
    emit_changed("Progress");
    spdlog::info("upgrade from {} started{}", http::redact(source), force ? " (forced)" : "");
    return {};
}

void Daemon::on_upgrade_progress(const nlohmann::json& p) {
    const auto phase = json_field<std::string>(p, "phase", "");
    const auto done = json_field<uint64_t>(p, "done", 0),
               total = json_field<uint64_t>(p, "total", 0);
    const auto now = std::chrono::steady_clock::now();
    if (phase != progress_phase_) {
        progress_phase_ = phase;
        phase_t0_ = now;
        phase_bytes0_ = done;
    }
    const double secs = std::chrono::duration<double>(now - phase_t0_).count();
    const double rate =
        secs > 0.2 && done > phase_bytes0_ ? double(done - phase_bytes0_) / secs : 0;
    const double pct = total ? 100.0 * double(done) / double(total) : 0;
    const double eta = rate > 0 && total >= done ? double(total - done) / rate : -1;
    progress_ = {{"Phase", phase}, {"Percent", pct}, {"Bytes", done},
                 {"Total", total}, {"Rate", rate},   {"EtaSeconds", eta}};
    emit_changed("Progress");
    (void)sd_bus_emit_signal(bus_.get(), api::kObjectPath, api::kInterface, "Progress", "sdttdd",
                             valid_utf8(phase).c_str(), pct, done, total, rate, eta);
}

Status Daemon::check_health(bool reboot, sd_bus_message* call) {
    if (call) sd_bus_message_ref(call);
    auto reply_to = std::make_shared<sdbus::Message>(call);
    return jobs_.start(
        "health", job_argv({"health", "--json"}),
        [this, reply_to, reboot](const nlohmann::json& report, int exit_status) {
            nlohmann::json res = report.is_object()
                                     ? report
                                     : nlohmann::json{{"ok", false},
                                                      {"error", fmt::format("the health job ended "
                                                                            "with status {} and "
                                                                            "no report",
                                                                            exit_status)}};
            const bool ok = json_field<bool>(res, "ok", false);
            const std::string msg =
                res.contains("error") ? json_field<std::string>(res, "error", "(not a string)")
                : res.contains("message")
                    ? json_field<std::string>(res, "message", "")
                    : "health check: " + json_field<std::string>(res, "summary", "");
            if (json_field<bool>(res, "trial", false)) set_last_error(ok ? "" : msg);
            job_finished("health", ok, msg);
            if (*reply_to) {
                int r = sd_bus_reply_method_return(reply_to->get(), "s", json_text(res).c_str());
                if (r < 0)
                    spdlog::warn("reply to CheckHealth: {}", fail_errno(r, "").error().message());
            }
            if (json_field<bool>(res, "reboot", false)) {
                if (reboot)
                    reboot_or_flag(msg);
                else
                    reboot_required_ = true;
            }
        });
}

Result<std::string> Daemon::mark_slot(bool good, const std::string& slot) {
    if (jobs_.busy())
        return fail(Errc::busy, "busy: '{}' is running; try again when it has finished",
                    jobs_.operation());
    if (disk_.empty()) return fail(Errc::unavailable, "no Ballast disk");
    std::optional<boot::Slot> which;
    if (!slot.empty()) which = BALLAST_TRY(boot::parse_slot(slot));
    auto db = BALLAST_TRY(boot::DiskBoot::open(disk_));
    std::optional<boot::Slot> b;
    if (auto s = booted()) b = *s;
    update::SlotEnv env{&db, b, state_dir(opts_.node)};
    auto done = good ? update::mark_good(env, which) : update::mark_bad(env, which);
    if (!done)
        return std::unexpected(std::move(done.error()).context(good ? "mark-good" : "mark-bad"));
    spdlog::info("slot {} marked {} by an operator", boot::name(*done), good ? "good" : "bad");
    return std::string(boot::name(*done));
}

Result<std::string> Daemon::rollback(bool reboot) {
    if (jobs_.busy())
        return fail(Errc::busy, "busy: '{}' is running; try again when it has finished",
                    jobs_.operation());
    if (disk_.empty()) return fail(Errc::unavailable, "no Ballast disk");
    auto db = BALLAST_TRY(boot::DiskBoot::open(disk_));
    const auto b = BALLAST_TRY(booted());
    update::SlotEnv env{&db, b, state_dir(opts_.node)};
    auto to = update::rollback(env);
    if (!to) return std::unexpected(std::move(to.error()).context("rollback"));
    const std::string msg = fmt::format("rolled back: slot {} is primary", boot::name(*to));
    spdlog::info("{}", msg);
    if (reboot)
        reboot_or_flag(msg);
    else
        reboot_required_ = true;
    return std::string(boot::name(*to));
}

void Daemon::reboot_or_flag(const std::string& why) {
    reboot_required_ = true;
    if (!opts_.node.root.is_host_root() || !systemd::running()) {
        spdlog::warn(
            "{}: reboot required (not rebooting: {})", why,
            opts_.node.root.is_host_root() ? "systemd is not running" : "the node root is not /");
        return;
    }
    auto m = systemd::Manager::connect();
    auto st = m ? m->reboot() : Status(std::unexpected(m.error()));
    if (!st) {
        set_last_error(fmt::format("{}; reboot failed: {}", why, st.error().what()));
        return;
    }
    spdlog::info("{}: rebooting", why);
}

void Daemon::add_upgrade_status(nlohmann::json& s) const {
    s["RebootRequired"] = reboot_required_;
    if (!progress_.empty()) s["Progress"] = progress_;
    const auto sdir = state_dir(opts_.node);
    if (auto j = update::load_journal(update::journal_path(sdir)); j && *j) {
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
    if (auto r = update::load_refused(update::refused_path(sdir)); r && !r->empty()) {
        auto arr = nlohmann::json::array();
        for (const auto& x : *r)
            arr.push_back({{"Version", x.version}, {"Reason", x.reason}, {"At", x.at}});
        s["RefusedVersions"] = arr;
    }
}

}  // namespace ballast::agent
