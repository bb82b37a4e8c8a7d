#include "daemon.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>

#include <spdlog/spdlog.h>

#include "ballast/api/names.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/log.hpp"
#include "ballast/ops/mount.hpp"
#include "ballast/ops/report.hpp"
#include "ballast/stages/names.hpp"
#include "ballast_config.h"
#include "bus_api.hpp"
#include "guard.hpp"

namespace ballast::agent {
namespace {

Status check(int r, std::string_view what) {
    if (r < 0) return fail_errno(r, what);
    return {};
}

int on_exit_signal(sd_event_source* s, const struct signalfd_siginfo* si, void*) {
    spdlog::info("received {}, stopping", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    (void)sd_notify(0, "STOPPING=1");
    return sd_event_exit(sd_event_source_get_event(s), 0);
}

int on_reload_signal(sd_event_source*, const struct signalfd_siginfo*, void* userdata) {
    auto* d = static_cast<Daemon*>(userdata);
    run_guarded("reload", [d] {
        if (auto r = d->reload(); !r) spdlog::error("reload: {}", r.error().what());
    });
    return 0;
}

}  // namespace

Daemon::Daemon(DaemonOptions opts) : opts_(std::move(opts)) {}

Daemon::~Daemon() {
    // Bus objects go before the loop they are attached to.
    reconcile_timer_.reset();
    vtable_slot_.reset();
    bus_.reset();
    sig_term_.reset();
    sig_int_.reset();
    sig_hup_.reset();
    event_.reset();
}

Result<std::unique_ptr<Daemon>> Daemon::create(DaemonOptions opts) {
    std::unique_ptr<Daemon> d(new Daemon(std::move(opts)));

    auto settings = BALLAST_TRY(
        config::load_agent_settings(d->opts_.node.settings_path, d->opts_.node.settings_explicit));
    d->apply_settings(settings);

    if (auto s = ops::resolve_booted(d->opts_.node)) d->booted_slot_ = ops::name(*s);
    d->disk_ = ops::resolve_disk(d->opts_.node, settings);
    if (d->disk_.empty()) spdlog::info("no Ballast disk found; slot operations are unavailable");

    BALLAST_TRY(d->take_lock());
    BALLAST_TRY(d->setup_event_loop());
    BALLAST_TRY(d->setup_bus());
    Daemon* self = d.get();
    BALLAST_TRY(d->jobs_.attach(d->event_.get(), [self] {
        self->emit_changed("Operation");
        self->notify_status();
    }));
    d->recovery_ = ops::recovery_boot(d->opts_.node.root);
    if (d->recovery_) {
        // The node is not itself: its config is not reconciled, and the last upgrade is left
        // for the next normal boot to settle.
        spdlog::warn("recovery boot ({}): no reconcile, no upgrade, no health verdict",
                     (*d->recovery_)["reason"].get<std::string>());
        return d;
    }
    d->arm_reconcile(d->settings_.reconcile.delay);
    d->settle_last_upgrade();
    return d;
}

Status Daemon::take_lock() {
    auto dir = BALLAST_TRY(opts_.node.root.resolve("/run/ballast"));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail_errno(ec.value(), dir.string());
    auto path = dir / "agent.lock";
    lock_fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!lock_fd_) return fail_errno(errno, path.string());
    if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK) return fail_errno(errno, "lock " + path.string());
        auto holder = read_file(path, 64);
        std::string pid = holder ? *holder : std::string("?");
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' '))
            pid.pop_back();
        return fail(Errc::busy,
                    "another ballast-agent (pid {}) is already running for root {} (lock {})", pid,
                    opts_.node.root.base().string(), path.string());
    }
    auto pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_fd_.get(), 0) < 0 ||
        ::pwrite(lock_fd_.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
        return fail_errno(errno, "write " + path.string());
    return {};
}

Status Daemon::setup_event_loop() {
    sd_event* e = nullptr;
    BALLAST_TRY(check(sd_event_default(&e), "sd_event_default"));
    event_.reset(e);
    // Ping the systemd watchdog from the loop when WATCHDOG_USEC is set: a hung loop stops the
    // pings and systemd restarts us. No timer at all otherwise (zero idle wake-ups).
    BALLAST_TRY(check(sd_event_set_watchdog(event_.get(), true), "watchdog"));

    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGHUP);
    sigaddset(&ss, SIGCHLD);  // jobs are child processes, reaped by sd-event
    if (sigprocmask(SIG_BLOCK, &ss, nullptr) < 0) return fail_errno(errno, "sigprocmask");
    sd_event_source* src = nullptr;
    BALLAST_TRY(
        check(sd_event_add_signal(event_.get(), &src, SIGTERM, on_exit_signal, this), "SIGTERM"));
    sig_term_.reset(src);
    BALLAST_TRY(
        check(sd_event_add_signal(event_.get(), &src, SIGINT, on_exit_signal, this), "SIGINT"));
    sig_int_.reset(src);
    BALLAST_TRY(
        check(sd_event_add_signal(event_.get(), &src, SIGHUP, on_reload_signal, this), "SIGHUP"));
    sig_hup_.reset(src);
    return {};
}

Status Daemon::setup_bus() {
    auto bus = BALLAST_TRY_CTX(sdbus::connect(opts_.bus_address), "D-Bus");
    bus_ = std::move(bus);
    sd_bus_slot* slot = nullptr;
    BALLAST_TRY(check(sd_bus_add_object_vtable(bus_.get(), &slot, api::kObjectPath, api::kInterface,
                                               agent_vtable(), this),
                      "register " + std::string(api::kObjectPath)));
    vtable_slot_.reset(slot);
    BALLAST_TRY(check(sd_bus_attach_event(bus_.get(), event_.get(), SD_EVENT_PRIORITY_NORMAL),
                      "attach bus"));
    int r = sd_bus_request_name(bus_.get(), api::kBusName, 0);
    if (r == -EEXIST || r == -EALREADY)
        return fail(Errc::busy, "{} is already owned on this bus: another ballast-agent is running",
                    api::kBusName);
    if (r == -EACCES || r == -EPERM)
        return fail(Errc::permission_denied,
                    "not allowed to own {} (is the D-Bus policy file installed, and are we root?)",
                    api::kBusName);
    BALLAST_TRY(check(r, std::string("request name ") + api::kBusName));
    return {};
}

Status Daemon::run() {
    spdlog::info("ballast-agent {} ready on {} (booted slot {}, disk {})", BALLAST_VERSION,
                 opts_.bus_address ? *opts_.bus_address : std::string("the system bus"),
                 booted_slot_.empty() ? "unknown" : booted_slot_, disk_.empty() ? "none" : disk_);
    notify_status();
    (void)sd_notify(0, "READY=1");
    int r = sd_event_loop(event_.get());
    if (r < 0) return fail_errno(r, "event loop");
    return {};
}

void Daemon::apply_settings(const config::AgentSettings& s) {
    settings_ = s;
    const std::string& lvl = opts_.log_level ? *opts_.log_level : s.log_level;
    if (auto parsed = log::parse_level(lvl)) spdlog::set_level(*parsed);
}

std::string Daemon::log_level() const {
    return std::string(log::level_name(spdlog::default_logger()->level()));
}

Status Daemon::set_log_level(const std::string& level) {
    auto lvl = BALLAST_TRY(log::parse_level(level));
    if (lvl == spdlog::default_logger()->level()) return {};
    spdlog::set_level(lvl);
    spdlog::info("log level set to {}", log::level_name(lvl));
    emit_changed("LogLevel");
    return {};
}

Status Daemon::reload() {
    auto s = config::load_agent_settings(opts_.node.settings_path, opts_.node.settings_explicit);
    if (!s) return std::unexpected(std::move(s.error()).context("reload"));
    const auto before = log_level();
    const auto old_interval = settings_.reconcile.interval;
    apply_settings(*s);
    if (settings_.reconcile.interval != old_interval) arm_reconcile(settings_.reconcile.interval);
    spdlog::info("reloaded {}", opts_.node.settings_path.string());
    if (log_level() != before) emit_changed("LogLevel");
    return {};
}

nlohmann::json Daemon::status() const {
    nlohmann::json s = {
        {"Version", BALLAST_VERSION},
        {"BootedSlot", booted_slot_},
        {"Operation", operation()},
        {"LastError", last_error_},
        {"Disk", disk_},
        {"Root", opts_.node.root.base().string()},
        {"LogLevel", log_level()},
        {"Stages", stage_summaries()},
    };
    if (recovery_)
        s["Recovery"] = {{"Reason", recovery_->value("reason", "")},
                         {"Asked", recovery_->value("asked", false)}};
    add_upgrade_status(s);
    // Read from the disk's boot control on every call: the two small reads cost nothing.
    ops::add_slots_status(slots_env(), s);
    return s;
}

nlohmann::json Daemon::stage_summaries() const {
    auto out = nlohmann::json::array();
    auto dir = opts_.node.root("/run/ballast/stages");
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        if (e.path().extension() == ".json") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        auto text = read_file(f, 4u << 20);
        if (!text) continue;
        auto j = nlohmann::json::parse(*text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) continue;
        out.push_back({{"Stage", json_field<std::string>(j, "stage", "")},
                       {"StartedAt", json_field<std::string>(j, "started_at", "")},
                       {"Changed", json_field<int64_t>(j, "changed", 0)},
                       {"Unchanged", json_field<int64_t>(j, "unchanged", 0)},
                       {"Skipped", json_field<int64_t>(j, "skipped", 0)},
                       {"Failed", json_field<int64_t>(j, "failed", 0)},
                       {"DurationMs", json_field<double>(j, "duration_ms", 0.0)}});
    }
    return out;
}

Status Daemon::run_stage(const std::string& stage, bool dry_run,
                         std::vector<std::string> config_files, sd_bus_message* call) {
    BALLAST_TRY(stages::check_stage_name(stage));
    if (recovery_)
        return fail(Errc::unavailable,
                    "a recovery boot runs no cloud-config stage: repair persistent and boot "
                    "normally first");
    // The job is this program in stage mode, in a child process (jobs.hpp says why).
    auto argv = job_argv({"stage", stage, "--json"});
    if (dry_run) argv.push_back("--dry-run");
    for (auto& f : config_files) {
        argv.push_back("--config");
        argv.push_back(std::move(f));
    }
    if (call) sd_bus_message_ref(call);
    auto reply_to = std::make_shared<sdbus::Message>(call);
    return jobs_.start(
        "stage " + stage, std::move(argv),
        [this, reply_to, stage](const nlohmann::json& report, int exit_status) {
            const auto res =
                ops::job_report(report, exit_status, "the stage job", {{"stage", stage}});
            const bool ok = json_field<bool>(res, "ok", false);
            std::string msg = res.contains("error")
                                  ? json_field<std::string>(res, "error", "(not a string)")
                                  : fmt::format("stage {}: {} changed, {} failed", stage,
                                                json_field<int64_t>(res, "changed", 0),
                                                json_field<int64_t>(res, "failed", 0));
            if (!ok) set_last_error(msg);
            job_finished("stage " + stage, ok, msg);
            if (*reply_to) {
                int r = sd_bus_reply_method_return(reply_to->get(), "s", json_text(res).c_str());
                if (r < 0)
                    spdlog::warn("reply to RunStage: {}", fail_errno(r, "").error().message());
            }
        });
}

void Daemon::arm_reconcile(std::chrono::milliseconds after) {
    reconcile_timer_.reset();
    if (recovery_) return;  // a reload must not start it either
    if (settings_.reconcile.interval.count() == 0) return;
    sd_event_source* s = nullptr;
    uint64_t usec = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(after).count());
    // Slack of 1% (at most a minute): the timer may coalesce with other wake-ups.
    const uint64_t accuracy = std::clamp<uint64_t>(usec / 100, 1000, 60'000'000);
    int r = sd_event_add_time_relative(event_.get(), &s, CLOCK_BOOTTIME, usec, accuracy,
                                       on_reconcile, this);
    if (r < 0) {
        spdlog::warn("reconcile timer: {}", fail_errno(r, "").error().message());
        return;
    }
    reconcile_timer_.reset(s);
}

int Daemon::on_reconcile(sd_event_source*, uint64_t, void* userdata) {
    auto* d = static_cast<Daemon*>(userdata);
    if (d->jobs_.busy()) {
        spdlog::info("reconcile: '{}' is running; trying again in 5 minutes", d->jobs_.operation());
        d->arm_reconcile(std::chrono::minutes(5));
        return 0;
    }
    run_guarded("reconcile", [d] {
        if (auto st = d->run_stage("reconcile", false, {}, nullptr); !st)
            spdlog::error("reconcile: {}", st.error().what());
    });
    d->arm_reconcile(d->settings_.reconcile.interval);
    return 0;
}

std::vector<std::string> Daemon::job_argv(std::vector<std::string> tail) const {
    std::vector<std::string> argv = {"/proc/self/exe", "--root", opts_.node.root.base().string(),
                                     "--log-level", log_level()};
    if (opts_.node.settings_explicit)
        argv.insert(argv.end(), {"--config", opts_.node.settings_path.string()});
    if (!disk_.empty()) argv.insert(argv.end(), {"--disk", disk_});
    if (!booted_slot_.empty()) argv.insert(argv.end(), {"--booted-slot", booted_slot_});
    for (auto& t : tail)
        argv.push_back(std::move(t));
    return argv;
}

void Daemon::set_last_error(std::string message) {
    message = valid_utf8(message);  // a D-Bus property: see valid_utf8()
    if (last_error_ == message) return;
    last_error_ = std::move(message);
    emit_changed("LastError");
    notify_status();
}

void Daemon::job_finished(const std::string& operation, bool ok, const std::string& message) {
    if (!bus_) return;
    (void)sd_bus_emit_signal(bus_.get(), api::kObjectPath, api::kInterface, "JobFinished", "sbs",
                             operation.c_str(), ok ? 1 : 0, valid_utf8(message).c_str());
}

void Daemon::emit_changed(const char* property) {
    if (!bus_) return;
    int r = sd_bus_emit_properties_changed(bus_.get(), api::kObjectPath, api::kInterface, property,
                                           nullptr);
    if (r < 0)
        spdlog::warn("emit PropertiesChanged({}): {}", property,
                     fail_errno(r, "").error().message());
}

void Daemon::notify_status() {
    std::string st = jobs_.busy() ? "Running: " + jobs_.operation() : "Idle";
    if (!last_error_.empty()) st += "; last error: " + last_error_;
    (void)sd_notifyf(0, "STATUS=%s", st.c_str());
}

}  // namespace ballast::agent
