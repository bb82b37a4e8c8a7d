// The daemon's side of upgrades and boot assessment: jobs for the long parts (the write, the
// health checks), in-process calls for the one-write operator actions, the start-up settling of
// the last upgrade, and the reboot.
#include <spdlog/spdlog.h>

#include "ballast/api/names.hpp"
#include "ballast/core/json.hpp"
#include "ballast/ops/health.hpp"
#include "ballast/ops/report.hpp"
#include "ballast/ops/slots.hpp"
#include "ballast/ops/upgrade.hpp"
#include "ballast/system/http.hpp"
#include "ballast/system/systemd.hpp"
#include "bus_api.hpp"
#include "daemon.hpp"

namespace ballast::agent {

Result<ops::Slot> Daemon::booted() const {
    if (booted_slot_.empty())
        return fail(Errc::unavailable,
                    "the booted slot is unknown (no ballast.slot= on the kernel command line)");
    return ops::parse_slot(booted_slot_);
}

ops::SlotsEnv Daemon::slots_env() const {
    std::optional<ops::Slot> b;
    if (auto s = booted()) b = *s;
    return {disk_, b, ops::state_dir(opts_.node)};
}

void Daemon::settle_last_upgrade() {
    if (disk_.empty() || booted_slot_.empty()) return;
    auto a = ops::settle(slots_env());
    if (!a) {
        set_last_error("settle the last upgrade: " + a.error().what());
        return;
    }
    using K = ops::SettleAction::Kind;
    switch (a->kind) {
        case K::unreadable:
            spdlog::warn("{}", a->message);
            break;
        case K::failed:
            set_last_error(a->message);
            break;
        case K::resume: {
            const auto& j = *a->journal;
            spdlog::warn("{}: starting it again from {}", a->message, j.source);
            ops::UpgradeRequest req;
            req.source = j.source;
            req.force = j.force;
            req.reboot = j.reboot;
            req.expect_manifest_sha256 = j.manifest_sha256;
            auto st = start_upgrade(req);
            if (!st) set_last_error("resume the upgrade: " + st.error().what());
            break;
        }
        case K::reboot:
            spdlog::info("{}", a->message);
            reboot_or_flag(a->message);
            break;
        case K::flag_reboot:
            spdlog::info("{}", a->message);
            reboot_required_ = true;
            break;
        case K::wait_health:
            spdlog::info("{}; waiting for the health check", a->message);
            break;
        case K::none:
            break;
    }
}

Status Daemon::start_upgrade(const ops::UpgradeRequest& req) {
    if (disk_.empty()) return fail(Errc::unavailable, "no Ballast disk: nothing to upgrade");
    if (recovery_)
        return fail(Errc::unavailable,
                    "a recovery boot upgrades nothing: repair persistent (agentctl reset "
                    "--device, encrypt) and boot normally first");
    BALLAST_TRY(booted());
    BALLAST_TRY(ops::check_source(req.source));
    std::vector<std::string> tail = {"upgrade", req.source, "--json"};
    if (req.force) tail.push_back("--force");
    if (!req.reboot) tail.push_back("--no-reboot");
    if (req.dry_run) tail.push_back("--dry-run");
    if (req.expect_manifest_sha256)
        tail.insert(tail.end(), {"--expect-manifest", *req.expect_manifest_sha256});
    BALLAST_TRY(jobs_.start(
        "upgrade", job_argv(std::move(tail)),
        [this, reboot = req.reboot](const nlohmann::json& report, int exit_status) {
            const auto r =
                ops::UpgradeReport::from_json(ops::job_report(report, exit_status, "the job"));
            const std::string msg = r.message();
            progress_ = nlohmann::json::object();
            progress_meter_ = {};
            emit_changed("Progress");
            set_last_error(r.ok ? "" : msg);
            spdlog::log(r.ok ? spdlog::level::info : spdlog::level::err, "{}", msg);
            job_finished("upgrade", r.ok, msg);
            if (r.ok && !r.result.already && !r.result.dry_run) {
                if (reboot)
                    reboot_or_flag(msg);
                else
                    reboot_required_ = true;
            }
        },
        [this](const nlohmann::json& p) { on_upgrade_progress(p); }));
    progress_ = ops::ProgressSample::starting().to_json();
    emit_changed("Progress");
    spdlog::info("upgrade from {} started{}{}", http::redact(req.source),
                 req.force ? " (forced)" : "", req.dry_run ? " (dry run)" : "");
    return {};
}

void Daemon::on_upgrade_progress(const nlohmann::json& p) {
    const auto sample = progress_meter_.update(ops::ProgressLine::from_json(p), ops::Clock::now());
    progress_ = sample.to_json();
    emit_changed("Progress");
    (void)sd_bus_emit_signal(bus_.get(), api::kObjectPath, api::kInterface, "Progress", "sdttdd",
                             valid_utf8(sample.phase).c_str(), sample.percent, sample.bytes,
                             sample.total, sample.rate, sample.eta);
}

Status Daemon::check_health(bool reboot, sd_bus_message* call) {
    if (call) sd_bus_message_ref(call);
    auto reply_to = std::make_shared<sdbus::Message>(call);
    return jobs_.start(
        "health", job_argv({"health", "--json"}),
        [this, reply_to, reboot](const nlohmann::json& report, int exit_status) {
            const auto res = ops::job_report(report, exit_status, "the health job");
            const auto r = ops::HealthReport::from_json(res);
            const std::string msg = r.message_line();
            if (r.trial) set_last_error(r.ok ? "" : msg);
            job_finished("health", r.ok, msg);
            if (*reply_to) {
                int rc = sd_bus_reply_method_return(reply_to->get(), "s", json_text(res).c_str());
                if (rc < 0)
                    spdlog::warn("reply to CheckHealth: {}", fail_errno(rc, "").error().message());
            }
            if (r.reboot) {
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
    std::optional<ops::Slot> which;
    if (!slot.empty()) which = BALLAST_TRY(ops::parse_slot(slot));
    auto done = ops::mark(slots_env(), good, which);
    if (!done)
        return std::unexpected(std::move(done.error()).context(good ? "mark-good" : "mark-bad"));
    spdlog::info("slot {} marked {} by an operator", ops::name(*done), good ? "good" : "bad");
    return std::string(ops::name(*done));
}

Result<std::string> Daemon::rollback(bool reboot) {
    if (jobs_.busy())
        return fail(Errc::busy, "busy: '{}' is running; try again when it has finished",
                    jobs_.operation());
    if (disk_.empty()) return fail(Errc::unavailable, "no Ballast disk");
    BALLAST_TRY(booted());
    auto to = ops::rollback(slots_env());
    if (!to) return std::unexpected(std::move(to.error()).context("rollback"));
    const std::string msg = fmt::format("rolled back: slot {} is primary", ops::name(*to));
    spdlog::info("{}", msg);
    if (reboot)
        reboot_or_flag(msg);
    else
        reboot_required_ = true;
    return std::string(ops::name(*to));
}

Status Daemon::reset(ops::ResetAsk ask, std::optional<bool> graceful, bool force,
                     sd_bus_message* call) {
    if (jobs_.busy())
        return fail(Errc::busy, "busy: '{}' is running; try again when it has finished",
                    jobs_.operation());
    if (disk_.empty()) return fail(Errc::unavailable, "no Ballast disk");
    auto reply = [](sd_bus_message* m, const Result<std::pair<std::string, bool>>& r) {
        int rc = 0;
        if (r) {
            rc = sd_bus_reply_method_return(m, "sb", r->first.c_str(), int(r->second));
        } else {
            sd_bus_error err = SD_BUS_ERROR_NULL;
            reply_error(&err, r.error());
            rc = sd_bus_reply_method_error(m, &err);
            sd_bus_error_free(&err);
        }
        if (rc < 0) spdlog::warn("reply to Reset: {}", fail_errno(rc, "").error().message());
    };
    ask.tpm2_device = settings_.tpm.device;
    ask.pcrs = settings_.tpm.pcrs;
    ask.pcr_bank = settings_.tpm.pcr_bank;
    ask.root = opts_.node.root.base().string();
    // Pending already: as it is, without leaving again.
    if (!graceful.value_or(ops::k3s_set_up(opts_.node.root)) || ops::reset_pending(slots_env())) {
        reply(call, store_reset(std::move(ask), ""));
        return {};
    }
    // A reset that would be refused is refused before the node leaves its cluster.
    BALLAST_TRY_CTX(ops::check_reset(slots_env(), ask), "reset");
    if (call) sd_bus_message_ref(call);
    auto reply_to = std::make_shared<sdbus::Message>(call);
    return jobs_.start(
        "reset", job_argv({"leave", "--json"}),
        [this, reply_to, reply, ask, force](const nlohmann::json& report, int exit_status) {
            const auto res = ops::job_report(report, exit_status, "the leave job");
            const bool ok = res.value("ok", false);
            std::string left = res.value("left", false) ? "left the cluster" : "";
            if (!ok) {
                const std::string why = json_field<std::string>(res, "error", "failed");
                if (!force) {
                    const std::string msg = fmt::format(
                        "the node could not leave its k3s cluster: {}; nothing was reset "
                        "(--force resets without leaving)",
                        why);
                    set_last_error(msg);
                    job_finished("reset", false, msg);
                    if (*reply_to) reply(reply_to->get(), fail(Errc::unavailable, "{}", msg));
                    return;
                }
                left = "did not leave the cluster (--force): " + why;
                spdlog::warn("reset: {}", left);
            }
            auto r = store_reset(ask, left);
            if (!r && !left.empty() && res.value("left", false))
                set_last_error(
                    fmt::format("the node left its k3s cluster, but the reset was "
                                "refused: {}",
                                r.error().what()));
            job_finished(
                "reset", bool(r),
                r ? fmt::format("factory reset requested: {} wiped at the next boot", r->first)
                  : r.error().what());
            if (*reply_to) reply(reply_to->get(), r);
        });
}

Result<std::pair<std::string, bool>> Daemon::store_reset(ops::ResetAsk ask,
                                                         const std::string& left) {
    auto answer = ops::request_reset(slots_env(), ask);
    if (!answer) return std::unexpected(std::move(answer.error()).context("reset"));
    const auto& req = answer->request;
    const std::string& what = answer->what;
    const std::string msg =
        fmt::format("factory reset requested: {} wiped at the next boot{}{}{}", what,
                    req.encrypted ? ", persistent encrypted anew" : "",
                    req.poweroff ? ", then power off" : "", left.empty() ? "" : "; " + left);
    spdlog::warn("{}", msg);
    if (answer->reboot)
        reboot_or_flag(msg);
    else
        reboot_required_ = true;
    return std::pair{what, answer->reboot};
}

Result<std::string> Daemon::recovery(bool reboot) {
    if (jobs_.busy())
        return fail(Errc::busy, "busy: '{}' is running; try again when it has finished",
                    jobs_.operation());
    if (disk_.empty()) return fail(Errc::unavailable, "no Ballast disk");
    auto slot = ops::request_recovery(slots_env());
    if (!slot) return std::unexpected(std::move(slot.error()).context("recovery"));
    const std::string msg =
        fmt::format("the next boot is a recovery boot (slot {})", ops::name(*slot));
    spdlog::warn("{}", msg);
    if (reboot)
        reboot_or_flag(msg);
    else
        reboot_required_ = true;
    return std::string(ops::name(*slot));
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
    ops::add_journal_status(ops::state_dir(opts_.node), s);
}

}  // namespace ballast::agent
