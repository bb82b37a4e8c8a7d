// The boot assessment: the health checks of agent.yaml (health/checks.hpp) plus k3s readiness
// where k3s was set up; the verdict recorded for a slot on trial (committed, or marked bad and
// rebooted away from: update/slot_admin.hpp); after a commit, TPM2 tokens for measurements that
// no longer occur dropped; and the node's slot, version and last upgrade put on its Kubernetes
// Node object. verdict() is the logic over narrow seams; check_health() wires in the node.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/boot/control.hpp"
#include "ballast/health/checks.hpp"
#include "ballast/ops/node.hpp"

namespace ballast::ops {

struct HealthReport {
    bool ok = false;                  // the checks passed (and nothing after them failed)
    nlohmann::json health;            // health::Report::to_json()
    std::string summary;              // health::Report::summary()
    bool trial = false;               // the booted slot was on trial: it is now committed or bad
    bool has_disk = false;            // the three below are reported only for a node with a disk
    bool committed = false;           // on trial and passed
    bool reboot = false;              // on trial and failed: reboot into the fallback
    std::string message;              // on trial: what was recorded
    std::optional<std::string> keys;  // after a commit: the stale TPM2 tokens dropped
    std::optional<nlohmann::json> published;  // the labels put on the Node object
    std::optional<std::string> publish_error;
    std::optional<Error> error;  // what failed after the checks ran

    [[nodiscard]] nlohmann::json to_json() const;
    [[nodiscard]] static HealthReport from_json(const nlohmann::json& j);
    // For LastError, JobFinished and the CheckHealth caller: the error, the trial's outcome, or
    // "health check: " and the summary.
    [[nodiscard]] std::string message_line() const;
};

struct HealthEnv {
    health::UnitState unit_state;
    std::vector<health::Probe> probes;     // beyond agent.yaml's (k3s readiness)
    boot::BootControl* control = nullptr;  // null: no Ballast disk, nothing to commit
    std::optional<boot::Slot> booted;
    std::filesystem::path state_dir;
    std::function<std::string()> drop_stale_keys;  // after a commit; returns what it did
    std::function<void(HealthReport&)> publish;    // empty: not published (no k3s here)
};

// The checks, then the verdict for a slot on trial, then (after a commit) the stale keys, then
// publishing. A failure to record the verdict ends it: `error` set, `ok` false.
[[nodiscard]] HealthReport verdict(const health::Settings& h, const HealthEnv& env);

// verdict() for this node: systemd's unit states, k3s readiness when k3s was set up here, its
// disk's boot control. Fails before any check runs only when k3s's state cannot be read.
[[nodiscard]] Result<HealthReport> check_health(const Node& node);

// Waiting for k3s, as the k3s-ready stage does (`ballast-agent stage k3s-ready
// --wait-k3s-ready`): the same readiness probe as the health check, repeated every `interval`
// until it passes or `timeout` runs out.
struct K3sWait {
    bool set_up = false;  // false: the boot stage set no k3s up here; nothing was waited for
    bool ready = false;
    std::string detail;  // the last probe's answer
    double seconds = 0;
};
[[nodiscard]] Result<K3sWait> wait_k3s_ready(const RootPrefix& root,
                                             const config::AgentSettings& settings,
                                             std::chrono::milliseconds timeout,
                                             std::chrono::milliseconds interval);

// A Kubernetes label value: [A-Za-z0-9._-], at most 63, alphanumeric at both ends.
[[nodiscard]] std::string label_value(const std::string& s);

}  // namespace ballast::ops
