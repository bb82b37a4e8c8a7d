// ballast-agent's long-running mode: one sd-event loop owning org.ballast.Agent1.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/config/agent_settings.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/ops/node.hpp"
#include "ballast/ops/progress.hpp"
#include "ballast/ops/slots.hpp"
#include "ballast/ops/upgrade.hpp"
#include "ballast/system/sdbus.hpp"
#include "jobs.hpp"

namespace ballast::agent {

struct DaemonOptions {
    ops::NodeOptions node;
    std::optional<std::string> bus_address;
    std::optional<std::string> log_level;  // --log-level wins over agent.yaml
};

class Daemon {
  public:
    // Everything that can fail at start-up happens here, before READY=1.
    [[nodiscard]] static Result<std::unique_ptr<Daemon>> create(DaemonOptions opts);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Runs until SIGTERM/SIGINT.
    [[nodiscard]] Status run();

    // --- used by the D-Bus API ---
    [[nodiscard]] nlohmann::json status() const;
    [[nodiscard]] const std::string& booted_slot() const { return booted_slot_; }
    [[nodiscard]] std::string operation() const {
        return jobs_.busy() ? jobs_.operation() : "idle";
    }
    [[nodiscard]] const std::string& last_error() const { return last_error_; }
    [[nodiscard]] const std::string& disk() const { return disk_; }
    [[nodiscard]] std::string log_level() const;
    [[nodiscard]] Status set_log_level(const std::string& level);
    // Re-reads agent.yaml; on any error the running settings stay as they are.
    [[nodiscard]] Status reload();
    // Starts a stage run as the one job; `call` (may be null) gets the report as its reply.
    [[nodiscard]] Status run_stage(const std::string& stage, bool dry_run,
                                   std::vector<std::string> config_files, sd_bus_message* call);
    // The last run of each stage (/run/ballast/stages/*.json), newest data on disk.
    [[nodiscard]] nlohmann::json stage_summaries() const;

    // Starts an upgrade job; returns at once (progress and the end come as signals).
    // A dry run only plans: its end is reported, nothing reboots.
    [[nodiscard]] Status start_upgrade(const ops::UpgradeRequest& req);
    // Runs the boot assessment as the one job; `call` gets the report as its reply. A slot on
    // trial that fails is marked bad and, unless `reboot` is false, the node reboots.
    [[nodiscard]] Status check_health(bool reboot, sd_bus_message* call);
    // Operator actions on boot control; `slot` empty means the booted slot. Refused while a job
    // runs. Each returns the slot acted on.
    [[nodiscard]] Result<std::string> mark_slot(bool good, const std::string& slot);
    [[nodiscard]] Result<std::string> rollback(bool reboot);
    // The next boot takes the recovery entry once; the slot it starts.
    [[nodiscard]] Result<std::string> recovery(bool reboot);
    // A factory reset at the next boot (unset choices: the node's reset: block). A node with
    // k3s set up (or `graceful`) first leaves its cluster, in a job (ballast-agent leave); if
    // that fails the reset is refused unless `force`. `call` is answered (what it wipes:
    // "persistent", "persistent and OEM", "OEM"; whether it reboots for it now) once the request
    // is stored, or with the error.
    [[nodiscard]] Status reset(ops::ResetAsk ask, std::optional<bool> graceful, bool force,
                               sd_bus_message* call);
    // Phase, Percent, Bytes, Total, Rate (bytes/s), EtaSeconds of the running upgrade; empty
    // when none runs.
    [[nodiscard]] const nlohmann::json& progress() const { return progress_; }

  private:
    explicit Daemon(DaemonOptions opts);
    [[nodiscard]] Status take_lock();
    [[nodiscard]] Status setup_event_loop();
    [[nodiscard]] Status setup_bus();
    void apply_settings(const config::AgentSettings& s);
    void emit_changed(const char* property);
    void set_last_error(std::string message);
    // The JobFinished signal.
    void job_finished(const std::string& operation, bool ok, const std::string& message);
    // The job command line: this program with the node's global options, then `tail`.
    [[nodiscard]] std::vector<std::string> job_argv(std::vector<std::string> tail) const;
    // What the last upgrade left behind, settled at start-up (update/slot_admin.hpp).
    void settle_last_upgrade();
    void on_upgrade_progress(const nlohmann::json& p);
    // Reboots through systemd when this is the running system; otherwise records that a reboot
    // is needed (sandboxes, --root).
    void reboot_or_flag(const std::string& why);
    // The request itself, once the node has left its cluster (or need not).
    [[nodiscard]] Result<std::pair<std::string, bool>> store_reset(ops::ResetAsk ask,
                                                                   const std::string& left);
    [[nodiscard]] Result<ops::Slot> booted() const;
    [[nodiscard]] ops::SlotsEnv slots_env() const;
    // RebootRequired, Progress, Upgrade (the journal) and RefusedVersions for GetStatus.
    void add_upgrade_status(nlohmann::json& s) const;
    void notify_status();
    void arm_reconcile(std::chrono::milliseconds after);
    static int on_reconcile(sd_event_source*, uint64_t, void* userdata);

    DaemonOptions opts_;
    config::AgentSettings settings_;
    std::string booted_slot_;
    std::string last_error_;
    std::string disk_;
    nlohmann::json progress_ = nlohmann::json::object();
    ops::ProgressMeter progress_meter_;
    bool reboot_required_ = false;
    std::optional<nlohmann::json> recovery_;  // a recovery boot: why (ops::recovery_boot)
    UniqueFd lock_fd_;
    sdbus::Event event_;
    sdbus::Bus bus_;
    sdbus::Slot vtable_slot_;
    sdbus::EventSource sig_term_, sig_int_, sig_hup_, reconcile_timer_;
    JobRunner jobs_;
};

}  // namespace ballast::agent
