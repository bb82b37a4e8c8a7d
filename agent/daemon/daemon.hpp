// ballast-agent's long-running mode: one sd-event loop owning org.ballast.Agent1.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/boot/slot.hpp"
#include "ballast/config/agent_settings.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/system/sdbus.hpp"
#include "jobs.hpp"

namespace ballast::agent {

struct DaemonOptions {
    RootPrefix root;
    std::string disk;  // --disk; empty: agent.yaml, then PARTLABEL discovery
    std::filesystem::path settings_path{config::kDefaultAgentSettingsPath};
    bool settings_explicit = false;  // --config given: the file must exist
    std::optional<std::string> bus_address;
    std::optional<boot::Slot> booted_slot;  // --booted-slot; else ballast.slot= on /proc/cmdline
    std::optional<std::string> log_level;   // --log-level wins over agent.yaml
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

  private:
    explicit Daemon(DaemonOptions opts);
    [[nodiscard]] Status take_lock();
    [[nodiscard]] Status setup_event_loop();
    [[nodiscard]] Status setup_bus();
    void apply_settings(const config::AgentSettings& s);
    void emit_changed(const char* property);
    void notify_status();
    void arm_reconcile(std::chrono::milliseconds after);
    static int on_reconcile(sd_event_source*, uint64_t, void* userdata);

    DaemonOptions opts_;
    config::AgentSettings settings_;
    std::string booted_slot_;
    std::string last_error_;
    std::string disk_;
    UniqueFd lock_fd_;
    sdbus::Event event_;
    sdbus::Bus bus_;
    sdbus::Slot vtable_slot_;
    sdbus::EventSource sig_term_, sig_int_, sig_hup_, reconcile_timer_;
    JobRunner jobs_;
};

}  // namespace ballast::agent
