// ballast-agent's one-shot modes: a stage, an upgrade, a boot assessment, an unlock, the root's
// assembly, each in this process with its report on stdout (the operations are in ops/; this is
// their printing). Early boot units run them directly; the daemon runs its jobs as these modes
// in a child process (jobs.hpp). Exit: 0 success, 1 failure, 2 usage.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/ops/mount.hpp"
#include "ballast/ops/node.hpp"
#include "ballast/ops/unlock.hpp"
#include "ballast/ops/upgrade.hpp"

namespace ballast::agent {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct StageMode {
    std::string stage;
    std::vector<std::string> configs;
    bool dry_run = false, json = false;
    bool access_only = false;  // a recovery boot's way in (stages::RunRequest::access_only)
    // Run the stage once k3s reports ready, waiting up to this long; where the boot stage set no
    // k3s up, the stage does not run (the k3s-ready stage's unit).
    std::optional<std::chrono::seconds> wait_k3s_ready;
};
int run_stage_mode(const ops::NodeOptions& node, const StageMode& mode);

// With `json`, progress goes to stdout as one JSON line per step ({"progress": {...}}) before
// the report; otherwise to stderr.
int run_upgrade_mode(const ops::NodeOptions& node, const ops::UpgradeRequest& req, bool json);

// The node leaves its k3s cluster (k3s/leave.hpp) before a factory reset: the daemon's Reset
// runs it as a job. Nothing to do (ok, "left": false) where k3s is not set up.
int run_leave_mode(const ops::NodeOptions& node, std::chrono::seconds timeout, bool json);

// Hands a recovery key made at boot (a reset in the initramfs) to tpm.recovery_key_command, then
// wipes it (ops/escrow.hpp): ballast-escrow.service.
int run_escrow_mode(const ops::NodeOptions& node, bool json);

// Runs the health checks and records the verdict for a slot on trial (commit, or mark bad).
int run_health_mode(const ops::NodeOptions& node, bool json);

// Opens an encrypted partition: TPM2 tokens first, then the recovery key (asked on the console).
int run_unlock_mode(const ops::NodeOptions& node, const ops::UnlockRequest& req, bool json);

// Assembles the immutable root on SYSROOT (ops/mount.hpp); the report goes to RUN/mount.json.
int run_mount_mode(const ops::NodeOptions& node, const ops::MountRequest& req, bool json);

// Logs the failure, prints {"ok":false,"error":...} (+ extra) with `json`; the exit code.
int report_failure(const char* what, const Error& e, bool json, nlohmann::json extra = {});

}  // namespace ballast::agent
